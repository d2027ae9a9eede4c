"""Blocks and the block rule: which Athena transactions a layer executes, in what order.

A block holds the agreed bundles (sorted by id), the L1 transactions, and the certificate
of the previous layer (whose signers share that layer's reward). Its Athena transactions are
not listed separately: `ordered_transactions` derives them, deterministically, by the
go-spacemesh rule — the union of the bundles' transactions deduplicated by tx id; for one
(principal, nonce) the highest gas price wins (ties: the lower tx id); ordered by tx id,
then shuffled with a seed of blake3(sorted bundle ids), keeping each principal's nonces in
order; cut at the block gas limit.
"""

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import blake3

from athena_vm.scale import BYTES, U64, Decoder, ScaleError, Vec
from devnet.bundle import MAX_BUNDLE_BYTES, Bundle, BundleError, decode_bundle
from devnet.errors import DevnetError
from devnet.l1 import L1Error, L1Tx, decode_l1_tx
from devnet.transaction import Transaction

BLOCK_ID_LENGTH = 20
ENCODED_LIST = Vec(BYTES)
MAX_BLOCK_BYTES = 64 * 1024 * 1024


class BlockError(DevnetError):
    """Bytes are not a valid block."""


@dataclass(frozen=True)
class Block:
    layer: int
    bundles: tuple[Bundle, ...] = ()
    l1_txs: tuple[L1Tx, ...] = ()
    prev_certificate: bytes = b""

    @cached_property
    def encoded(self) -> bytes:
        return (
            U64.encode(self.layer)
            + ENCODED_LIST.encode(tuple(b.encoded for b in self.bundles))
            + ENCODED_LIST.encode(tuple(t.encode() for t in self.l1_txs))
            + BYTES.encode(self.prev_certificate)
        )

    @cached_property
    def id(self) -> bytes:
        return block_id(self.encoded)


def block_id(encoded: bytes) -> bytes:
    return blake3.blake3(encoded).digest()[:BLOCK_ID_LENGTH]


def decode_block(data: bytes) -> Block:
    if len(data) > MAX_BLOCK_BYTES:
        raise BlockError(f"block of {len(data)} bytes exceeds {MAX_BLOCK_BYTES}")
    try:
        decoder = Decoder(data)
        layer = U64.read(decoder)
        bundles = tuple(decode_bundle(raw, MAX_BUNDLE_BYTES) for raw in ENCODED_LIST.read(decoder))
        l1_txs = tuple(decode_l1_tx(raw) for raw in ENCODED_LIST.read(decoder))
        prev = BYTES.read(decoder)
        decoder.finish()
    except (ScaleError, BundleError, L1Error) as exc:
        raise BlockError(f"malformed block: {exc}") from None
    ids = [b.id for b in bundles]
    if ids != sorted(set(ids)):
        raise BlockError("block bundles must be unique and sorted by id")
    return Block(layer, bundles, l1_txs, prev)


@dataclass(frozen=True)
class BlockTx:
    """One Athena transaction of a block and the Athena account paid its relay share."""

    raw: bytes
    tx: Transaction
    beneficiary: bytes


def _candidates(bundles: tuple[Bundle, ...]) -> list[BlockTx]:
    seen: set[bytes] = set()
    best: dict[tuple[bytes, int], BlockTx] = {}
    for bundle in sorted(bundles, key=lambda b: b.id):
        try:
            txs = bundle.transactions()
        except BundleError:
            continue
        for raw, tx in zip(bundle.txs, txs, strict=True):
            if tx.id in seen:
                continue
            seen.add(tx.id)
            key = (tx.principal, tx.nonce)
            current = best.get(key)
            candidate = BlockTx(raw, tx, bundle.beneficiary)
            if current is None or (tx.gas_price, current.tx.id) > (current.tx.gas_price, tx.id):
                best[key] = candidate
    return sorted(best.values(), key=lambda c: c.tx.id)


def _shuffle(items: list[BlockTx], seed: bytes) -> list[BlockTx]:
    """Fisher–Yates driven by blake3(seed ‖ i): the same on every machine."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        draw = blake3.blake3(seed + i.to_bytes(4, "big")).digest()
        j = int.from_bytes(draw[:8], "big") % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _nonces_in_order(items: list[BlockTx]) -> list[BlockTx]:
    """Keep the shuffled slots of each principal but fill them in nonce order."""
    by_principal: dict[bytes, list[BlockTx]] = defaultdict(list)
    for item in items:
        by_principal[item.tx.principal].append(item)
    queues = {p: sorted(txs, key=lambda c: c.tx.nonce) for p, txs in by_principal.items()}
    cursor: dict[bytes, int] = defaultdict(int)
    out = []
    for item in items:
        principal = item.tx.principal
        out.append(queues[principal][cursor[principal]])
        cursor[principal] += 1
    return out


def ordered_transactions(block: Block, gas_limit: int) -> list[BlockTx]:
    candidates = _candidates(block.bundles)
    seed = blake3.blake3(b"".join(sorted(b.id for b in block.bundles))).digest()
    ordered = _nonces_in_order(_shuffle(candidates, seed))
    chosen: list[BlockTx] = []
    stopped: set[bytes] = set()
    used = 0
    for item in ordered:
        principal = item.tx.principal
        if principal in stopped:
            continue
        if used + item.tx.gas_limit > gas_limit:
            stopped.add(principal)  # a later nonce of this principal could never run
            continue
        used += item.tx.gas_limit
        chosen.append(item)
    return chosen
