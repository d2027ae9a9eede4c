/*
 * Token wallet template. State {owner [32], mint_template [24], wallet_template [24]};
 * the token balance in storage slot 0. receive() accepts tokens only from an account of
 * the mint template or of the token-wallet template, and never from itself.
 */
#include "token.h"

static uint8_t owner[32], mint_template[24], wallet_template[24];

static void read_state(void) {
  athena_read(owner, 32);
  athena_read(mint_template, 24);
  athena_read(wallet_template, 24);
}

static int same_address(const uint8_t a[24], const uint8_t b[24]) {
  return memcmp(a, b, 24) == 0;
}

/* spawn({owner [32], mint_template [24], wallet_template [24]}) → address */
ATHENA_EXPORT(spawn) {
  read_state(); /* the calling account's state (for a self-spawn, the new one) */
  read_state(); /* the arguments: the new token wallet's state */
  uint8_t blob[80];
  memcpy(blob, owner, 32);
  memcpy(blob + 32, mint_template, 24);
  memcpy(blob + 56, wallet_template, 24);
  uint8_t address[24];
  athena_spawn(blob, 80, address);
  athena_return(address, 24);
}

/* receive(amount u64) */
ATHENA_EXPORT(receive) {
  read_state();
  uint64_t amount = athena_read_u64();
  athena_context_t ctx;
  athena_context(&ctx);
  if (same_address(ctx.caller, ctx.callee)) fail();
  if (!same_address(ctx.caller_template, mint_template) &&
      !same_address(ctx.caller_template, wallet_template))
    fail();
  uint64_t balance = load_slot0();
  if (balance + amount < balance) fail();
  store_slot0(balance + amount);
}

/* send_token({recipient [24], amount u64}) */
ATHENA_EXPORT(send_token) {
  read_state();
  require_self();
  uint8_t recipient[24];
  athena_read(recipient, 24);
  uint64_t amount = athena_read_u64();
  uint64_t balance = load_slot0();
  if (amount > balance) fail();
  store_slot0(balance - amount);
  call_receive(recipient, amount);
}

/* token_balance() → u64 */
ATHENA_EXPORT(token_balance) {
  read_state();
  return_u64(load_slot0());
}

SINGLE_OWNER_METHODS(read_state, owner)
