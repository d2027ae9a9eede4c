/*
 * The Athena VM as a riscv-arch-test target: boot, halt and signature dump through the
 * Athena syscalls (ecall with the syscall number in t0, arguments in a0-a2).
 *
 *   RVMODEL_HALT        WRITE (t0=2) the signature to fd 3, then HALT (t0=0) with a0 = 0
 *   RVMODEL_DATA_BEGIN  start of the signature (athena_signature_begin)
 *   RVMODEL_DATA_END    end of the signature (athena_signature_end)
 *   ATH_CHECK           self-check of a TEST_CASE result against riscv-ctg's expected value:
 *                       on a mismatch, HALT with a0 = the source line of the failing test,
 *                       which the VM reports as a failure "exit code <line>"
 */
#ifndef ATHENA_MODEL_TEST_H
#define ATHENA_MODEL_TEST_H

#define ATH_SYS_HALT 0
#define ATH_SYS_WRITE 2
#define ATH_FD_OUTPUT 3

#define RVMODEL_BOOT

#define RVMODEL_HALT \
    la a1, athena_signature_begin; \
    la a2, athena_signature_end; \
    sub a2, a2, a1; \
    li a0, ATH_FD_OUTPUT; \
    li t0, ATH_SYS_WRITE; \
    ecall; \
    li a0, 0; \
    li t0, ATH_SYS_HALT; \
    ecall

#define RVMODEL_DATA_BEGIN .balign 16; athena_signature_begin:
#define RVMODEL_DATA_END athena_signature_end:

#ifdef ATHENA_SELF_CHECK
#define ATH_CHECK(testreg, reg, value) \
    li testreg, ATH_U32(value); \
    beq reg, testreg, 8f; \
    li a0, __LINE__; \
    li t0, ATH_SYS_HALT; \
    ecall; \
8:
#else
#define ATH_CHECK(testreg, reg, value)
#endif

#endif
