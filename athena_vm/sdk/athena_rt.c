/* Athena guest runtime: start code and the memory functions compilers expect. */
#include "athena.h"

int main(void);

/* Entered when no selector is given: a stack below the code, then main, then HALT(main). */
__attribute__((naked, section(".text.boot"))) void _start(void) {
  __asm__ volatile(
      "li sp, 0x00200400\n"
      "call main\n"
      "li t0, 0\n"
      "ecall\n");
}

/* Programs that only export methods still link: their main does nothing. */
__attribute__((weak)) int main(void) { return 0; }

void *memcpy(void *dst, const void *src, size_t n) {
  volatile uint8_t *d = (volatile uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  for (size_t i = 0; i < n; i++) d[i] = s[i];
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  volatile uint8_t *d = (volatile uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  if (d < s) {
    for (size_t i = 0; i < n; i++) d[i] = s[i];
  } else {
    for (size_t i = n; i > 0; i--) d[i - 1] = s[i - 1];
  }
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  volatile uint8_t *d = (volatile uint8_t *)dst;
  for (size_t i = 0; i < n; i++) d[i] = (uint8_t)c;
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = (const uint8_t *)a;
  const uint8_t *y = (const uint8_t *)b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
