/* Compute benchmark guest: loops, multiplication, division and memory traffic. */
#include "athena.h"

#define N 256

static uint32_t table[N];

int main(void) {
  uint32_t rounds = (uint32_t)athena_read_u64();
  uint32_t seed = 12345u, acc = 0;
  for (uint32_t r = 0; r < rounds; r++) {
    for (uint32_t i = 0; i < N; i++) {
      seed = seed * 1103515245u + 12345u;
      table[i] = seed ^ (seed >> 16);
    }
    for (uint32_t i = 1; i < N; i++) {
      uint32_t d = (table[i - 1] & 0xFFFFu) | 1u;
      acc += table[i] / d + table[i] % d;
      acc ^= table[(acc >> 3) & (N - 1)];
    }
  }
  athena_return(&acc, 4);
  return 0;
}
