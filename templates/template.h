/*
 * Pieces every built-in template shares: SCALE reading, results, and the wallet-style
 * methods (spend, proxy, deploy, max_spend). Each template reads its own state first.
 */
#ifndef TEMPLATE_H
#define TEMPLATE_H

#include "athena.h"

#define MAX_TX_BYTES (128u * 1024u)
#define MAX_CODE_BYTES (1024u * 1024u)
#define MAX_CALL_OUTPUT (64u * 1024u)

static const uint8_t SELECTOR_SPEND[4] = {0xfb, 0x17, 0x84, 0x30};
static const uint8_t SELECTOR_PROXY[4] = {0xd4, 0x22, 0x60, 0x6a};
static const uint8_t SELECTOR_RECEIVE[4] = {0xd0, 0x14, 0x54, 0x64};

/* Large buffers live in .bss: unwritten memory costs nothing until touched. */
static uint8_t tx_buffer[MAX_TX_BYTES];
static uint8_t code_buffer[MAX_CODE_BYTES];
static uint8_t call_buffer[MAX_CALL_OUTPUT];
static uint8_t payload_buffer[MAX_CALL_OUTPUT + 16];

__attribute__((noreturn)) static void fail(void) { athena_halt(1); }

static uint32_t read_length(uint32_t cap) {
  uint64_t n = athena_read_compact();
  if (n > cap) fail();
  return (uint32_t)n;
}

static int read_option(void) {
  uint8_t flag = 0;
  athena_read(&flag, 1);
  if (flag > 1) fail();
  return flag;
}

static void return_u64(uint64_t v) {
  uint8_t out[8];
  athena_encode_u64(v, out);
  athena_return(out, 8);
}

static void return_bool(int ok) {
  uint8_t b = ok ? 1 : 0;
  athena_return(&b, 1);
}

static void transfer(const uint8_t to[24], uint64_t amount) {
  athena_call(to, 0, 0, 0, 0, &amount);
}

static int same_selector(const uint8_t a[4], const uint8_t b[4]) {
  return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/*
 * Methods that move the account's coins or tokens run only as the account's own
 * transaction (the state transition calls the principal with caller = callee), never
 * through another account's HOST_CALL: otherwise any account could proxy into them.
 */
static void require_self(void) {
  athena_context_t ctx;
  athena_context(&ctx);
  if (memcmp(ctx.caller, ctx.callee, 24) != 0) fail();
}

/* spend({recipient [24], amount u64}) */
static void method_spend(void) {
  require_self();
  uint8_t recipient[24];
  athena_read(recipient, 24);
  transfer(recipient, athena_read_u64());
}

/* proxy({destination [24], method Option<[4]>, args Option<Vec<u8>>, amount u64}) → output */
static void method_proxy(void) {
  require_self();
  uint8_t destination[24], method[4];
  athena_read(destination, 24);
  int has_method = read_option();
  if (has_method) athena_read(method, 4);
  uint32_t args_len = 0;
  int has_args = read_option();
  if (has_args) {
    args_len = read_length(MAX_CALL_OUTPUT);
    athena_read(tx_buffer, args_len);
  }
  uint64_t amount = athena_read_u64();
  uint32_t payload_len = 0;
  if (has_method || has_args) {
    /* Payload{selector: method, input: args} */
    payload_buffer[payload_len++] = (uint8_t)has_method;
    if (has_method)
      for (int i = 0; i < 4; i++) payload_buffer[payload_len++] = method[i];
    payload_len += athena_encode_compact(args_len, payload_buffer + payload_len);
    memcpy(payload_buffer + payload_len, tx_buffer, args_len);
    payload_len += args_len;
  }
  uint32_t got = athena_call(destination, payload_buffer, payload_len, call_buffer,
                             MAX_CALL_OUTPUT, &amount);
  athena_return(call_buffer, got);
}

/* deploy(code Vec<u8>) → template address */
static void method_deploy(void) {
  uint32_t len = read_length(MAX_CODE_BYTES);
  athena_read(code_buffer, len);
  uint8_t address[24];
  athena_deploy(code_buffer, len, address);
  athena_return(address, 24);
}

/*
 * max_spend(Payload of the transaction) → u64: the most coins the call can move, which
 * the relay checks against the balance before admitting it.
 */
static void method_max_spend(void) {
  uint8_t chosen[4] = {0};
  if (!read_option()) {
    return_u64(0);
    return;
  }
  athena_read(chosen, 4);
  uint32_t len = read_length(MAX_TX_BYTES);
  if (same_selector(chosen, SELECTOR_SPEND) && len >= 32) {
    uint8_t recipient[24];
    athena_read(recipient, 24);
    return_u64(athena_read_u64());
  } else if (same_selector(chosen, SELECTOR_PROXY) && len >= 24 + 1 + 1 + 8) {
    athena_read(tx_buffer, len);
    uint64_t amount = 0;
    for (int i = 7; i >= 0; i--) amount = amount << 8 | tx_buffer[len - 8 + (uint32_t)i];
    return_u64(amount);
  } else {
    return_u64(0);
  }
}

/* Read `tx Vec<u8>` into tx_buffer; returns its length. */
static uint32_t read_tx(void) {
  uint32_t len = read_length(MAX_TX_BYTES);
  athena_read(tx_buffer, len);
  return len;
}

/* verify(tx Vec<u8>, sig [64]) → bool: exactly one signature by `owner`, nothing after it. */
static void method_verify_owner(const uint8_t owner[32]) {
  uint32_t len = read_tx();
  uint8_t sig[64];
  athena_read(sig, 64);
  return_bool(athena_input_len() == 0 && athena_ed25519_verify(tx_buffer, len, owner, sig));
}

/* The spend, max_spend and verify exports of a template owned by one ed25519 key. */
#define SINGLE_OWNER_METHODS(read_state, owner) \
  ATHENA_EXPORT(spend) {                        \
    read_state();                               \
    method_spend();                             \
  }                                             \
  ATHENA_EXPORT(max_spend) {                    \
    read_state();                               \
    method_max_spend();                         \
  }                                             \
  ATHENA_EXPORT(verify) {                       \
    read_state();                               \
    method_verify_owner(owner);                 \
  }

#endif
