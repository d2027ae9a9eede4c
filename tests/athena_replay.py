"""Independent re-execution of certified blocks, for checking the executor against it.

`replay_in_memory` runs a chain of blocks through the state transition on a plain
`InMemoryHost` (no LevelDB, no overlay) and computes each layer's receipts, receipts root
and state root from scratch; `replay_leveldb` runs the same blocks through the executor's
own `apply_layer` into a fresh LevelDB, optionally reopening the database between layers as
a restarted executor would. Both are what the executor process must agree with.

`counter_wallet` compiles a small program for deploy tests: the wallet template plus a
counter in storage slot 0.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel

from athena_vm.build import build
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.payload import Payload
from devnet import methods
from devnet.block import Block, ordered_transactions
from devnet.builtin_templates import TEMPLATES_DIR, template
from devnet.bundle import Bundle
from devnet.config import DevnetConfig
from devnet.execution.layer import ExecutorStore, LayerRecord, apply_layer
from devnet.execution.ledger import (
    apply_genesis,
    encode_receipt,
    merkle_root,
    receipt_record,
    transition_config,
)
from devnet.execution.state import (
    ACCOUNT_PREFIX,
    STORAGE_PREFIX,
    TEMPLATE_PREFIX,
    encode_account,
    open_state,
)
from devnet.keys import KeyPair
from devnet.state_transition import apply_transaction
from devnet.state_tree import EMPTY_ROOT, MemoryNodeStore, StateTree, tree_key
from devnet.transaction import Transaction

COUNTER_EXPORTS = """
static void counter_store(uint64_t n) {
  uint8_t key[32] = {0}, value[32] = {0};
  athena_encode_u64(n, value);
  athena_storage_write(key, value);
}

static uint64_t counter_load(void) {
  uint8_t slot[32] = {0};
  athena_storage_read(slot);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | slot[i];
  return n;
}

/* bump() -> u64: slot 0 += 1, returns the new count (callable by anyone, through proxy) */
ATHENA_EXPORT(bump) {
  read_state();
  uint64_t n = counter_load() + 1;
  counter_store(n);
  return_u64(n);
}

/* bump_then_fail(): writes slot 0, then fails: the write (and any coins sent) roll back */
ATHENA_EXPORT(bump_then_fail) {
  read_state();
  counter_store(counter_load() + 100);
  fail();
}

/* clear(): slot 0 back to zero, which deletes it from the state */
ATHENA_EXPORT(clear) {
  read_state();
  counter_store(0);
}
"""

SLOT0 = bytes(32)
WALLET = template("wallet").address
GAS = 1_000_000


def counter_wallet(work: Path) -> bytes:
    """The wallet template plus bump / bump_then_fail / clear, compiled in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "template.h").write_text((TEMPLATES_DIR / "template.h").read_text())
    source = work / "counter_wallet.c"
    source.write_text((TEMPLATES_DIR / "wallet.c").read_text() + COUNTER_EXPORTS)
    return build(source, work / "counter_wallet.elf")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


class Wallets:
    """Signed Athena transactions of the config's test keys, with nonces kept here.

    A wallet is named by its key's role (`user-0`, or any other name for a new one) and
    its template (the built-in wallet unless given).
    """

    def __init__(self, config: DevnetConfig) -> None:
        self.config = config
        self.nonces: dict[bytes, int] = {}

    def key(self, role: str) -> KeyPair:
        return self.config.network.test_key(role)

    def address(self, role: str, tpl: bytes = WALLET) -> bytes:
        return self.key(role).wallet_address(tpl)

    def tx(
        self,
        role: str,
        payload: Payload,
        *,
        tpl: bytes = WALLET,
        spawn: bool = False,
        signer: str | None = None,
        gas: int = GAS,
        price: int = 1,
    ) -> bytes:
        """The next transaction of `role`'s wallet. Signed by `signer` if given (a forgery:
        rejected, so its nonce is not used up)."""
        principal = self.address(role, tpl)
        nonce = self.nonces.get(principal, 0)
        tx = Transaction(principal, nonce, gas, price, payload, tpl if spawn else None)
        if signer is None:
            self.nonces[principal] = nonce + 1
        signed = tx.sign(self.key(signer or role), self.config.network.genesis_id)
        return signed.encode()

    def spend(self, role: str, recipient: bytes, amount: int, **kw: Any) -> bytes:
        return self.tx(role, methods.spend(recipient, amount), **kw)

    def spawn(self, role: str, tpl: bytes = WALLET) -> bytes:
        return self.tx(role, methods.spawn_wallet(self.key(role).public_key), tpl=tpl, spawn=True)

    def bundle(self, submitter: str, nonce: int, txs: tuple[bytes, ...]) -> Bundle:
        """A bundle of `txs` paid by `submitter`'s L1 account; its wallet gets the relay share."""
        key = self.key(submitter)
        bundle = Bundle(key.public_key, nonce, self.address(submitter), txs)
        return bundle.sign(key, self.config.network.genesis_id)


def state_entries(host: InMemoryHost) -> dict[bytes, bytes]:
    """The host's whole state as the executor's LevelDB records (key -> value)."""
    out: dict[bytes, bytes] = {}
    for address, acct in host.accounts.items():
        out[ACCOUNT_PREFIX + address] = encode_account(acct)
        for slot, value in acct.storage.items():
            out[STORAGE_PREFIX + address + slot] = value
    for address, code in host.templates.items():
        out[TEMPLATE_PREFIX + address] = code
    return out


def memory_root(host: InMemoryHost) -> bytes:
    """The state root of the host's whole state, built from nothing."""
    entries = state_entries(host)
    if not entries:
        return EMPTY_ROOT
    tree = StateTree(MemoryNodeStore())
    return tree.update(EMPTY_ROOT, {tree_key(k): v for k, v in entries.items()})


@dataclass
class ReplayedLayer:
    layer: int
    block_id: bytes
    receipts: list[dict[str, Any]]
    receipts_root: bytes
    root: bytes

    @property
    def tx_ids(self) -> list[bytes]:
        return [r["tx_id"] for r in self.receipts]


def replay_in_memory(
    config: DevnetConfig, blocks: Iterable[Block]
) -> tuple[InMemoryHost, list[ReplayedLayer]]:
    """Execute blocks 0, 1, ... on an in-memory host with the executor's genesis."""
    host = InMemoryHost()
    tconfig = transition_config(config)
    layers: list[ReplayedLayer] = []
    for expected, block in enumerate(blocks):
        assert block.layer == expected, "blocks must be consecutive from layer 0"
        if block.layer == 0:
            apply_genesis(host, config)
        receipts: list[dict[str, Any]] = []
        for item in ordered_transactions(block, config.l1.block_gas_limit):
            receipt = apply_transaction(host, item.raw, tconfig, relay=item.beneficiary)
            receipts.append(receipt_record(receipt, block.layer, len(receipts)))
        host.journal.clear()
        receipts_root = merkle_root([encode_receipt(r) for r in receipts])
        layers.append(
            ReplayedLayer(block.layer, block.id, receipts, receipts_root, memory_root(host))
        )
    return host, layers


Between = Callable[[InMemoryHost, int], None]


def replay_leveldb(
    path: Path,
    config: DevnetConfig,
    blocks: Iterable[Block],
    *,
    reopen: bool = False,
    between: Between | None = None,
) -> list[LayerRecord]:
    """Apply blocks with the executor's `apply_layer` into a fresh LevelDB at `path`.

    `reopen` closes and reopens the database (and the state overlay) before every layer,
    as a restarted executor does; `between(host, layer)` runs after each commit, on the
    live overlay (e.g. an estimate that must leave no trace).
    """
    records: list[LayerRecord] = []
    db = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
    try:
        store, host = ExecutorStore(db), open_state(db)
        for block in blocks:
            if reopen:
                db.close()
                db = plyvel.DB(str(path))
                store, host = ExecutorStore(db), open_state(db)
            record, _ = apply_layer(store, host, block, config)
            assert store.applied() == block.layer and store.layer(block.layer) == record
            records.append(record)
            if between is not None:
                between(host, block.layer)
    finally:
        db.close()
    return records
