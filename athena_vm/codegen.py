"""Python source for one superblock: the translator's code generator.

The generated function `b_XXXXXXXX(left, st)` runs the superblock entered at pc XXXXXXXX
with `left` instructions of gas available, on the execution `st` (`ExecState`: registers,
memory, slow paths), and returns `(next_pc, executed)`. A negative
`executed` is `~k`: k instructions ran and the instruction at `next_pc` must now run in the
reference interpreter (it may fault, or the gas left cannot cover the whole block).

How it stays exact:

- **Gas.** The function refuses to start (`(start, -1)`) unless `left` covers the whole path;
  a loop runs at most `left // K` iterations. Running out of gas therefore never happens
  inside generated code: the reference interpreter takes over for the last few instructions.
- **Faults.** Only loads and stores can fault. Their fast path is a dict lookup that misses
  for anything unusual (see `athena_vm.memory.FastViews`); the slow path asks the memory,
  which either completes the access or says the reference would fault. Then `Bail` unwinds
  to the function's one handler, which (through the bail site's record) writes back the
  registers as they were *before* that instruction and returns `~k`, so the reference
  interpreter executes, and faults on, the very instruction.
- **Registers** live in locals `x1`..`x15`, loaded at entry and written back to `r` (the
  machine's list) at every exit. Values are kept lazily masked: an add leaves a local
  outside 0..2**32-1 ("dirty", but congruent modulo 2**32) and the mask is applied only where
  the high bits matter (comparisons, right shifts, division, stored words, exits). Widths are
  tracked so a dirty value never grows beyond WIDTH_LIMIT bits.
- **Constants** (lui, auipc, li, link addresses) are folded at translation time with the
  reference handlers themselves, so folding cannot disagree with the interpreter.

Loops iterate inside the function (`for _ in repeat(None, iters)`, which allocates nothing
per iteration). A register whose only write is `addi r, r, c` (a counter) bounds the
iterations so that it stays in 0..2**32-1, and is never masked; a register the body writes
before reading it is not masked at the back-edge either; addresses whose base the loop does
not write are computed once, before it.
"""

from athena_vm.blockwriter import (
    ITERATIONS_DONE,
    MASK,
    MEMORY_LOCALS,
    BlockWriter,
    M,
    Site,
    literal,
)
from athena_vm.emit import (
    LOADS,
    STORES,
    emit_alu,
    emit_branch,
    emit_extend,
    emit_jalr,
    emit_load,
    emit_store,
    extends,
)
from athena_vm.superblock import BRANCHES, Superblock


class Bail(Exception):
    """Raised by a slow memory path: the reference interpreter must run this instruction."""

    def __init__(self, site: int) -> None:
        super().__init__(site)
        self.site = site


def bail(
    r: list[int], error: Bail, local: dict[str, int], sites: tuple[Site, ...], done: int
) -> tuple[int, int]:
    """The exit of a block that bailed: registers written back, (pc, ~instructions run).

    `local` is the block function's `locals()`: registers the block modified are in their
    locals (maybe unmasked) unless the site recorded them as constants. `done` instructions
    ran in the loop's earlier iterations.
    """
    pc, index, regs = sites[error.site]
    for n, value in regs:
        r[n] = local[f"x{n}"] & MASK if value < 0 else value
    return pc, ~(index + done)


# --- whole blocks ---------------------------------------------------------------------


def _body(w: BlockWriter) -> None:
    block = w.block
    instrs, last = block.instrs, len(block) - 1
    j = 0
    while j <= last:
        w.index = j
        ins, pc = instrs[j], block.pcs[j]
        name = ins.name
        back_edge = block.loop and j == last
        if j < last and extends(ins, instrs[j + 1]) and w.read(ins.rs1).const is None:
            emit_extend(w, ins, instrs[j + 1])
            j += 2
            continue
        if name in BRANCHES:
            emit_branch(w, pc, ins, back_edge)
        elif name == "jal":
            w.constant(ins.rd, (pc + 4) & MASK)
            if back_edge:
                w.canonical()
        elif name == "jalr":
            emit_jalr(w, pc, ins)
            return
        elif name in LOADS:
            emit_load(w, ins)
        elif name in STORES:
            emit_store(w, ins)
        else:
            emit_alu(w, pc, ins)
        j += 1
    if not block.loop:
        w.index = len(block)
        w.exit(literal(block.next_pc), len(block))


def function_name(start: int) -> str:
    return f"b_{start:08x}"


def _loop(w: BlockWriter) -> list[str]:
    """The loop around a looping block's body, bounded by the gas and by its counters."""
    block = w.block
    size, start = len(block), literal(block.start)
    lines = [f"    iters = left // {size}"]
    for n, step in sorted(w.counters.items()):
        room = f"({M} - x{n}) // {step}" if step > 0 else f"x{n} // {-step}"
        lines += [f"    room = {room}", "    if room < iters:", "        iters = room"]
    if w.counters:
        lines += ["    if not iters:", f"        return ({start}, -1)"]
    lines += ["    it = repeat(None, iters)", "    for _ in it:", *(w.lines or ["        pass"])]
    lines += [
        f"    r[{n}] = x{n}{' & ' + M if w.head[n].dirty else ''}" for n in sorted(w.modified)
    ]
    lines.append(f"    return ({start}, iters * {size})")
    return lines


def generate(block: Superblock) -> str:
    """The source of the function that runs `block` (see the module docstring)."""
    w = BlockWriter(block)
    _body(w)
    size, start = len(block), literal(block.start)
    head = [
        f"def {function_name(block.start)}(left, st):",
        f"    if left < {size}:",
        f"        return ({start}, -1)",
        "    r = st.r",
    ]
    head += [f"    x{n} = r[{n}]" for n in sorted(w.entry_reads)]
    head += [f"    {MEMORY_LOCALS[name]} = st.{name}" for name in sorted(w.memory_used)]
    if block.loop:
        head += [f"    {name} = {expr}" for name, expr in sorted(w.hoisted.items())]
    body = _loop(w) if block.loop else w.lines
    if not w.sites:
        return "\n".join(head + body) + "\n"
    done = f"{ITERATIONS_DONE} * {size}" if block.loop else "0"
    guarded = [
        "    try:",
        *("    " + line for line in body),
        "    except Bail as error:",
        f"        return bail(r, error, locals(), {tuple(w.sites)!r}, {done})",
    ]
    return "\n".join(head + guarded) + "\n"
