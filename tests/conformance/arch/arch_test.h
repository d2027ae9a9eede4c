/*
 * The test macros that riscv-ctg's generated RV32E/RV32EM tests use, written for the Athena
 * VM conformance run (tests/conformance/test_arch.py). Only the macros those tests invoke
 * are here; each follows the documented meaning of its riscv-arch-test namesake:
 *
 *   RVTEST_SIGBASE(reg, label)  point `reg` at a signature area
 *   TEST_CASE(..., code...)     run `code`, store the destination register at offset(swreg)
 *   TEST_RR_OP / TEST_IMM_OP    load operand values, run one instruction, store its result
 *   TEST_AUIPC                  store auipc's result relative to its own address
 *   TEST_LOAD / TEST_STORE      access the test data / the signature through base+imm
 *   TEST_BRANCH_OP              store which way a branch went (1 back, 2 through, 3 ahead)
 *   TEST_JAL_OP / TEST_JALR_OP  store the link value relative to the jump, tagged by path
 *
 * Branch and jal immediates are in the units of the instruction field (2 bytes): the jump
 * covers 2*imm bytes, backward for label 1b and forward for 3f. Far jal targets (beyond
 * ATH_JAL_INLINE_MAX bytes) go to a section `.text.athena_far_<label>_<imm>` that the
 * linker script places exactly 2*imm bytes below/above `.text`; inside it each landing
 * pad sits (by `.org`) at its jal's own offset from rvtest_entry_point, which must start
 * `.text`. So the distance is exact without a megabyte of padding code.
 *
 * Misaligned jump targets (a non-zero `adj` of the jump macros) would need a trap handler
 * and are refused at assembly time; riscv-ctg emits none for RV32E.
 *
 * Every instruction is 4 bytes (no C extension). Registers written: only those each macro
 * is given. Statements are separated with `;` so one macro expands on one line.
 */
#ifndef ATHENA_ARCH_TEST_H
#define ATHENA_ARCH_TEST_H

#define XLEN 32
#define CANARY .word 0x7e57ca4a

#define ATH_U32(v) ((v) & 0xffffffff)
/* A 12-bit immediate written as 0..0xfff or as a signed value, as a signed value. */
#define ATH_SIMM12(v) (((v) & 0x7ff) - ((v) & 0x800))
#define ATH_JAL_INLINE_MAX 0x1000

#define RVTEST_ISA(isa_string)
#define RVTEST_CASE(number, condition, ...)

#define RVTEST_CODE_BEGIN athena_code_begin:
#define RVTEST_CODE_END athena_code_end:

#define RVTEST_DATA_BEGIN .data; .balign 16
#define RVTEST_DATA_END

#define RVTEST_SIGBASE(reg, label) la reg, label

/* Store a signature word; offsets of generated tests stay below 2048. */
#define ATH_SIG(base, reg, offset) sw reg, (offset)(base)

#define TEST_CASE(testreg, destreg, correctval, swreg, offset, ...) \
    __VA_ARGS__; ATH_SIG(swreg, destreg, offset); ATH_CHECK(testreg, destreg, correctval)

#define TEST_RR_OP(inst, destreg, reg1, reg2, correctval, val1, val2, swreg, offset, testreg) \
    TEST_CASE(testreg, destreg, correctval, swreg, offset, \
        li reg1, ATH_U32(val1); li reg2, ATH_U32(val2); inst destreg, reg1, reg2)

#define TEST_IMM_OP(inst, destreg, reg, correctval, val, imm, swreg, offset, testreg) \
    TEST_CASE(testreg, destreg, correctval, swreg, offset, \
        li reg, ATH_U32(val); inst destreg, reg, ATH_SIMM12(imm))

/* destreg = auipc result minus the auipc's own address (= imm << 12). */
#define TEST_AUIPC(inst, destreg, correctval, imm, swreg, offset, testreg) \
    TEST_CASE(testreg, destreg, correctval, swreg, offset, \
        inst destreg, imm; auipc testreg, 0; addi testreg, testreg, -4; \
        sub destreg, destreg, testreg)

/* Load from rvtest_data + 4*index + adj, reached as (base = address - imm) + imm. */
#define TEST_LOAD(swreg, testreg, index, rs1, destreg, imm, offset, inst, adj) \
    la rs1, rvtest_data + 4 * (index) + (adj) - (imm); \
    inst destreg, imm(rs1); \
    ATH_SIG(swreg, destreg, offset)

/* Store rs2 at swreg + offset + adj, reached as (base = that address - imm) + imm. */
#define TEST_STORE(swreg, testreg, index, rs1, rs2, rs2_val, imm, offset, inst, adj) \
    li rs2, ATH_U32(rs2_val); \
    addi rs1, swreg, (offset) + (adj); \
    li testreg, imm; \
    sub rs1, rs1, testreg; \
    inst rs2, imm(rs1)

#define ATH_NO_ADJ(adj) .if (adj) != 0; .error "misaligned jump targets are not supported"; .endif

/*
 * Layout shared by branches and near jal: label 1 (backward target) lies 2*imm bytes
 * before the jump at 7, label 3 (forward target) 2*imm bytes after it; 9 joins the paths.
 */
#define ATH_BACK_PAD(imm) \
    .if 2 * (imm) < 8 || (2 * (imm)) % 4; .error "unsupported backward distance"; .endif; \
    .rept (2 * (imm) - 8) / 4; nop; .endr
#define ATH_AHEAD_PAD(imm) \
    .if 2 * (imm) < 12 || (2 * (imm)) % 4; .error "unsupported forward distance"; .endif; \
    .rept (2 * (imm) - 12) / 4; nop; .endr
/* 1 for a backward target (label 1b), 0 for a forward one (3f). */
#define ATH_BACKWARD(label) ATH_BACKWARD_##label
#define ATH_BACKWARD_1b 1
#define ATH_BACKWARD_3f 0
#define ATH_PAD_BEFORE(label, imm) .if ATH_BACKWARD(label); ATH_BACK_PAD(imm); .endif
#define ATH_PAD_AFTER(label, imm) .if ATH_BACKWARD(label) == 0; ATH_AHEAD_PAD(imm); .endif

#define TEST_BRANCH_OP(inst, tempreg, reg1, reg2, val1, val2, imm, label, swreg, offset, adj) \
    ATH_NO_ADJ(adj); \
    li reg1, ATH_U32(val1); li reg2, ATH_U32(val2); li tempreg, 0; \
    j 7f; \
1:  addi tempreg, tempreg, 1; j 9f; \
    ATH_PAD_BEFORE(label, imm); \
7:  inst reg1, reg2, label; \
    addi tempreg, tempreg, 2; j 9f; \
    ATH_PAD_AFTER(label, imm); \
3:  addi tempreg, tempreg, 3; \
9:  ATH_SIG(swreg, tempreg, offset)

/* rd = link - address of the jump (4 when right), xor 1 back / 2 through / 3 ahead. */
#define ATH_LINK_RESULT(tempreg, rd, site, swreg, offset) \
    la tempreg, site; sub rd, rd, tempreg; ATH_SIG(swreg, rd, offset)

#define TEST_JAL_OP(tempreg, rd, imm, label, swreg, offset, adj) \
    ATH_NO_ADJ(adj); \
    .if 2 * (imm) <= ATH_JAL_INLINE_MAX; \
    ATH_NEAR_JAL(tempreg, rd, imm, label, swreg, offset); \
    .else; \
    ATH_FAR_JAL(__COUNTER__, tempreg, rd, imm, label, swreg, offset); \
    .endif

#define ATH_NEAR_JAL(tempreg, rd, imm, label, swreg, offset) \
    j 7f; \
1:  xori rd, rd, 1; j 9f; \
    ATH_PAD_BEFORE(label, imm); \
7:  jal rd, label; \
    xori rd, rd, 2; j 9f; \
    ATH_PAD_AFTER(label, imm); \
3:  xori rd, rd, 3; \
9:  ATH_LINK_RESULT(tempreg, rd, 7b, swreg, offset)

#define ATH_FAR_JAL(n, tempreg, rd, imm, label, swreg, offset) \
    ATH_FAR_JAL_(n, tempreg, rd, imm, label, swreg, offset)
#define ATH_FAR_JAL_(n, tempreg, rd, imm, label, swreg, offset) \
athena_far_jal_##n: \
    jal rd, athena_far_pad_##n; \
    xori rd, rd, 2; j athena_far_back_##n; \
    .pushsection .text.athena_far_##label##_##imm, "ax", @progbits; \
    .org athena_far_jal_##n - rvtest_entry_point; \
athena_far_pad_##n: \
    xori rd, rd, 3 - 2 * ATH_BACKWARD(label); \
    la tempreg, athena_far_back_##n; jr tempreg; \
    .popsection; \
athena_far_back_##n: \
    ATH_LINK_RESULT(tempreg, rd, athena_far_jal_##n, swreg, offset)

/* The jalr target is 3; rs1 is set so that rs1 + imm is exactly its address. */
#define TEST_JALR_OP(tempreg, rd, rs1, imm, swreg, offset, adj) \
    ATH_NO_ADJ(adj); \
    la rs1, 3f - (imm); \
7:  jalr rd, imm(rs1); \
    xori rd, rd, 2; j 9f; \
3:  xori rd, rd, 3; \
9:  ATH_LINK_RESULT(tempreg, rd, 7b, swreg, offset)

#endif
