"""A small RV32I+M (+ a few system/CSR) instruction encoder for hand-written test programs.

Every function returns one 32-bit instruction word. Registers are plain ints 0..31 (the
encoder allows x16-x31 so tests can build instructions the Athena VM must reject).
Immediates are checked against their field's range and raise ValueError when they don't fit.
`raw(...)` turns words into an Athena raw program (`\\x7fATH` + little-endian words, loaded
and entered at pc 0).
"""

from collections.abc import Iterable

RAW_MAGIC = b"\x7fATH"

# ABI register names (RV32E subset).
ZERO, RA, SP, GP, TP, T0, T1, T2, S0, S1, A0, A1, A2, A3, A4, A5 = range(16)

# Opcodes.
_LUI = 0x37
_AUIPC = 0x17
_JAL = 0x6F
_JALR = 0x67
_BRANCH = 0x63
_LOAD = 0x03
_STORE = 0x23
_OP_IMM = 0x13
_OP = 0x33
_MISC_MEM = 0x0F
_SYSTEM = 0x73

# Encodings the VM must reject, as whole words.
EBREAK = 0x00100073
MRET = 0x30200073
WFI = 0x10500073
ECALL = 0x00000073


def _reg(r: int) -> int:
    if not 0 <= r < 32:
        raise ValueError(f"register x{r} out of range")
    return r


def _signed(value: int, bits: int, what: str) -> int:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise ValueError(f"{what} {value} does not fit in {bits} signed bits")
    return value & ((1 << bits) - 1)


def r_type(opcode: int, funct3: int, funct7: int, rd: int, rs1: int, rs2: int) -> int:
    return (
        (funct7 & 0x7F) << 25
        | _reg(rs2) << 20
        | _reg(rs1) << 15
        | (funct3 & 7) << 12
        | _reg(rd) << 7
        | opcode
    )


def i_type(opcode: int, funct3: int, rd: int, rs1: int, imm: int) -> int:
    return (
        _signed(imm, 12, "I-immediate") << 20
        | _reg(rs1) << 15
        | (funct3 & 7) << 12
        | _reg(rd) << 7
        | opcode
    )


def s_type(opcode: int, funct3: int, rs1: int, rs2: int, imm: int) -> int:
    u = _signed(imm, 12, "S-immediate")
    return (
        (u >> 5) << 25
        | _reg(rs2) << 20
        | _reg(rs1) << 15
        | (funct3 & 7) << 12
        | (u & 0x1F) << 7
        | opcode
    )


def b_type(opcode: int, funct3: int, rs1: int, rs2: int, offset: int) -> int:
    if offset & 1:
        raise ValueError(f"branch offset {offset} is odd")
    u = _signed(offset, 13, "branch offset")
    return (
        ((u >> 12) & 1) << 31
        | ((u >> 5) & 0x3F) << 25
        | _reg(rs2) << 20
        | _reg(rs1) << 15
        | (funct3 & 7) << 12
        | ((u >> 1) & 0xF) << 8
        | ((u >> 11) & 1) << 7
        | opcode
    )


def u_type(opcode: int, rd: int, imm20: int) -> int:
    if not -(1 << 19) <= imm20 < (1 << 20):
        raise ValueError(f"U-immediate {imm20} does not fit in 20 bits")
    return (imm20 & 0xFFFFF) << 12 | _reg(rd) << 7 | opcode


def j_type(opcode: int, rd: int, offset: int) -> int:
    if offset & 1:
        raise ValueError(f"jump offset {offset} is odd")
    u = _signed(offset, 21, "jump offset")
    return (
        ((u >> 20) & 1) << 31
        | ((u >> 1) & 0x3FF) << 21
        | ((u >> 11) & 1) << 20
        | ((u >> 12) & 0xFF) << 12
        | _reg(rd) << 7
        | opcode
    )


# --- upper immediates and jumps ---------------------------------------------------------


def lui(rd: int, imm20: int) -> int:
    """rd = imm20 << 12 (imm20 given as the 20-bit upper field, like assemblers do)."""
    return u_type(_LUI, rd, imm20)


def auipc(rd: int, imm20: int) -> int:
    return u_type(_AUIPC, rd, imm20)


def jal(rd: int, offset: int) -> int:
    return j_type(_JAL, rd, offset)


def jalr(rd: int, rs1: int, imm: int = 0) -> int:
    return i_type(_JALR, 0, rd, rs1, imm)


# --- branches (offset relative to the branch's own pc) ---------------------------------


def beq(rs1: int, rs2: int, offset: int) -> int:
    return b_type(_BRANCH, 0, rs1, rs2, offset)


def bne(rs1: int, rs2: int, offset: int) -> int:
    return b_type(_BRANCH, 1, rs1, rs2, offset)


def blt(rs1: int, rs2: int, offset: int) -> int:
    return b_type(_BRANCH, 4, rs1, rs2, offset)


def bge(rs1: int, rs2: int, offset: int) -> int:
    return b_type(_BRANCH, 5, rs1, rs2, offset)


def bltu(rs1: int, rs2: int, offset: int) -> int:
    return b_type(_BRANCH, 6, rs1, rs2, offset)


def bgeu(rs1: int, rs2: int, offset: int) -> int:
    return b_type(_BRANCH, 7, rs1, rs2, offset)


# --- loads and stores -------------------------------------------------------------------


def lb(rd: int, rs1: int, imm: int = 0) -> int:
    return i_type(_LOAD, 0, rd, rs1, imm)


def lh(rd: int, rs1: int, imm: int = 0) -> int:
    return i_type(_LOAD, 1, rd, rs1, imm)


def lw(rd: int, rs1: int, imm: int = 0) -> int:
    return i_type(_LOAD, 2, rd, rs1, imm)


def lbu(rd: int, rs1: int, imm: int = 0) -> int:
    return i_type(_LOAD, 4, rd, rs1, imm)


def lhu(rd: int, rs1: int, imm: int = 0) -> int:
    return i_type(_LOAD, 5, rd, rs1, imm)


def sb(rs2: int, rs1: int, imm: int = 0) -> int:
    """Store the low byte of rs2 at rs1 + imm (operand order as in `sb rs2, imm(rs1)`)."""
    return s_type(_STORE, 0, rs1, rs2, imm)


def sh(rs2: int, rs1: int, imm: int = 0) -> int:
    return s_type(_STORE, 1, rs1, rs2, imm)


def sw(rs2: int, rs1: int, imm: int = 0) -> int:
    return s_type(_STORE, 2, rs1, rs2, imm)


# --- register-immediate -----------------------------------------------------------------


def addi(rd: int, rs1: int, imm: int) -> int:
    return i_type(_OP_IMM, 0, rd, rs1, imm)


def slti(rd: int, rs1: int, imm: int) -> int:
    return i_type(_OP_IMM, 2, rd, rs1, imm)


def sltiu(rd: int, rs1: int, imm: int) -> int:
    return i_type(_OP_IMM, 3, rd, rs1, imm)


def xori(rd: int, rs1: int, imm: int) -> int:
    return i_type(_OP_IMM, 4, rd, rs1, imm)


def ori(rd: int, rs1: int, imm: int) -> int:
    return i_type(_OP_IMM, 6, rd, rs1, imm)


def andi(rd: int, rs1: int, imm: int) -> int:
    return i_type(_OP_IMM, 7, rd, rs1, imm)


def _shift_imm(funct3: int, funct7: int, rd: int, rs1: int, shamt: int) -> int:
    if not 0 <= shamt < 32:
        raise ValueError(f"shift amount {shamt} out of range 0..31")
    return r_type(_OP_IMM, funct3, funct7, rd, rs1, shamt)


def slli(rd: int, rs1: int, shamt: int) -> int:
    return _shift_imm(1, 0x00, rd, rs1, shamt)


def srli(rd: int, rs1: int, shamt: int) -> int:
    return _shift_imm(5, 0x00, rd, rs1, shamt)


def srai(rd: int, rs1: int, shamt: int) -> int:
    return _shift_imm(5, 0x20, rd, rs1, shamt)


# --- register-register ------------------------------------------------------------------


def add(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 0, 0x00, rd, rs1, rs2)


def sub(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 0, 0x20, rd, rs1, rs2)


def sll(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 1, 0x00, rd, rs1, rs2)


def slt(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 2, 0x00, rd, rs1, rs2)


def sltu(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 3, 0x00, rd, rs1, rs2)


def xor(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 4, 0x00, rd, rs1, rs2)


def srl(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 5, 0x00, rd, rs1, rs2)


def sra(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 5, 0x20, rd, rs1, rs2)


def or_(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 6, 0x00, rd, rs1, rs2)


def and_(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 7, 0x00, rd, rs1, rs2)


# --- M extension ------------------------------------------------------------------------


def mul(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 0, 0x01, rd, rs1, rs2)


def mulh(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 1, 0x01, rd, rs1, rs2)


def mulhsu(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 2, 0x01, rd, rs1, rs2)


def mulhu(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 3, 0x01, rd, rs1, rs2)


def div(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 4, 0x01, rd, rs1, rs2)


def divu(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 5, 0x01, rd, rs1, rs2)


def rem(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 6, 0x01, rd, rs1, rs2)


def remu(rd: int, rs1: int, rs2: int) -> int:
    return r_type(_OP, 7, 0x01, rd, rs1, rs2)


# --- system, fence and CSR (the VM rejects all but ecall) -------------------------------


def ecall() -> int:
    return ECALL


def ebreak() -> int:
    return EBREAK


def fence(pred: int = 0xF, succ: int = 0xF) -> int:
    return (pred & 0xF) << 24 | (succ & 0xF) << 20 | _MISC_MEM


def fence_i() -> int:
    return 1 << 12 | _MISC_MEM


def _csr(funct3: int, rd: int, csr: int, rs1_or_uimm: int) -> int:
    if not 0 <= csr < 4096:
        raise ValueError(f"CSR number {csr} out of range")
    if not 0 <= rs1_or_uimm < 32:
        raise ValueError(f"CSR source {rs1_or_uimm} out of range")
    return csr << 20 | rs1_or_uimm << 15 | funct3 << 12 | _reg(rd) << 7 | _SYSTEM


def csrrw(rd: int, csr: int, rs1: int) -> int:
    return _csr(1, rd, csr, rs1)


def csrrs(rd: int, csr: int, rs1: int) -> int:
    return _csr(2, rd, csr, rs1)


def csrrc(rd: int, csr: int, rs1: int) -> int:
    return _csr(3, rd, csr, rs1)


def csrrwi(rd: int, csr: int, uimm: int) -> int:
    return _csr(5, rd, csr, uimm)


def csrrsi(rd: int, csr: int, uimm: int) -> int:
    return _csr(6, rd, csr, uimm)


def csrrci(rd: int, csr: int, uimm: int) -> int:
    return _csr(7, rd, csr, uimm)


# --- pseudo-instructions ----------------------------------------------------------------


def nop() -> int:
    return addi(ZERO, ZERO, 0)


def mv(rd: int, rs: int) -> int:
    return addi(rd, rs, 0)


def li(rd: int, value: int) -> tuple[int, int]:
    """Load any 32-bit value (signed or unsigned) as exactly two words: lui + addi."""
    if not -(1 << 31) <= value < (1 << 32):
        raise ValueError(f"{value} is not a 32-bit value")
    value &= 0xFFFFFFFF
    low = value & 0xFFF
    low_signed = low - 0x1000 if low & 0x800 else low
    upper = ((value - low_signed) >> 12) & 0xFFFFF
    return lui(rd, upper), addi(rd, rd, low_signed)


def flatten(*items: int | Iterable[int]) -> list[int]:
    """Words and sequences of words (from `li`, say) as one flat list."""
    out: list[int] = []
    for item in items:
        if isinstance(item, int):
            out.append(item)
        else:
            out.extend(item)
    return out


def raw(*items: int | Iterable[int]) -> bytes:
    """An Athena raw program: the magic followed by the words, little-endian."""
    words = flatten(*items)
    for w in words:
        if not 0 <= w <= 0xFFFFFFFF:
            raise ValueError(f"instruction word {w:#x} is not 32 bits")
    return RAW_MAGIC + b"".join(w.to_bytes(4, "little") for w in words)
