"""Scenario tests of the built-in templates, run through `apply_transaction` only.

Every transaction is applied to an `InMemoryHost` holding the four built-in templates, and
every receipt is checked against the receipt rules (fee = gas_used × gas_price, fee split,
a rejection changes nothing) before the scenario looks at it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blake3
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from athena_vm.address import spawn_address, template_address
from athena_vm.build import build
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.payload import Payload, selector
from athena_vm.scale import encode_bytes, encode_compact, encode_option
from athena_vm.status import StatusCode
from devnet.builtin_templates import TEMPLATES_DIR, Template, template
from devnet.keys import KeyPair, derive_test_key
from devnet.state_transition import BPS, Receipt, TransitionConfig, apply_transaction
from devnet.transaction import Transaction

WALLET = template("wallet")
MULTISIG = template("multisig")
MINT = template("token_mint")
TOKEN_WALLET = template("token_wallet")
BUILTINS = (WALLET, MULTISIG, MINT, TOKEN_WALLET)
BUILTINS_ADDRESSES = {tpl.address for tpl in BUILTINS}

GENESIS = blake3.blake3(b"test_templates genesis").digest()[:20]
OTHER_GENESIS = blake3.blake3(b"another network").digest()[:20]


def named(tag: str) -> bytes:
    """A template-less account address derived from a tag."""
    return bytes(4) + blake3.blake3(tag.encode()).digest()[:20]


RELAY = named("relay")
EXECUTOR = named("executor")
CONFIG = TransitionConfig(genesis_id=GENESIS, executor=EXECUTOR, executor_share_bps=2_000)

GAS = 300_000
PRICE = 3
FUNDS = 10**9
SLOT0 = bytes(32)


def key(index: int) -> KeyPair:
    return derive_test_key("test_templates", index)


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def spend_args(recipient: bytes, amount: int) -> bytes:
    return recipient + u64(amount)


def proxy_args(
    destination: bytes, method: bytes | None = None, args: bytes | None = None, amount: int = 0
) -> bytes:
    encoded_args = b"\x00" if args is None else b"\x01" + encode_bytes(args)
    return destination + encode_option(method) + encoded_args + u64(amount)


def multisig_blob(required: int, keys: list[KeyPair]) -> bytes:
    return bytes([required]) + encode_compact(len(keys)) + b"".join(k.public_key for k in keys)


def mint_blob(owner: KeyPair, max_supply: int, price: int) -> bytes:
    return owner.public_key + u64(max_supply) + u64(price)


def token_wallet_blob(owner: KeyPair) -> bytes:
    return owner.public_key + MINT.address + TOKEN_WALLET.address


Snapshot = dict[str, Any]


def snapshot(host: InMemoryHost) -> Snapshot:
    """Everything a transaction could change: every account in full, and the templates."""
    return {
        "accounts": {
            address: (acct.balance, acct.nonce, acct.template, acct.state, dict(acct.storage))
            for address, acct in host.accounts.items()
        },
        "templates": dict(host.templates),
    }


def slot0(host: InMemoryHost, address: bytes) -> int:
    return int.from_bytes(host.get_storage(address, SLOT0)[:8], "little")


def check_receipt(
    receipt: Receipt, tx: Transaction, config: TransitionConfig, relay: bytes | None
) -> None:
    """The rules every receipt obeys, whatever the transaction did."""
    assert receipt.tx_id == tx.id
    assert receipt.principal == tx.principal
    assert receipt.nonce == tx.nonce
    if receipt.rejected:
        assert receipt.reason
        assert (receipt.gas_used, receipt.fee, receipt.relay_fee) == (0, 0, 0)
        assert (receipt.executor_fee, receipt.burnt) == (0, 0)
        assert receipt.output == b""
        assert receipt.touched == ()
        return
    assert 0 < receipt.gas_used <= tx.gas_limit
    assert receipt.fee == receipt.gas_used * tx.gas_price
    assert receipt.relay_fee + receipt.executor_fee + receipt.burnt == receipt.fee
    # Each share is paid in full or burnt in full (no account, or a full balance).
    executor_share = receipt.fee * config.executor_share_bps // BPS
    assert receipt.executor_fee in (0, executor_share)
    assert receipt.relay_fee in (0, receipt.fee - executor_share)
    assert list(receipt.touched) == sorted(set(receipt.touched))
    assert tx.principal in receipt.touched
    if config.executor is None:
        assert receipt.executor_fee == 0
    elif receipt.executor_fee:
        assert config.executor in receipt.touched
    if relay is None:
        assert receipt.relay_fee == 0
    elif receipt.relay_fee:
        assert relay in receipt.touched
    if not receipt.ok:
        assert receipt.reason
        assert receipt.output == b""
        # A failed method is charged every unit of gas it was given.
        assert receipt.gas_used == tx.gas_limit


@dataclass
class Net:
    """A host with the built-in templates, applying signed transactions."""

    host: InMemoryHost
    config: TransitionConfig = CONFIG
    relay: bytes | None = RELAY

    @classmethod
    def new(cls, config: TransitionConfig = CONFIG, relay: bytes | None = RELAY) -> "Net":
        host = InMemoryHost()
        for tpl in BUILTINS:
            host.add_template(tpl.code)
        return cls(host, config, relay)

    def apply(self, tx: Transaction) -> Receipt:
        receipt = apply_transaction(self.host, tx.encode(), self.config, relay=self.relay)
        check_receipt(receipt, tx, self.config, self.relay)
        return receipt

    def tx(
        self,
        principal: bytes,
        method: str,
        args: bytes = b"",
        *,
        nonce: int | None = None,
        gas_limit: int = GAS,
        template: bytes | None = None,
    ) -> Transaction:
        """An unsigned transaction calling `method` of the principal's template."""
        return Transaction(
            principal,
            self.host.nonce(principal) if nonce is None else nonce,
            gas_limit,
            PRICE,
            Payload(selector(method), args),
            template,
        )

    def call(self, signer: KeyPair, principal: bytes, method: str, args: bytes = b"") -> Receipt:
        return self.apply(self.tx(principal, method, args).sign(signer, GENESIS))

    def spawn(
        self,
        tpl: Template,
        blob: bytes,
        sign: Callable[[Transaction], Transaction],
        funds: int = FUNDS,
    ) -> bytes:
        """Fund spawn_address(template, blob), self-spawn it, return its address."""
        address = spawn_address(tpl.address, blob)
        self.host.set_balance(address, self.host.get_balance(address) + funds)
        receipt = self.apply(sign(self.tx(address, "spawn", blob, template=tpl.address)))
        assert receipt.ok, receipt
        assert receipt.output == address
        return address

    def wallet(self, owner: KeyPair, funds: int = FUNDS) -> bytes:
        return self.spawn(WALLET, owner.public_key, lambda tx: tx.sign(owner, GENESIS), funds)

    def balance(self, address: bytes) -> int:
        return self.host.get_balance(address)


# --- wallets ------------------------------------------------------------------------------


def test_self_spawn_wallet() -> None:
    net = Net.new()
    owner = key(0)
    address = owner.wallet_address(WALLET.address)
    assert address == spawn_address(WALLET.address, owner.public_key)
    net.host.set_balance(address, FUNDS)
    tx = net.tx(address, "spawn", owner.public_key, template=WALLET.address).sign(owner, GENESIS)
    receipt = net.apply(tx)
    assert receipt.ok and receipt.reason is None
    assert receipt.output == address
    assert receipt.touched == tuple(sorted((address, RELAY, EXECUTOR)))
    assert receipt.burnt == 0
    assert net.host.account_template(address) == WALLET.address
    assert net.host.account_state(address) == owner.public_key
    assert net.host.nonce(address) == 1
    assert net.balance(address) == FUNDS - receipt.fee
    assert net.balance(RELAY) == receipt.relay_fee
    assert net.balance(EXECUTOR) == receipt.executor_fee
    assert receipt.executor_fee == receipt.fee * 2_000 // BPS


def test_spawn_rejections_change_nothing() -> None:
    net = Net.new()
    owner, other = key(0), key(1)
    address = owner.wallet_address(WALLET.address)

    def spawn_tx(principal: bytes, blob: bytes, signer: KeyPair) -> Transaction:
        return net.tx(principal, "spawn", blob, template=WALLET.address).sign(signer, GENESIS)

    before = snapshot(net.host)
    unfunded = net.apply(spawn_tx(address, owner.public_key, owner))
    assert unfunded.rejected and f"does not cover gas_limit × gas_price = {GAS * PRICE}" in (
        unfunded.reason or ""
    )
    assert snapshot(net.host) == before

    net.host.set_balance(address, FUNDS)
    before = snapshot(net.host)
    wrong_principal = net.apply(spawn_tx(address, other.public_key, other))
    assert wrong_principal.rejected and "is not the spawn address" in (wrong_principal.reason or "")
    # The owner key in the blob verifies: another key cannot spawn someone's wallet.
    wrong_signer = net.apply(spawn_tx(address, owner.public_key, other))
    assert wrong_signer.rejected and "invalid signature" in (wrong_signer.reason or "")
    not_spawn = net.apply(
        net.tx(address, "spend", spend_args(address, 1), template=WALLET.address).sign(
            owner, GENESIS
        )
    )
    assert not_spawn.rejected and "must call spawn" in (not_spawn.reason or "")
    unknown = net.apply(
        net.tx(address, "spawn", owner.public_key, template=named("no template")).sign(
            owner, GENESIS
        )
    )
    assert unknown.rejected and "unknown template" in (unknown.reason or "")
    missing = net.call(owner, address, "spend", spend_args(named("x"), 1))
    assert missing.rejected and "does not exist" in (missing.reason or "")
    assert snapshot(net.host) == before

    assert net.apply(spawn_tx(address, owner.public_key, owner)).ok
    before = snapshot(net.host)
    again = net.apply(spawn_tx(address, owner.public_key, owner))
    assert again.rejected and "already spawned" in (again.reason or "")
    assert snapshot(net.host) == before


def test_spend() -> None:
    net = Net.new()
    alice, bob = key(0), key(1)
    a = net.wallet(alice)
    b = net.wallet(bob)
    plain = named("plain recipient")
    a_before, b_before = net.balance(a), net.balance(b)

    receipt = net.call(alice, a, "spend", spend_args(b, 12_345))
    assert receipt.ok and receipt.output == b""
    assert receipt.touched == tuple(sorted((a, b, RELAY, EXECUTOR)))
    assert net.balance(a) == a_before - 12_345 - receipt.fee
    assert net.balance(b) == b_before + 12_345
    assert net.host.nonce(a) == 2

    # A template-less recipient is created by the transfer; no code runs there.
    receipt = net.call(alice, a, "spend", spend_args(plain, 7))
    assert receipt.ok and plain in receipt.touched
    assert net.balance(plain) == 7
    assert net.host.account_template(plain) is None
    assert net.host.nonce(a) == 3

    # Spending to oneself moves nothing but the fee.
    before = net.balance(a)
    receipt = net.call(alice, a, "spend", spend_args(a, 1_000))
    assert receipt.ok
    assert net.balance(a) == before - receipt.fee


def test_spend_more_than_balance_fails_but_charges() -> None:
    net = Net.new()
    alice = key(0)
    a = net.wallet(alice, funds=10 * GAS * PRICE)
    b = named("recipient")
    before = net.balance(a)
    for amount in (before, before - GAS * PRICE + 1, 2**64 - 1):
        nonce = net.host.nonce(a)
        start = net.balance(a)
        receipt = net.call(alice, a, "spend", spend_args(b, amount))
        assert receipt.status == StatusCode.INSUFFICIENT_BALANCE
        assert not receipt.ok and not receipt.rejected
        assert "failed" in (receipt.reason or "") and "balance" in (receipt.reason or "")
        assert receipt.gas_used == GAS and receipt.fee == GAS * PRICE
        assert net.balance(a) == start - receipt.fee
        assert net.host.nonce(a) == nonce + 1
        assert net.balance(b) == 0 and b not in net.host.accounts
        assert b not in receipt.touched
    # Exactly what is left after the maximal fee is charged can be sent.
    left = net.balance(a) - GAS * PRICE
    receipt = net.call(alice, a, "spend", spend_args(b, left))
    assert receipt.ok
    assert net.balance(b) == left
    assert net.balance(a) == GAS * PRICE - receipt.fee


def test_bad_signature_rejected_nothing_changed() -> None:
    net = Net.new()
    alice, mallory = key(0), key(1)
    a = net.wallet(alice)
    tx = net.tx(a, "spend", spend_args(named("thief"), 5))
    signed = tx.sign(alice, GENESIS)
    flipped = bytearray(signed.signature)
    flipped[10] ^= 1
    forgeries = [
        tx.sign(mallory, GENESIS),
        tx.sign(alice, OTHER_GENESIS),
        Transaction(a, tx.nonce, GAS, PRICE, tx.payload, signature=bytes(flipped)),
        Transaction(a, tx.nonce, GAS, PRICE, tx.payload, signature=bytes(64)),
        # A valid signature over different fields does not carry over.
        Transaction(a, tx.nonce, GAS, PRICE + 1, tx.payload, signature=signed.signature),
    ]
    before = snapshot(net.host)
    for forged in forgeries:
        receipt = net.apply(forged)
        assert receipt.status == StatusCode.REJECTED
        assert receipt.reason == "invalid signature: the template's verify refused it"
        assert snapshot(net.host) == before
    assert net.apply(signed).ok


def test_replayed_and_gap_nonces_rejected() -> None:
    net = Net.new()
    alice = key(0)
    a = net.wallet(alice)
    tx = net.tx(a, "spend", spend_args(named("r"), 5)).sign(alice, GENESIS)
    assert tx.nonce == 1
    assert net.apply(tx).ok
    before = snapshot(net.host)

    replay = net.apply(tx)
    assert replay.rejected and replay.reason == "stale nonce 1: next nonce is 2"
    older = net.apply(net.tx(a, "spend", spend_args(named("r"), 5), nonce=0).sign(alice, GENESIS))
    assert older.rejected and older.reason == "stale nonce 0: next nonce is 2"
    gap = net.apply(net.tx(a, "spend", spend_args(named("r"), 5), nonce=5).sign(alice, GENESIS))
    assert gap.rejected and gap.reason == "nonce gap: 5 given, next nonce is 2"
    assert snapshot(net.host) == before

    # A failed transaction uses its nonce as well: it cannot be replayed either.
    failing = net.tx(a, "spend", spend_args(named("r"), 2 * FUNDS)).sign(alice, GENESIS)
    assert not net.apply(failing).ok
    assert net.host.nonce(a) == 3
    assert net.apply(failing).reason == "stale nonce 2: next nonce is 3"


def test_gas_price_and_limit_checks() -> None:
    net = Net.new()
    alice = key(0)
    a = net.wallet(alice)
    before = snapshot(net.host)
    free = Transaction(a, 1, GAS, 0, Payload(selector("spend"), spend_args(a, 1)))
    receipt = net.apply(free.sign(alice, GENESIS))
    assert receipt.rejected and receipt.reason == "gas price must be above 0"
    huge = net.tx(a, "spend", spend_args(a, 1), gas_limit=CONFIG.max_gas_limit + 1)
    receipt = net.apply(huge.sign(alice, GENESIS))
    assert receipt.rejected and "exceeds the maximum" in (receipt.reason or "")
    # Too little gas for verify itself: rejected, not charged.
    starved = net.tx(a, "spend", spend_args(a, 1), gas_limit=50)
    receipt = net.apply(starved.sign(alice, GENESIS))
    assert receipt.rejected and (receipt.reason or "").startswith("verify failed: OUT_OF_GAS")
    assert snapshot(net.host) == before
    garbage = apply_transaction(net.host, b"\x01garbage", CONFIG, RELAY)
    assert garbage.rejected and garbage.tx_id == blake3.blake3(b"\x01garbage").digest()
    assert snapshot(net.host) == before


def test_fee_split_without_relay_or_executor_is_burnt() -> None:
    net = Net.new(TransitionConfig(genesis_id=GENESIS, executor=None), relay=None)
    alice = key(0)
    a = net.wallet(alice)
    receipt = net.call(alice, a, "spend", spend_args(named("r"), 1))
    assert receipt.ok and receipt.burnt == receipt.fee > 0
    assert receipt.relay_fee == receipt.executor_fee == 0
    assert receipt.touched == tuple(sorted((a, named("r"))))

    # With an executor but no relay, only the relay's share is burnt.
    net = Net.new(relay=None)
    a = net.wallet(alice)
    receipt = net.call(alice, a, "spend", spend_args(named("r"), 1))
    assert receipt.ok and receipt.relay_fee == 0
    assert receipt.executor_fee == receipt.fee * 2_000 // BPS > 0
    assert receipt.burnt == receipt.fee - receipt.executor_fee
    assert EXECUTOR in receipt.touched

    # A relay whose balance cannot take its share burns it rather than overflowing.
    full = named("full relay")
    net = Net.new(TransitionConfig(genesis_id=GENESIS, executor=EXECUTOR, executor_share_bps=0))
    net.relay = full
    a = net.wallet(alice)
    net.host.set_balance(full, 2**64 - 1)
    receipt = net.call(alice, a, "spend", spend_args(named("r"), 1))
    assert receipt.ok and receipt.executor_fee == receipt.relay_fee == 0
    assert receipt.burnt == receipt.fee > 0
    assert net.balance(full) == 2**64 - 1


def test_proxy_transfer_and_call() -> None:
    net = Net.new()
    alice, bob = key(0), key(1)
    a = net.wallet(alice)
    b = net.wallet(bob)
    plain = named("plain")
    b_before = net.balance(b)
    receipt = net.call(alice, a, "proxy", proxy_args(plain, amount=99))
    assert receipt.ok and net.balance(plain) == 99
    # A proxied call to another wallet's method is an ordinary call: max_spend answers.
    question = Payload(selector("spend"), spend_args(plain, 4242)).encode()
    receipt = net.call(alice, a, "proxy", proxy_args(b, selector("max_spend"), question, 10))
    assert receipt.ok and receipt.output == u64(4242)
    assert net.balance(b) == b_before + 10


def test_wallet_cannot_be_drained_through_another_accounts_proxy() -> None:
    """Found by this suite: spend and proxy once ran for any caller, so anyone could proxy
    into someone else's wallet and spend its coins. They now run only as the account's own
    transaction."""
    net = Net.new()
    alice, mallory = key(0), key(1)
    a = net.wallet(alice)
    m = net.wallet(mallory)
    victim_before = net.balance(a)
    mint_key = key(2)
    mint = net.spawn(MINT, mint_blob(mint_key, 100, 1), lambda tx: tx.sign(mint_key, GENESIS))
    ms_keys = [key(3), key(4)]
    ms = net.spawn(
        MULTISIG,
        multisig_blob(1, ms_keys),
        lambda tx: tx.sign_multisig({0: ms_keys[0]}, GENESIS),
    )
    steal = spend_args(m, 1_000)
    for victim in (a, mint, ms):
        before = net.balance(victim)
        receipt = net.call(mallory, m, "proxy", proxy_args(victim, selector("spend"), steal))
        assert receipt.status == StatusCode.FAILURE
        assert f"call to 0x{victim.hex()} failed" in (receipt.reason or "")
        assert net.balance(victim) == before
    nested = proxy_args(m, None, None, 1_000)
    receipt = net.call(mallory, m, "proxy", proxy_args(a, selector("proxy"), nested))
    assert receipt.status == StatusCode.FAILURE
    assert net.balance(a) == victim_before


def test_out_of_gas_inside_proxied_call_rolls_back() -> None:
    def setup() -> tuple[Net, KeyPair, bytes, bytes, bytes]:
        net = Net.new()
        buyer, owner = key(0), key(1)
        w = net.wallet(buyer)
        mint = net.spawn(MINT, mint_blob(owner, 1_000, 5), lambda tx: tx.sign(owner, GENESIS))
        tw = net.spawn(TOKEN_WALLET, token_wallet_blob(owner), lambda tx: tx.sign(owner, GENESIS))
        return net, buyer, w, mint, tw

    net, buyer, w, mint, tw = setup()
    args = proxy_args(mint, selector("buy"), tw, 50)
    ok = net.call(buyer, w, "proxy", args)
    assert ok.ok and ok.output == u64(10)
    assert slot0(net.host, tw) == 10

    # Lower the limit step by step until the innermost call (the token wallet's receive,
    # called by the mint, called by the wallet) is the one that runs out of gas: by then
    # the mint has stored its new supply and moved the coins, all of which must be undone.
    net, buyer, w, mint, tw = setup()
    before = snapshot(net.host)
    w_before, mint_before = net.balance(w), net.balance(mint)
    fees = 0
    inner = f"call to 0x{tw.hex()} failed"
    for limit in range(ok.gas_used - 1, ok.gas_used - 2_000, -1):
        nonce = net.host.nonce(w)
        receipt = net.apply(net.tx(w, "proxy", args, gas_limit=limit).sign(buyer, GENESIS))
        assert receipt.status == StatusCode.OUT_OF_GAS, receipt
        assert receipt.gas_used == limit and receipt.fee == limit * PRICE
        assert net.host.nonce(w) == nonce + 1
        assert mint not in receipt.touched and tw not in receipt.touched
        assert receipt.touched == tuple(sorted((w, RELAY, EXECUTOR)))
        fees += receipt.fee
        if inner in (receipt.reason or ""):
            assert f"call to 0x{mint.hex()} failed" in (receipt.reason or "")
            break
    else:
        pytest.fail("never ran out of gas inside the token wallet")
    assert net.balance(w) == w_before - fees
    assert net.balance(mint) == mint_before
    assert slot0(net.host, mint) == 0 and slot0(net.host, tw) == 0
    after = snapshot(net.host)
    for address in (mint, tw):
        assert after["accounts"][address] == before["accounts"][address]


# --- multisig -----------------------------------------------------------------------------


def multisig_setup() -> tuple[Net, list[KeyPair], bytes]:
    net = Net.new()
    keys = [key(10), key(11), key(12)]
    address = net.spawn(
        MULTISIG,
        multisig_blob(2, keys),
        lambda tx: tx.sign_multisig({0: keys[0], 2: keys[2]}, GENESIS),
    )
    assert net.host.account_template(address) == MULTISIG.address
    assert net.host.account_state(address) == multisig_blob(2, keys)
    return net, keys, address


def test_multisig_two_of_three() -> None:
    net, keys, ms = multisig_setup()
    recipient = named("ms recipient")
    tx = net.tx(ms, "spend", spend_args(recipient, 100))

    before = snapshot(net.host)
    one = net.apply(tx.sign_multisig({1: keys[1]}, GENESIS))
    assert one.rejected
    # verify reads `required` signatures: the second one is missing from the input.
    assert (one.reason or "").startswith("verify failed: INSUFFICIENT_INPUT")
    assert snapshot(net.host) == before

    two = net.apply(tx.sign_multisig({0: keys[0], 1: keys[1]}, GENESIS))
    assert two.ok and net.balance(recipient) == 100
    assert net.host.nonce(ms) == 2

    # Exactly `required` signatures: a third one, or any padding after the required ones,
    # would change the transaction id without changing its meaning, so verify refuses it.
    tx3 = net.tx(ms, "spend", spend_args(recipient, 1))
    before = snapshot(net.host)
    three = net.apply(tx3.sign_multisig({0: keys[0], 1: keys[1], 2: keys[2]}, GENESIS))
    assert three.rejected and "verify refused" in (three.reason or "")
    padded = tx3.sign_multisig({1: keys[1], 2: keys[2]}, GENESIS)
    padded = Transaction(
        ms, tx3.nonce, GAS, PRICE, tx3.payload, signature=padded.signature + bytes(65)
    )
    assert net.apply(padded).rejected
    assert snapshot(net.host) == before
    assert net.apply(tx3.sign_multisig({0: keys[0], 2: keys[2]}, GENESIS)).ok
    assert net.balance(recipient) == 101


def test_multisig_bad_signature_sets() -> None:
    net, keys, ms = multisig_setup()
    outsider = key(99)
    tx = net.tx(ms, "spend", spend_args(named("x"), 100))
    message = tx.signing_bytes(GENESIS)

    def entry(index: int, signer: KeyPair) -> bytes:
        return bytes([index]) + signer.sign(message)

    def with_signature(signature: bytes) -> Transaction:
        return Transaction(ms, tx.nonce, GAS, PRICE, tx.payload, signature=signature)

    attempts = {
        "same id twice": entry(0, keys[0]) * 2,
        "same key under two ids": entry(0, keys[0]) + entry(1, keys[0]),
        "ids decreasing": entry(1, keys[1]) + entry(0, keys[0]),
        "id out of range": entry(0, keys[0]) + entry(3, keys[1]),
        "outsider key": entry(0, keys[0]) + entry(1, outsider),
        "wrong network": tx.sign_multisig({0: keys[0], 1: keys[1]}, OTHER_GENESIS).signature,
    }
    before = snapshot(net.host)
    for name, signature in attempts.items():
        receipt = net.apply(with_signature(signature))
        assert receipt.rejected, name
        assert receipt.reason == "invalid signature: the template's verify refused it", name
        assert snapshot(net.host) == before, name
    assert net.apply(tx.sign_multisig({1: keys[1], 2: keys[2]}, GENESIS)).ok


def test_multisig_spawn_needs_required_signatures() -> None:
    net = Net.new()
    keys = [key(10), key(11), key(12)]
    blob = multisig_blob(2, keys)
    address = spawn_address(MULTISIG.address, blob)
    net.host.set_balance(address, FUNDS)
    before = snapshot(net.host)
    tx = net.tx(address, "spawn", blob, template=MULTISIG.address)
    receipt = net.apply(tx.sign_multisig({0: keys[0]}, GENESIS))
    assert receipt.rejected
    assert snapshot(net.host) == before
    # required = 0 or more than the keys is an invalid state: verify fails on it.
    for bad in (multisig_blob(0, keys), multisig_blob(4, keys)):
        bad_address = spawn_address(MULTISIG.address, bad)
        net.host.set_balance(bad_address, FUNDS)
        bad_tx = net.tx(bad_address, "spawn", bad, template=MULTISIG.address)
        signed = bad_tx.sign_multisig({0: keys[0], 1: keys[1], 2: keys[2]}, GENESIS)
        receipt = net.apply(signed)
        assert receipt.rejected
        assert receipt.reason == "verify failed: FAILURE guest halted with exit code 1"
        assert net.host.account_template(bad_address) is None


# --- tokens -------------------------------------------------------------------------------


@dataclass
class Tokens:
    net: Net
    owner: KeyPair
    mint: bytes
    buyer: KeyPair
    wallet: bytes
    alice: KeyPair
    a: bytes
    bob: KeyPair
    b: bytes


def tokens_setup(max_supply: int = 1_000, price: int = 7) -> Tokens:
    net = Net.new()
    owner, buyer, alice, bob = key(20), key(21), key(22), key(23)
    mint = net.spawn(MINT, mint_blob(owner, max_supply, price), lambda tx: tx.sign(owner, GENESIS))
    wallet = net.wallet(buyer)
    a = net.spawn(TOKEN_WALLET, token_wallet_blob(alice), lambda tx: tx.sign(alice, GENESIS))
    b = net.spawn(TOKEN_WALLET, token_wallet_blob(bob), lambda tx: tx.sign(bob, GENESIS))
    return Tokens(net, owner, mint, buyer, wallet, alice, a, bob, b)


def buy(t: Tokens, recipient: bytes, coins: int) -> Receipt:
    return t.net.call(
        t.buyer, t.wallet, "proxy", proxy_args(t.mint, selector("buy"), recipient, coins)
    )


def test_buy_tokens_through_wallet_proxy() -> None:
    t = tokens_setup(price=7)
    net = t.net
    w_before, mint_before = net.balance(t.wallet), net.balance(t.mint)
    receipt = buy(t, t.a, 75)
    assert receipt.ok
    assert receipt.output == u64(10)  # 75 // 7; the proxy returns the mint's result
    assert receipt.touched == tuple(sorted((t.wallet, t.mint, t.a, RELAY, EXECUTOR)))
    assert slot0(net.host, t.a) == 10
    assert slot0(net.host, t.mint) == 10
    # The whole payment stays with the mint, remainder included.
    assert net.balance(t.mint) == mint_before + 75
    assert net.balance(t.wallet) == w_before - 75 - receipt.fee

    balance = net.call(t.alice, t.a, "token_balance")
    assert balance.ok and balance.output == u64(10)
    supply = net.call(t.owner, t.mint, "supply")
    assert supply.ok and supply.output == u64(10)

    # Too few coins for one token: nothing minted, the coins go back.
    before = snapshot(net.host)
    receipt = buy(t, t.b, 6)
    assert receipt.status == StatusCode.FAILURE
    after = snapshot(net.host)
    for address in (t.mint, t.a, t.b):
        assert after["accounts"][address] == before["accounts"][address]


def test_buy_into_a_plain_wallet_fails() -> None:
    t = tokens_setup()
    before = t.net.balance(t.mint)
    receipt = buy(t, t.wallet, 70)
    # The plain wallet has no receive method.
    assert receipt.status == StatusCode.FAILURE
    assert slot0(t.net.host, t.mint) == 0
    assert t.net.balance(t.mint) == before


def test_send_tokens_between_token_wallets() -> None:
    t = tokens_setup(price=1)
    net = t.net
    assert buy(t, t.a, 40).ok
    receipt = net.call(t.alice, t.a, "send_token", spend_args(t.b, 15))
    assert receipt.ok
    assert t.b in receipt.touched and t.a in receipt.touched
    assert (slot0(net.host, t.a), slot0(net.host, t.b)) == (25, 15)
    assert net.call(t.bob, t.b, "send_token", spend_args(t.a, 15)).ok
    assert (slot0(net.host, t.a), slot0(net.host, t.b)) == (40, 0)

    before = snapshot(net.host)
    too_much = net.call(t.alice, t.a, "send_token", spend_args(t.b, 41))
    assert too_much.status == StatusCode.FAILURE
    to_self = net.call(t.alice, t.a, "send_token", spend_args(t.a, 5))
    assert to_self.status == StatusCode.FAILURE  # receive refuses its own account
    after = snapshot(net.host)
    for address in (t.a, t.b):
        assert after["accounts"][address][4] == before["accounts"][address][4]
    assert slot0(net.host, t.a) == 40
    # Someone else's key cannot send Alice's tokens.
    forged = net.apply(net.tx(t.a, "send_token", spend_args(t.b, 1)).sign(t.bob, GENESIS))
    assert forged.rejected and "invalid signature" in (forged.reason or "")
    # Nor can another account proxy into her send_token.
    stolen = net.call(
        t.buyer, t.wallet, "proxy", proxy_args(t.a, selector("send_token"), spend_args(t.b, 5))
    )
    assert stolen.status == StatusCode.FAILURE
    assert (slot0(net.host, t.a), slot0(net.host, t.b)) == (40, 0)


def test_forged_receive_is_refused() -> None:
    t = tokens_setup()
    net = t.net
    assert buy(t, t.a, 70).ok
    # A plain wallet proxying receive into a token wallet.
    receipt = net.call(
        t.buyer, t.wallet, "proxy", proxy_args(t.a, selector("receive"), u64(1_000_000))
    )
    assert receipt.status == StatusCode.FAILURE
    assert f"call to 0x{t.a.hex()} failed" in (receipt.reason or "")
    # A token wallet calling its own receive in a transaction.
    receipt = net.call(t.alice, t.a, "receive", u64(1_000_000))
    assert receipt.status == StatusCode.FAILURE
    assert net.host.nonce(t.a) == 2
    # The mint's own transaction is not a buy either: it has no way to call receive.
    receipt = net.call(t.owner, t.mint, "buy", t.a)
    assert receipt.status == StatusCode.FAILURE
    assert slot0(net.host, t.a) == 10 and slot0(net.host, t.mint) == 10


def test_never_mints_beyond_max_supply() -> None:
    t = tokens_setup(max_supply=30, price=5)
    net = t.net

    def supply() -> int:
        return slot0(net.host, t.mint)

    assert buy(t, t.a, 100).ok and supply() == 20
    before = snapshot(net.host)
    # 11 tokens would exceed the cap: no partial mint, the payment is refunded.
    over = buy(t, t.b, 55)
    assert over.status == StatusCode.FAILURE
    after = snapshot(net.host)
    for address in (t.mint, t.a, t.b):
        assert after["accounts"][address] == before["accounts"][address]
    assert buy(t, t.b, 54).ok  # 10 tokens: exactly up to the cap
    assert supply() == 30
    assert buy(t, t.b, 5).status == StatusCode.FAILURE
    assert supply() == 30
    assert slot0(net.host, t.a) + slot0(net.host, t.b) == 30


def test_mint_spawn_rejects_zero_price() -> None:
    net = Net.new()
    owner = key(20)
    blob = mint_blob(owner, 10, 0)
    address = spawn_address(MINT.address, blob)
    net.host.set_balance(address, FUNDS)
    receipt = net.apply(net.tx(address, "spawn", blob, template=MINT.address).sign(owner, GENESIS))
    assert receipt.status == StatusCode.FAILURE
    assert net.host.account_template(address) is None
    assert net.host.nonce(address) == 1
    assert net.balance(address) == FUNDS - receipt.fee


# --- deploy -------------------------------------------------------------------------------

VERSIONED_EXPORT = """
/* version() → u64: what sets this template apart from the built-in wallet */
ATHENA_EXPORT(version) {
  read_state();
  return_u64(2);
}
"""


@pytest.fixture(scope="module")
def versioned_wallet(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The wallet template with one more method, compiled here."""
    work = tmp_path_factory.mktemp("versioned_wallet")
    (work / "template.h").write_text((TEMPLATES_DIR / "template.h").read_text())
    source = work / "wallet_v2.c"
    source.write_text((TEMPLATES_DIR / "wallet.c").read_text() + VERSIONED_EXPORT)
    return build(source, work / "wallet_v2.elf")


def test_deploy_and_spawn_from_new_template(versioned_wallet: bytes) -> None:
    code = versioned_wallet
    new_template = template_address(code)
    assert code != WALLET.code and new_template not in BUILTINS_ADDRESSES
    net = Net.new()
    deployer, user = key(30), key(31)
    d = net.wallet(deployer)
    receipt = net.call(deployer, d, "deploy", encode_bytes(code))
    assert receipt.ok and receipt.output == new_template
    assert net.host.template_code(new_template) == code
    assert new_template in receipt.touched
    # Deploying the same code again is harmless and names the same template.
    again = net.call(deployer, d, "deploy", encode_bytes(code))
    assert again.ok and again.output == new_template

    u = net.spawn(
        Template("wallet_v2", code, new_template, {}),
        user.public_key,
        lambda tx: tx.sign(user, GENESIS),
    )
    assert u == user.wallet_address(new_template) != user.wallet_address(WALLET.address)
    assert net.host.account_template(u) == new_template
    version = net.call(user, u, "version")
    assert version.ok and version.output == u64(2)
    target = named("v2 recipient")
    assert net.call(user, u, "spend", spend_args(target, 77)).ok
    assert net.balance(target) == 77
    # The built-in wallet has no such method.
    assert net.call(deployer, d, "version").status == StatusCode.FAILURE


def test_deploy_invalid_code_fails() -> None:
    net = Net.new()
    deployer = key(30)
    d = net.wallet(deployer)
    templates = dict(net.host.templates)
    receipt = net.call(deployer, d, "deploy", encode_bytes(b"\x7fELF not really"))
    assert receipt.status == StatusCode.FAILURE
    assert "deploy of invalid code" in (receipt.reason or "")
    assert net.host.templates == templates


# --- spawn by another account ---------------------------------------------------------------


def test_spawn_by_another_account() -> None:
    """A wallet's spawn reads the called account's state, then its arguments: proxied into
    an existing wallet (or called by a wallet's own transaction) it spawns a new account of
    that wallet's template with the given state."""
    net = Net.new()
    alice, bob, carol, dave = key(40), key(41), key(42), key(43)
    a = net.wallet(alice)
    b = net.wallet(bob)
    target = carol.wallet_address(WALLET.address)
    receipt = net.call(alice, a, "proxy", proxy_args(b, selector("spawn"), carol.public_key))
    assert receipt.ok and receipt.output == target
    assert net.host.account_template(target) == WALLET.address
    assert net.host.account_state(target) == carol.public_key
    assert net.host.account_state(b) == bob.public_key
    # The principal's own wallet spawning another one directly.
    other = dave.wallet_address(WALLET.address)
    direct = net.call(alice, a, "spawn", dave.public_key)
    assert direct.ok and direct.output == other
    assert net.host.account_state(other) == dave.public_key
    assert net.host.account_state(a) == alice.public_key


# --- conservation -----------------------------------------------------------------------------

N_WALLETS = 4
CONSERVATION_KEYS = [key(50 + i) for i in range(N_WALLETS)]
CONSERVATION_WALLETS = [k.wallet_address(WALLET.address) for k in CONSERVATION_KEYS]
OUTSIDERS = [named(f"outsider {i}") for i in range(2)]
TARGETS = CONSERVATION_WALLETS + OUTSIDERS

index = st.integers(0, N_WALLETS - 1)
target = st.integers(0, len(TARGETS) - 1)
amount = st.one_of(st.integers(0, 10_000), st.integers(0, 10**12), st.integers(0, 2**64 - 1))
# Mostly enough gas; sometimes too little for the method, or even for verify.
gas_limit = st.one_of(st.just(GAS), st.just(GAS), st.integers(1, 3_000))
operation = st.one_of(
    st.tuples(st.just("spawn"), index, st.just(0), st.just(0), gas_limit),
    st.tuples(st.just("spend"), index, target, amount, gas_limit),
    st.tuples(st.just("proxy"), index, target, amount, gas_limit),
    st.tuples(st.just("proxy_spend"), index, target, amount, gas_limit),
    st.tuples(st.just("bad_sig"), index, target, amount, gas_limit),
    st.tuples(st.just("bad_nonce"), index, target, amount, gas_limit),
    st.tuples(st.just("unknown_method"), index, target, amount, gas_limit),
)
Operation = tuple[str, int, int, int, int]


def conservation_transaction(net: Net, op: Operation) -> Transaction:
    kind, i, j, value, limit = op
    signer, principal = CONSERVATION_KEYS[i], CONSERVATION_WALLETS[i]
    recipient = TARGETS[j]

    def tx(method: str, args: bytes, **kw: Any) -> Transaction:
        return net.tx(principal, method, args, gas_limit=limit, **kw)

    if kind == "spawn":
        return tx("spawn", signer.public_key, template=WALLET.address).sign(signer, GENESIS)
    if kind == "spend":
        return tx("spend", spend_args(recipient, value)).sign(signer, GENESIS)
    if kind == "proxy":
        return tx("proxy", proxy_args(recipient, amount=value)).sign(signer, GENESIS)
    if kind == "proxy_spend":
        # Into another wallet's spend: refused, whatever the amount.
        call = proxy_args(recipient, selector("spend"), spend_args(principal, value), value)
        return tx("proxy", call).sign(signer, GENESIS)
    if kind == "bad_sig":
        other = CONSERVATION_KEYS[(i + 1) % N_WALLETS]
        return tx("spend", spend_args(recipient, value)).sign(other, GENESIS)
    if kind == "bad_nonce":
        nonce = net.host.nonce(principal) + 1 + value % 3
        return tx("spend", spend_args(recipient, value), nonce=nonce).sign(signer, GENESIS)
    assert kind == "unknown_method"
    return tx("token_balance", b"").sign(signer, GENESIS)


def run_conservation(
    prespawn: list[bool], ops: list[Operation], funds: list[int], use_relay: bool
) -> None:
    config = TransitionConfig(
        genesis_id=GENESIS, executor=EXECUTOR if use_relay else None, executor_share_bps=1_500
    )
    net = Net.new(config, RELAY if use_relay else None)
    for address, balance in zip(CONSERVATION_WALLETS, funds, strict=True):
        net.host.set_balance(address, balance)
    total = sum(funds)
    burnt = 0
    spawns: list[Operation] = [("spawn", i, 0, 0, GAS) for i, yes in enumerate(prespawn) if yes]
    for op in spawns + ops:
        receipt = net.apply(conservation_transaction(net, op))
        burnt += receipt.burnt
        event(f"{op[0]}: {receipt.status.name}")
        balances = sum(acct.balance for acct in net.host.accounts.values())
        assert balances + burnt == total, (op, receipt)
        assert all(0 <= acct.balance < 2**64 for acct in net.host.accounts.values())
    if not use_relay:
        assert net.balance(RELAY) == 0 and net.balance(EXECUTOR) == 0


conservation_case = given(
    prespawn=st.lists(st.booleans(), min_size=N_WALLETS, max_size=N_WALLETS),
    ops=st.lists(operation, min_size=4, max_size=24),
    funds=st.lists(
        st.one_of(st.integers(10**7, 10**12), st.integers(0, 2 * GAS * PRICE)),
        min_size=N_WALLETS,
        max_size=N_WALLETS,
    ),
    use_relay=st.booleans(),
)


@settings(max_examples=40)
@conservation_case
def test_conservation_of_coins(
    prespawn: list[bool], ops: list[Operation], funds: list[int], use_relay: bool
) -> None:
    run_conservation(prespawn, ops, funds, use_relay)


@pytest.mark.slow
@settings(max_examples=1_000)
@conservation_case
def test_conservation_of_coins_slow(
    prespawn: list[bool], ops: list[Operation], funds: list[int], use_relay: bool
) -> None:
    run_conservation(prespawn, ops, funds, use_relay)
