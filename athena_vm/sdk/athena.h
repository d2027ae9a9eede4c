/*
 * Athena guest SDK: syscall wrappers, exports, and SCALE helpers for C programs.
 *
 * Build with `devnet build FILE.c -o FILE.elf`. A program either defines `int main(void)`
 * (run when no selector is given; a non-zero return fails the execution) or exports
 * methods with ATHENA_EXPORT(name) { ... }, which are entered directly with sp = 0 and
 * ra = 0, so returning from them halts successfully.
 */
#ifndef ATHENA_H
#define ATHENA_H

#include <stddef.h>
#include <stdint.h>

#define ATHENA_SYS_HALT 0x00u
#define ATHENA_SYS_WRITE 0x02u
#define ATHENA_SYS_HOST_READ 0xA0u
#define ATHENA_SYS_HOST_WRITE 0xA1u
#define ATHENA_SYS_HOST_CALL 0xA2u
#define ATHENA_SYS_HOST_GETBALANCE 0xA3u
#define ATHENA_SYS_HOST_SPAWN 0xA4u
#define ATHENA_SYS_HOST_DEPLOY 0xA5u
#define ATHENA_SYS_HOST_CONTEXT 0xA6u
#define ATHENA_SYS_ED25519_VERIFY 0x00640020u
#define ATHENA_SYS_HINT_LEN 0xF0u
#define ATHENA_SYS_HINT_READ 0xF1u

#define ATHENA_FD_STDOUT 1u
#define ATHENA_FD_STDERR 2u
#define ATHENA_FD_OUTPUT 3u
#define ATHENA_FD_INPUT 4u

#define ATHENA_ADDRESS_LENGTH 24
#define ATHENA_BYTES32_LENGTH 32

typedef struct {
  uint8_t bytes[ATHENA_ADDRESS_LENGTH];
} athena_address_t;

typedef struct {
  uint64_t received;
  uint8_t caller[ATHENA_ADDRESS_LENGTH];
  uint8_t caller_template[ATHENA_ADDRESS_LENGTH];
  uint8_t callee[ATHENA_ADDRESS_LENGTH];
} athena_context_t;

_Static_assert(sizeof(athena_context_t) == 80, "athena_context_t is 80 bytes");

static inline uint32_t athena_syscall(uint32_t number, uint32_t x0, uint32_t x1, uint32_t x2,
                                      uint32_t x3, uint32_t x4, uint32_t x5) {
  register uint32_t t0 __asm__("t0") = number;
  register uint32_t a0 __asm__("a0") = x0;
  register uint32_t a1 __asm__("a1") = x1;
  register uint32_t a2 __asm__("a2") = x2;
  register uint32_t a3 __asm__("a3") = x3;
  register uint32_t a4 __asm__("a4") = x4;
  register uint32_t a5 __asm__("a5") = x5;
  __asm__ volatile("ecall"
                   : "+r"(t0)
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5)
                   : "memory");
  return t0;
}

#define ATHENA_PTR(p) ((uint32_t)(uintptr_t)(p))

__attribute__((noreturn)) static inline void athena_halt(uint32_t code) {
  athena_syscall(ATHENA_SYS_HALT, code, 0, 0, 0, 0, 0);
  __builtin_unreachable();
}

static inline void athena_write(uint32_t fd, const void *data, uint32_t len) {
  athena_syscall(ATHENA_SYS_WRITE, fd, ATHENA_PTR(data), len, 0, 0, 0);
}

static inline uint32_t athena_strlen(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  return n;
}

/* One log line on fd1 (the VM splits lines at '\n'). */
static inline void athena_log(const char *line) {
  athena_write(ATHENA_FD_STDOUT, line, athena_strlen(line));
  athena_write(ATHENA_FD_STDOUT, "\n", 1);
}

/* Append to the method's return data. */
static inline void athena_return(const void *data, uint32_t len) {
  athena_write(ATHENA_FD_OUTPUT, data, len);
}

static inline uint32_t athena_input_len(void) {
  return athena_syscall(ATHENA_SYS_HINT_LEN, 0, 0, 0, 0, 0, 0);
}

/* Read exactly `len` input bytes; too few remaining aborts with INSUFFICIENT_INPUT. */
static inline void athena_read(void *dst, uint32_t len) {
  athena_syscall(ATHENA_SYS_HINT_READ, ATHENA_PTR(dst), len, 0, 0, 0, 0);
}

/* `key_value` holds the key on entry and the callee's stored value on return. */
static inline void athena_storage_read(uint8_t key_value[32]) {
  athena_syscall(ATHENA_SYS_HOST_READ, ATHENA_PTR(key_value), 0, 0, 0, 0, 0);
}

static inline uint32_t athena_storage_write(const uint8_t key[32], const uint8_t value[32]) {
  return athena_syscall(ATHENA_SYS_HOST_WRITE, ATHENA_PTR(key), ATHENA_PTR(value), 0, 0, 0, 0);
}

/* Call `address` with a SCALE Payload and `amount` coins; returns bytes copied to `out`. */
static inline uint32_t athena_call(const uint8_t address[24], const void *payload, uint32_t len,
                                   void *out, uint32_t out_capacity, const uint64_t *amount) {
  return athena_syscall(ATHENA_SYS_HOST_CALL, ATHENA_PTR(address), ATHENA_PTR(payload), len,
                        ATHENA_PTR(out), out_capacity, ATHENA_PTR(amount));
}

static inline uint64_t athena_balance(void) {
  uint64_t balance = 0;
  athena_syscall(ATHENA_SYS_HOST_GETBALANCE, ATHENA_PTR(&balance), 0, 0, 0, 0, 0);
  return balance;
}

static inline void athena_spawn(const void *blob, uint32_t len, uint8_t address[24]) {
  athena_syscall(ATHENA_SYS_HOST_SPAWN, ATHENA_PTR(blob), len, ATHENA_PTR(address), 0, 0, 0);
}

static inline void athena_deploy(const void *code, uint32_t len, uint8_t address[24]) {
  athena_syscall(ATHENA_SYS_HOST_DEPLOY, ATHENA_PTR(code), len, ATHENA_PTR(address), 0, 0, 0);
}

static inline void athena_context(athena_context_t *ctx) {
  athena_syscall(ATHENA_SYS_HOST_CONTEXT, ATHENA_PTR(ctx), 0, 0, 0, 0, 0);
}

static inline int athena_ed25519_verify(const void *msg, uint32_t len, const uint8_t pubkey[32],
                                        const uint8_t sig[64]) {
  return (int)athena_syscall(ATHENA_SYS_ED25519_VERIFY, ATHENA_PTR(msg), len, ATHENA_PTR(pubkey),
                             ATHENA_PTR(sig), 0, 0);
}

/* --- SCALE ------------------------------------------------------------------------------ */

/* Read a SCALE compact integer of up to 64 bits from the input stream. */
static inline uint64_t athena_read_compact(void) {
  uint8_t first = 0;
  athena_read(&first, 1);
  switch (first & 3u) {
    case 0:
      return first >> 2;
    case 1: {
      uint8_t b = 0;
      athena_read(&b, 1);
      return ((uint32_t)first | (uint32_t)b << 8) >> 2;
    }
    case 2: {
      uint8_t b[3] = {0};
      athena_read(b, 3);
      return ((uint32_t)first | (uint32_t)b[0] << 8 | (uint32_t)b[1] << 16 |
              (uint32_t)b[2] << 24) >> 2;
    }
    default: {
      uint32_t n = (first >> 2) + 4u;
      if (n > 8) athena_halt(2);
      uint8_t b[8] = {0};
      athena_read(b, n);
      uint64_t v = 0;
      for (uint32_t i = 0; i < n; i++) v |= (uint64_t)b[i] << (8 * i);
      return v;
    }
  }
}

static inline uint64_t athena_read_u64(void) {
  uint8_t b[8];
  athena_read(b, 8);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
  return v;
}

/* Encode `n` as a SCALE compact integer into `out` (at most 9 bytes); returns its length. */
static inline uint32_t athena_encode_compact(uint64_t n, uint8_t *out) {
  if (n < (1u << 6)) {
    out[0] = (uint8_t)(n << 2);
    return 1;
  }
  if (n < (1u << 14)) {
    uint32_t v = (uint32_t)(n << 2) | 1u;
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    return 2;
  }
  if (n < (1u << 30)) {
    uint32_t v = (uint32_t)(n << 2) | 2u;
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(v >> (8 * i));
    return 4;
  }
  uint32_t len = 4;
  while (len < 8 && (n >> (8 * len)) != 0) len++;
  out[0] = (uint8_t)(((len - 4) << 2) | 3u);
  for (uint32_t i = 0; i < len; i++) out[1 + i] = (uint8_t)(n >> (8 * i));
  return 1 + len;
}

static inline void athena_encode_u64(uint64_t v, uint8_t out[8]) {
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Build a SCALE Payload{selector: Some(sel), input: Vec<u8>} for athena_call into `out`;
 * returns its length. `out` needs 5 + 9 + input_len bytes.
 */
static inline uint32_t athena_payload(const uint8_t selector[4], const void *input,
                                      uint32_t input_len, uint8_t *out) {
  uint32_t n = 0;
  out[n++] = 1;
  for (int i = 0; i < 4; i++) out[n++] = selector[i];
  n += athena_encode_compact(input_len, out + n);
  const uint8_t *src = (const uint8_t *)input;
  for (uint32_t i = 0; i < input_len; i++) out[n++] = src[i];
  return n;
}

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* --- exports ---------------------------------------------------------------------------- */

struct athena_export_record {
  uint8_t version;
  void (*export_ptr)(void);
  const char *symbol_ptr;
} __attribute__((packed));

/*
 * ATHENA_EXPORT(spend) { ... } defines `void athexp_spend(void)` and emits its 9-byte record
 * {version 0, export_ptr, symbol_ptr} into `.note.athena_export`. Selector =
 * blake3("athexp_spend")[0:4].
 */
#define ATHENA_EXPORT(name)                                                                  \
  void athexp_##name(void);                                                                  \
  static const char athena_export_name_##name[] = "athexp_" #name;                           \
  __attribute__((used, section(".note.athena_export"))) static const struct                  \
      athena_export_record athena_export_record_##name = {0, athexp_##name,                  \
                                                          athena_export_name_##name};        \
  __attribute__((used, noinline)) void athexp_##name(void)

#endif /* ATHENA_H */
