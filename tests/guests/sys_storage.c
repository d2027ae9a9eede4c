/* Storage, balance, context, spawn and deploy; also the callee of the HOST_CALL tests. */
#include "guest_util.h"

static uint8_t buffer[65536];

/* Input {key [32], value [32]}: HOST_WRITE, return its storage status. */
ATHENA_EXPORT(store) {
  uint8_t key[32], value[32];
  athena_read(key, 32);
  athena_read(value, 32);
  g_return_u32(athena_storage_write(key, value));
}

/* Input {key [32]}: HOST_READ, return the 32-byte value. */
ATHENA_EXPORT(load) {
  uint8_t kv[32];
  athena_read(kv, 32);
  athena_storage_read(kv);
  athena_return(kv, 32);
}

ATHENA_EXPORT(balance) { g_return_u64(athena_balance()); }

/* The 80-byte context record as the VM wrote it. */
ATHENA_EXPORT(context) {
  athena_context_t ctx;
  athena_context(&ctx);
  athena_return(&ctx, sizeof ctx);
}

/* HOST_CONTEXT at a pointer `offset` (input u32) bytes past a 4-aligned buffer. */
ATHENA_EXPORT(context_at) {
  static uint32_t words[32];
  uint32_t offset = g_read_u32();
  athena_syscall(ATHENA_SYS_HOST_CONTEXT, ATHENA_PTR(words) + offset, 0, 0, 0, 0, 0);
  athena_return((const uint8_t *)words + offset, 80);
}

/* Spawn an account of this template with the rest of the input as its state. */
ATHENA_EXPORT(spawn) {
  uint32_t n = athena_input_len();
  athena_read(buffer, n);
  uint8_t address[24];
  athena_spawn(buffer, n, address);
  athena_return(address, 24);
}

/* Deploy the rest of the input as a template. */
ATHENA_EXPORT(deploy) {
  uint32_t n = athena_input_len();
  athena_read(buffer, n);
  uint8_t address[24];
  athena_deploy(buffer, n, address);
  athena_return(address, 24);
}

/*
 * Input {mode u8, key [32], value [32]}: store, log, then fail. Mode 0 exits with code 1
 * (FAILURE), 1 over-reads the input (INSUFFICIENT_INPUT), 2 writes to fd 9
 * (INVALID_SYSCALL_ARGUMENT).
 */
ATHENA_EXPORT(store_then_fail) {
  uint8_t mode = 0, key[32], value[32];
  athena_read(&mode, 1);
  athena_read(key, 32);
  athena_read(value, 32);
  athena_storage_write(key, value);
  athena_log("stored");
  if (mode == 1) athena_read(buffer, athena_input_len() + 1);
  if (mode == 2) athena_write(9, "x", 1);
  athena_halt(1);
}

/* Input {n u32}: n rounds of a loop, then return n. */
ATHENA_EXPORT(burn) {
  volatile uint32_t n = g_read_u32();
  volatile uint32_t i = 0;
  while (i < n) i = i + 1;
  g_return_u32(n);
}

ATHENA_EXPORT(spin) {
  volatile uint32_t i = 0;
  for (;;) i = i + 1;
}

/* Input {n u32}: return n bytes 0, 1, 2, ... (mod 256). */
ATHENA_EXPORT(blob) {
  uint32_t n = g_read_u32();
  for (uint32_t i = 0; i < n; i++) buffer[i] = (uint8_t)i;
  athena_return(buffer, n);
}
