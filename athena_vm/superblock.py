"""Superblocks: the unit the translator compiles into one Python function.

A superblock is the straight path the code takes from an entry pc when every conditional
branch falls through: it follows fall-throughs and direct jumps (`jal`), keeps each branch
as a side exit, and stops at an indirect jump (`jalr`), before an `ecall` or an invalid
instruction (those always run in the reference interpreter), before another loop's head,
at a pc it already holds, or at MAX_LENGTH instructions. When the path comes back to its
own entry (a branch taken to it or a `jal` to it) the superblock is a loop, which the
generated function iterates in place for as long as the gas lasts.

Stopping at loop heads keeps each loop body in one superblock of its own (entered at its
head, where it can loop) instead of copied into every path that reaches it.
"""

from dataclasses import dataclass

from athena_vm.machine import SINK, Instr

MASK = 0xFFFFFFFF
#: Bounds the size of one generated function (and its compile time).
MAX_LENGTH = 160
BRANCHES = frozenset(("beq", "bne", "blt", "bge", "bltu", "bgeu"))
#: Instructions that end a superblock before them: the reference interpreter runs them.
STOPPERS = frozenset(("ecall", "invalid"))


@dataclass(frozen=True, slots=True)
class Superblock:
    """The path from `start`: `pcs[i]` holds `instrs[i]`.

    `loop` is true when the last instruction transfers back to `start`. `next_pc` is where
    the path continues when it ends without a control transfer of its own (the length bound,
    an `ecall`, an invalid or missing instruction, or a pc already on the path).
    """

    start: int
    pcs: tuple[int, ...]
    instrs: tuple[Instr, ...]
    loop: bool
    next_pc: int

    def __len__(self) -> int:
        return len(self.instrs)

    def written(self) -> frozenset[int]:
        """Registers (1..15) some instruction on the path writes."""
        return frozenset(w for i in self.instrs for w in writes(i))

    def live_at_start(self) -> frozenset[int]:
        """Registers the path reads before writing them: a loop carries these around."""
        live: set[int] = set()
        written: set[int] = set()
        for ins in self.instrs:
            live.update(r for r in (ins.rs1, ins.rs2) if r and r not in written)
            written.update(writes(ins))
        return frozenset(live)

    def counters(self) -> dict[int, int]:
        """Registers whose only write on the path is `addi r, r, step`: {register: step}.

        In a loop such a register moves by `step` per iteration, so the generated code can
        bound the iterations to keep it inside 0..2**32-1 and never mask it.
        """
        steps: dict[int, int] = {}
        others: set[int] = set()
        for ins in self.instrs:
            for reg in writes(ins):
                if ins.name == "addi" and ins.rs1 == reg and ins.imm and reg not in steps:
                    steps[reg] = ins.imm
                else:
                    others.add(reg)
        return {reg: step for reg, step in steps.items() if reg not in others}


def writes(ins: Instr) -> tuple[int, ...]:
    """The register (1..15) `ins` writes, if any (branches and stores decode rd = 0)."""
    return () if ins.rd in (0, SINK) else (ins.rd,)


def loop_heads(code: dict[int, Instr]) -> frozenset[int]:
    """Targets of backward branches and jumps: where loops begin."""
    heads = set()
    for pc, ins in code.items():
        if ins.name in BRANCHES or ins.name == "jal":
            target = (pc + ins.imm) & MASK
            if target <= pc:
                heads.add(target)
    return frozenset(heads)


def form(
    code: dict[int, Instr], start: int, heads: frozenset[int] = frozenset()
) -> Superblock | None:
    """The superblock entered at `start`, or None if the reference must run `start` itself.

    `heads` (see `loop_heads`) are the pcs the path stops before unless it started there.
    """
    pcs: list[int] = []
    instrs: list[Instr] = []
    seen: set[int] = set()
    pc, loop = start, False
    while len(instrs) < MAX_LENGTH:
        ins = code.get(pc)
        if ins is None or ins.name in STOPPERS or pc in seen or (pc in heads and pc != start):
            break
        pcs.append(pc)
        instrs.append(ins)
        seen.add(pc)
        name = ins.name
        if name == "jalr":
            break
        if name == "jal":
            pc = (pc + ins.imm) & MASK
            # A transfer to pc 0 halts: a block entered at 0 is never a loop.
            loop = pc == start != 0
            if loop or pc == 0:
                break
            continue
        if name in BRANCHES and (pc + ins.imm) & MASK == start != 0:
            loop = True
            break
        # Not masked, like the reference: falling off 0xFFFFFFFC leaves the code.
        pc += 4
    if not instrs:
        return None
    return Superblock(start, tuple(pcs), tuple(instrs), loop, pc)
