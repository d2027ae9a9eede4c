/* A method that calls itself through HOST_CALL. */
#include "guest_util.h"

/*
 * Input {selector [4], n u32}. Stores n+1 under key n, then, if n > 0, calls itself with
 * n-1 and returns the callee's result plus one: a successful run returns n.
 */
ATHENA_EXPORT(down) {
  uint8_t sel[4];
  athena_read(sel, 4);
  uint32_t n = g_read_u32();
  uint8_t key[32] = {0}, value[32] = {0};
  g_put_u32(key, n);
  g_put_u32(value, n + 1);
  athena_storage_write(key, value);
  uint32_t result = 0;
  if (n > 0) {
    athena_context_t ctx;
    athena_context(&ctx);
    uint8_t args[8], call[32], reply[4] = {0};
    for (int i = 0; i < 4; i++) args[i] = sel[i];
    g_put_u32(args + 4, n - 1);
    uint32_t len = athena_payload(sel, args, sizeof args, call);
    uint64_t amount = 0;
    athena_call(ctx.callee, call, len, reply, 4, &amount);
    result = ((uint32_t)reply[0] | (uint32_t)reply[1] << 8 | (uint32_t)reply[2] << 16 |
              (uint32_t)reply[3] << 24) + 1;
  }
  g_return_u32(result);
}

/* Input {selector [4]} naming this method: calls itself with the same input, forever. */
ATHENA_EXPORT(forever) {
  uint8_t sel[4];
  athena_read(sel, 4);
  athena_context_t ctx;
  athena_context(&ctx);
  uint8_t call[16];
  uint32_t len = athena_payload(sel, sel, 4, call);
  uint64_t amount = 0;
  athena_call(ctx.callee, call, len, 0, 0, &amount);
}
