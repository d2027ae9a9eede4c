/* Wallet template: one ed25519 owner. State {owner [32]}. */
#include "template.h"

static uint8_t owner[32];

static void read_state(void) { athena_read(owner, 32); }

/*
 * spawn(owner [32]) → address. Like every method it reads the account's state first: for a
 * self-spawn that is the new state itself, for a call on an existing wallet it is that
 * wallet's, and either way the arguments follow.
 */
ATHENA_EXPORT(spawn) {
  read_state();
  uint8_t key[32], address[24];
  athena_read(key, 32);
  athena_spawn(key, 32, address);
  athena_return(address, 24);
}

ATHENA_EXPORT(spend) {
  read_state();
  method_spend();
}

ATHENA_EXPORT(proxy) {
  read_state();
  method_proxy();
}

ATHENA_EXPORT(deploy) {
  read_state();
  method_deploy();
}

ATHENA_EXPORT(max_spend) {
  read_state();
  method_max_spend();
}

/* verify(tx Vec<u8>, sig [64]) → bool */
ATHENA_EXPORT(verify) {
  read_state();
  uint32_t len = read_tx();
  uint8_t sig[64];
  athena_read(sig, 64);
  return_bool(athena_input_len() == 0 && athena_ed25519_verify(tx_buffer, len, owner, sig));
}
