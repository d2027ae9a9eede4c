/*
 * Token mint template. State {owner [32], max_supply u64, price u64}; tokens minted so far
 * in storage slot 0. buy(recipient) mints received / price tokens to a token wallet.
 */
#include "token.h"

static uint8_t owner[32];
static uint64_t max_supply, price;

static void read_state(void) {
  athena_read(owner, 32);
  max_supply = athena_read_u64();
  price = athena_read_u64();
}

/* spawn({owner [32], max_supply u64, price u64}) → address */
ATHENA_EXPORT(spawn) {
  read_state(); /* the calling account's state (for a self-spawn, the new one) */
  read_state(); /* the arguments: the new mint's state */
  if (price == 0) fail();
  uint8_t blob[48];
  memcpy(blob, owner, 32);
  athena_encode_u64(max_supply, blob + 32);
  athena_encode_u64(price, blob + 40);
  uint8_t address[24];
  athena_spawn(blob, 48, address);
  athena_return(address, 24);
}

/* buy(recipient [24]) → tokens minted; never beyond max_supply. */
ATHENA_EXPORT(buy) {
  read_state();
  uint8_t recipient[24];
  athena_read(recipient, 24);
  athena_context_t ctx;
  athena_context(&ctx);
  if (price == 0) fail();
  uint64_t tokens = ctx.received / price;
  uint64_t minted = load_slot0();
  if (tokens == 0 || tokens > max_supply - minted) fail();
  store_slot0(minted + tokens);
  call_receive(recipient, tokens);
  return_u64(tokens);
}

/* supply() → tokens minted so far */
ATHENA_EXPORT(supply) {
  read_state();
  return_u64(load_slot0());
}

SINGLE_OWNER_METHODS(read_state, owner)
