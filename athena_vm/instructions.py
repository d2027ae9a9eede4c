"""One function per RV32EM instruction.

Each handler takes the machine, the predecoded instruction and its pc, and returns the next
pc. Register values are unsigned 32-bit ints; immediates are already sign-extended.
"""

from athena_vm.errors import failure
from athena_vm.machine import Instr, Machine
from athena_vm.syscalls import dispatch

MASK = 0xFFFFFFFF
SIGN = 0x80000000


def s32(value: int) -> int:
    return value - 0x100000000 if value & SIGN else value


# --- upper immediates and jumps ---------------------------------------------------------


def lui(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = i.imm
    return pc + 4


def auipc(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (pc + i.imm) & MASK
    return pc + 4


def jal(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (pc + 4) & MASK
    return (pc + i.imm) & MASK


def jalr(m: Machine, i: Instr, pc: int) -> int:
    # RISC-V clears the target's least-significant bit.
    target = (m.regs[i.rs1] + i.imm) & 0xFFFFFFFE
    m.regs[i.rd] = (pc + 4) & MASK
    return target


# --- branches -------------------------------------------------------------------------


def beq(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    return (pc + i.imm) & MASK if r[i.rs1] == r[i.rs2] else pc + 4


def bne(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    return (pc + i.imm) & MASK if r[i.rs1] != r[i.rs2] else pc + 4


def blt(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    return (pc + i.imm) & MASK if s32(r[i.rs1]) < s32(r[i.rs2]) else pc + 4


def bge(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    return (pc + i.imm) & MASK if s32(r[i.rs1]) >= s32(r[i.rs2]) else pc + 4


def bltu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    return (pc + i.imm) & MASK if r[i.rs1] < r[i.rs2] else pc + 4


def bgeu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    return (pc + i.imm) & MASK if r[i.rs1] >= r[i.rs2] else pc + 4


# --- loads and stores -----------------------------------------------------------------


def _misaligned(i: Instr, addr: int, pc: int) -> Exception:
    return failure(
        f"INVALID_MEMORY_ACCESS: misaligned {i.name} address 0x{addr:08x} at pc 0x{pc:08x}"
    )


def lb(m: Machine, i: Instr, pc: int) -> int:
    value = m.memory.load_u8((m.regs[i.rs1] + i.imm) & MASK)
    m.regs[i.rd] = (value - 0x100) & MASK if value & 0x80 else value
    return pc + 4


def lbu(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = m.memory.load_u8((m.regs[i.rs1] + i.imm) & MASK)
    return pc + 4


def lh(m: Machine, i: Instr, pc: int) -> int:
    addr = (m.regs[i.rs1] + i.imm) & MASK
    if addr & 1:
        raise _misaligned(i, addr, pc)
    value = m.memory.load_u16(addr)
    m.regs[i.rd] = (value - 0x10000) & MASK if value & 0x8000 else value
    return pc + 4


def lhu(m: Machine, i: Instr, pc: int) -> int:
    addr = (m.regs[i.rs1] + i.imm) & MASK
    if addr & 1:
        raise _misaligned(i, addr, pc)
    m.regs[i.rd] = m.memory.load_u16(addr)
    return pc + 4


def lw(m: Machine, i: Instr, pc: int) -> int:
    addr = (m.regs[i.rs1] + i.imm) & MASK
    if addr & 3:
        raise _misaligned(i, addr, pc)
    m.regs[i.rd] = m.memory.load_u32(addr)
    return pc + 4


def sb(m: Machine, i: Instr, pc: int) -> int:
    m.memory.store_u8((m.regs[i.rs1] + i.imm) & MASK, m.regs[i.rs2])
    return pc + 4


def sh(m: Machine, i: Instr, pc: int) -> int:
    addr = (m.regs[i.rs1] + i.imm) & MASK
    if addr & 1:
        raise _misaligned(i, addr, pc)
    m.memory.store_u16(addr, m.regs[i.rs2])
    return pc + 4


def sw(m: Machine, i: Instr, pc: int) -> int:
    addr = (m.regs[i.rs1] + i.imm) & MASK
    if addr & 3:
        raise _misaligned(i, addr, pc)
    m.memory.store_u32(addr, m.regs[i.rs2])
    return pc + 4


# --- register-immediate ---------------------------------------------------------------


def addi(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (m.regs[i.rs1] + i.imm) & MASK
    return pc + 4


def slti(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = 1 if s32(m.regs[i.rs1]) < i.imm else 0
    return pc + 4


def sltiu(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = 1 if m.regs[i.rs1] < (i.imm & MASK) else 0
    return pc + 4


def xori(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (m.regs[i.rs1] ^ i.imm) & MASK
    return pc + 4


def ori(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (m.regs[i.rs1] | i.imm) & MASK
    return pc + 4


def andi(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = m.regs[i.rs1] & i.imm & MASK
    return pc + 4


def slli(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (m.regs[i.rs1] << i.imm) & MASK
    return pc + 4


def srli(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = m.regs[i.rs1] >> i.imm
    return pc + 4


def srai(m: Machine, i: Instr, pc: int) -> int:
    m.regs[i.rd] = (s32(m.regs[i.rs1]) >> i.imm) & MASK
    return pc + 4


# --- register-register ----------------------------------------------------------------


def add(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = (r[i.rs1] + r[i.rs2]) & MASK
    return pc + 4


def sub(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = (r[i.rs1] - r[i.rs2]) & MASK
    return pc + 4


def sll(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = (r[i.rs1] << (r[i.rs2] & 31)) & MASK
    return pc + 4


def slt(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = 1 if s32(r[i.rs1]) < s32(r[i.rs2]) else 0
    return pc + 4


def sltu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = 1 if r[i.rs1] < r[i.rs2] else 0
    return pc + 4


def xor(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = r[i.rs1] ^ r[i.rs2]
    return pc + 4


def srl(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = r[i.rs1] >> (r[i.rs2] & 31)
    return pc + 4


def sra(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = (s32(r[i.rs1]) >> (r[i.rs2] & 31)) & MASK
    return pc + 4


def or_(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = r[i.rs1] | r[i.rs2]
    return pc + 4


def and_(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = r[i.rs1] & r[i.rs2]
    return pc + 4


# --- M extension ----------------------------------------------------------------------


def mul(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = (r[i.rs1] * r[i.rs2]) & MASK
    return pc + 4


def mulh(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = ((s32(r[i.rs1]) * s32(r[i.rs2])) >> 32) & MASK
    return pc + 4


def mulhsu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = ((s32(r[i.rs1]) * r[i.rs2]) >> 32) & MASK
    return pc + 4


def mulhu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = (r[i.rs1] * r[i.rs2]) >> 32
    return pc + 4


def _div_signed(a: int, b: int) -> int:
    """Quotient rounded toward zero; /0 gives all ones, INT_MIN/-1 wraps to INT_MIN."""
    if b == 0:
        return MASK
    sa, sb = s32(a), s32(b)
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & MASK


def _rem_signed(a: int, b: int) -> int:
    """Remainder with the dividend's sign; %0 gives the dividend, INT_MIN%-1 gives 0."""
    if b == 0:
        return a
    sa, sb = s32(a), s32(b)
    rem = abs(sa) % abs(sb)
    return (-rem if sa < 0 else rem) & MASK


def div(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = _div_signed(r[i.rs1], r[i.rs2])
    return pc + 4


def divu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    b = r[i.rs2]
    r[i.rd] = r[i.rs1] // b if b else MASK
    return pc + 4


def rem(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    r[i.rd] = _rem_signed(r[i.rs1], r[i.rs2])
    return pc + 4


def remu(m: Machine, i: Instr, pc: int) -> int:
    r = m.regs
    b = r[i.rs2]
    r[i.rd] = r[i.rs1] % b if b else r[i.rs1]
    return pc + 4


# --- system ---------------------------------------------------------------------------


def ecall(m: Machine, i: Instr, pc: int) -> int:
    return dispatch(m, pc)


def invalid(m: Machine, i: Instr, pc: int) -> int:
    raise failure(f"invalid instruction 0x{i.word:08x} at pc 0x{pc:08x}: {i.note}")
