"""Decode 32-bit words into RV32EM instructions, once, when a program is loaded.

A word that is not a valid RV32EM instruction decodes to an `invalid` instruction that
faults when (and only if) it is executed.
"""

from athena_vm import instructions as ops
from athena_vm.machine import NUM_REGISTERS, SINK, Handler, Instr

_LOADS: dict[int, tuple[str, Handler]] = {
    0: ("lb", ops.lb),
    1: ("lh", ops.lh),
    2: ("lw", ops.lw),
    4: ("lbu", ops.lbu),
    5: ("lhu", ops.lhu),
}
_STORES: dict[int, tuple[str, Handler]] = {0: ("sb", ops.sb), 1: ("sh", ops.sh), 2: ("sw", ops.sw)}
_BRANCHES: dict[int, tuple[str, Handler]] = {
    0: ("beq", ops.beq),
    1: ("bne", ops.bne),
    4: ("blt", ops.blt),
    5: ("bge", ops.bge),
    6: ("bltu", ops.bltu),
    7: ("bgeu", ops.bgeu),
}
_OP_IMM: dict[int, tuple[str, Handler]] = {
    0: ("addi", ops.addi),
    2: ("slti", ops.slti),
    3: ("sltiu", ops.sltiu),
    4: ("xori", ops.xori),
    6: ("ori", ops.ori),
    7: ("andi", ops.andi),
}
_OP: dict[tuple[int, int], tuple[str, Handler]] = {
    (0x00, 0): ("add", ops.add),
    (0x20, 0): ("sub", ops.sub),
    (0x00, 1): ("sll", ops.sll),
    (0x00, 2): ("slt", ops.slt),
    (0x00, 3): ("sltu", ops.sltu),
    (0x00, 4): ("xor", ops.xor),
    (0x00, 5): ("srl", ops.srl),
    (0x20, 5): ("sra", ops.sra),
    (0x00, 6): ("or", ops.or_),
    (0x00, 7): ("and", ops.and_),
    (0x01, 0): ("mul", ops.mul),
    (0x01, 1): ("mulh", ops.mulh),
    (0x01, 2): ("mulhsu", ops.mulhsu),
    (0x01, 3): ("mulhu", ops.mulhu),
    (0x01, 4): ("div", ops.div),
    (0x01, 5): ("divu", ops.divu),
    (0x01, 6): ("rem", ops.rem),
    (0x01, 7): ("remu", ops.remu),
}
_SYSTEM_NAMES = {0x00100073: "ebreak", 0x30200073: "mret", 0x10500073: "wfi"}


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def _imm_i(w: int) -> int:
    return _sext(w >> 20, 12)


def _imm_s(w: int) -> int:
    return _sext(((w >> 25) << 5) | ((w >> 7) & 0x1F), 12)


def _imm_b(w: int) -> int:
    raw = (
        ((w >> 31) & 1) << 12
        | ((w >> 7) & 1) << 11
        | ((w >> 25) & 0x3F) << 5
        | ((w >> 8) & 0xF) << 1
    )
    return _sext(raw, 13)


def _imm_j(w: int) -> int:
    raw = (
        ((w >> 31) & 1) << 20
        | ((w >> 12) & 0xFF) << 12
        | ((w >> 20) & 1) << 11
        | ((w >> 21) & 0x3FF) << 1
    )
    return _sext(raw, 21)


def _invalid(word: int, why: str) -> Instr:
    return Instr("invalid", ops.invalid, word=word, note=why)


def _rd(rd: int) -> int:
    return SINK if rd == 0 else rd


def _check_regs(word: int, name: str, *regs: int) -> Instr | None:
    high = [r for r in regs if r >= NUM_REGISTERS]
    if high:
        return _invalid(word, f"{name} uses x{high[0]}, RV32E has x0-x15 only")
    return None


def decode(word: int) -> Instr:
    """Decode one little-endian instruction word."""
    opcode = word & 0x7F
    rd = (word >> 7) & 0x1F
    funct3 = (word >> 12) & 7
    rs1 = (word >> 15) & 0x1F
    rs2 = (word >> 20) & 0x1F
    funct7 = word >> 25
    if word & 3 != 3:
        return _invalid(word, "compressed encoding (C extension) is not supported")

    if opcode == 0x37:
        return _check_regs(word, "lui", rd) or Instr(
            "lui", ops.lui, rd=_rd(rd), imm=word & 0xFFFFF000, word=word
        )
    if opcode == 0x17:
        return _check_regs(word, "auipc", rd) or Instr(
            "auipc", ops.auipc, rd=_rd(rd), imm=word & 0xFFFFF000, word=word
        )
    if opcode == 0x6F:
        return _check_regs(word, "jal", rd) or Instr(
            "jal", ops.jal, rd=_rd(rd), imm=_imm_j(word), word=word
        )
    if opcode == 0x67:
        if funct3 != 0:
            return _invalid(word, "jalr with funct3 != 0")
        return _check_regs(word, "jalr", rd, rs1) or Instr(
            "jalr", ops.jalr, rd=_rd(rd), rs1=rs1, imm=_imm_i(word), word=word
        )
    if opcode == 0x63:
        return _decode_table(
            word, _BRANCHES.get(funct3), "branch", rs1=rs1, rs2=rs2, imm=_imm_b(word)
        )
    if opcode == 0x03:
        return _decode_table(word, _LOADS.get(funct3), "load", rd=rd, rs1=rs1, imm=_imm_i(word))
    if opcode == 0x23:
        return _decode_table(word, _STORES.get(funct3), "store", rs1=rs1, rs2=rs2, imm=_imm_s(word))
    if opcode == 0x13:
        return _decode_op_imm(word, rd, funct3, rs1, funct7)
    if opcode == 0x33:
        return _decode_table(
            word, _OP.get((funct7, funct3)), "register op", rd=rd, rs1=rs1, rs2=rs2
        )
    if opcode == 0x73:
        if word == 0x00000073:
            return Instr("ecall", ops.ecall, word=word)
        name = _SYSTEM_NAMES.get(word, "csr" if funct3 else "system")
        return _invalid(word, f"{name} is not supported by the Athena VM")
    if opcode == 0x0F:
        return _invalid(word, "fence is not supported by the Athena VM")
    if opcode in (0x07, 0x27, 0x43, 0x47, 0x4B, 0x4F, 0x53):
        return _invalid(word, "floating-point instructions are not supported")
    if opcode == 0x2F:
        return _invalid(word, "atomic instructions (A extension) are not supported")
    return _invalid(word, f"unknown opcode 0x{opcode:02x}")


def _decode_table(
    word: int,
    entry: tuple[str, Handler] | None,
    kind: str,
    *,
    rd: int | None = None,
    rs1: int = 0,
    rs2: int = 0,
    imm: int = 0,
) -> Instr:
    if entry is None:
        return _invalid(word, f"unknown {kind} encoding")
    name, handler = entry
    regs = (rs1, rs2) if rd is None else (rd, rs1, rs2)
    bad = _check_regs(word, name, *regs)
    if bad:
        return bad
    return Instr(
        name, handler, rd=0 if rd is None else _rd(rd), rs1=rs1, rs2=rs2, imm=imm, word=word
    )


def _decode_op_imm(word: int, rd: int, funct3: int, rs1: int, funct7: int) -> Instr:
    shamt = (word >> 20) & 0x1F
    if funct3 == 1:
        entry: tuple[str, Handler] | None = ("slli", ops.slli) if funct7 == 0 else None
        return _decode_table(word, entry, "shift", rd=rd, rs1=rs1, imm=shamt)
    if funct3 == 5:
        entry = {0x00: ("srli", ops.srli), 0x20: ("srai", ops.srai)}.get(funct7)
        return _decode_table(word, entry, "shift", rd=rd, rs1=rs1, imm=shamt)
    return _decode_table(
        word, _OP_IMM.get(funct3), "immediate op", rd=rd, rs1=rs1, imm=_imm_i(word)
    )
