/* WRITE on every file descriptor, and the input stream: HINT_LEN and HINT_READ. */
#include "guest_util.h"

static uint8_t buffer[4096];

#define WRITE_STR(fd, s) athena_write((fd), (s), sizeof(s) - 1)

/* Whole lines on fd1 and fd2, a line split over two writes, unterminated last lines. */
ATHENA_EXPORT(logs) {
  WRITE_STR(ATHENA_FD_STDOUT, "hello\n");
  WRITE_STR(ATHENA_FD_STDERR, "warn: a\nwarn: b\n");
  WRITE_STR(ATHENA_FD_STDOUT, "par");
  WRITE_STR(ATHENA_FD_STDOUT, "tial\n");
  WRITE_STR(ATHENA_FD_STDOUT, "bad \xff utf-8\n");
  WRITE_STR(ATHENA_FD_STDERR, "no newline");
  WRITE_STR(ATHENA_FD_STDOUT, "tail");
}

/* Two writes to fd3 concatenate into the return data. */
ATHENA_EXPORT(ret) {
  WRITE_STR(ATHENA_FD_OUTPUT, "abc");
  WRITE_STR(ATHENA_FD_OUTPUT, "def");
}

/* Every byte of the input stream (state first, then the input). */
ATHENA_EXPORT(drain) {
  uint32_t n = athena_input_len();
  athena_read(buffer, n);
  athena_return(buffer, n);
}

/* fd4 appends to the input stream behind what is still unread: read it back. */
ATHENA_EXPORT(feed) {
  uint8_t first = 0;
  athena_read(&first, 1);
  uint32_t before = athena_input_len();
  WRITE_STR(ATHENA_FD_INPUT, "XYZ");
  uint32_t after = athena_input_len();
  athena_read(buffer, after);
  g_return_u32(before);
  g_return_u32(after);
  g_return_u32(athena_input_len());
  athena_return(&first, 1);
  athena_return(buffer, after);
}

/* Write one byte to the file descriptor given as input. */
ATHENA_EXPORT(write_fd) {
  uint32_t fd = g_read_u32();
  athena_write(fd, "x", 1);
  WRITE_STR(ATHENA_FD_OUTPUT, "ok");
}

/* Input {k u32, bytes}: remaining before, read k bytes, remaining after, the bytes. */
ATHENA_EXPORT(hint) {
  uint32_t k = g_read_u32();
  uint32_t before = athena_input_len();
  athena_read(buffer, k);
  g_return_u32(before);
  g_return_u32(athena_input_len());
  athena_return(buffer, k);
}
