"""One emitter per instruction kind: the Python a superblock's function runs for it.

Each emitter reads its operands through the `BlockWriter` (constants fold, dirty values
are cleaned only where their high bits would change the result) and appends lines. The
memory emitters implement the fast paths described in `athena_vm.memory.FastViews` and
record a bail site, so that anything unusual hands the instruction to the reference.
"""

from athena_vm.blockwriter import (
    MASK,
    SIGN,
    WIDTH_LIMIT,
    BlockWriter,
    M,
    Operand,
    S,
    Value,
    fold,
    literal,
    offset,
    operands_const,
)
from athena_vm.machine import SINK, Instr
from athena_vm.memory import KEY_U8, KEY_U16, KEY_U32, PAGE_MASK

#: Memory access shapes: (view dict suffix, key mask, index expression template, size).
_ACCESS = {
    4: ("u32", KEY_U32, "({a} & {m}) >> 2", PAGE_MASK & ~3),
    2: ("u16", KEY_U16, "({a} & {m}) >> 1", PAGE_MASK & ~1),
    1: ("u8", KEY_U8, "{a} & {m}", PAGE_MASK),
}
LOADS = {"lw": (4, 0), "lh": (2, 16), "lhu": (2, 0), "lb": (1, 8), "lbu": (1, 0)}
STORES = {"sw": 4, "sh": 2, "sb": 1}


# --- branches and jumps ---------------------------------------------------------------


def _signed(op: Operand) -> str:
    """The operand plus 2**31, so that signed order becomes the unsigned order of ints."""
    return str(op.const ^ SIGN) if op.const is not None else f"({op.code} ^ {S})"


_NEGATE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<="}


def condition(w: BlockWriter, pc: int, ins: Instr) -> tuple[str, str]:
    """Python expressions that are true when the branch is taken, and when it is not."""
    consts = operands_const(w, ins)
    if consts is not None:
        taken = fold(ins, pc, *consts)[1] == (pc + ins.imm) & MASK
        return str(taken), str(not taken)
    a, b = w.clean(ins.rs1), w.clean(ins.rs2)
    name = ins.name
    if name in ("beq", "bne") and 0 in (a.const, b.const):
        x = a.code if b.const == 0 else b.code
        return (f"not {x}", x) if name == "beq" else (x, f"not {x}")
    if name == "blt" and b.const == 0:  # negative: the sign bit is set
        left, op, right = a.code, ">", "2147483647"
    elif name == "bge" and b.const == 0:
        left, op, right = a.code, "<", S
    elif name in ("blt", "bge"):
        left, op, right = _signed(a), "<" if name == "blt" else ">=", _signed(b)
    else:
        op = {"beq": "==", "bne": "!=", "bltu": "<", "bgeu": ">="}[name]
        left, right = a.code, b.code
    return f"{left} {op} {right}", f"{left} {_NEGATE[op]} {right}"


def emit_branch(w: BlockWriter, pc: int, ins: Instr, back_edge: bool) -> None:
    taken, not_taken = condition(w, pc, ins)
    if back_edge:
        w.emit(f"if {not_taken}:")
        w.exit(literal(pc + 4), w.index + 1, extra=1)
        w.canonical()
    else:
        w.emit(f"if {taken}:")
        w.exit(literal((pc + ins.imm) & MASK), w.index + 1, extra=1)


def emit_jalr(w: BlockWriter, pc: int, ins: Instr) -> None:
    base = w.read(ins.rs1)
    if base.const is not None:
        target = literal((base.const + ins.imm) & 0xFFFFFFFE)
    else:
        w.emit(f"t = ({offset(base.code, ins.imm)}) & {0xFFFFFFFE}")
        target = "t"
    w.constant(ins.rd, (pc + 4) & MASK)
    w.exit(target, w.index + 1)


# --- loads and stores -----------------------------------------------------------------


def _address(w: BlockWriter, ins: Instr, size: int, inline: bool = False) -> tuple[str, str, str]:
    """(address, dict key, view index) expressions for a `size`-byte access.

    The address goes to a local `a` when the access uses it more than once; an `inline`
    address (a word load through the cache uses it once) stays an expression.
    """
    _, key, index, imask = _ACCESS[size]
    base = w.read(ins.rs1)
    if base.const is not None:
        addr = (base.const + ins.imm) & MASK
        shift = {4: 2, 2: 1, 1: 0}[size]
        return literal(addr), literal(addr & key), str((addr & imask) >> shift)
    a = base.code
    if ins.imm and w.block.loop and ins.rs1 not in w.block.written():
        # The base does not change in the loop: compute the address once, before it.
        a = f"p{ins.rs1}_{ins.imm}".replace("-", "m")
        w.hoisted[a] = offset(base.code, ins.imm)
    elif ins.imm and inline:
        a = offset(a, ins.imm)
    elif ins.imm:
        w.emit(f"a = {offset(a, ins.imm)}")
        a = "a"
    return a, f"{a} & {key}", index.format(a=a, m=imask)


def _sign_extend(bits: int, expr: str) -> str:
    if not bits:
        return expr
    half = 1 << (bits - 1)
    return f"({expr} ^ {half}) - {half}"


def _cached_word(a: str) -> str:
    """The word-cache key of the word holding address expression `a`."""
    return literal(int(a, 0) & ~3) if a[0].isdigit() else f"{a} & -4"


def emit_load(w: BlockWriter, ins: Instr) -> None:
    """A load: words through the word cache, halves and bytes through the page views.

    The word cache is authoritative for the words it holds, so a sub-word load of a cached
    word asks Memory (which reads through the cache) instead of the page.
    """
    size, bits = LOADS[ins.name]
    a, key, index = _address(w, ins, size, inline=size == 4)
    dst = "_" if ins.rd == SINK else f"x{ins.rd}"
    site = w.site()
    cache = w.memory("words")
    slow = _sign_extend(bits, f"st.slow_load({a}, {size}, {site})")
    if size == 4:
        w.emit("try:")
        w.emit(f"{dst} = {cache}[{a}]", 1)
        w.emit("except KeyError:")
        w.emit(f"{dst} = st.cached_load({a}, {site})", 1)
    else:
        view = w.memory("load_" + _ACCESS[size][0])
        word = _cached_word(a)
        w.emit(f"if {word} in {cache}:")
        if size == 1:
            # The byte of the cached word (as `CachedMemory.load_u8` reads it): a byte
            # is always aligned, and a cached word's page exists.
            byte = f"({cache}[{word}] >> (({a} & 3) << 3)) & 255"
            w.emit(f"{dst} = {_sign_extend(bits, byte)}", 1)
        else:
            w.emit(f"{dst} = {slow}", 1)
        w.emit("else:")
        w.emit("try:", 1)
        w.emit(f"{dst} = {_sign_extend(bits, f'{view}[{key}][{index}]')}", 2)
        w.emit("except KeyError:", 1)
        w.emit(f"{dst} = {slow}", 2)
    if ins.rd != SINK:
        w.regs[ins.rd] = Value(None, bool(bits), bits or 32)
        w.modified.add(ins.rd)


def emit_store(w: BlockWriter, ins: Instr) -> None:
    """A store: a cached word is stored in the cache only, anything else in its page."""
    size = STORES[ins.name]
    value = w.clean(ins.rs2) if size == 4 else w.read(ins.rs2)
    low = (1 << (8 * size)) - 1
    if value.const is not None:
        val = literal(value.const & low)
    else:
        val = value.code if size == 4 else f"{value.code} & {low}"
    a, key, index = _address(w, ins, size)
    site = w.site()
    cache = w.memory("words")
    slow = f"st.slow_store({a}, {size}, {val}, {site})"
    if size == 4:
        w.emit(f"if {a} in {cache}:")
        w.emit(f"{cache}[{a}] = {val}", 1)
    else:
        w.emit(f"if {_cached_word(a)} in {cache}:")
        w.emit(slow, 1)
    w.emit("else:")
    w.emit("try:", 1)
    w.emit(f"{w.memory('store_' + _ACCESS[size][0])}[{key}][{index}] = {val}", 2)
    w.emit("except KeyError:", 1)
    w.emit(slow, 2)


# --- register arithmetic --------------------------------------------------------------


def _copy(w: BlockWriter, rd: int, op: Operand) -> None:
    if op.const is not None:
        w.constant(rd, op.const)
    elif op.code != f"x{rd}":
        w.assign(rd, op.code, op.dirty, op.width)


def _wide(w: BlockWriter, ins: Instr, combine: str) -> tuple[Operand, Operand, int]:
    """Both operands of an add-like op, cleaned if the result would grow too wide.

    `combine` is "max" (add, sub: one carry bit more) or "sum" (mul).
    """

    def width(a: Operand, b: Operand) -> int:
        return a.width + b.width if combine == "sum" else max(a.width, b.width) + 1

    a, b = w.read(ins.rs1), w.read(ins.rs2)
    if width(a, b) > WIDTH_LIMIT:
        a, b = w.clean(ins.rs1), w.clean(ins.rs2)
    return a, b, width(a, b)


def _imm_operand(value: int) -> Operand:
    return Operand(literal(value & MASK), value & MASK, False, max(value.bit_length(), 1))


def _add(w: BlockWriter, ins: Instr, a: Operand, b: Operand, width: int, op: str) -> None:
    if b.const == 0:
        _copy(w, ins.rd, a)
    elif b.const is not None and op == "+" and b.const >= SIGN:
        w.assign(ins.rd, offset(a.code, b.const - MASK - 1), True, width)
    else:
        w.assign(ins.rd, f"{a.code} {op} {b.code}", True, width)


def emit_addi(w: BlockWriter, ins: Instr) -> None:
    a = w.read(ins.rs1)
    if ins.imm == 0:
        _copy(w, ins.rd, a)
        return
    if ins.rd in w.counters:
        # The loop's iteration bound keeps a counter inside 0..2**32-1: no mask needed.
        w.assign(ins.rd, offset(a.code, ins.imm))
        return
    width = max(a.width, 12) + 1
    if width > WIDTH_LIMIT:
        a, width = w.clean(ins.rs1), 33
    w.assign(ins.rd, offset(a.code, ins.imm), True, width)


def emit_add_sub(w: BlockWriter, ins: Instr) -> None:
    a, b, width = _wide(w, ins, "max")
    _add(w, ins, a, b, width, "+" if ins.name == "add" else "-")


def emit_mul(w: BlockWriter, ins: Instr) -> None:
    a, b, width = _wide(w, ins, "sum")
    w.assign(ins.rd, f"{a.code} * {b.code}", True, width)


_BITWISE = {"xor": "^", "or": "|", "and": "&", "xori": "^", "ori": "|", "andi": "&"}


def emit_bitwise(w: BlockWriter, ins: Instr) -> None:
    """and/or/xor keep the low 32 bits of their operands' low 32 bits, dirty or not.

    A clean operand makes an `and` clean; two clean operands make any of them clean.
    """
    immediate = ins.name.endswith("i")
    a = w.read(ins.rs1)
    b = _imm_operand(ins.imm) if immediate else w.read(ins.rs2)
    width = max(a.width, b.width) + 1
    if width > WIDTH_LIMIT:
        a, width = w.clean(ins.rs1), 33
        b = b if immediate else w.clean(ins.rs2)
    op = _BITWISE[ins.name]
    dirty = (a.dirty and b.dirty) if op == "&" else (a.dirty or b.dirty)
    w.assign(ins.rd, f"{a.code} {op} {b.code}", dirty, width)


def _shift_amount(w: BlockWriter, ins: Instr) -> Operand | int:
    """A constant shift amount, or the operand whose low 5 bits are the amount."""
    if ins.name.endswith("i"):
        return ins.imm
    b = w.read(ins.rs2)
    return b if b.const is None else b.const & 31


def emit_shift(w: BlockWriter, ins: Instr) -> None:
    amount = _shift_amount(w, ins)
    left = ins.name.startswith("sll")
    if amount == 0:
        _copy(w, ins.rd, w.read(ins.rs1) if left else w.clean(ins.rs1))
        return
    if isinstance(amount, int):
        k, bound = str(amount), amount
    else:
        k, bound = f"({amount.code} & 31)", 31
    if left:
        a = w.read(ins.rs1)
        if a.width + bound > WIDTH_LIMIT:
            a = w.clean(ins.rs1)
        w.assign(ins.rd, f"{a.code} << {k}", True, a.width + bound)
        return
    a = w.clean(ins.rs1)
    if ins.name.startswith("srl"):
        w.assign(ins.rd, f"{a.code} >> {k}")
    else:
        w.assign(ins.rd, f"({a.code} ^ {S}) - {S} >> {k}", True, 32)


def emit_compare(w: BlockWriter, ins: Instr) -> None:
    a = w.clean(ins.rs1)
    if ins.name in ("slti", "sltiu"):
        b = _imm_operand(ins.imm)
    else:
        b = w.clean(ins.rs2)
    if ins.name in ("slt", "slti"):
        test = f"{_signed(a)} < {_signed(b)}"
    else:
        test = f"{a.code} < {b.code}"
    w.assign(ins.rd, f"1 if {test} else 0")


def emit_mulh(w: BlockWriter, ins: Instr) -> None:
    a, b = w.clean(ins.rs1), w.clean(ins.rs2)

    def s32(op: Operand) -> str:
        if op.const is not None:
            value = op.const - (op.const & SIGN) * 2
            return f"({value})"
        return f"(({op.code} ^ {S}) - {S})"

    if ins.name == "mulhu":
        w.assign(ins.rd, f"{a.code} * {b.code} >> 32")
    elif ins.name == "mulh":
        w.assign(ins.rd, f"{s32(a)} * {s32(b)} >> 32", True, 32)
    else:
        w.assign(ins.rd, f"{s32(a)} * {b.code} >> 32", True, 32)


def emit_divide(w: BlockWriter, ins: Instr) -> None:
    a, b = w.clean(ins.rs1), w.clean(ins.rs2)
    name = ins.name
    if name in ("div", "rem"):
        w.assign(ins.rd, f"{'div_s' if name == 'div' else 'rem_s'}({a.code}, {b.code})")
    elif b.const == 0 and name == "remu":
        _copy(w, ins.rd, a)
    elif b.const == 0:
        w.constant(ins.rd, MASK)
    elif b.const is not None:
        w.assign(ins.rd, f"{a.code} {'//' if name == 'divu' else '%'} {b.code}")
    elif name == "divu":
        w.assign(ins.rd, f"{a.code} // {b.code} if {b.code} else {M}")
    else:
        w.assign(ins.rd, f"{a.code} % {b.code} if {b.code} else {a.code}")


def emit_extend(w: BlockWriter, first: Instr, second: Instr) -> None:
    """`slli rd, rs, k` then `srli/srai rd, rd, k`: zero- or sign-extend the low bits."""
    k = first.imm
    a = w.read(first.rs1)
    low = MASK >> k
    if second.name == "srli":
        w.assign(first.rd, f"{a.code} & {literal(low)}")
    else:
        half = literal(1 << (31 - k))
        w.assign(first.rd, f"({a.code} & {literal(low)} ^ {half}) - {half}", True, 32)


def extends(first: Instr, second: Instr) -> bool:
    """Whether `first` and `second` are the slli + srli/srai pair `emit_extend` fuses."""
    return (
        first.name == "slli"
        and second.name in ("srli", "srai")
        and first.rd != SINK
        and second.rd == second.rs1 == first.rd
        and second.imm == first.imm
    )


_ALU = {
    "addi": emit_addi,
    "add": emit_add_sub,
    "sub": emit_add_sub,
    "mul": emit_mul,
    "mulh": emit_mulh,
    "mulhsu": emit_mulh,
    "mulhu": emit_mulh,
    "div": emit_divide,
    "divu": emit_divide,
    "rem": emit_divide,
    "remu": emit_divide,
    "slti": emit_compare,
    "sltiu": emit_compare,
    "slt": emit_compare,
    "sltu": emit_compare,
    "slli": emit_shift,
    "srli": emit_shift,
    "srai": emit_shift,
    "sll": emit_shift,
    "srl": emit_shift,
    "sra": emit_shift,
    **dict.fromkeys(_BITWISE, emit_bitwise),
}


def emit_alu(w: BlockWriter, pc: int, ins: Instr) -> None:
    if ins.rd == SINK:
        return
    consts = operands_const(w, ins)
    if consts is not None:
        w.constant(ins.rd, fold(ins, pc, *consts)[0])
        return
    _ALU[ins.name](w, ins)
