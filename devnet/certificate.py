"""What a layer's agreement signs, and the certificate that proves its outcome.

This module is everything a *verifier* of agreement results needs and nothing more, so an
executor or a syncing smesher can check a certified block without running the agreement:
the validator set and its thresholds, the agreed value and its id, the exact bytes every
agreement signature covers, and `verify_certificate`.

Thresholds. N validators tolerate f = ⌊(N−1)/3⌋ faulty ones. A quorum is ⌊2N/3⌋+1
signers, which is 2f+1 when N = 3f+1 and more otherwise: for N = 5 (f = 1) two sets of 2f+1
= 3 signers could overlap in one node, the possibly faulty one, so the quorum there is 4. Any
two quorums share at least f+1 validators, hence at least one honest one; that is what
makes the certificate unique per layer. `weak` = f+1 signers include at least one honest
validator.

Value. The agreement decides a *value*: the strictly ascending tuple of bundle ids a block
includes (possibly empty). Its id is a domain-separated blake3 of a fixed byte layout, so
any implementation can recompute it; a block carries its bundle id list, so a certificate
on a value id certifies the block built from those bundles.

Signed bytes (all integers big-endian; `DOMAIN` is ASCII):

    DOMAIN ‖ 0x00 ‖ kind u8 ‖ layer u64 ‖ round u32 ‖ body
    kind 1 PROPOSAL:  body = value_id [32] ‖ valid_round i32 (−1: none)
    kind 2 PREVOTE, kind 3 PRECOMMIT:  body = 0x00 (nil) | 0x01 ‖ value_id [32]

    value_id = blake3(DOMAIN ‖ 0x00 ‖ "value" ‖ count u32 ‖ (len u8 ‖ bundle id)*)

Encodings (for the wire and the block store):

    value        count u32 ‖ (len u8 ‖ bundle id)*
    certificate  layer u64 ‖ round u32 ‖ value_id [32] ‖ count u16 ‖ (key [32] ‖ sig [64])*

A certificate is a quorum of PRECOMMIT signatures for one (layer, round, value id): the
signatures are over (layer, round, value id), one more field than the reference's
(layer, block id), because precommits of different rounds are different votes. Agreement
safety guarantees that all certificates of a layer name the same value id, whatever their
round. Verification is strict: every listed signer must be a distinct validator with a valid
signature, listed in ascending key order, so a certificate has exactly one meaning and no
padding.
"""

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import blake3

from devnet.errors import CertificateError
from devnet.keys import PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH, verify

DOMAIN = b"athena-devnet/agreement/v1"
VALUE_ID_LENGTH = 32
MAX_BUNDLE_ID_LENGTH = 64
MAX_VALUE_ITEMS = 10_000
MAX_LAYER = 2**64 - 1
MAX_ROUND = 2**31 - 1

KIND_PROPOSAL = 1
KIND_PREVOTE = 2
KIND_PRECOMMIT = 3

Value = tuple[bytes, ...]
"""A block candidate: strictly ascending bundle ids, each 1..64 bytes."""

Verifier = Callable[[bytes, bytes, bytes], bool]
"""verify(public_key, message, signature) -> bool; injectable so a simulation can memoise."""

_HEAD = struct.Struct(">BQI")


def is_value(value: object) -> bool:
    """True if `value` is a well-formed value: a tuple of bundle ids, strictly ascending."""
    if not isinstance(value, tuple) or len(value) > MAX_VALUE_ITEMS:
        return False
    previous = b""
    for index, item in enumerate(value):
        if not isinstance(item, bytes) or not 0 < len(item) <= MAX_BUNDLE_ID_LENGTH:
            return False
        if index and item <= previous:
            return False
        previous = item
    return True


def make_value(bundle_ids: Iterable[bytes]) -> Value:
    """The canonical value of a set of bundle ids (sorted, deduplicated)."""
    value = tuple(sorted(set(bundle_ids)))
    if not is_value(value):
        raise CertificateError("bundle ids must be 1..64-byte strings, at most 10000 of them")
    return value


def value_id(value: Value) -> bytes:
    """The value's 32-byte id (layout in the module docstring)."""
    h = blake3.blake3(DOMAIN + b"\x00value" + struct.pack(">I", len(value)))
    for item in value:
        h.update(bytes((len(item),)) + item)
    return h.digest()


def _head(kind: int, layer: int, round_: int) -> bytes:
    return DOMAIN + b"\x00" + _HEAD.pack(kind, layer, round_)


def proposal_signing_bytes(layer: int, round_: int, vid: bytes, valid_round: int) -> bytes:
    return _head(KIND_PROPOSAL, layer, round_) + vid + struct.pack(">i", valid_round)


def vote_signing_bytes(kind: int, layer: int, round_: int, vid: bytes | None) -> bytes:
    body = b"\x00" if vid is None else b"\x01" + vid
    return _head(kind, layer, round_) + body


class ValidatorSet:
    """The smeshers of a layer: distinct 32-byte ed25519 keys, kept sorted.

    Sorting makes every derived quantity (proposer order, certificate order) independent of
    the order a config happens to list the keys in.
    """

    __slots__ = ("_index", "f", "keys", "n", "quorum", "weak")

    def __init__(self, keys: Iterable[bytes]) -> None:
        ordered = tuple(sorted(keys))
        if not ordered:
            raise CertificateError("a validator set needs at least one key")
        if any(not isinstance(k, bytes) or len(k) != PUBLIC_KEY_LENGTH for k in ordered):
            raise CertificateError("validator keys are 32-byte ed25519 public keys")
        if len(set(ordered)) != len(ordered):
            raise CertificateError("validator keys must be distinct")
        self.keys = ordered
        self.n = len(ordered)
        self.f = (self.n - 1) // 3
        self.quorum = 2 * self.n // 3 + 1
        self.weak = self.f + 1
        self._index = {k: i for i, k in enumerate(ordered)}

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __repr__(self) -> str:
        return f"ValidatorSet(n={self.n}, f={self.f}, quorum={self.quorum})"

    def proposer_offset(self, layer: int) -> int:
        """Where the layer's proposer rotation starts: a hash of the layer and the set."""
        digest = blake3.blake3(
            DOMAIN + b"\x00proposer" + struct.pack(">Q", layer) + b"".join(self.keys)
        ).digest()
        return int.from_bytes(digest[:8], "big") % self.n

    def proposer(self, layer: int, round_: int) -> bytes:
        """Round r's proposer: round-robin from the layer's offset.

        Round-robin (rather than a fresh hash per round) guarantees an honest proposer within
        any f+1 consecutive rounds, which bounds the rounds a layer can lose to crashed or
        faulty proposers.
        """
        return self.keys[(self.proposer_offset(layer) + round_) % self.n]


@dataclass(frozen=True, slots=True)
class Certificate:
    """A quorum of precommit signatures on (layer, round, value id), ascending by key."""

    layer: int
    round: int
    value_id: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    def signing_bytes(self) -> bytes:
        return vote_signing_bytes(KIND_PRECOMMIT, self.layer, self.round, self.value_id)


def verify_certificate(
    cert: Certificate,
    validators: Iterable[bytes] | ValidatorSet,
    *,
    layer: int | None = None,
    value: Value | None = None,
    verifier: Verifier = verify,
) -> bool:
    """True iff `cert` is a valid certificate of the validator set.

    `layer` and `value`, when given, must be what the certificate certifies. Any defect —
    a malformed field, fewer than a quorum of signers, a signer outside the set, a repeated
    or out-of-order signer, one bad signature — makes the whole certificate invalid.
    """
    vs = validators if isinstance(validators, ValidatorSet) else ValidatorSet(validators)
    if not _well_formed(cert):
        return False
    if layer is not None and cert.layer != layer:
        return False
    if value is not None and (not is_value(value) or value_id(value) != cert.value_id):
        return False
    if len(cert.signatures) < vs.quorum:
        return False
    message = cert.signing_bytes()
    previous = b""
    for key, signature in cert.signatures:
        if key <= previous or key not in vs:
            return False
        previous = key
        if not verifier(key, message, signature):
            return False
    return True


def _well_formed(cert: object) -> bool:
    if not isinstance(cert, Certificate):
        return False
    if not _is_int(cert.layer, 0, MAX_LAYER) or not _is_int(cert.round, 0, MAX_ROUND):
        return False
    if not isinstance(cert.value_id, bytes) or len(cert.value_id) != VALUE_ID_LENGTH:
        return False
    if not isinstance(cert.signatures, tuple):
        return False
    for entry in cert.signatures:
        if not isinstance(entry, tuple) or len(entry) != 2:
            return False
        key, signature = entry
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_LENGTH:
            return False
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
            return False
    return True


def _is_int(x: object, low: int, high: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and low <= x <= high


class Reader:
    """Bounds-checked reading of the agreement's fixed byte layouts (untrusted input)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise CertificateError("truncated agreement encoding")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple[int, ...]:
        return layout.unpack(self.take(layout.size))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise CertificateError("trailing bytes after an agreement encoding")


_CERT_HEAD = struct.Struct(">QI32sH")
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
MAX_CERT_SIGNATURES = 4096


def write_value(value: Value) -> bytes:
    """count u32 ‖ (len u8 ‖ bundle id)*."""
    return _U32.pack(len(value)) + b"".join(bytes((len(i),)) + i for i in value)


def read_value(r: Reader) -> Value:
    (count,) = r.unpack(_U32)
    if count > MAX_VALUE_ITEMS:
        raise CertificateError(f"a value has at most {MAX_VALUE_ITEMS} bundle ids")
    items = []
    for _ in range(count):
        (size,) = r.unpack(_U8)
        items.append(r.take(size))
    value = tuple(items)
    if not is_value(value):
        raise CertificateError("value bundle ids must be 1..64 bytes, strictly ascending")
    return value


def write_certificate(cert: Certificate) -> bytes:
    """layer u64 ‖ round u32 ‖ value_id [32] ‖ count u16 ‖ (key [32] ‖ signature [64])*."""
    head = _CERT_HEAD.pack(cert.layer, cert.round, cert.value_id, len(cert.signatures))
    return head + b"".join(k + s for k, s in cert.signatures)


def read_certificate(r: Reader) -> Certificate:
    layer, round_, vid, count = r.unpack(_CERT_HEAD)
    if round_ > MAX_ROUND or count > MAX_CERT_SIGNATURES:
        raise CertificateError("certificate round or signature count out of range")
    pairs = tuple((r.take(PUBLIC_KEY_LENGTH), r.take(SIGNATURE_LENGTH)) for _ in range(count))
    return Certificate(layer, round_, bytes(vid), pairs)


def encode_certificate(cert: Certificate) -> bytes:
    if not _well_formed(cert) or len(cert.signatures) > MAX_CERT_SIGNATURES:
        raise CertificateError("certificate fields have the wrong type or size")
    return write_certificate(cert)


def decode_certificate(data: bytes) -> Certificate:
    """Parse an encoded certificate; shape errors raise `CertificateError`.

    Signatures are not checked here: that is `verify_certificate`'s job.
    """
    r = Reader(data)
    cert = read_certificate(r)
    r.end()
    return cert
