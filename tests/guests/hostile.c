/* Guests that misbehave on purpose: the VM must stop each one cleanly. */
#include "guest_util.h"

/* Valid instruction words kept as data: `li t0, 0x123; ecall` (an unknown syscall). */
static const uint32_t not_code[4] = {0x12300293u, 0x00000073u, 0x00000073u, 0x00000073u};

ATHENA_EXPORT(spin) {
  volatile uint32_t i = 0;
  for (;;) i = i + 1;
}

/* Input {target u32}: return "before", jump to target, return "after" if it comes back. */
ATHENA_EXPORT(jump) {
  uint32_t target = g_read_u32();
  athena_return("before", 6);
  void (*volatile fn)(void) = (void (*)(void))(uintptr_t)target;
  fn();
  athena_return("after", 5);
}

/* Where the instruction-like data lives, for `jump`. */
ATHENA_EXPORT(data_address) { g_return_u32(ATHENA_PTR(not_code)); }

__attribute__((noinline)) static uint32_t victim(void) { return 42; }

/* Overwrite victim's code in memory, then call it: what runs was decoded at load time. */
ATHENA_EXPORT(selfmod) {
  uint32_t (*volatile fn)(void) = victim;
  volatile uint32_t *words = (volatile uint32_t *)(uintptr_t)fn;
  for (int i = 0; i < 4; i++) words[i] = 0;
  g_return_u32(words[0]);
  g_return_u32(fn());
}

/*
 * Input {seed u32, count u32}: word stores to pseudo-random addresses anywhere below the
 * top 64 KiB (where the stack lives), then a checksum of loading them back.
 */
ATHENA_EXPORT(scribble) {
  uint32_t x = g_read_u32();
  uint32_t count = g_read_u32();
  uint32_t seed = x;
  for (uint32_t i = 0; i < count; i++) {
    x = x * 1664525u + 1013904223u;
    uint32_t addr = x & 0xFFFEFFFCu;
    *(volatile uint32_t *)(uintptr_t)addr = x;
  }
  uint32_t sum = 0;
  x = seed;
  for (uint32_t i = 0; i < count; i++) {
    x = x * 1664525u + 1013904223u;
    sum += *(volatile uint32_t *)(uintptr_t)(x & 0xFFFEFFFCu);
  }
  g_return_u32(sum);
}

/* Input {stride u32}: write one byte every `stride` bytes from 0x10000000, forever. */
ATHENA_EXPORT(hog) {
  uint32_t stride = g_read_u32();
  for (uint32_t addr = 0x10000000u;; addr += stride) *(volatile uint8_t *)(uintptr_t)addr = 1;
}

__attribute__((noinline)) static uint32_t nest(uint32_t n) {
  volatile uint32_t frame[8];
  frame[0] = n;
  if (n == 0) return 0;
  return nest(n - 1) + frame[0];
}

/* Input {n u32}: C recursion n deep with small frames; returns n(n+1)/2. */
ATHENA_EXPORT(deep) { g_return_u32(nest(g_read_u32())); }

/* Read at run time, so the compiler must keep the whole 4 KiB frame. */
static volatile uint32_t far_end = 4095;

#pragma clang diagnostic ignored "-Winfinite-recursion" /* on purpose */
__attribute__((noinline)) static uint32_t fat(uint32_t n) {
  volatile uint8_t frame[4096];
  frame[0] = (uint8_t)n;
  frame[far_end] = (uint8_t)n;
  return fat(n + 1) + frame[0] + frame[far_end];
}

/* Unbounded recursion with 4 KiB frames: the stack grows until the memory cap. */
ATHENA_EXPORT(deep_fat) { g_return_u32(fat(0)); }

/* Input {number u32}: ecall with that syscall number. */
ATHENA_EXPORT(syscall) {
  uint32_t number = g_read_u32();
  g_return_u32(athena_syscall(number, 0, 0, 0, 0, 0, 0));
}
