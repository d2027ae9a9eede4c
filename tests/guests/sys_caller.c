/* HOST_CALL from a guest: forwards a prepared Payload to another account. */
#include "guest_util.h"

static uint8_t payload[8192];
static uint8_t out[1024];

/*
 * Input {address [24], amount u64, capacity u32, payload_len u32, payload}. Logs before
 * and after the call; returns {bytes copied u32, out[0 .. capacity + 8]} where `out` was
 * filled with 0xEE before the call.
 */
ATHENA_EXPORT(call) {
  uint8_t address[24];
  athena_read(address, 24);
  uint64_t amount = athena_read_u64();
  uint32_t capacity = g_read_u32();
  uint32_t len = g_read_u32();
  athena_read(payload, len);
  for (uint32_t i = 0; i < sizeof out; i++) out[i] = 0xEE;
  athena_log("before call");
  uint32_t copied = athena_call(address, payload, len, out, capacity, &amount);
  athena_log("after call");
  g_return_u32(copied);
  uint32_t shown = capacity + 8 < sizeof out ? capacity + 8 : sizeof out;
  athena_return(out, shown);
}
