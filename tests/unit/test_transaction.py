"""The Athena transaction: layout, signing, id, strict decoding, wallet selectors."""

from dataclasses import replace

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from athena_vm.payload import Payload, selector
from athena_vm.scale import ScaleError, encode_compact
from devnet.errors import DevnetError, TransactionError, TransactionTooLargeError
from devnet.keys import derive_test_key
from devnet.transaction import (
    MAX_TX_SIZE,
    Transaction,
    _decode_strict,
    _decode_usual,
    decode_payload_bytes,
    decode_transaction,
    encode_payload,
)

GENESIS = bytes(range(20))
OTHER_GENESIS = bytes(20)
PRINCIPAL = bytes(4) + b"\xaa" * 20
TEMPLATE = bytes(4) + b"\xbb" * 20
KEY = derive_test_key("devnet", 0)

WALLET_SELECTORS = {
    "spawn": "03f53f20",
    "spend": "fb178430",
    "proxy": "d422606a",
    "deploy": "e24cc333",
    "max_spend": "06ad3760",
    "verify": "9d24bdc2",
    "receive": "d0145464",
}


@pytest.mark.parametrize(("name", "hex_"), WALLET_SELECTORS.items())
def test_wallet_selectors(name: str, hex_: str) -> None:
    assert selector(name).hex() == hex_
    assert selector("athexp_" + name).hex() == hex_


def spend_tx(**changes: object) -> Transaction:
    fields: dict[str, object] = {
        "principal": PRINCIPAL,
        "nonce": 7,
        "gas_limit": 100_000,
        "gas_price": 2,
        "payload": Payload(selector("spend"), bytes(24) + (5).to_bytes(8, "little")),
    }
    fields.update(changes)
    return Transaction(**fields)  # type: ignore[arg-type]


def test_layout() -> None:
    tx = spend_tx(template=TEMPLATE)
    payload = b"\x01" + selector("spend") + b"\x80" + bytes(24) + b"\x05" + bytes(7)
    expected = (
        b"\x04"  # compact 1
        + PRINCIPAL
        + b"\x01"
        + TEMPLATE
        + b"\x1c"  # compact 7
        + bytes.fromhex("821a0600")  # compact 100000
        + b"\x08"  # compact 2
        + encode_compact(len(payload))
        + payload
        + bytes(64)
    )
    assert tx.encode() == expected
    assert tx.unsigned_bytes() == expected[:-64]
    assert decode_transaction(expected) == tx
    assert spend_tx().encode()[25] == 0  # no template: Option tag 0 right after the principal


def test_sign_and_verify() -> None:
    tx = spend_tx()
    signed = tx.sign(KEY, GENESIS)
    assert signed.signing_bytes(GENESIS) == GENESIS + tx.unsigned_bytes()
    assert signed.verify_signature(KEY.public_key, GENESIS)
    assert not signed.verify_signature(KEY.public_key, OTHER_GENESIS)  # no cross-network replay
    assert not signed.verify_signature(derive_test_key("devnet", 1).public_key, GENESIS)
    assert not tx.verify_signature(KEY.public_key, GENESIS)
    tampered = spend_tx(nonce=8, signature=signed.signature)
    assert not tampered.verify_signature(KEY.public_key, GENESIS)
    decoded = decode_transaction(signed.encode())
    assert decoded == signed and decoded.verify_signature(KEY.public_key, GENESIS)
    with pytest.raises(TransactionError, match="genesis id"):
        tx.signing_bytes(bytes(32))


def test_id_is_blake3_of_signed_bytes() -> None:
    signed = spend_tx().sign(KEY, GENESIS)
    assert signed.id == blake3.blake3(signed.encode()).digest()
    assert signed.id != spend_tx().id  # the signature is part of the id
    assert signed.id == decode_transaction(signed.encode()).id


def test_fee_and_spawn_helpers() -> None:
    assert spend_tx().max_fee == 200_000
    assert spend_tx(template=TEMPLATE).is_spawn and not spend_tx().is_spawn


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"principal": bytes(23)}, r"\[u8; 24\]"),
        ({"template": bytes(25)}, r"\[u8; 24\]"),
        ({"nonce": -1}, "out of range"),
        ({"gas_limit": 2**64}, "out of range"),
        ({"signature": bytes(63)}, "signature of 63 bytes"),
        ({"signature": bytes(2049)}, "signature of 2049 bytes"),
        ({"payload": Payload(b"abc")}, "selector"),
    ],
)
def test_invalid_fields(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TransactionError, match=message):
        spend_tx(**changes)


def test_decode_rejections() -> None:
    good = spend_tx().sign(KEY, GENESIS).encode()
    with pytest.raises(TransactionError, match="version 2"):
        decode_transaction(b"\x08" + good[1:])
    # The signature is whatever follows the payload: an extra byte lengthens it.
    assert decode_transaction(good + b"\x00").signature == good[-64:] + b"\x00"
    with pytest.raises(TransactionError, match="signature of 63 bytes"):
        decode_transaction(good[:-1])
    with pytest.raises(TransactionError, match="malformed"):
        decode_transaction(good[:-1])
    with pytest.raises(TransactionError, match="Option tag"):
        decode_transaction(good[:25] + b"\x02" + good[26:])
    with pytest.raises(TransactionError, match="non-canonical"):
        decode_transaction(good[:26] + b"\x01\x00" + good[27:])  # nonce 0, two-byte form
    # A payload Vec<u8> whose content is not a Payload (bad Option tag, then trailing bytes).
    raw = spend_tx().unsigned_bytes()
    start = raw.index(b"\x01" + selector("spend")) - 1
    for bad_payload in (b"\x05", b"\x00\x00\x00"):
        forged = raw[:start] + encode_compact(len(bad_payload)) + bad_payload + bytes(64)
        with pytest.raises(TransactionError, match="not a Payload"):
            decode_transaction(forged)


def test_size_limit() -> None:
    big = spend_tx(payload=Payload(None, bytes(MAX_TX_SIZE))).encode()
    with pytest.raises(TransactionTooLargeError) as info:
        decode_transaction(big)
    assert info.value.size == len(big) and info.value.limit == MAX_TX_SIZE
    assert "exceeds" in str(info.value)
    assert decode_transaction(big, max_size=len(big)).payload.input == bytes(MAX_TX_SIZE)
    assert issubclass(TransactionTooLargeError, TransactionError)
    assert issubclass(TransactionError, DevnetError)


def test_payload_helpers() -> None:
    payload = Payload(selector("spend"), b"args")
    assert decode_payload_bytes(encode_payload(payload)) == payload


u64s = st.integers(0, 2**64 - 1)
transactions = st.builds(
    Transaction,
    principal=st.binary(min_size=24, max_size=24),
    nonce=u64s,
    gas_limit=u64s,
    gas_price=u64s,
    payload=st.builds(
        Payload, st.none() | st.binary(min_size=4, max_size=4), st.binary(max_size=100)
    ),
    template=st.none() | st.binary(min_size=24, max_size=24),
    signature=st.binary(min_size=64, max_size=200),
)


def reencoded(tx: Transaction) -> bytes:
    """The encoding of a fresh copy: a decoded transaction caches the bytes it came from,
    so this is what shows that decoding is canonical."""
    return replace(tx).encode()


@given(tx=transactions)
def test_round_trip(tx: Transaction) -> None:
    encoded = tx.encode()
    decoded = decode_transaction(encoded)
    assert decoded == tx
    assert decoded.encode() == encoded == reencoded(decoded) and decoded.id == tx.id


@given(tx=transactions)
def test_decoded_transaction_caches_what_encoding_would_compute(tx: Transaction) -> None:
    decoded = decode_transaction(tx.encode())
    fresh = replace(decoded)
    assert decoded.unsigned_bytes() == fresh.unsigned_bytes() == tx.unsigned_bytes()
    assert decoded.payload_bytes == fresh.payload_bytes == encode_payload(tx.payload)
    assert decoded.id == fresh.id == blake3.blake3(tx.encode()).digest()
    assert decoded.signing_bytes(GENESIS) == fresh.signing_bytes(GENESIS)
    assert hash(decoded) == hash(tx)


@given(tx=transactions, data=st.data())
def test_mutations_raise_only_transaction_error(tx: Transaction, data: st.DataObject) -> None:
    encoded = bytearray(tx.encode())
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        try:
            decoded = decode_transaction(candidate)
        except TransactionError:
            continue
        assert decoded.encode() == candidate == reencoded(decoded)


@given(raw=st.binary(max_size=400))
def test_random_bytes_raise_only_transaction_error(raw: bytes) -> None:
    try:
        decoded = decode_transaction(b"\x04" + raw)
    except TransactionError:
        return
    assert decoded.encode() == b"\x04" + raw == reencoded(decoded)


@given(raw=st.binary(max_size=200))
def test_random_payload_bytes_raise_only_scale_error(raw: bytes) -> None:
    try:
        payload = decode_payload_bytes(raw)
    except ScaleError:
        return
    assert encode_payload(payload) == raw


def strict_reading(data: bytes) -> tuple[object, ...] | str:
    """What the `Decoder` path makes of `data`: the fields and bytes, or the error."""
    try:
        tx = _decode_strict(data)
    except TransactionError as exc:
        return str(exc)
    return (tx, tx.unsigned_bytes(), tx.encode(), tx.payload_bytes, tx.id)


def reading(data: bytes) -> tuple[object, ...] | str:
    try:
        tx = decode_transaction(data)
    except TransactionError as exc:
        return str(exc)
    return (tx, tx.unsigned_bytes(), tx.encode(), tx.payload_bytes, tx.id)


wide = st.builds(
    Transaction,
    principal=st.binary(min_size=24, max_size=24),
    nonce=st.integers(0, 2**64 - 1) | st.integers(0, 2**31),
    gas_limit=st.integers(0, 2**64 - 1) | st.integers(0, 2**31),
    gas_price=st.integers(0, 2**64 - 1) | st.integers(0, 70),
    payload=st.builds(
        Payload, st.none() | st.binary(min_size=4, max_size=4), st.binary(max_size=20_000)
    ),
    template=st.none() | st.binary(min_size=24, max_size=24),
    signature=st.binary(min_size=64, max_size=2048),
)


@given(tx=wide, data=st.data())
def test_the_usual_shape_reads_as_the_decoder_does(tx: Transaction, data: st.DataObject) -> None:
    encoded = bytearray(tx.encode())
    assert reading(bytes(encoded)) == strict_reading(bytes(encoded))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut]), bytes(encoded) + bytes(2000)):
        assert reading(candidate) == strict_reading(candidate)


def test_the_usual_shape_is_what_real_transactions_have() -> None:
    signed = spend_tx(template=TEMPLATE).sign(KEY, GENESIS).encode()
    assert _decode_usual(signed) == _decode_strict(signed)
    big_nonce = spend_tx(nonce=2**40).sign(KEY, GENESIS).encode()
    assert _decode_usual(big_nonce) is None  # the big-integer form: the Decoder reads it
    assert decode_transaction(big_nonce).nonce == 2**40
