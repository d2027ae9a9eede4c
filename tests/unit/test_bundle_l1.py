"""Bundles, L1 transactions and blocks: encodings, signatures, limits, hostile bytes."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from athena_vm.scale import encode_compact
from devnet.block import Block, BlockError, decode_block
from devnet.bundle import (
    DEFAULT_MAX_BUNDLE_BYTES,
    Bundle,
    BundleError,
    check_bundle,
    decode_bundle,
)
from devnet.keys import derive_test_key
from devnet.l1 import (
    MAX_L1_TX_BYTES,
    Claim,
    L1Error,
    L1Tx,
    Transfer,
    decode_l1_tx,
    l1_address,
)
from devnet.methods import spend
from devnet.transaction import Transaction

GENESIS = bytes(range(20))
OTHER_GENESIS = bytes(20)
RELAY = derive_test_key("bundle-l1/relay", 0)
USER = derive_test_key("bundle-l1/user", 0)
PRINCIPAL = bytes(4) + b"\xaa" * 20
BENEFICIARY = bytes(4) + b"\xbb" * 20


def athena_tx(nonce: int = 0) -> bytes:
    tx = Transaction(PRINCIPAL, nonce, 1000, 1, spend(bytes(24), 5))
    return tx.sign(USER, GENESIS).encode()


def bundle(nonce: int = 0, txs: tuple[bytes, ...] | None = None) -> Bundle:
    raw = txs if txs is not None else (athena_tx(0), athena_tx(1))
    return Bundle(RELAY.public_key, nonce, BENEFICIARY, raw).sign(RELAY, GENESIS)


def transfer(nonce: int = 0, amount: int = 10) -> L1Tx:
    return L1Tx(USER.public_key, nonce, Transfer(BENEFICIARY, amount)).sign(USER, GENESIS)


def claim(nonce: int = 0) -> L1Tx:
    body = Claim(7, b"\x01" * 20, b"\x02" * 32, b"\x03" * 32)
    return L1Tx(USER.public_key, nonce, body).sign(USER, GENESIS)


# --- bundles -------------------------------------------------------------------------


def test_bundle_round_trip_and_layout() -> None:
    b = bundle(nonce=300)
    decoded = decode_bundle(b.encoded)
    assert decoded == b
    assert decoded.encoded == b.encoded
    assert decoded.id == b.id
    assert b.encoded.startswith(RELAY.public_key + encode_compact(300) + BENEFICIARY)
    assert b.encoded.endswith(b.signature)
    assert b.payer == l1_address(RELAY.public_key)
    assert [t.encode() for t in b.transactions()] == list(b.txs)


def test_bundle_signature() -> None:
    b = bundle()
    assert b.verify(GENESIS)
    check_bundle(b, GENESIS)
    assert not b.verify(OTHER_GENESIS)
    with pytest.raises(BundleError, match="signature"):
        check_bundle(b, OTHER_GENESIS)
    # Any signed field changed breaks the signature.
    for changed in (
        replace(b, nonce=1),
        replace(b, beneficiary=bytes(24)),
        replace(b, txs=b.txs[:1]),
        replace(b, submitter=USER.public_key),
        replace(b, signature=bytes(64)),
    ):
        assert not changed.verify(GENESIS)
    # Signed by someone other than the submitter.
    forged = replace(b.sign(USER, GENESIS), submitter=RELAY.public_key)
    assert not forged.verify(GENESIS)


def test_bundle_must_carry_valid_transactions() -> None:
    with pytest.raises(BundleError, match="empty"):
        check_bundle(bundle(txs=()), GENESIS)
    with pytest.raises(BundleError, match="malformed transaction"):
        check_bundle(bundle(txs=(athena_tx(), b"\x04garbage")), GENESIS)


def test_bundle_fee_is_encoded_bytes_times_price() -> None:
    b = bundle()
    assert b.fee(0) == 0
    assert b.fee(1) == len(b.encoded) == len(decode_bundle(b.encoded).encoded)
    assert b.fee(7) == 7 * len(b.encoded)
    bigger = bundle(txs=(athena_tx(0), athena_tx(1), athena_tx(2)))
    assert bigger.fee(3) - b.fee(3) == 3 * (len(bigger.encoded) - len(b.encoded))


def test_bundle_size_limit() -> None:
    b = bundle()
    size = len(b.encoded)
    assert decode_bundle(b.encoded, max_bytes=size) == b
    with pytest.raises(BundleError, match="exceeds"):
        decode_bundle(b.encoded, max_bytes=size - 1)
    with pytest.raises(BundleError, match="exceeds"):
        decode_bundle(bytes(DEFAULT_MAX_BUNDLE_BYTES + 1))


def test_bundle_decoding_is_strict() -> None:
    encoded = bundle().encoded
    with pytest.raises(BundleError):
        decode_bundle(encoded + b"\x00")
    with pytest.raises(BundleError):
        decode_bundle(encoded[:-1])
    with pytest.raises(BundleError):
        decode_bundle(b"")


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_hostile_bundle_bytes_raise_only_bundle_error(data: bytes) -> None:
    try:
        decoded = decode_bundle(data)
    except BundleError:
        return
    assert decoded.encoded == data
    try:
        check_bundle(decoded, GENESIS)
    except BundleError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_bundles_raise_only_bundle_error(data: st.DataObject) -> None:
    encoded = bytearray(bundle().encoded)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    mutated = bytes(encoded[:cut])
    try:
        decoded = decode_bundle(mutated)
        check_bundle(decoded, GENESIS)
    except BundleError:
        return
    assert decoded.encoded == mutated


@settings(max_examples=100)
@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=24, max_size=24),
    st.lists(st.binary(max_size=50), max_size=5),
)
def test_bundle_round_trip_property(nonce: int, beneficiary: bytes, txs: list[bytes]) -> None:
    b = Bundle(RELAY.public_key, nonce, beneficiary, tuple(txs), bytes(range(64)))
    assert decode_bundle(b.encoded) == b


# --- L1 transactions -----------------------------------------------------------------


@pytest.mark.parametrize("tx", [transfer(), claim(3), transfer(2**64 - 1, 2**64 - 1)])
def test_l1_round_trip(tx: L1Tx) -> None:
    decoded = decode_l1_tx(tx.encode())
    assert decoded == tx
    assert decoded.id == tx.id
    assert decoded.address == l1_address(USER.public_key)
    assert tx.encode().endswith(tx.signature)


def test_l1_signature() -> None:
    for tx in (transfer(), claim()):
        assert tx.verify(GENESIS)
        assert not tx.verify(OTHER_GENESIS)
        assert not replace(tx, nonce=tx.nonce + 1).verify(GENESIS)
        assert not replace(tx, signature=bytes(64)).verify(GENESIS)
    assert not replace(transfer(), body=Transfer(BENEFICIARY, 11)).verify(GENESIS)
    # The domain separates kinds of objects: an L1 signature is not a bundle signature.
    b = Bundle(USER.public_key, 0, BENEFICIARY, (athena_tx(),))
    assert not replace(b, signature=transfer().signature).verify(GENESIS)


def test_l1_kinds_and_limits() -> None:
    encoded = transfer().encode()
    kind_at = 32 + 1  # sender, compact nonce 0
    assert encoded[kind_at] == 0
    assert claim().encode()[kind_at] == 1
    with pytest.raises(L1Error, match="kind"):
        decode_l1_tx(encoded[:kind_at] + b"\x02" + encoded[kind_at + 1 :])
    with pytest.raises(L1Error):
        decode_l1_tx(encoded + b"\x00")
    with pytest.raises(L1Error):
        decode_l1_tx(encoded[:-1])
    with pytest.raises(L1Error, match="exceeds"):
        decode_l1_tx(bytes(MAX_L1_TX_BYTES + 1))


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), st.binary(min_size=32, max_size=200)))
def test_hostile_l1_bytes_raise_only_l1_error(data: bytes) -> None:
    try:
        tx = decode_l1_tx(data)
    except L1Error:
        return
    assert tx.encode() == data
    tx.verify(GENESIS)


@settings(max_examples=300)
@given(st.sampled_from([transfer(), claim()]), st.data())
def test_mutated_l1_txs_raise_only_l1_error(tx: L1Tx, data: st.DataObject) -> None:
    encoded = bytearray(tx.encode())
    at = data.draw(st.integers(0, len(encoded) - 1))
    encoded[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    try:
        decoded = decode_l1_tx(bytes(encoded[:cut]))
    except L1Error:
        return
    assert decoded.encode() == bytes(encoded[:cut])


# --- blocks --------------------------------------------------------------------------


def test_block_round_trip() -> None:
    bundles = tuple(sorted([bundle(0), bundle(1)], key=lambda b: b.id))
    block = Block(5, bundles, (transfer(), claim(1)), b"certificate bytes")
    decoded = decode_block(block.encoded)
    assert decoded == block
    assert decoded.id == block.id
    assert len(block.id) == 20
    assert decode_block(Block(0).encoded) == Block(0)


def test_block_bundles_must_be_sorted_and_unique() -> None:
    low, high = sorted([bundle(0), bundle(1)], key=lambda b: b.id)
    with pytest.raises(BlockError, match="sorted"):
        decode_block(Block(1, (high, low)).encoded)
    with pytest.raises(BlockError, match="unique"):
        decode_block(Block(1, (low, low)).encoded)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_hostile_block_bytes_raise_only_block_error(data: bytes) -> None:
    try:
        block = decode_block(data)
    except BlockError:
        return
    assert block.encoded == data
