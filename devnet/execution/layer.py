"""One applied layer in LevelDB: what the executor and every shadow executor commit.

`apply_layer` executes a certified block on top of the committed state and writes, in one
atomic WriteBatch, the state changes, the state tree nodes, the receipts, the layer record
and the applied-layer marker, so a process killed at any instant restarts from the last
applied layer and recomputes exactly the same roots.
"""

from dataclasses import dataclass
from typing import Any

import msgpack
import plyvel

from athena_vm.in_memory_host import InMemoryHost
from athena_vm.status import StatusCode
from devnet.block import Block
from devnet.config import DevnetConfig
from devnet.execution.ledger import apply_genesis, execute_block
from devnet.execution.signature_ahead import SignaturesAhead
from devnet.execution.state import reset_tracking
from devnet.state_tree import EMPTY_ROOT, LevelDBNodeStore, NodeCache, StateTree, tree_key

APPLIED = b"m/applied"
ROOT = b"m/root"
LAYER_PREFIX = b"L"
RECEIPT_PREFIX = b"R"
NODE_PREFIX = b"N"


@dataclass(frozen=True)
class LayerRecord:
    layer: int
    block_id: bytes
    root: bytes
    receipts_root: bytes
    tx_ids: tuple[bytes, ...]

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.layer, self.block_id, self.root, self.receipts_root, list(self.tx_ids)],
            use_bin_type=True,
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> "LayerRecord":
        layer, block_id, root, receipts_root, tx_ids = msgpack.unpackb(data, raw=False)
        return cls(layer, block_id, root, receipts_root, tuple(tx_ids))

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "block_id": self.block_id,
            "root": self.root,
            "receipts_root": self.receipts_root,
            "tx_ids": list(self.tx_ids),
        }


class ExecutorStore:
    """The executor's LevelDB: Athena state, tree nodes, receipts, layer records."""

    def __init__(self, db: plyvel.DB) -> None:
        self.db = db
        #: Tree nodes shared by every layer's update and by proofs (see `NodeCache`).
        self.node_cache = NodeCache()
        self.tree = StateTree(LevelDBNodeStore(db, prefix=NODE_PREFIX, cache=self.node_cache))

    def layer_tree(self, batch: Any) -> StateTree:
        """The tree whose new nodes go into this layer's write batch."""
        return StateTree(
            LevelDBNodeStore(self.db, batch, prefix=NODE_PREFIX, cache=self.node_cache)
        )

    @property
    def next_layer(self) -> int:
        """The layer to apply next: 0 on a fresh database."""
        applied = self.applied()
        return 0 if applied is None else applied + 1

    def applied(self) -> int | None:
        raw = self.db.get(APPLIED)
        return None if raw is None else int.from_bytes(raw, "big")

    def root(self) -> bytes:
        root: bytes = self.db.get(ROOT) or EMPTY_ROOT
        return root

    def layer(self, layer: int) -> LayerRecord | None:
        raw = self.db.get(LAYER_PREFIX + layer.to_bytes(8, "big"))
        return None if raw is None else LayerRecord.decode(raw)

    def receipt(self, tx_id: bytes) -> dict[str, Any] | None:
        raw = self.db.get(RECEIPT_PREFIX + tx_id)
        return None if raw is None else dict(msgpack.unpackb(raw, raw=False))


def apply_layer(
    store: ExecutorStore,
    host: InMemoryHost,
    block: Block,
    config: DevnetConfig,
    *,
    skip_tx: bytes | None = None,
    ahead: SignaturesAhead | None = None,
) -> tuple[LayerRecord, list[dict[str, Any]]]:
    """Execute `block` on top of the committed state and commit it atomically.

    `ahead`, when given, checks the block's wallet signatures in its helper process while
    the block executes (the same results, sooner).
    """
    db = store.db
    if block.layer == 0:
        apply_genesis(host, config)
    outcome = execute_block(host, db, block, config, skip_tx=skip_tx, ahead=ahead)
    with db.write_batch(transaction=True) as batch:
        tree = store.layer_tree(batch)
        root = tree.update(store.root(), {tree_key(k): v for k, v in outcome.writes.items()})
        for key, value in outcome.writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for receipt, encoded in zip(outcome.receipts, outcome.encoded_receipts, strict=True):
            if receipt["status"] == StatusCode.REJECTED:
                earlier = store.receipt(receipt["tx_id"])
                if earlier is not None and earlier["status"] != StatusCode.REJECTED:
                    continue  # executed before, included again: keep the receipt that counts
            batch.put(RECEIPT_PREFIX + receipt["tx_id"], encoded)
        record = LayerRecord(
            block.layer,
            block.id,
            root,
            outcome.receipts_root,
            tuple(r["tx_id"] for r in outcome.receipts),
        )
        batch.put(LAYER_PREFIX + block.layer.to_bytes(8, "big"), record.encode())
        batch.put(ROOT, root)
        batch.put(APPLIED, block.layer.to_bytes(8, "big"))
    reset_tracking(host)
    return record, outcome.receipts
