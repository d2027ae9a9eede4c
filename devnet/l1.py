"""L1 accounts and transactions: SMH transfers and executor state-root claims.

An L1 account is an ed25519 key; its address is GenerateAddress(blake3(public key)). Every
L1 object is SCALE-encoded and signed over `genesis_id ‖ domain ‖ unsigned bytes`, so a
signature never replays on another network or as another kind of object.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import blake3

from athena_vm.address import generate_address
from athena_vm.scale import (
    COMPACT_U64,
    U8,
    U64,
    Codec,
    Decoder,
    FixedBytes,
    ScaleError,
    Struct,
)
from devnet.errors import DevnetError
from devnet.keys import KeyPair, verify

PUBLIC_KEY = FixedBytes(32)
SIGNATURE = FixedBytes(64)
ADDRESS = FixedBytes(24)
HASH = FixedBytes(32)
BLOCK_ID = FixedBytes(20)

TRANSFER = 0
CLAIM = 1
L1_TX_DOMAIN = b"athena-devnet/l1-tx"
MAX_L1_TX_BYTES = 1024


class L1Error(DevnetError):
    """Bytes are not a valid L1 object, or an L1 object breaks a rule."""


def l1_address(public_key: bytes) -> bytes:
    return generate_address(blake3.blake3(public_key).digest())


@dataclass(frozen=True)
class Transfer:
    to: bytes
    amount: int


@dataclass(frozen=True)
class Claim:
    """The executor's signed statement of the Athena state after `layer`."""

    layer: int
    block_id: bytes
    state_root: bytes
    receipts_root: bytes


TRANSFER_CODEC: Codec[Transfer] = Struct(Transfer, (("to", ADDRESS), ("amount", U64)))
CLAIM_CODEC: Codec[Claim] = Struct(
    Claim,
    (("layer", U64), ("block_id", BLOCK_ID), ("state_root", HASH), ("receipts_root", HASH)),
)


@dataclass(frozen=True)
class L1Tx:
    sender: bytes
    nonce: int
    body: Transfer | Claim
    signature: bytes = bytes(64)

    def unsigned_bytes(self) -> bytes:
        if isinstance(self.body, Transfer):
            kind, body = TRANSFER, TRANSFER_CODEC.encode(self.body)
        else:
            kind, body = CLAIM, CLAIM_CODEC.encode(self.body)
        return (
            PUBLIC_KEY.encode(self.sender) + COMPACT_U64.encode(self.nonce) + U8.encode(kind) + body
        )

    def encode(self) -> bytes:
        return self.unsigned_bytes() + self.signature

    @cached_property
    def id(self) -> bytes:
        return blake3.blake3(self.encode()).digest()

    @property
    def address(self) -> bytes:
        return l1_address(self.sender)

    def signing_bytes(self, genesis_id: bytes) -> bytes:
        return genesis_id + L1_TX_DOMAIN + self.unsigned_bytes()

    def sign(self, key: KeyPair, genesis_id: bytes) -> "L1Tx":
        return replace(self, signature=key.sign(self.signing_bytes(genesis_id)))

    def verify(self, genesis_id: bytes) -> bool:
        return verify(self.sender, self.signing_bytes(genesis_id), self.signature)


def decode_l1_tx(data: bytes) -> L1Tx:
    if len(data) > MAX_L1_TX_BYTES:
        raise L1Error(f"L1 transaction of {len(data)} bytes exceeds {MAX_L1_TX_BYTES}")
    try:
        decoder = Decoder(data)
        sender = PUBLIC_KEY.read(decoder)
        nonce = COMPACT_U64.read(decoder)
        kind = U8.read(decoder)
        body: Transfer | Claim
        if kind == TRANSFER:
            body = TRANSFER_CODEC.read(decoder)
        elif kind == CLAIM:
            body = CLAIM_CODEC.read(decoder)
        else:
            raise L1Error(f"unknown L1 transaction kind {kind}")
        signature = SIGNATURE.read(decoder)
        decoder.finish()
    except ScaleError as exc:
        raise L1Error(f"malformed L1 transaction: {exc}") from None
    return L1Tx(sender, nonce, body, signature)
