"""The test encoder round-trips through the VM's decoder."""

from collections.abc import Callable

import pytest

from athena_vm.decode import decode
from athena_vm.machine import SINK
from tests import asm

R3 = ["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra"]
R3 += ["mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu"]
LOADS = ["lb", "lh", "lw", "lbu", "lhu"]
STORES = ["sb", "sh", "sw"]
IMM = ["addi", "slti", "sltiu", "xori", "ori", "andi"]
SHIFTS = ["slli", "srli", "srai"]
BRANCHES = ["beq", "bne", "blt", "bge", "bltu", "bgeu"]


def fn(name: str) -> Callable[..., int]:
    f: Callable[..., int] = getattr(asm, name)
    return f


@pytest.mark.parametrize("name", [*R3, "or", "and"])
@pytest.mark.parametrize(("rd", "rs1", "rs2"), [(1, 2, 3), (15, 14, 13), (0, 15, 1)])
def test_register_ops(name, rd, rs1, rs2):
    i = decode(fn(name + ("_" if name in ("or", "and") else ""))(rd, rs1, rs2))
    assert (i.name, i.rd, i.rs1, i.rs2) == (name, rd or SINK, rs1, rs2)


@pytest.mark.parametrize("name", LOADS + IMM + ["jalr"])
@pytest.mark.parametrize("imm", [0, 1, -1, 2047, -2048, 0x555, -0x556])
def test_i_type(name, imm):
    i = decode(fn(name)(5, 9, imm))
    assert (i.name, i.rd, i.rs1, i.imm) == (name, 5, 9, imm)


@pytest.mark.parametrize("name", STORES)
@pytest.mark.parametrize("imm", [0, 1, -1, 2047, -2048, 0x2A5, -0x31])
def test_s_type(name, imm):
    i = decode(fn(name)(7, 2, imm))
    assert (i.name, i.rs2, i.rs1, i.imm) == (name, 7, 2, imm)


@pytest.mark.parametrize("name", SHIFTS)
@pytest.mark.parametrize("shamt", [0, 1, 17, 31])
def test_shift_imm(name, shamt):
    i = decode(fn(name)(3, 4, shamt))
    assert (i.name, i.rd, i.rs1, i.imm) == (name, 3, 4, shamt)


@pytest.mark.parametrize("name", BRANCHES)
@pytest.mark.parametrize("offset", [0, 4, -4, 2, 4094, -4096, 0x556, -0xAAA])
def test_b_type(name, offset):
    i = decode(fn(name)(6, 11, offset))
    assert (i.name, i.rs1, i.rs2, i.imm) == (name, 6, 11, offset)


@pytest.mark.parametrize("offset", [0, 4, -4, 2, (1 << 20) - 2, -(1 << 20), 0x5A5A4, -0x12346])
def test_jal(offset):
    i = decode(asm.jal(1, offset))
    assert (i.name, i.rd, i.imm) == ("jal", 1, offset)


@pytest.mark.parametrize("imm20", [0, 1, 0x80000, 0xFFFFF, 0x12345, -1])
def test_upper(imm20):
    for name in ("lui", "auipc"):
        i = decode(fn(name)(10, imm20))
        assert (i.name, i.rd, i.imm) == (name, 10, (imm20 << 12) & 0xFFFFFFFF)


def test_system_words():
    assert decode(asm.ecall()).name == "ecall"
    for word in (asm.ebreak(), asm.MRET, asm.WFI, asm.fence(), asm.csrrw(1, 0xC00, 2)):
        assert decode(word).name == "invalid"


def test_li_covers_32_bits():
    for value in (0, 1, -1, 0x7FF, 0x800, 0xFFF, 0x7FFFF800, 0x80000000, 0xDEADBEEF):
        hi, lo = (decode(w) for w in asm.li(1, value))
        assert (hi.imm + lo.imm) & 0xFFFFFFFF == value & 0xFFFFFFFF


@pytest.mark.parametrize(
    ("encoder", "args"),
    [
        (asm.addi, (1, 1, 2048)),
        (asm.addi, (1, 1, -2049)),
        (asm.sw, (1, 1, -2049)),
        (asm.beq, (1, 1, 3)),
        (asm.beq, (1, 1, 4096)),
        (asm.jal, (1, 1 << 20)),
        (asm.jal, (1, 5)),
        (asm.slli, (1, 1, 32)),
        (asm.lui, (1, 1 << 20)),
        (asm.add, (32, 1, 1)),
        (asm.li, (1, 1 << 32)),
    ],
)
def test_range_checks(encoder, args):
    with pytest.raises(ValueError):
        encoder(*args)


def test_raw():
    assert asm.raw(asm.nop(), asm.li(1, 5)) == b"\x7fATH" + b"".join(
        w.to_bytes(4, "little") for w in (0x13, *asm.li(1, 5))
    )
