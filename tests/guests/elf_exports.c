/* The wallet's method names as exports, each returning its own name; main says "main". */
#include "athena.h"

#define NAMED(name)                          \
  ATHENA_EXPORT(name) {                      \
    athena_return(#name, sizeof(#name) - 1); \
  }

NAMED(spawn)
NAMED(spend)
NAMED(proxy)
NAMED(deploy)
NAMED(max_spend)
NAMED(verify)
NAMED(receive)

int main(void) {
  athena_return("main", 4);
  return 0;
}
