"""Per-instruction semantics of the RV32EM VM, covering the edges in DESIGN.md §3."""

from collections.abc import Callable, Iterable
from typing import NamedTuple

import pytest

from athena_vm import ExecutionResult, StatusCode
from tests import asm
from tests.asm import A0, A1, A2, A3, A4, A5, RA, SP, T0, T1, T2, ZERO, li
from tests.vmrun import run_code

INT_MIN = 0x80000000
INT_MAX = 0x7FFFFFFF
NEG1 = 0xFFFFFFFF
#: A scratch data address far from the code.
BASE = 0x00010000

Op3 = Callable[[int, int, int], int]


def run(*items: int | Iterable[int], gas: int = 1_000_000, input: bytes = b"") -> ExecutionResult:
    result, _, _ = run_code(asm.raw(*items), gas=gas, input=input)
    return result


def ok(*items: int | Iterable[int]) -> tuple[int, ...]:
    result = run(*items)
    assert result.status == StatusCode.SUCCESS, result.reason
    assert len(result.registers) == 16
    assert result.registers[0] == 0
    return result.registers


class Failure(NamedTuple):
    reason: str
    registers: tuple[int, ...]
    instructions: int


def fails(*items: int | Iterable[int]) -> Failure:
    """Run, expecting FAILURE: no gas left, no output, and a reason."""
    result = run(*items)
    assert result.status == StatusCode.FAILURE, result
    assert result.gas_left == 0
    assert result.output == b""
    assert result.reason
    return Failure(result.reason, result.registers, result.instructions)


# --- register-register ALU and M extension ---------------------------------------------


def S(v: int) -> int:
    """A signed literal as its u32 register value."""
    return v & NEG1


R_CASES: list[tuple[str, Op3, int, int, int]] = [
    ("add", asm.add, 1, 2, 3),
    ("add", asm.add, NEG1, 1, 0),
    ("add", asm.add, INT_MAX, 1, INT_MIN),
    ("add", asm.add, INT_MIN, INT_MIN, 0),
    ("sub", asm.sub, 0, 1, NEG1),
    ("sub", asm.sub, INT_MIN, 1, INT_MAX),
    ("sub", asm.sub, 5, 5, 0),
    ("sub", asm.sub, 0, INT_MIN, INT_MIN),
    # register shifts use the low 5 bits of rs2
    ("sll", asm.sll, 1, 31, INT_MIN),
    ("sll", asm.sll, 1, 32, 1),
    ("sll", asm.sll, 1, 33, 2),
    ("sll", asm.sll, NEG1, 0xFFFFFFE4, 0xFFFFFFF0),
    ("sll", asm.sll, 3, 0, 3),
    ("srl", asm.srl, INT_MIN, 31, 1),
    ("srl", asm.srl, INT_MIN, 32, INT_MIN),
    ("srl", asm.srl, INT_MIN, NEG1, 1),
    ("srl", asm.srl, 0xF0, 36, 0xF),
    ("sra", asm.sra, INT_MIN, 31, NEG1),
    ("sra", asm.sra, INT_MIN, 32, INT_MIN),
    ("sra", asm.sra, INT_MIN, 1, 0xC0000000),
    ("sra", asm.sra, INT_MAX, 63, 0),
    ("sra", asm.sra, INT_MIN, 0xFFFFFFFC, 0xFFFFFFF8),
    ("slt", asm.slt, NEG1, 0, 1),
    ("slt", asm.slt, 0, NEG1, 0),
    ("slt", asm.slt, INT_MIN, INT_MAX, 1),
    ("slt", asm.slt, 5, 5, 0),
    ("sltu", asm.sltu, NEG1, 0, 0),
    ("sltu", asm.sltu, 0, NEG1, 1),
    ("sltu", asm.sltu, INT_MIN, INT_MAX, 0),
    ("sltu", asm.sltu, 5, 5, 0),
    ("xor", asm.xor, 0xFF00FF00, 0x0FF00FF0, 0xF0F0F0F0),
    ("or", asm.or_, 0xFF00FF00, 0x0FF00FF0, 0xFFF0FFF0),
    ("and", asm.and_, 0xFF00FF00, 0x0FF00FF0, 0x0F000F00),
    ("mul", asm.mul, 7, 6, 42),
    ("mul", asm.mul, NEG1, NEG1, 1),
    ("mul", asm.mul, 0x10000, 0x10000, 0),
    ("mul", asm.mul, INT_MIN, NEG1, INT_MIN),
    ("mul", asm.mul, 0x12345678, 0x9ABCDEF0, 0x242D2080),
    ("mulh", asm.mulh, NEG1, NEG1, 0),
    ("mulh", asm.mulh, INT_MIN, INT_MIN, 0x40000000),
    ("mulh", asm.mulh, INT_MIN, 1, NEG1),
    ("mulh", asm.mulh, INT_MAX, INT_MAX, 0x3FFFFFFF),
    ("mulh", asm.mulh, INT_MIN, INT_MAX, 0xC0000000),
    ("mulh", asm.mulh, 2, 3, 0),
    ("mulh", asm.mulh, 0x12345678, 0x9ABCDEF0, 0xF8CC93D6),
    ("mulhsu", asm.mulhsu, NEG1, NEG1, NEG1),
    ("mulhsu", asm.mulhsu, INT_MIN, NEG1, INT_MIN),
    ("mulhsu", asm.mulhsu, INT_MAX, NEG1, 0x7FFFFFFE),
    ("mulhsu", asm.mulhsu, NEG1, 1, NEG1),
    ("mulhsu", asm.mulhsu, 1, NEG1, 0),
    ("mulhsu", asm.mulhsu, 0x12345678, 0x9ABCDEF0, 0x0B00EA4E),
    ("mulhsu", asm.mulhsu, 0x9ABCDEF0, 0x12345678, 0xF8CC93D6),
    ("mulhu", asm.mulhu, NEG1, NEG1, 0xFFFFFFFE),
    ("mulhu", asm.mulhu, INT_MIN, 2, 1),
    ("mulhu", asm.mulhu, INT_MIN, INT_MIN, 0x40000000),
    ("mulhu", asm.mulhu, 0x9ABCDEF0, 0x12345678, 0x0B00EA4E),
    ("div", asm.div, 7, 2, 3),
    ("div", asm.div, S(-7), 2, S(-3)),
    ("div", asm.div, 7, S(-2), S(-3)),
    ("div", asm.div, S(-7), S(-2), 3),
    ("div", asm.div, 5, 0, NEG1),
    ("div", asm.div, 0, 0, NEG1),
    ("div", asm.div, INT_MIN, 0, NEG1),
    ("div", asm.div, INT_MIN, NEG1, INT_MIN),
    ("div", asm.div, INT_MIN, 1, INT_MIN),
    ("div", asm.div, INT_MAX, NEG1, S(-INT_MAX)),
    ("divu", asm.divu, 7, 2, 3),
    ("divu", asm.divu, NEG1, 2, INT_MAX),
    ("divu", asm.divu, 5, 0, NEG1),
    ("divu", asm.divu, 0, 0, NEG1),
    ("divu", asm.divu, INT_MIN, NEG1, 0),
    ("rem", asm.rem, 7, 2, 1),
    ("rem", asm.rem, S(-7), 2, S(-1)),
    ("rem", asm.rem, 7, S(-2), 1),
    ("rem", asm.rem, S(-7), S(-2), S(-1)),
    ("rem", asm.rem, 5, 0, 5),
    ("rem", asm.rem, S(-5), 0, S(-5)),
    ("rem", asm.rem, 0, 0, 0),
    ("rem", asm.rem, INT_MIN, NEG1, 0),
    ("rem", asm.rem, INT_MIN, 0, INT_MIN),
    ("remu", asm.remu, 7, 2, 1),
    ("remu", asm.remu, NEG1, 2, 1),
    ("remu", asm.remu, 5, 0, 5),
    ("remu", asm.remu, NEG1, 0, NEG1),
    ("remu", asm.remu, INT_MIN, NEG1, INT_MIN),
]


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [pytest.param(op, a, b, e, id=f"{name}-{a:#x}-{b:#x}") for name, op, a, b, e in R_CASES],
)
def test_register_op(op, a, b, expected):
    regs = ok(li(A1, a), li(A2, b), op(A0, A1, A2))
    assert regs[A0] == expected
    assert (regs[A1], regs[A2]) == (a, b)  # sources are untouched
    # the destination may also be a source
    regs = ok(li(A1, a), li(A2, b), op(A1, A1, A2))
    assert regs[A1] == expected
    regs = ok(li(A1, a), li(A2, b), op(A2, A1, A2))
    assert regs[A2] == expected


def test_same_register_operands():
    regs = ok(
        li(A1, INT_MIN),
        asm.sub(A0, A1, A1),
        asm.mul(A2, A1, A1),
        asm.div(A3, A1, A1),
        asm.xor(A4, A1, A1),
        asm.slt(A5, A1, A1),
    )
    assert (regs[A0], regs[A2], regs[A3], regs[A4], regs[A5]) == (0, 0, 1, 0, 0)


# --- register-immediate: immediates are sign-extended -----------------------------------

I_CASES: list[tuple[str, Op3, int, int, int]] = [
    ("addi", asm.addi, 0, -1, NEG1),
    ("addi", asm.addi, NEG1, 1, 0),
    ("addi", asm.addi, 0, -2048, 0xFFFFF800),
    ("addi", asm.addi, 0, 2047, 0x7FF),
    ("addi", asm.addi, INT_MAX, 1, INT_MIN),
    ("slti", asm.slti, NEG1, 0, 1),
    ("slti", asm.slti, 0, -1, 0),
    ("slti", asm.slti, INT_MIN, -2048, 1),
    ("slti", asm.slti, 5, 5, 0),
    ("slti", asm.slti, 4, 5, 1),
    ("sltiu", asm.sltiu, 0, -1, 1),
    ("sltiu", asm.sltiu, 0xFFFFFFFE, -1, 1),
    ("sltiu", asm.sltiu, NEG1, -1, 0),
    ("sltiu", asm.sltiu, 0, 1, 1),
    ("sltiu", asm.sltiu, 1, 1, 0),
    ("sltiu", asm.sltiu, INT_MIN, -2048, 1),
    ("sltiu", asm.sltiu, 0xFFFFF800, -2048, 0),
    ("xori", asm.xori, 0x12345678, -1, 0xEDCBA987),
    ("xori", asm.xori, 0xFF, 0x0F, 0xF0),
    ("xori", asm.xori, 0, -2048, 0xFFFFF800),
    ("ori", asm.ori, 0, -2048, 0xFFFFF800),
    ("ori", asm.ori, INT_MIN, 1, INT_MIN | 1),
    ("andi", asm.andi, NEG1, -2048, 0xFFFFF800),
    ("andi", asm.andi, NEG1, 0x7FF, 0x7FF),
    ("andi", asm.andi, 0x12345678, -1, 0x12345678),
    ("slli", asm.slli, 1, 31, INT_MIN),
    ("slli", asm.slli, NEG1, 4, 0xFFFFFFF0),
    ("slli", asm.slli, 0x1234, 0, 0x1234),
    ("srli", asm.srli, INT_MIN, 31, 1),
    ("srli", asm.srli, NEG1, 4, 0x0FFFFFFF),
    ("srai", asm.srai, INT_MIN, 31, NEG1),
    ("srai", asm.srai, 0xFFFFFFF0, 4, NEG1),
    ("srai", asm.srai, 0x7FFFFFF0, 4, 0x07FFFFFF),
    ("srai", asm.srai, INT_MIN, 0, INT_MIN),
]


@pytest.mark.parametrize(
    ("op", "a", "imm", "expected"),
    [pytest.param(op, a, i, e, id=f"{name}-{a:#x}-{i}") for name, op, a, i, e in I_CASES],
)
def test_immediate_op(op, a, imm, expected):
    regs = ok(li(A1, a), op(A0, A1, imm))
    assert regs[A0] == expected
    assert regs[A1] == a


@pytest.mark.parametrize("funct3", [1, 5])
def test_shift_immediate_with_bit_5_is_invalid(funct3):
    # shamt[5] set is an RV64 encoding; RV32 reserves it
    word = asm.r_type(0x13, funct3, 0x01, A0, A1, 0)
    fails(asm.addi(A1, ZERO, 1), word)
    ok(asm.jal(ZERO, 8), word)


# --- upper immediates -------------------------------------------------------------------


def test_lui():
    regs = ok(
        asm.lui(A0, 0xFFFFF),
        asm.lui(A1, 0x80000),
        asm.addi(A2, ZERO, 0x7FF),
        asm.lui(A2, 0),  # lui replaces the whole register
        asm.addi(A3, ZERO, -1),
        asm.lui(A3, 1),
        asm.lui(A4, -1),
    )
    assert regs[A0:A5] == (0xFFFFF000, INT_MIN, 0, 0x1000, 0xFFFFF000)


def test_auipc():
    regs = ok(
        asm.nop(),
        asm.nop(),
        asm.auipc(A0, 0x12345),  # pc 8
        asm.auipc(A1, 0xFFFFF),  # pc 12, wraps
        asm.auipc(A2, 0),  # pc 16
        asm.auipc(A3, 0x80000),  # pc 20
    )
    assert regs[A0:A4] == (0x12345008, 0xFFFFF00C, 16, 0x80000014)


# --- loads and stores -------------------------------------------------------------------


def loaded(*loads: int) -> tuple[int, ...]:
    """Store 0x80FF7F01 at BASE (bytes 01 7F FF 80), then run `loads` with A1 = BASE."""
    return ok(li(A1, BASE), li(T0, 0x80FF7F01), asm.sw(T0, A1, 0), *loads)


@pytest.mark.parametrize(
    ("load", "offset", "expected"),
    [
        (asm.lb, 0, 0x01),
        (asm.lb, 1, 0x7F),
        (asm.lb, 2, NEG1),
        (asm.lb, 3, 0xFFFFFF80),
        (asm.lbu, 2, 0xFF),
        (asm.lbu, 3, 0x80),
        (asm.lh, 0, 0x7F01),
        (asm.lh, 2, 0xFFFF80FF),
        (asm.lhu, 0, 0x7F01),
        (asm.lhu, 2, 0x80FF),
        (asm.lw, 0, 0x80FF7F01),
    ],
)
def test_load_sign_extension(load, offset, expected):
    assert loaded(load(A0, A1, offset))[A0] == expected


def test_load_store_negative_offsets():
    regs = ok(
        li(A1, BASE + 0x800),
        li(T0, 0xDEADBEEF),
        asm.sw(T0, A1, -2048),
        asm.lw(A0, A1, -2048),
        li(A2, BASE),
        asm.lw(A3, A2, 0),
        asm.lh(A4, A1, -2046),
    )
    assert (regs[A0], regs[A3], regs[A4]) == (0xDEADBEEF, 0xDEADBEEF, 0xFFFFDEAD)


def test_partial_stores():
    regs = ok(
        li(A1, BASE),
        li(T0, 0xAAAAAAAA),
        asm.sw(T0, A1, 0),
        li(T0, 0x11223344),
        asm.sb(T0, A1, 1),
        li(T0, 0x55667788),
        asm.sh(T0, A1, 2),
        asm.lw(A0, A1, 0),
        asm.lw(A2, A1, 4),  # untouched neighbour
    )
    assert regs[A0] == 0x778844AA
    assert regs[A2] == 0


def test_unwritten_memory_reads_zero():
    regs = ok(
        li(A5, 0x40000000),
        asm.lw(A0, A5, 0),
        asm.lb(A1, A5, 3),
        asm.lhu(A2, A5, -2),
        li(A5, 0x80000000),
        asm.lw(A3, A5, 0),
        asm.lw(A4, ZERO, 0x400),  # past the code, same page
        asm.addi(T0, ZERO, 1),
        asm.addi(T1, ZERO, 1),
    )
    assert regs[A0:A5] == (0, 0, 0, 0, 0)


def test_code_is_readable_as_data():
    first = asm.addi(A1, ZERO, 0x123)
    regs = ok(first, asm.lw(A0, ZERO, 0), asm.lbu(A2, ZERO, 1))
    assert regs[A0] == first
    assert regs[A2] == (first >> 8) & 0xFF


MISALIGNED: list[tuple[str, Op3, int]] = [
    ("lw", asm.lw, 1),
    ("lw", asm.lw, 2),
    ("lw", asm.lw, 3),
    ("sw", asm.sw, 1),
    ("sw", asm.sw, 2),
    ("sw", asm.sw, 3),
    ("lh", asm.lh, 1),
    ("lh", asm.lh, 3),
    ("lhu", asm.lhu, 1),
    ("lhu", asm.lhu, 3),
    ("sh", asm.sh, 1),
    ("sh", asm.sh, 3),
]


@pytest.mark.parametrize(("name", "access", "offset"), MISALIGNED)
def test_misaligned_access_fails(name, access, offset):
    # loads write A2, stores store it: the operand order is the same
    result = fails(li(A1, BASE), li(A2, 0x1234), access(A2, A1, offset), asm.addi(A3, ZERO, 1))
    assert "misaligned" in result.reason
    assert name in result.reason.split()
    assert f"{BASE + offset:08x}" in result.reason
    assert result.registers[A3] == 0  # nothing after the fault ran
    assert result.registers[A2] == 0x1234
    # the same access through a misaligned base register and offset 0 also faults
    fails(li(A1, BASE + offset), access(A2, A1, 0))


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5, 0x7FF])
def test_byte_access_is_never_misaligned(offset):
    regs = ok(
        li(A1, BASE),
        asm.addi(A2, ZERO, -3),
        asm.sb(A2, A1, offset),
        asm.lb(A0, A1, offset),
        asm.lbu(A3, A1, offset),
    )
    assert (regs[A0], regs[A3]) == (S(-3), 0xFD)


def test_halfword_access_at_2_mod_4_is_aligned():
    regs = ok(li(A1, BASE + 2), li(A2, 0x8001), asm.sh(A2, A1, 0), asm.lh(A0, A1, 0))
    assert regs[A0] == 0xFFFF8001


def test_stack_at_top_of_memory():
    """A method starts with sp = 0: its stack is at 0xFFFFFFxx."""
    regs = ok(
        asm.addi(SP, SP, -16),
        li(A1, 0xCAFEBABE),
        asm.sw(A1, SP, 12),  # 0xFFFFFFFC
        asm.sh(A1, SP, 8),  # 0xFFFFFFF8
        asm.sb(A1, SP, 7),  # 0xFFFFFFF7
        asm.lw(A2, SP, 12),
        asm.lhu(A3, SP, 8),
        asm.lbu(A4, SP, 7),
        asm.lw(A5, ZERO, -4),  # the same word, addressed through x0 with wrap-around
        asm.lb(T1, SP, 15),  # 0xFFFFFFFF, the last byte of memory
        asm.lw(T2, SP, 0),  # unwritten
    )
    assert regs[SP] == 0xFFFFFFF0
    assert (regs[A2], regs[A3], regs[A4], regs[A5]) == (0xCAFEBABE, 0xBABE, 0xBE, 0xCAFEBABE)
    assert regs[T1] == 0xFFFFFFCA
    assert regs[T2] == 0


# --- x0 ---------------------------------------------------------------------------------


def test_writes_to_x0_are_ignored():
    regs = ok(
        asm.addi(ZERO, ZERO, 5),  # pc 0
        asm.lui(ZERO, 0x12345),  # 4
        asm.auipc(ZERO, 1),  # 8
        li(A1, BASE),  # 12, 16
        li(A2, 0x1234),  # 20, 24
        asm.sw(A2, A1, 0),  # 28
        asm.lw(ZERO, A1, 0),  # 32
        asm.lb(ZERO, A1, 0),  # 36
        asm.add(ZERO, A2, A2),  # 40
        asm.mul(ZERO, A2, A2),  # 44
        asm.jal(ZERO, 8),  # 48 -> 56, links nothing
        asm.addi(A3, ZERO, 99),  # 52 (skipped)
        asm.auipc(T1, 0),  # 56
        asm.jalr(ZERO, T1, 12),  # 60 -> 68, links nothing
        asm.addi(A4, ZERO, 77),  # 64 (skipped)
        asm.add(A0, ZERO, ZERO),  # 68
        asm.sltiu(A5, ZERO, 1),  # 72: x0 == 0 so A5 = 1
    )
    assert regs[0] == 0
    assert (regs[A0], regs[A3], regs[A4], regs[A5]) == (0, 0, 0, 1)
    assert regs[T1] == 56


# --- branches and jumps -----------------------------------------------------------------

BRANCH_CASES = [
    (asm.beq, 5, 5, True),
    (asm.beq, 5, 6, False),
    (asm.bne, 5, 6, True),
    (asm.bne, 5, 5, False),
    (asm.blt, NEG1, 0, True),
    (asm.blt, 0, NEG1, False),
    (asm.blt, 3, 3, False),
    (asm.blt, INT_MIN, INT_MAX, True),
    (asm.bge, 0, NEG1, True),
    (asm.bge, 3, 3, True),
    (asm.bge, NEG1, 0, False),
    (asm.bge, INT_MAX, INT_MIN, True),
    (asm.bltu, 0, NEG1, True),
    (asm.bltu, NEG1, 0, False),
    (asm.bltu, 3, 3, False),
    (asm.bltu, INT_MAX, INT_MIN, True),
    (asm.bgeu, NEG1, 0, True),
    (asm.bgeu, 3, 3, True),
    (asm.bgeu, 0, NEG1, False),
]


@pytest.mark.parametrize(("branch", "a", "b", "taken"), BRANCH_CASES)
def test_forward_branch(branch, a, b, taken):
    regs = ok(
        li(A1, a),
        li(A2, b),
        branch(A1, A2, 8),
        asm.addi(A0, ZERO, 1),  # skipped when taken
        asm.addi(A3, ZERO, 2),
    )
    assert regs[A0] == (0 if taken else 1)
    assert regs[A3] == 2


@pytest.mark.parametrize(("branch", "a", "b", "taken"), BRANCH_CASES)
def test_backward_branch(branch, a, b, taken):
    regs = ok(
        li(A1, a),  # 0, 4
        li(A2, b),  # 8, 12
        asm.addi(A0, A0, 1),  # 16
        asm.addi(T0, ZERO, 2),  # 20
        asm.beq(A0, T0, 8),  # 24: second visit -> 32 (end)
        branch(A1, A2, -12),  # 28: back to 16 when taken
    )
    assert regs[A0] == (2 if taken else 1)


def test_counting_loop():
    regs = ok(
        asm.addi(A1, ZERO, 10),  # 0
        asm.addi(A0, A0, 1),  # 4
        asm.add(A2, A2, A0),  # 8
        asm.bne(A0, A1, -8),  # 12 -> 4
    )
    assert (regs[A0], regs[A2]) == (10, 55)


def test_long_branches_and_jumps():
    pad = [asm.addi(A0, A0, 1)] * 1020
    regs = ok(
        asm.beq(ZERO, ZERO, 4092),  # 0 -> 4092
        pad,  # 4 .. 4083
        asm.jal(ZERO, 12),  # 4084 -> 4096
        asm.addi(A1, ZERO, 1),  # 4088 (never)
        asm.jal(ZERO, -8),  # 4092 -> 4084
        asm.addi(A2, ZERO, 2),  # 4096
    )
    assert (regs[A0], regs[A1], regs[A2]) == (0, 0, 2)


def test_jal_and_jalr_link():
    result = run(
        asm.jal(RA, 12),  # 0 -> 12, ra = 4
        asm.addi(A1, ZERO, 7),  # 4: the return target
        asm.jal(ZERO, 12),  # 8 -> 20 (end of code)
        asm.addi(A0, ZERO, 5),  # 12
        asm.jalr(T0, RA, 0),  # 16 -> 4, t0 = 20
    )
    assert result.ok, result.reason
    regs = result.registers
    assert (regs[RA], regs[A0], regs[A1], regs[T0]) == (4, 5, 7, 20)
    assert result.instructions == 5


def test_jalr_same_register_uses_old_value():
    regs = ok(
        asm.addi(RA, ZERO, 12),  # 0
        asm.jalr(RA, RA, 0),  # 4 -> 12, ra = 8
        asm.addi(A0, ZERO, 1),  # 8 (skipped)
        asm.addi(A1, ZERO, 2),  # 12
    )
    assert (regs[RA], regs[A0], regs[A1]) == (8, 0, 2)


def test_jalr_negative_immediate():
    regs = ok(
        asm.addi(T1, ZERO, 20),  # 0
        asm.jalr(ZERO, T1, -8),  # 4 -> 12
        asm.addi(A0, ZERO, 1),  # 8 (skipped)
        asm.addi(A1, ZERO, 2),  # 12
    )
    assert (regs[A0], regs[A1]) == (0, 2)


@pytest.mark.parametrize(("base", "imm"), [(13, 0), (12, 1), (15, -2)])
def test_jalr_clears_the_low_bit(base, imm):
    regs = ok(
        asm.addi(T1, ZERO, base),  # 0
        asm.jalr(RA, T1, imm),  # 4 -> (base + imm) & ~1 = 12 (or 13 & ~1)
        asm.addi(A0, ZERO, 1),  # 8 (skipped)
        asm.addi(A1, ZERO, 2),  # 12
    )
    assert (regs[RA], regs[A0], regs[A1]) == (8, 0, 2)


def test_jump_backward_with_jal():
    regs = ok(
        asm.jal(ZERO, 12),  # 0 -> 12
        asm.addi(A0, A0, 1),  # 4
        asm.jal(ZERO, 12),  # 8 -> 20 (end)
        asm.addi(A1, ZERO, 3),  # 12
        asm.jal(RA, -12),  # 16 -> 4, ra = 20
    )
    assert (regs[A0], regs[A1], regs[RA]) == (1, 3, 20)


def test_jump_to_zero_halts():
    result = run(
        asm.addi(A0, ZERO, 1),
        asm.jalr(ZERO, ZERO, 0),  # pc 0: halt (an export returning to ra = 0)
        asm.addi(A1, ZERO, 1),
    )
    assert result.ok
    assert (result.registers[A0], result.registers[A1]) == (1, 0)
    assert result.instructions == 2


def test_jump_outside_code_halts():
    result = run(asm.jal(ZERO, 0x1000), asm.addi(A1, ZERO, 1))
    assert result.ok
    assert result.instructions == 1
    assert result.registers[A1] == 0


# --- invalid encodings ------------------------------------------------------------------

HIGH_REGISTER_USES = [
    asm.add(16, A1, A2),
    asm.add(A1, 17, A2),
    asm.add(A1, A2, 31),
    asm.mul(A1, A2, 25),
    asm.addi(20, ZERO, 1),
    asm.slli(A1, 30, 3),
    asm.lw(A1, 17, 0),
    asm.lw(18, A1, 0),
    asm.sw(18, A1, 0),
    asm.sb(A1, 29, 0),
    asm.beq(19, ZERO, 8),
    asm.bne(ZERO, 21, 8),
    asm.jal(16, 8),
    asm.jalr(A1, 16, 0),
    asm.jalr(22, A1, 0),
    asm.lui(31, 1),
    asm.auipc(16, 0),
]


@pytest.mark.parametrize("word", HIGH_REGISTER_USES, ids=lambda w: f"{w:08x}")
def test_high_registers_fault_only_when_executed(word):
    regs = ok(asm.jal(ZERO, 8), word, asm.addi(A0, ZERO, 1))
    assert regs[A0] == 1
    result = fails(asm.addi(A0, ZERO, 1), word)
    assert "invalid instruction" in result.reason
    assert "x0-x15" in result.reason


INVALID_ENCODINGS = {
    "ebreak": asm.ebreak(),
    "mret": asm.MRET,
    "wfi": asm.WFI,
    "sret": 0x10200073,
    "fence": asm.fence(),
    "fence.tso": 0x8330000F,
    "fence.i": asm.fence_i(),
    "csrrw": asm.csrrw(A0, 0x300, A1),
    "csrrs": asm.csrrs(A0, 0xC00, ZERO),  # rdcycle
    "csrrc": asm.csrrc(A0, 0x001, A1),
    "csrrwi": asm.csrrwi(A0, 0x300, 1),
    "csrrsi": asm.csrrsi(A0, 0x300, 1),
    "csrrci": asm.csrrci(A0, 0x300, 1),
    "compressed c.nop": 0x00000001,
    "compressed c.li": 0x45054505,
    "all zeros": 0x00000000,
    "all ones": 0xFFFFFFFF,
    "flw": asm.i_type(0x07, 2, 0, A0, 0),
    "fsw": asm.s_type(0x27, 2, A0, 0, 0),
    "fadd.s": asm.r_type(0x53, 0, 0x00, 1, 2, 3),
    "fmadd.s": asm.r_type(0x43, 0, 0x00, 1, 2, 3),
    "fld": asm.i_type(0x07, 3, 0, A0, 0),
    "lr.w": asm.r_type(0x2F, 2, 0x08, A0, A1, 0),
    "amoadd.w": asm.r_type(0x2F, 2, 0x00, A0, A1, A2),
    "ld (RV64)": asm.i_type(0x03, 3, A0, A1, 0),
    "sd (RV64)": asm.s_type(0x23, 3, A1, A0, 0),
    "addiw (RV64)": asm.i_type(0x1B, 0, A0, A1, 1),
    "branch funct3=2": asm.b_type(0x63, 2, A0, A1, 8),
    "jalr funct3=1": asm.i_type(0x67, 1, A0, A1, 0),
    "op funct7=0x02": asm.r_type(0x33, 0, 0x02, A0, A1, A2),
    "sub funct3=1": asm.r_type(0x33, 1, 0x20, A0, A1, A2),
    "custom-0": 0x0000000B,
}


@pytest.mark.parametrize("word", INVALID_ENCODINGS.values(), ids=INVALID_ENCODINGS.keys())
def test_invalid_encodings_fault_only_when_executed(word):
    regs = ok(asm.jal(ZERO, 8), word, asm.addi(A0, ZERO, 1))
    assert regs[A0] == 1
    result = fails(asm.addi(A0, ZERO, 1), word, asm.addi(A1, ZERO, 1))
    assert "invalid instruction" in result.reason
    assert f"{word:08x}" in result.reason
    assert result.registers[A0] == 1
    assert result.registers[A1] == 0
    assert result.instructions == 1  # the faulting instruction is not counted


# --- code is decoded once ---------------------------------------------------------------


def test_stores_never_change_what_executes():
    patched = asm.addi(A0, ZERO, 99)
    regs = ok(
        li(T0, patched),  # 0, 4
        asm.sw(T0, ZERO, 16),  # 8: overwrite the instruction at 16
        asm.lw(A1, ZERO, 16),  # 12: memory does hold the new word
        asm.addi(A0, ZERO, 1),  # 16: but the original runs
    )
    assert regs[A1] == patched
    assert regs[A0] == 1


def test_stores_past_the_code_do_not_extend_it():
    regs = ok(
        li(T0, asm.addi(A0, ZERO, 99)),  # 0, 4
        asm.sw(T0, ZERO, 16),  # 8: write an instruction just past the end
        asm.lw(A1, ZERO, 16),  # 12
    )
    assert regs[A0] == 0
    assert regs[A1] == asm.addi(A0, ZERO, 99)


def test_overwriting_an_invalid_instruction_does_not_heal_it():
    bad = asm.ebreak()
    result = fails(
        li(T0, asm.nop()),  # 0, 4
        asm.sw(T0, ZERO, 12),  # 8
        bad,  # 12
    )
    assert "ebreak" in result.reason


# --- ecall: halt and unknown syscalls ---------------------------------------------------


def test_halt_with_zero_exit_code_succeeds_and_stops():
    result = run(
        asm.addi(A1, ZERO, 1),
        asm.addi(T0, ZERO, 0),
        asm.addi(A0, ZERO, 0),
        asm.ecall(),
        asm.addi(A2, ZERO, 1),
    )
    assert result.ok, result.reason
    assert (result.registers[A1], result.registers[A2]) == (1, 0)
    assert result.instructions == 4


@pytest.mark.parametrize("code", [1, 2, 0x7FFFFFFF, NEG1])
def test_halt_with_nonzero_exit_code_fails(code):
    result = fails(li(A0, code), asm.addi(T0, ZERO, 0), asm.ecall(), asm.addi(A2, ZERO, 1))
    assert str(code) in result.reason
    assert result.registers[A2] == 0


@pytest.mark.parametrize("number", [0x01, 0x03, 0x9F, 0xA7, 0xEF, 0xF2, 0x00640021, NEG1])
def test_unknown_syscall_fails(number):
    result = fails(li(T0, number), asm.ecall(), asm.addi(A2, ZERO, 1))
    assert "unknown syscall" in result.reason
    assert f"{number:x}" in result.reason
    assert result.registers[A2] == 0


def test_failure_discards_output():
    # WRITE 4 bytes of code to fd 3 (return data), then fail: `fails` checks the output is empty
    fails(
        asm.addi(T0, ZERO, 2),
        asm.addi(A0, ZERO, 3),
        asm.addi(A1, ZERO, 0),
        asm.addi(A2, ZERO, 4),
        asm.ecall(),
        asm.ebreak(),
    )
    good = run(
        asm.addi(T0, ZERO, 2),
        asm.addi(A0, ZERO, 3),
        asm.addi(A1, ZERO, 0),
        asm.addi(A2, ZERO, 4),
        asm.ecall(),
    )
    assert good.ok
    assert good.output == asm.addi(T0, ZERO, 2).to_bytes(4, "little")
