"""`apply_decoded` (the executor's path: the block rule has decoded the transaction) gives
exactly the receipts and state changes of `apply_transaction` on the same bytes."""

from dataclasses import replace

import blake3

from athena_vm.in_memory_host import InMemoryHost
from athena_vm.payload import Payload, selector
from devnet.builtin_templates import template
from devnet.keys import derive_test_key
from devnet.state_transition import Receipt, TransitionConfig, apply_decoded, apply_transaction
from devnet.transaction import Transaction, decode_transaction

WALLET = template("wallet")
GENESIS = blake3.blake3(b"test_state_transition").digest()[:20]
RELAY = bytes(4) + b"\x11" * 20
CONFIG = TransitionConfig(genesis_id=GENESIS, executor=bytes(4) + b"\x22" * 20)
OWNER = derive_test_key("test_state_transition", 0)
STRANGER = derive_test_key("test_state_transition", 1)


def funded_host() -> tuple[InMemoryHost, bytes]:
    host = InMemoryHost()
    host.add_template(WALLET.code)
    address = OWNER.wallet_address(WALLET.address)
    acct = host.account(address)
    acct.template, acct.state = WALLET.address, OWNER.public_key
    host.set_balance(address, 10**9)
    host.journal.clear()
    return host, address


def spend(principal: bytes, nonce: int, amount: int, gas_limit: int = 20_000) -> Transaction:
    args = RELAY + amount.to_bytes(8, "little")
    return Transaction(principal, nonce, gas_limit, 2, Payload(selector("spend"), args))


def state(host: InMemoryHost) -> dict[bytes, tuple[int, int, bytes | None, bytes]]:
    return {a: (x.balance, x.nonce, x.template, x.state) for a, x in host.accounts.items()}


def test_apply_decoded_matches_apply_transaction() -> None:
    by_bytes, address = funded_host()
    by_object, _ = funded_host()
    txs = [
        spend(address, 0, 5).sign(OWNER, GENESIS),  # executes
        spend(address, 0, 5).sign(OWNER, GENESIS),  # stale nonce
        spend(address, 1, 7).sign(STRANGER, GENESIS),  # the template's verify refuses it
        spend(address, 1, 10**12).sign(OWNER, GENESIS),  # the method fails: fee, nonce + 1
        spend(address, 3, 1).sign(OWNER, GENESIS),  # nonce gap
        spend(bytes(24), 0, 1).sign(OWNER, GENESIS),  # no such principal
        spend(address, 2, 1, gas_limit=10**12).sign(OWNER, GENESIS),  # max fee over balance
    ]
    receipts: list[tuple[Receipt, Receipt]] = []
    for tx in txs:
        raw = tx.encode()
        expected = apply_transaction(by_bytes, raw, CONFIG, relay=RELAY)
        got = apply_decoded(by_object, decode_transaction(raw), CONFIG, relay=RELAY)
        receipts.append((expected, got))
        assert got == expected
        assert state(by_object) == state(by_bytes)
    statuses = [expected.status.name for expected, _ in receipts]
    assert statuses[0] == "SUCCESS" and statuses[3] not in ("SUCCESS", "REJECTED")
    assert statuses.count("REJECTED") == 5


def test_apply_decoded_enforces_the_configured_size_limit() -> None:
    host, address = funded_host()
    tx = spend(address, 0, 5).sign(OWNER, GENESIS)
    raw = tx.encode()
    tight = replace(CONFIG, max_tx_size=len(raw) - 1)
    expected = apply_transaction(host, raw, tight, relay=RELAY)
    assert expected.rejected and "exceeds" in (expected.reason or "")
    assert apply_decoded(host, decode_transaction(raw), tight, relay=RELAY) == expected
    assert host.nonce(address) == 0 and not host.journal
