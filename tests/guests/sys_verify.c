/* ED25519_VERIFY: input {msg_len u32, msg, pubkey [32], sig [64]}; returns t0 as u32. */
#include "guest_util.h"

static uint8_t message[1024];

ATHENA_EXPORT(verify) {
  uint32_t len = g_read_u32();
  uint8_t pubkey[32], sig[64];
  athena_read(message, len);
  athena_read(pubkey, 32);
  athena_read(sig, 64);
  g_return_u32((uint32_t)athena_ed25519_verify(message, len, pubkey, sig));
}
