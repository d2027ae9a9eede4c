/*
 * counter: an account that counts, written against the SDK alone (athena.h).
 *
 * State {owner [32]}. The owner spawns it (a self-spawn, paid from coins sent to its
 * address first, signed with the owner's key); anyone may then call `increment` through
 * their wallet's proxy, and `get` returns the count. The count lives in storage slot 0 as a
 * little-endian u64.
 *
 *   devnet build examples/programs/counter.c -o counter.elf
 */
#include "athena.h"

#define MAX_TX_BYTES (128u * 1024u)

static uint8_t owner[32];
static uint8_t tx[MAX_TX_BYTES];

static void read_state(void) { athena_read(owner, 32); }

static uint64_t load_count(void) {
  uint8_t slot[32] = {0};
  athena_storage_read(slot); /* key in, value out */
  uint64_t count = 0;
  for (int i = 7; i >= 0; i--) count = (count << 8) | slot[i];
  return count;
}

static void store_count(uint64_t count) {
  uint8_t key[32] = {0}, value[32] = {0};
  athena_encode_u64(count, value);
  athena_storage_write(key, value);
}

static void return_count(uint64_t count) {
  uint8_t out[8];
  athena_encode_u64(count, out);
  athena_return(out, 8);
}

/* spawn(owner [32]) → the new account's address. */
ATHENA_EXPORT(spawn) {
  read_state();
  uint8_t key[32], address[24];
  athena_read(key, 32);
  athena_spawn(key, 32, address);
  athena_return(address, 24);
}

/* verify(tx Vec<u8>, signature [64]) → bool: signed by the owner, nothing after it. */
ATHENA_EXPORT(verify) {
  read_state();
  uint64_t len = athena_read_compact();
  if (len > MAX_TX_BYTES) athena_halt(1);
  athena_read(tx, (uint32_t)len);
  uint8_t signature[64];
  athena_read(signature, 64);
  uint8_t ok = athena_input_len() == 0 && athena_ed25519_verify(tx, (uint32_t)len, owner, signature);
  athena_return(&ok, 1);
}

/* increment() → the new count. */
ATHENA_EXPORT(increment) {
  read_state();
  uint64_t count = load_count() + 1;
  store_count(count);
  athena_log("counter incremented");
  return_count(count);
}

/* get() → the count. */
ATHENA_EXPORT(get) {
  read_state();
  return_count(load_count());
}
