"""Bundles: Athena transactions wrapped and paid for by an L1 account (a relay, or a user).

The submitter pays `encoded bytes × l1 byte price` SMH on L1 and names the Athena account
(`beneficiary`) that receives the relay's share of the fees of the transactions it carries.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import blake3

from athena_vm.scale import BYTES, COMPACT_U64, Decoder, ScaleError, Vec
from devnet.errors import DevnetError, TransactionError
from devnet.keys import KeyPair, verify
from devnet.l1 import ADDRESS, PUBLIC_KEY, SIGNATURE, l1_address
from devnet.transaction import Transaction, decode_transaction

BUNDLE_DOMAIN = b"athena-devnet/bundle"
TXS = Vec(BYTES)
DEFAULT_MAX_BUNDLE_BYTES = 1024 * 1024
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
"""The largest `max_bundle_bytes` a configuration may set: a block's bundles decode up to it,
and the chain's validity rule enforces the configured limit."""


class BundleError(DevnetError):
    """Bytes are not a valid bundle, or a bundle breaks a rule."""


@dataclass(frozen=True)
class Bundle:
    submitter: bytes
    nonce: int
    beneficiary: bytes
    txs: tuple[bytes, ...]
    signature: bytes = bytes(64)

    def unsigned_bytes(self) -> bytes:
        return (
            PUBLIC_KEY.encode(self.submitter)
            + COMPACT_U64.encode(self.nonce)
            + ADDRESS.encode(self.beneficiary)
            + TXS.encode(self.txs)
        )

    @cached_property
    def encoded(self) -> bytes:
        return self.unsigned_bytes() + self.signature

    @cached_property
    def id(self) -> bytes:
        return blake3.blake3(self.encoded).digest()

    @property
    def payer(self) -> bytes:
        """The L1 account that pays the bundle's fee."""
        return l1_address(self.submitter)

    def fee(self, byte_price: int) -> int:
        return len(self.encoded) * byte_price

    def signing_bytes(self, genesis_id: bytes) -> bytes:
        return genesis_id + BUNDLE_DOMAIN + self.unsigned_bytes()

    def sign(self, key: KeyPair, genesis_id: bytes) -> "Bundle":
        return replace(self, signature=key.sign(self.signing_bytes(genesis_id)))

    def verify(self, genesis_id: bytes) -> bool:
        return verify(self.submitter, self.signing_bytes(genesis_id), self.signature)

    def transactions(self) -> list[Transaction]:
        """The Athena transactions, decoded; a bundle carrying a malformed one is invalid."""
        try:
            return [decode_transaction(raw) for raw in self.txs]
        except TransactionError as exc:
            raise BundleError(f"bundle carries a malformed transaction: {exc}") from None


def decode_bundle(data: bytes, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> Bundle:
    if len(data) > max_bytes:
        raise BundleError(f"bundle of {len(data)} bytes exceeds {max_bytes}")
    try:
        decoder = Decoder(data)
        submitter = PUBLIC_KEY.read(decoder)
        nonce = COMPACT_U64.read(decoder)
        beneficiary = ADDRESS.read(decoder)
        txs = TXS.read(decoder)
        signature = SIGNATURE.read(decoder)
        decoder.finish()
    except ScaleError as exc:
        raise BundleError(f"malformed bundle: {exc}") from None
    bundle = Bundle(submitter, nonce, beneficiary, txs, signature)
    # Decoding is canonical, so these bytes are exactly what `encoded` would rebuild from
    # the fields; keeping them spares re-encoding every transaction to compute the id
    # (smeshers, relays and executors decode the same large bundles many times).
    bundle.__dict__["encoded"] = bytes(data)
    return bundle


def check_bundle(bundle: Bundle, genesis_id: bytes) -> None:
    """What any node checks of a bundle alone: its signature and its transactions."""
    if not bundle.verify(genesis_id):
        raise BundleError("bad bundle signature")
    if not bundle.txs:
        raise BundleError("empty bundle")
    bundle.transactions()
