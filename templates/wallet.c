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

ATHENA_EXPORT(proxy) {
  read_state();
  method_proxy();
}

ATHENA_EXPORT(deploy) {
  read_state();
  method_deploy();
}

SINGLE_OWNER_METHODS(read_state, owner)
