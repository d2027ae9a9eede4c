"""What the code generator knows while it writes one superblock's function.

`BlockWriter` holds the source lines and, for every register, a `Value`: a constant known
at translation time, or the content of the register's local `xN`, either clean
(0..2**32-1) or "dirty" (an unmasked sum or product: congruent modulo 2**32, and below
2**width in magnitude). Instruction emitters (`athena_vm.emit`) read operands through it,
ask for clean ones where the high bits would matter, and record what they wrote.
"""

import re
from dataclasses import dataclass
from typing import cast

from athena_vm.host import ExecutionContext, Host
from athena_vm.machine import SINK, Instr, Machine
from athena_vm.memory import Memory
from athena_vm.superblock import Superblock

MASK = 0xFFFFFFFF
SIGN = 0x80000000
#: A dirty local stays below 2**WIDTH_LIMIT in magnitude; wider inputs are masked first.
WIDTH_LIMIT = 72
M = str(MASK)
S = str(SIGN)


@dataclass(frozen=True, slots=True)
class Value:
    """What the generator knows about a register at one point of the block.

    Either a known constant (0..2**32-1), or the content of its local: clean (0..2**32-1)
    or dirty (congruent modulo 2**32, magnitude below 2**width).
    """

    const: int | None = None
    dirty: bool = False
    width: int = 32


@dataclass(frozen=True, slots=True)
class Operand:
    """A register or immediate as an instruction reads it: its source code and `Value`."""

    code: str
    const: int | None
    dirty: bool
    width: int


CLEAN = Value()
#: In a loop, the iterations completed before the current one (`it` counts down).
ITERATIONS_DONE = "(iters - 1 - length_hint(it))"

#: The locals generated code reads the execution's memory dicts into (see `ExecState`).
MEMORY_LOCALS = {
    "words": "cache",
    "load_u8": "lb",
    "load_u16": "lh",
    "store_u8": "sb",
    "store_u16": "sh",
    "store_u32": "sw",
}

#: A place that may bail: (pc, index on the path, ((register, constant or -1), ...)).
Site = tuple[int, int, tuple[tuple[int, int], ...]]


def fold(ins: Instr, pc: int, a: int, b: int) -> tuple[int, int]:
    """(rd value, next pc) of a register-only instruction on constant operands.

    Runs the reference handler itself on a scratch machine (a fresh one: translations may
    happen on several threads), so a folded constant is what the interpreter computes.
    """
    if ins.rs1 == ins.rs2 and a != b:
        raise ValueError("one register cannot hold two values")
    scratch = Machine(Memory({}, 0), 0, cast(ExecutionContext, None), cast(Host, None))
    scratch.regs[ins.rs1] = a
    scratch.regs[ins.rs2] = b
    next_pc = ins.op(scratch, ins, pc)
    return scratch.regs[ins.rd], next_pc


def literal(value: int) -> str:
    """A non-negative constant as Python source (hex when large, as addresses read best)."""
    return str(value) if value < 1024 else hex(value)


def offset(code: str, imm: int) -> str:
    """`code + imm` as Python source."""
    if imm == 0:
        return code
    return f"{code} + {imm}" if imm > 0 else f"{code} - {-imm}"


class BlockWriter:
    """Emits the body of one superblock's function, instruction by instruction."""

    def __init__(self, block: Superblock) -> None:
        self.block = block
        self.size = len(block)
        self.lines: list[str] = []
        self.depth = 2 if block.loop else 1
        self.regs: dict[int, Value] = dict.fromkeys(range(1, 16), CLEAN)
        self.modified: set[int] = set(block.written()) if block.loop else set()
        self.entry_reads: set[int] = set(self.modified)
        #: Loop registers that move by a constant step (see `Superblock.counters`).
        self.counters = block.counters() if block.loop else {}
        #: What is known at the loop head (or block entry). A register the loop writes
        #: before reading it may come back dirty: nothing reads it before it is rewritten.
        self.head: dict[int, Value] = dict(self.regs)
        if block.loop:
            carried = block.live_at_start()
            for n in self.modified - carried:
                self.head[n] = Value(None, True, WIDTH_LIMIT)
            self.regs = dict(self.head)
        self.index = 0
        #: (register, expression) of the last line when it is a plain register assignment.
        self.last: tuple[int, str] | None = None
        #: Where a memory access may hand over to the reference: see `site` and `bail`.
        self.sites: list[Site] = []
        #: Memory dicts the block uses (a loop reads them from locals: see `memory`).
        self.memory_used: set[str] = set()
        #: Addresses a loop computes once, before its first iteration: {local: expression}.
        self.hoisted: dict[str, str] = {}

    # --- source lines -----------------------------------------------------------------

    def emit(self, line: str, extra: int = 0) -> None:
        self.lines.append("    " * (self.depth + extra) + line)
        self.last = None

    def emit_assign(self, rd: int, expr: str) -> None:
        """`x{rd} = expr`, folded into the previous line when that one only set x{rd}.

        `x = x * y` then `x = x + z` becomes `x = x * y + z`: nothing can observe the
        intermediate value, and one local store and load fewer is measurable in CPython.
        """
        name = re.compile(rf"\bx{rd}\b")
        last = self.last
        if last and last[0] == rd and len(last[1]) < 160 and len(name.findall(expr)) == 1:
            expr = name.sub(lambda _: f"({last[1]})", expr)
            self.lines.pop()
        self.emit(f"x{rd} = {expr}")
        self.last = (rd, expr)

    def count(self, executed: int) -> str:
        """Instructions executed so far, as an expression (loops add full iterations)."""
        if not self.block.loop:
            return str(executed)
        return f"{ITERATIONS_DONE} * {self.size} + {executed}"

    def exit(self, target: str, executed: int, extra: int = 0) -> None:
        """Write every modified register back and return (target, executed)."""
        for n in sorted(self.modified):
            self.emit(f"r[{n}] = {self.final(n)}", extra)
        self.emit(f"return ({target}, {self.count(executed)})", extra)

    def memory(self, name: str) -> str:
        """The local holding the execution's memory dict `name` (an `ExecState` field),
        read from `st` once, at entry."""
        self.memory_used.add(name)
        return MEMORY_LOCALS[name]

    def site(self) -> int:
        """Record the current instruction as a place that may bail; returns its number.

        The record holds what `bail` needs to rebuild the registers as they are before the
        instruction: which ones the block modified so far, and the constants among them.
        """
        regs = tuple((n, self._constant_or_local(n)) for n in sorted(self.modified))
        self.sites.append((self.block.pcs[self.index], self.index, regs))
        return len(self.sites) - 1

    def _constant_or_local(self, n: int) -> int:
        const = self.regs[n].const
        return -1 if const is None else const

    def final(self, n: int) -> str:
        v = self.regs[n]
        if v.const is not None:
            return literal(v.const)
        return f"x{n} & {M}" if v.dirty else f"x{n}"

    # --- register state ---------------------------------------------------------------

    def read(self, n: int) -> Operand:
        if n == 0:
            return Operand("0", 0, False, 1)
        v = self.regs[n]
        if v.const is not None:
            return Operand(literal(v.const), v.const, False, max(v.const.bit_length(), 1))
        if n not in self.modified:
            self.entry_reads.add(n)
        return Operand(f"x{n}", None, v.dirty, v.width)

    def clean(self, n: int) -> Operand:
        """Read `n` with its local masked into 0..2**32-1 first if it is dirty."""
        op = self.read(n)
        if op.dirty:
            self.emit_assign(n, f"x{n} & {M}")
            self.regs[n] = CLEAN
            return Operand(f"x{n}", None, False, 32)
        return op

    def assign(self, rd: int, expr: str, dirty: bool = False, width: int = 32) -> None:
        if rd == SINK:
            return
        self.emit_assign(rd, expr)
        self.regs[rd] = Value(None, dirty, width if dirty else 32)
        self.modified.add(rd)

    def constant(self, rd: int, value: int) -> None:
        if rd == SINK:
            return
        self.regs[rd] = Value(value & MASK)
        self.modified.add(rd)

    def canonical(self) -> None:
        """Loop back-edge: every written register in its local, as the loop head expects."""
        for n in sorted(self.modified):
            v, head = self.regs[n], self.head[n]
            if v.const is not None:
                self.emit(f"x{n} = {literal(v.const)}")
            elif v.dirty and not head.dirty:
                self.emit_assign(n, f"x{n} & {M}")
            self.regs[n] = head


def operands_const(writer: BlockWriter, ins: Instr) -> tuple[int, int] | None:
    a, b = writer.read(ins.rs1), writer.read(ins.rs2)
    if a.const is None or b.const is None:
        return None
    if ins.rs1 == ins.rs2 and a.const != b.const:
        return None
    return a.const, b.const
