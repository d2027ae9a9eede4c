"""The Athena transaction: its SCALE form, signing, id and strict decoding.

Wire form (DESIGN.md §5), fields in this order:

    compact version (= 1)
    principal       [u8; 24]           the paying account, whose template verifies
    template        Option<[u8; 24]>   present only for a self-spawn
    nonce           compact (u64)
    gas_limit       compact (u64)
    gas_price       compact (u64)
    payload         Vec<u8>            itself a SCALE Payload{selector, input}
    signature       the remaining bytes: 64 for a wallet, required × 65 for a multisig

The signature covers `genesis_id ‖ (the encoding without the signature)`, so it never
replays on another network. The transaction id is blake3 of the *full* encoding, signature
included (the "signed bytes" of Spacemesh): two transactions differing only in signature are
distinct ids, which is what a mempool keyed by id must see, since an id has to identify
exactly the bytes that go into a block. Decoding is canonical (see `athena_vm.scale`), so a
decoded transaction re-encodes to the same bytes and the id computed from the object equals
the id of the bytes received.

Numeric fields are bounded to u64 (Rust's `Compact<u64>`): they feed fee arithmetic and the
state, and a 2^536 gas price is not a transaction anyone should have to reason about.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import blake3

from athena_vm.address import ADDRESS_LENGTH
from athena_vm.payload import SELECTOR_LENGTH, Payload, decode_payload, usual_payload
from athena_vm.scale import (
    BYTES,
    COMPACT,
    COMPACT_U64,
    U64_MAX,
    Decoder,
    FixedBytes,
    Option,
    ScaleError,
    compact_at,
)
from devnet.errors import TransactionError, TransactionTooLargeError
from devnet.keys import SIGNATURE_LENGTH, KeyPair, verify

TX_VERSION = 1
MAX_TX_SIZE = 128 * 1024
"""Default size limit for an encoded transaction, checked before any parsing."""
GENESIS_ID_LENGTH = 20
TX_ID_LENGTH = 32
EMPTY_SIGNATURE = bytes(SIGNATURE_LENGTH)

_ADDRESS = FixedBytes(ADDRESS_LENGTH)
#: The usual shape's fixed parts (see `_decode_usual`): compact 1, the principal, a tag.
_VERSION_BYTE = TX_VERSION << 2
_TEMPLATE_TAG = 1 + ADDRESS_LENGTH
#: version, principal, tag, nonce, gas limit, gas price, payload length, tag: one byte
#: each at least, and the shortest signature.
_SHORTEST = _TEMPLATE_TAG + 6 + SIGNATURE_LENGTH
_TEMPLATE = Option(_ADDRESS)
#: Bounds on the signature bytes, which the principal's template `verify` interprets.
MIN_SIGNATURE_BYTES = SIGNATURE_LENGTH
MAX_SIGNATURE_BYTES = 2048


def _check_signature(signature: bytes) -> bytes:
    """The signature ends the transaction, so its length is whatever remains; bound it."""
    if not MIN_SIGNATURE_BYTES <= len(signature) <= MAX_SIGNATURE_BYTES:
        raise ScaleError(
            f"signature of {len(signature)} bytes, expected {MIN_SIGNATURE_BYTES} to "
            f"{MAX_SIGNATURE_BYTES}"
        )
    return signature


def encode_payload(payload: Payload) -> bytes:
    """The Payload's own SCALE bytes (what a transaction carries inside its Vec<u8>)."""
    if payload.selector is not None and len(payload.selector) != SELECTOR_LENGTH:
        raise TransactionError(f"selector must be {SELECTOR_LENGTH} bytes")
    return payload.encode()


def decode_payload_bytes(data: bytes) -> Payload:
    """A Payload from exactly `data` (trailing bytes rejected)."""
    decoder = Decoder(data)
    payload = decode_payload(decoder)
    decoder.finish()
    return payload


@dataclass(frozen=True)
class Transaction:
    """One Athena transaction. Build it unsigned, then `sign` returns the signed copy."""

    principal: bytes
    nonce: int
    gas_limit: int
    gas_price: int
    payload: Payload
    template: bytes | None = None
    signature: bytes = EMPTY_SIGNATURE

    def __post_init__(self) -> None:
        # Encoding once validates every field with the codec's own checks (and is cached).
        try:
            _ = self._unsigned
            _check_signature(self.signature)
        except ScaleError as exc:
            raise TransactionError(f"invalid transaction field: {exc}") from None

    @cached_property
    def _unsigned(self) -> bytes:
        return b"".join(
            (
                COMPACT.encode(TX_VERSION),
                _ADDRESS.encode(self.principal),
                _TEMPLATE.encode(self.template),
                COMPACT_U64.encode(self.nonce),
                COMPACT_U64.encode(self.gas_limit),
                COMPACT_U64.encode(self.gas_price),
                BYTES.encode(self.payload_bytes),
            )
        )

    @cached_property
    def payload_bytes(self) -> bytes:
        """The Payload's own SCALE bytes, as carried inside the transaction."""
        return encode_payload(self.payload)

    def unsigned_bytes(self) -> bytes:
        """The encoding without the signature."""
        return self._unsigned

    @cached_property
    def _encoded(self) -> bytes:
        return self._unsigned + self.signature

    def encode(self) -> bytes:
        """The full wire encoding, signature last: the "signed bytes" the id hashes."""
        return self._encoded

    def signing_bytes(self, genesis_id: bytes) -> bytes:
        """What the principal signs: genesis_id ‖ the encoding without the signature."""
        if len(genesis_id) != GENESIS_ID_LENGTH:
            raise TransactionError(
                f"genesis id must be {GENESIS_ID_LENGTH} bytes, got {len(genesis_id)}"
            )
        return bytes(genesis_id) + self.unsigned_bytes()

    def sign(self, key: KeyPair, genesis_id: bytes) -> "Transaction":
        """A copy of this transaction carrying `key`'s signature for the network genesis_id."""
        return replace(self, signature=key.sign(self.signing_bytes(genesis_id)))

    def sign_multisig(self, signers: dict[int, KeyPair], genesis_id: bytes) -> "Transaction":
        """A copy signed for the multisig template: `{id u8, sig [64]}` per signer, ids
        strictly increasing (the order its `verify` demands)."""
        message = self.signing_bytes(genesis_id)
        signature = b"".join(
            bytes([index]) + signers[index].sign(message) for index in sorted(signers)
        )
        return replace(self, signature=signature)

    def verify_signature(self, public_key: bytes, genesis_id: bytes) -> bool:
        """Whether the signature is `public_key`'s over `signing_bytes(genesis_id)`.

        This is the ed25519 check of the plain wallet; a principal's template may verify
        differently (multisig), which is why the executor runs the template's `verify`.
        """
        return verify(public_key, self.signing_bytes(genesis_id), self.signature)

    @cached_property
    def id(self) -> bytes:
        """blake3 of the full encoding (signature included)."""
        return blake3.blake3(self.encode()).digest()

    @property
    def max_fee(self) -> int:
        """The most this transaction can cost its principal: gas_limit * gas_price."""
        return self.gas_limit * self.gas_price

    @property
    def is_spawn(self) -> bool:
        """A self-spawn names its template; every other transaction's principal exists."""
        return self.template is not None


def decode_transaction(data: bytes, max_size: int = MAX_TX_SIZE) -> Transaction:
    """Parse one transaction from exactly `data`.

    Raises `TransactionTooLargeError` above `max_size` (before parsing anything) and
    `TransactionError` for every other defect: a version other than 1, a malformed field, a
    payload that is not a Payload, trailing bytes. Nothing else escapes for any input.
    """
    if len(data) > max_size:
        raise TransactionTooLargeError(len(data), max_size)
    data = bytes(data)
    return _decode_usual(data) or _decode_strict(data)


def _decode_strict(data: bytes) -> Transaction:
    """`decode_transaction` with a `Decoder`: every shape, every error message."""
    decoder = Decoder(data)
    try:
        version = decoder.compact()
        if version != TX_VERSION:
            raise TransactionError(f"unsupported transaction version {version}")
        principal = decoder.take(ADDRESS_LENGTH)
        template = decoder.take(ADDRESS_LENGTH) if decoder.option_flag() else None
        nonce = COMPACT_U64.read(decoder)
        gas_limit = COMPACT_U64.read(decoder)
        gas_price = COMPACT_U64.read(decoder)
        payload_bytes = decoder.bytes_vec()
        unsigned_length = decoder.pos
        signature = _check_signature(decoder.take(decoder.remaining))
    except ScaleError as exc:
        raise TransactionError(f"malformed transaction: {exc}") from exc
    try:
        payload = decode_payload_bytes(payload_bytes)
    except ScaleError as exc:
        raise TransactionError(f"transaction payload is not a Payload: {exc}") from exc
    return _decoded(
        data,
        data[:unsigned_length],
        payload_bytes,
        principal=principal,
        nonce=nonce,
        gas_limit=gas_limit,
        gas_price=gas_price,
        payload=payload,
        template=template,
        signature=signature,
    )


def _decode_usual(data: bytes) -> Transaction | None:
    """The transaction if every field has its usual shape; None sends it to the `Decoder`.

    Every block decodes each of its transactions, so the usual shape — compact integers
    below 2^30 in canonical form, Option and payload fields well formed, a signature of an
    allowed length — is read by indexing alone. Anything else, valid or not, returns None
    and goes through `_decode_strict`, so what is accepted and every error message stay
    exactly the `Decoder`'s (the unit tests compare both on random and mutated bytes).
    """
    if len(data) < _SHORTEST or data[0] != _VERSION_BYTE:
        return None
    tag = data[_TEMPLATE_TAG]
    if tag == 0:
        template, position = None, _TEMPLATE_TAG + 1
    elif tag == 1:
        position = _TEMPLATE_TAG + 1 + ADDRESS_LENGTH
        template = data[_TEMPLATE_TAG + 1 : position]
    else:
        return None
    nonce, position = compact_at(data, position)
    gas_limit, position = compact_at(data, position)
    gas_price, position = compact_at(data, position)
    payload_length, start = compact_at(data, position)
    end = start + payload_length
    if min(nonce, gas_limit, gas_price, payload_length) < 0:
        return None
    if not MIN_SIGNATURE_BYTES <= len(data) - end <= MAX_SIGNATURE_BYTES:
        return None
    payload = usual_payload(data, start, end)
    if payload is None:
        return None
    return _decoded(
        data,
        data[:end],
        data[start:end],
        principal=data[1 : 1 + ADDRESS_LENGTH],
        nonce=nonce,
        gas_limit=gas_limit,
        gas_price=gas_price,
        payload=payload,
        template=template,
        signature=data[end:],
    )


def _decoded(
    data: bytes,
    unsigned: bytes,
    payload_bytes: bytes,
    *,
    principal: bytes,
    nonce: int,
    gas_limit: int,
    gas_price: int,
    payload: Payload,
    template: bytes | None,
    signature: bytes,
) -> Transaction:
    """The Transaction whose encoding is `data`, built without encoding it again.

    `Transaction()` validates by encoding its fields, which for decoded fields would only
    repeat the decode's work: decoding is canonical, so the fields re-encode to exactly
    `data`, and every field already has its type and range. The encodings are cached from
    the bytes received (unsigned part, full encoding, payload), so the id hashes them
    directly and the state transition hands the payload to the VM as received.
    """
    tx = object.__new__(Transaction)
    tx.__dict__.update(
        principal=principal,
        nonce=nonce,
        gas_limit=gas_limit,
        gas_price=gas_price,
        payload=payload,
        template=template,
        signature=signature,
        _unsigned=unsigned,
        _encoded=data,
        payload_bytes=payload_bytes,
    )
    return tx


__all__ = [
    "GENESIS_ID_LENGTH",
    "MAX_TX_SIZE",
    "TX_ID_LENGTH",
    "TX_VERSION",
    "U64_MAX",
    "Transaction",
    "decode_payload_bytes",
    "decode_transaction",
    "encode_payload",
]
