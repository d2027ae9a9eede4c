"""Differential testing of the RV32EM interpreter against Unicorn (QEMU's RISC-V core).

Every program runs in both engines from address 0. A prologue sets x1-x15 to the chosen
initial values, points a base register at a 64-byte scratch region and fills the region
with the registers; then comes the body under test. The engines are compared in lockstep
(the pc and all 16 registers after every instruction), then on the scratch region at the
end; our final registers from the untraced interpreter loop must agree too.
"""

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_RISCV, UC_HOOK_CODE, UC_MODE_RISCV32
from unicorn import riscv_const as rc

from athena_vm import ExecutionContext, ExecutionPayload, Payload, execute, load_program
from athena_vm.decode import decode
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.machine import Instr, Machine
from tests import asm
from tests.asm import A0, A1, A2, A3, ZERO
from tests.vmrun import run_code

#: Unicorn's bindings are only partly typed; use them untyped.
unicorn: Any = importlib.import_module("unicorn")
PAGE = 0x1000
SCRATCH = 0x8000
SCRATCH_SIZE = 64
#: The base register points at the middle, so loads and stores use negative offsets too.
BASE_VALUE = SCRATCH + SCRATCH_SIZE // 2
UC_REGS = [getattr(rc, f"UC_RISCV_REG_X{i}") for i in range(16)]
MASK = 0xFFFFFFFF
INT_MIN, INT_MAX = 0x80000000, 0x7FFFFFFF

EDGES = [
    0,
    1,
    2,
    3,
    MASK,
    MASK - 1,
    INT_MIN,
    INT_MIN + 1,
    INT_MAX,
    INT_MAX - 1,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    31,
    32,
    33,
    0x55555555,
    0xAAAAAAAA,
    0xFFFFF800,
    0x800,
]
IMM_EDGES = [0, 1, -1, 2, -2, 31, 32, 2047, -2048, 0x7FF, 0x555, -0x556]

R_OPS: dict[str, Callable[[int, int, int], int]] = {
    "add": asm.add,
    "sub": asm.sub,
    "sll": asm.sll,
    "slt": asm.slt,
    "sltu": asm.sltu,
    "xor": asm.xor,
    "srl": asm.srl,
    "sra": asm.sra,
    "or": asm.or_,
    "and": asm.and_,
    "mul": asm.mul,
    "mulh": asm.mulh,
    "mulhsu": asm.mulhsu,
    "mulhu": asm.mulhu,
    "div": asm.div,
    "divu": asm.divu,
    "rem": asm.rem,
    "remu": asm.remu,
}
I_OPS: dict[str, Callable[[int, int, int], int]] = {
    "addi": asm.addi,
    "slti": asm.slti,
    "sltiu": asm.sltiu,
    "xori": asm.xori,
    "ori": asm.ori,
    "andi": asm.andi,
}
SHIFT_OPS: dict[str, Callable[[int, int, int], int]] = {
    "slli": asm.slli,
    "srli": asm.srli,
    "srai": asm.srai,
}
#: name -> (encoder, access width)
LOADS: dict[str, tuple[Callable[[int, int, int], int], int]] = {
    "lb": (asm.lb, 1),
    "lbu": (asm.lbu, 1),
    "lh": (asm.lh, 2),
    "lhu": (asm.lhu, 2),
    "lw": (asm.lw, 4),
}
STORES: dict[str, tuple[Callable[[int, int, int], int], int]] = {
    "sb": (asm.sb, 1),
    "sh": (asm.sh, 2),
    "sw": (asm.sw, 4),
}
BRANCHES: dict[str, Callable[[int, int, int], int]] = {
    "beq": asm.beq,
    "bne": asm.bne,
    "blt": asm.blt,
    "bge": asm.bge,
    "bltu": asm.bltu,
    "bgeu": asm.bgeu,
}


class Ins(NamedTuple):
    """One generated instruction; jumps hold a forward distance resolved at encoding."""

    name: str
    args: tuple[int, ...]


class Outcome(NamedTuple):
    #: (pc, x0..x15 after the instruction at pc) for every executed instruction
    steps: list[tuple[int, tuple[int, ...]]]
    scratch: bytes


# --- running in both engines ------------------------------------------------------------


def prologue(initial: Sequence[int], base: int) -> list[int]:
    """x1..x15 = initial, x[base] = BASE_VALUE, scratch word i = x_i."""
    words: list[int] = []
    for reg, value in enumerate(initial, start=1):
        if reg != base:
            words += asm.li(reg, value)
    words += asm.li(base, BASE_VALUE)
    for reg in range(16):
        words.append(asm.sw(reg, base, 4 * reg - SCRATCH_SIZE // 2))
    return words


def run_ours(words: list[int], scratch: int = SCRATCH, size: int = SCRATCH_SIZE) -> Outcome:
    code = asm.raw(words)
    steps: list[tuple[int, tuple[int, ...]]] = []
    machines: list[Machine] = []

    def tracer(pc: int, ins: Instr, changed: tuple[int, int] | None, m: Machine) -> None:
        steps.append((pc, m.registers()))
        if not machines:
            machines.append(m)

    payload = ExecutionPayload(b"", Payload(None, b"")).encode()
    context = ExecutionContext(callee=bytes(24))
    traced = execute(load_program(code), InMemoryHost(), context, payload, tracer=tracer)
    assert traced.ok, traced.reason
    plain, _, _ = run_code(code)
    assert plain.ok, plain.reason
    assert plain.registers == traced.registers == steps[-1][1]
    assert plain.gas_used == 4 * len(steps)
    return Outcome(steps, machines[0].memory.read(scratch, size))


def run_unicorn(words: list[int], scratch: int = SCRATCH, size: int = SCRATCH_SIZE) -> Outcome:
    code = b"".join(w.to_bytes(4, "little") for w in words)
    uc = unicorn.Uc(UC_ARCH_RISCV, UC_MODE_RISCV32)
    code_pages = (len(code) + PAGE) // PAGE * PAGE  # and at least one page beyond the code
    assert code_pages <= scratch, "code would overlap the scratch region"
    uc.mem_map(0, code_pages)
    uc.mem_write(0, code)
    first = scratch // PAGE * PAGE
    uc.mem_map(first, (scratch + size - first + PAGE - 1) // PAGE * PAGE)
    pcs: list[int] = []
    before: list[tuple[int, ...]] = []

    def hook(uc: Any, address: int, length: int, user_data: object) -> None:
        pcs.append(address)
        before.append(tuple(uc.reg_read_batch(UC_REGS)))

    uc.hook_add(UC_HOOK_CODE, hook)
    uc.emu_start(0, len(code), count=len(words) + 1)
    assert uc.reg_read(rc.UC_RISCV_REG_PC) == len(code)
    after = [*before[1:], tuple(uc.reg_read_batch(UC_REGS))]
    steps = [(pc, tuple(r & MASK for r in regs)) for pc, regs in zip(pcs, after, strict=True)]
    return Outcome(steps, bytes(uc.mem_read(scratch, size)))


def describe(words: list[int], pc: int) -> str:
    word = words[pc // 4] if 0 <= pc < 4 * len(words) else 0
    return f"pc {pc:#x}: {word:08x} ({decode(word).name})"


def assert_same(words: list[int], scratch: int = SCRATCH, size: int = SCRATCH_SIZE) -> None:
    ours = run_ours(words, scratch, size)
    theirs = run_unicorn(words, scratch, size)
    for k, ((pc, mine), (their_pc, their_regs)) in enumerate(
        zip(ours.steps, theirs.steps, strict=False)
    ):
        assert pc == their_pc, f"step {k}: ours ran {describe(words, pc)}, unicorn {their_pc:#x}"
        diff = {
            f"x{i}": (f"{a:#010x}", f"{b:#010x}")
            for i, (a, b) in enumerate(zip(mine, their_regs, strict=True))
            if a != b
        }
        assert not diff, f"after {describe(words, pc)}: (ours, unicorn) {diff}"
    assert len(ours.steps) == len(theirs.steps)
    assert ours.scratch.hex() == theirs.scratch.hex()


# --- random programs --------------------------------------------------------------------

UPPER_EDGES = [0, 1, 0x7FFFF, 0x80000, 0xFFFFF]
#: Instruction kinds, weighted towards ALU and M-extension work.
KINDS = ["reg"] * 5 + ["imm"] * 2 + ["shift", "upper", "load", "store", "branch", "jump"]
#: Bytes of random data per generated instruction.
CHUNK = 8


def _pick(names: Sequence[str], selector: int) -> str:
    return names[selector % len(names)]


def make_ins(chunk: bytes) -> Ins:
    """Turn 8 random bytes into one instruction (one binary draw is far cheaper than many).

    Registers are 0..15; an instruction that would write the base register writes x0
    instead (resolved in `encode`). Loads and stores address the scratch region through the
    base register: args hold (register, offset). Jumps hold a forward distance of 1-4
    instructions, and jalr a 0/1 flag that makes its target odd.
    """
    kind = KINDS[chunk[0] % len(KINDS)]
    sel = chunk[1]
    r1, r2, r3 = chunk[2] & 15, chunk[2] >> 4, chunk[3] & 15
    if chunk[3] >> 4 < 4:  # a quarter of immediates are edge values
        imm = IMM_EDGES[chunk[4] % len(IMM_EDGES)]
    else:
        imm = (chunk[4] | (chunk[5] & 0xF) << 8) - (0x1000 if chunk[5] & 0x8 else 0)
    if chunk[5] >> 4 < 4:
        upper = UPPER_EDGES[chunk[6] % len(UPPER_EDGES)]
    else:
        upper = chunk[6] | chunk[7] << 8 | (chunk[5] >> 4) << 16
    if kind == "reg":
        return Ins(_pick(list(R_OPS), sel), (r1, r2, r3))
    if kind == "imm":
        return Ins(_pick(list(I_OPS), sel), (r1, r2, imm))
    if kind == "shift":
        return Ins(_pick(list(SHIFT_OPS), sel), (r1, r2, imm & 31))
    if kind == "upper":
        return Ins(_pick(["lui", "auipc"], sel), (r1, upper))
    if kind in ("load", "store"):
        table = LOADS if kind == "load" else STORES
        name = _pick(list(table), sel)
        width = table[name][1]
        offset = imm % (SCRATCH_SIZE // width) * width - SCRATCH_SIZE // 2
        return Ins(name, (r1, offset))
    skip = 1 + (sel >> 4) % 4
    if kind == "branch":
        return Ins(_pick(list(BRANCHES), sel), (r1, r2, skip))
    if sel & 1:
        return Ins("jal", (r1, skip))
    return Ins("jalr", (r1, skip, (sel >> 1) & 1))


def initial_value(chunk: bytes) -> int:
    """A register's initial value from 5 random bytes: an edge value a quarter of the time."""
    if chunk[0] < 64:
        return EDGES[chunk[1] % len(EDGES)]
    return int.from_bytes(chunk[1:], "little")


def encode(ins: Ins, base: int, index: int, body_start: int, body_length: int) -> int:
    """The word for the body's `index`-th instruction; jumps never pass the body's end."""
    name, args = ins
    if name in STORES:
        return STORES[name][0](args[0], base, args[1])
    rd = 0 if args[0] == base else args[0]
    if name in R_OPS:
        return R_OPS[name](rd, *args[1:])
    if name in I_OPS:
        return I_OPS[name](rd, *args[1:])
    if name in SHIFT_OPS:
        return SHIFT_OPS[name](rd, *args[1:])
    if name in LOADS:
        return LOADS[name][0](rd, base, args[1])
    if name == "lui":
        return asm.lui(rd, args[1])
    if name == "auipc":
        return asm.auipc(rd, args[1])
    skip = min(args[1] if name == "jalr" else args[-1], body_length - index)
    if name in BRANCHES:
        return BRANCHES[name](args[0], args[1], 4 * skip)
    if name == "jal":
        return asm.jal(rd, 4 * skip)
    assert name == "jalr"
    target = body_start + 4 * (index + skip) + args[2]  # an odd target loses its low bit
    return asm.jalr(rd, ZERO, target)


@dataclass(frozen=True)
class Case:
    """A generated program; its repr (shown for a failing example) lists the body."""

    initial: tuple[int, ...]
    base: int
    body: tuple[Ins, ...]
    words: list[int] = field(repr=False)


SEED_BYTES = 5 * 15 + 1


@st.composite
def programs(draw: st.DrawFn, max_length: int = 40) -> Case:
    # One binary draw for everything: hypothesis fills separate small draws with zeros
    # far more often, which would make many bodies degenerate.
    data = draw(
        st.binary(
            min_size=SEED_BYTES + CHUNK * (max_length // 2),
            max_size=SEED_BYTES + CHUNK * max_length,
        )
    )
    initial = tuple(initial_value(data[k : k + 5]) for k in range(0, 5 * 15, 5))
    base = 1 + data[5 * 15] % 15
    body = tuple(
        make_ins(data[k : k + CHUNK]) for k in range(SEED_BYTES, len(data) - CHUNK + 1, CHUNK)
    )
    words = prologue(initial, base)
    start = 4 * len(words)
    words += [encode(ins, base, i, start, len(body)) for i, ins in enumerate(body)]
    return Case(initial, base, body, words)


@settings(max_examples=250)
@given(programs())
def test_random_programs_match_unicorn(case):
    assert_same(case.words)


@pytest.mark.slow
@settings(max_examples=10_000, derandomize=False)
@given(programs(max_length=120))
def test_random_programs_match_unicorn_soak(case):
    assert_same(case.words)


# --- deterministic edge values ----------------------------------------------------------

EDGE_SCRATCH = 0x20000


def results_program(
    pairs: Sequence[tuple[int, ...]], emit: Callable[[tuple[int, ...]], list[int]]
) -> list[int]:
    """For each pair, emit its computation into A3, then store A3 at the next scratch word."""
    words = asm.flatten(asm.li(A0, EDGE_SCRATCH))
    for pair in pairs:
        words += emit(pair)
        words += [asm.sw(A3, A0, 0), asm.addi(A0, A0, 4)]
    return words


def assert_same_results(words: list[int], labels: list[str]) -> None:
    size = 4 * len(labels)
    ours = run_ours(words, EDGE_SCRATCH, size)
    theirs = run_unicorn(words, EDGE_SCRATCH, size)
    mismatches = [
        f"{label}: ours {ours.scratch[4 * k : 4 * k + 4][::-1].hex()} "
        f"unicorn {theirs.scratch[4 * k : 4 * k + 4][::-1].hex()}"
        for k, label in enumerate(labels)
        if ours.scratch[4 * k : 4 * k + 4] != theirs.scratch[4 * k : 4 * k + 4]
    ]
    assert not mismatches, "\n".join(mismatches[:20])
    assert ours.steps == theirs.steps


@pytest.mark.parametrize("name", list(R_OPS))
def test_register_ops_on_edge_values(name):
    op = R_OPS[name]
    pairs = [(a, b) for a in EDGES for b in EDGES]

    def emit(p: tuple[int, ...]) -> list[int]:
        return [*asm.li(A1, p[0]), *asm.li(A2, p[1]), op(A3, A1, A2)]

    assert_same_results(results_program(pairs, emit), [f"{name} {a:#x} {b:#x}" for a, b in pairs])


@pytest.mark.parametrize("name", list(I_OPS) + list(SHIFT_OPS))
def test_immediate_ops_on_edge_values(name):
    op = I_OPS.get(name) or SHIFT_OPS[name]
    imm_values = list(range(32)) if name in SHIFT_OPS else IMM_EDGES
    pairs = [(a, i) for a in EDGES for i in imm_values]

    def emit(p: tuple[int, ...]) -> list[int]:
        return [*asm.li(A1, p[0]), op(A3, A1, p[1])]

    assert_same_results(results_program(pairs, emit), [f"{name} {a:#x} {i}" for a, i in pairs])


def test_upper_immediates_on_edge_values():
    uppers = [0, 1, 0x7FFFF, 0x80000, 0xFFFFF, 0x12345]

    def emit(p: tuple[int, ...]) -> list[int]:
        return [asm.lui(A3, p[0]) if p[1] == 0 else asm.auipc(A3, p[0])]

    pairs = [(u, kind) for u in uppers for kind in (0, 1)]
    labels = [f"{'lui' if kind == 0 else 'auipc'} {u:#x}" for u, kind in pairs]
    assert_same_results(results_program(pairs, emit), labels)
