"""The relay's wallet shortcut against the VM: it only ever admits what the VM admits, with
the same cost, and it switches itself off when an audit finds otherwise."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from athena_vm.payload import Payload, selector
from devnet import methods
from devnet.builtin_templates import template
from devnet.errors import TransactionRejected
from devnet.keys import derive_test_key
from devnet.state_transition import TransitionConfig
from devnet.transaction import Transaction, decode_transaction
from relay.admission import Principal, check
from relay.pool import AccountView, PoolTx
from relay.shortcut import AUDIT_EVERY, WalletShortcut, wallet_max_spend

GENESIS = bytes(range(20))
CONFIG = TransitionConfig(GENESIS)
WALLET = template("wallet")
MULTISIG = template("multisig")
KEY = derive_test_key("relay-shortcut", 0)
OTHER = derive_test_key("relay-shortcut", 1)
ADDRESS = KEY.wallet_address(WALLET.address)
TEMPLATES = {WALLET.address: WALLET.code, MULTISIG.address: MULTISIG.code}
OWNER = Principal(AccountView(0, 2**63), WALLET.address, KEY.public_key, True)

addresses = st.binary(min_size=24, max_size=24)
amounts = st.integers(min_value=0, max_value=2**64 - 1)
payloads = st.one_of(
    st.builds(methods.spend, addresses, amounts),
    st.builds(
        methods.proxy,
        addresses,
        st.sampled_from([None, "spend", "receive"]),
        st.one_of(st.none(), st.binary(max_size=40)),
        amounts,
    ),
    st.builds(
        Payload,
        st.one_of(st.none(), st.binary(min_size=4, max_size=4), st.just(selector("spend"))),
        st.binary(max_size=64),
    ),
)
#: Valid cases repeated so that about half the examples reach the shortcut's admission.
signatures = st.sampled_from(["valid"] * 6 + ["other key", "flipped", "extra byte", "zero"])


def sign(tx: Transaction, how: str) -> Transaction:
    good = tx.sign(KEY, GENESIS)
    if how == "valid":
        return good
    if how == "other key":
        return tx.sign(OTHER, GENESIS)
    if how == "flipped":
        return Transaction(
            **{**vars_of(good), "signature": bytes([good.signature[0] ^ 1]) + good.signature[1:]}
        )
    if how == "extra byte":
        return Transaction(**{**vars_of(good), "signature": good.signature + b"\x00"})
    return Transaction(**{**vars_of(good), "signature": bytes(64)})


def vars_of(tx: Transaction) -> dict[str, Any]:
    fields = ("principal", "nonce", "gas_limit", "gas_price", "payload", "template", "signature")
    return {name: getattr(tx, name) for name in fields}


def vm(raw: bytes, principal: Principal) -> PoolTx | str:
    try:
        return check(raw, ADDRESS, principal, TEMPLATES, CONFIG)
    except TransactionRejected as exc:
        return exc.reason


def taught(unsigned: Transaction) -> WalletShortcut:
    """A shortcut that has seen the VM admit a validly signed transaction of this length."""
    shortcut = WalletShortcut()
    good = unsigned.sign(KEY, GENESIS)
    if not isinstance(vm(good.encode(), OWNER), str):
        check(good.encode(), ADDRESS, OWNER, TEMPLATES, CONFIG, shortcut, good)
    return shortcut


@settings(max_examples=300, deadline=None)
@given(
    payload=payloads,
    nonce=st.integers(min_value=0, max_value=2**40),
    gas_limit=st.sampled_from([1, 543, 544, 545, 10_000, 10_000, 100_000_000, 100_000_001]),
    gas_price=st.sampled_from([0, 1, 1, 7, 2**40]),
    how=signatures,
    state=st.sampled_from([KEY.public_key] * 4 + [OTHER.public_key, KEY.public_key + b"\x00"]),
    template_address=st.sampled_from([WALLET.address] * 4 + [MULTISIG.address, None]),
)
def test_the_shortcut_admits_only_what_the_vm_admits_at_the_same_cost(
    payload: Payload,
    nonce: int,
    gas_limit: int,
    gas_price: int,
    how: str,
    state: bytes,
    template_address: bytes | None,
) -> None:
    unsigned = Transaction(ADDRESS, nonce, gas_limit, gas_price, payload)
    tx = sign(unsigned, how)
    raw = tx.encode()
    principal = Principal(AccountView(0, 2**63), template_address, state, True)
    shortcut = taught(unsigned)
    fast = shortcut.admit(decode_transaction(raw), template_address, state, CONFIG)
    if fast is not None:
        assert fast == vm(raw, principal)


def test_a_valid_spend_takes_the_shortcut_once_the_vm_taught_it_the_gas() -> None:
    shortcut = WalletShortcut()
    first = Transaction(ADDRESS, 0, 10_000, 1, methods.spend(ADDRESS, 5)).sign(KEY, GENESIS)
    assert shortcut.admit(first, WALLET.address, KEY.public_key, CONFIG) is None  # not learned
    check(first.encode(), ADDRESS, OWNER, TEMPLATES, CONFIG, shortcut, first)
    second = Transaction(ADDRESS, 1, 10_000, 1, methods.spend(ADDRESS, 9)).sign(KEY, GENESIS)
    fast = shortcut.admit(second, WALLET.address, KEY.public_key, CONFIG)
    assert fast is not None and fast.cost == second.max_fee + 9
    assert fast == vm(second.encode(), OWNER)
    forged = Transaction(ADDRESS, 1, 10_000, 1, methods.spend(ADDRESS, 9)).sign(OTHER, GENESIS)
    assert shortcut.admit(forged, WALLET.address, KEY.public_key, CONFIG) is None


def test_max_spend_matches_the_wallet_for_spend_proxy_and_the_rest() -> None:
    def tx(payload: Payload) -> Transaction:
        return Transaction(ADDRESS, 0, 10_000, 1, payload).sign(KEY, GENESIS)

    for payload in (
        methods.spend(ADDRESS, 2**64 - 1),
        methods.proxy(ADDRESS, "spend", b"\x01" * 9, 77),
        methods.proxy(ADDRESS, None, None, 0),
        methods.deploy(b"\x00" * 10),
        Payload(None, b""),
        Payload(selector("spend"), b"\x00" * 31),
    ):
        signed = tx(payload)
        result = vm(signed.encode(), OWNER)
        assert isinstance(result, PoolTx)
        assert result.cost == min(2**64 - 1, signed.max_fee + wallet_max_spend(signed))


def test_an_audit_that_disagrees_switches_the_shortcut_off() -> None:
    shortcut = WalletShortcut()
    tx = Transaction(ADDRESS, 0, 300, 1, methods.spend(ADDRESS, 5)).sign(KEY, GENESIS)
    shortcut.verify_gas[len(tx.signing_bytes(GENESIS))] = 1  # wrong: verify needs more
    shortcut.taken = AUDIT_EVERY - 1  # the next admission is audited
    with pytest.raises(TransactionRejected, match="OUT_OF_GAS"):
        check(tx.encode(), ADDRESS, OWNER, TEMPLATES, CONFIG, shortcut, tx)
    assert not shortcut.enabled
    assert shortcut.admit(tx, WALLET.address, KEY.public_key, CONFIG) is None


@settings(max_examples=100, deadline=None)
@given(
    payload=payloads,
    nonce=st.integers(min_value=0, max_value=2**64 - 1),
    gas_limit=st.integers(min_value=544, max_value=100_000_000),
    gas_price=st.integers(min_value=1, max_value=2**30),
)
def test_valid_wallet_transactions_take_the_shortcut_with_the_vms_cost(
    payload: Payload, nonce: int, gas_limit: int, gas_price: int
) -> None:
    unsigned = Transaction(ADDRESS, nonce, gas_limit, gas_price, payload)
    tx = unsigned.sign(KEY, GENESIS)
    fast = taught(unsigned).admit(tx, WALLET.address, KEY.public_key, CONFIG)
    assert fast is not None
    assert fast == vm(tx.encode(), OWNER)
