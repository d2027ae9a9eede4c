/* Token balances and supply kept in storage slot 0 as a little-endian u64. */
#ifndef TOKEN_H
#define TOKEN_H

#include "template.h"

static uint64_t load_slot0(void) {
  uint8_t kv[32] = {0};
  athena_storage_read(kv);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | kv[i];
  return v;
}

static void store_slot0(uint64_t v) {
  uint8_t key[32] = {0}, value[32] = {0};
  athena_encode_u64(v, value);
  athena_storage_write(key, value);
}

/* Call `to`.receive(amount) with no coins attached. */
static void call_receive(const uint8_t to[24], uint64_t amount) {
  uint8_t args[8], payload[16];
  athena_encode_u64(amount, args);
  uint32_t n = athena_payload(SELECTOR_RECEIVE, args, 8, payload);
  uint64_t zero = 0;
  athena_call(to, payload, n, 0, 0, &zero);
}

#endif
