/* Multisig template: k of n ed25519 keys. State {required u8, keys Vec<[32]>}. */
#include "template.h"

#define MAX_KEYS 10

static uint8_t required;
static uint32_t key_count;
static uint8_t keys[MAX_KEYS][32];

static void read_state(void) {
  athena_read(&required, 1);
  key_count = read_length(MAX_KEYS);
  if (required == 0 || required > key_count) fail();
  athena_read(keys, 32 * key_count);
}

/* spawn({required u8, keys Vec<[32]>}) → address */
ATHENA_EXPORT(spawn) {
  read_state(); /* the calling account's state (for a self-spawn, the new one) */
  read_state(); /* the arguments: the new multisig's state */
  uint8_t blob[1 + 1 + 32 * MAX_KEYS];
  uint32_t n = 0;
  blob[n++] = required;
  n += athena_encode_compact(key_count, blob + n);
  memcpy(blob + n, keys, 32 * key_count);
  n += 32 * key_count;
  uint8_t address[24];
  athena_spawn(blob, n, address);
  athena_return(address, 24);
}

ATHENA_EXPORT(spend) {
  read_state();
  method_spend();
}

ATHENA_EXPORT(deploy) {
  read_state();
  method_deploy();
}

ATHENA_EXPORT(max_spend) {
  read_state();
  method_max_spend();
}

/* verify(tx Vec<u8>, `required` × {id u8, sig [64]} with strictly increasing ids) → bool */
ATHENA_EXPORT(verify) {
  read_state();
  uint32_t len = read_tx();
  int ok = 1, last = -1;
  for (uint32_t i = 0; i < required; i++) {
    uint8_t id = 0, sig[64];
    athena_read(&id, 1);
    athena_read(sig, 64);
    if ((int)id <= last || id >= key_count) {
      ok = 0;
      break;
    }
    last = id;
    if (!athena_ed25519_verify(tx_buffer, len, keys[id], sig)) {
      ok = 0;
      break;
    }
  }
  /* Exactly `required` signatures: extra bytes would change the id, not the meaning. */
  return_bool(ok && athena_input_len() == 0);
}
