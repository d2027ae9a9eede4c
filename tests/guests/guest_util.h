/* Small helpers shared by the test guests: little-endian integers in and out. */
#ifndef GUEST_UTIL_H
#define GUEST_UTIL_H

#include "athena.h"

static inline uint32_t g_read_u32(void) {
  uint8_t b[4];
  athena_read(b, 4);
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline void g_put_u32(uint8_t *out, uint32_t v) {
  for (int i = 0; i < 4; i++) out[i] = (uint8_t)(v >> (8 * i));
}

static inline void g_return_u32(uint32_t v) {
  uint8_t b[4];
  g_put_u32(b, v);
  athena_return(b, 4);
}

static inline void g_return_u64(uint64_t v) {
  uint8_t b[8];
  athena_encode_u64(v, b);
  athena_return(b, 8);
}

#endif /* GUEST_UTIL_H */
