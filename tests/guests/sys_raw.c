/*
 * Any syscall with any arguments: input {count u32, then count x {t0, a0..a5} u32}. Each
 * t0 after its ecall goes to the return data. Runs from main, so the stack sits below the
 * code and the top of the address space is free for pointer tests.
 */
#include "guest_util.h"

int main(void) {
  uint32_t count = g_read_u32();
  for (uint32_t i = 0; i < count; i++) {
    uint32_t r[7];
    for (int j = 0; j < 7; j++) r[j] = g_read_u32();
    g_return_u32(athena_syscall(r[0], r[1], r[2], r[3], r[4], r[5], r[6]));
  }
  return 0;
}
