"""The relay's LevelDB (data_dir/NAME/relay): what it promised users, kept across crashes.

Keys:

    P ‖ tx id     msgpack [raw, cost, seq]: a transaction in the pool
    S ‖ tx id     msgpack status record (see `TxStatus`)
    m/bundle      msgpack of the outstanding bundle (absent when none)
    m/blocks      the last certified layer whose block was processed (8 bytes BE)
    m/executed    the last layer whose execution outcomes were collected (8 bytes BE)
    m/stats       msgpack map of counters (L1 spent, fees earned, bundles, ...)

Every change of state is written in one batch before it is acknowledged (an RPC reply, a
bundle sent to a smesher, a cursor moved on), so a kill at any moment restarts from a state
the relay had already committed to.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from devnet.leveldb import open_db

POOL = b"P"
STATUS = b"S"
BUNDLE = b"m/bundle"
BLOCKS = b"m/blocks"
EXECUTED = b"m/executed"
STATS = b"m/stats"

PENDING = "pending"
BUNDLED = "bundled"
INCLUDED = "included"
EXECUTED_STATE = "executed"
DROPPED = "dropped"
FINAL = frozenset({EXECUTED_STATE, DROPPED})


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


@dataclass
class TxStatus:
    """Where one transaction is: pending → bundled(layer) → included(layer, block) →
    executed(receipt), or dropped(reason) from any of the first three."""

    id: bytes
    principal: bytes
    nonce: int
    state: str = PENDING
    layer: int | None = None
    block_id: bytes | None = None
    receipt: dict[str, Any] | None = None
    reason: str | None = None
    #: Times it went back to the pool (bundle not included, cut from its block).
    attempts: int = 0
    #: Included through one of this relay's bundles (its fee share is ours).
    ours: bool = False
    #: Order in which final statuses were reached, to forget the oldest first.
    finished: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def encode(self) -> bytes:
        # A literal map, not `dataclasses.asdict`: that deep-copies the receipt, and this
        # runs for every status change (it was a tenth of the relay's time under load).
        return pack(
            {
                "id": self.id,
                "principal": self.principal,
                "nonce": self.nonce,
                "state": self.state,
                "layer": self.layer,
                "block_id": self.block_id,
                "receipt": self.receipt,
                "reason": self.reason,
                "attempts": self.attempts,
                "ours": self.ours,
                "finished": self.finished,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> "TxStatus":
        return cls(**unpack(data))

    def view(self) -> dict[str, Any]:
        """The RPC form."""
        return {
            "id": self.id,
            "state": self.state,
            "layer": self.layer,
            "block_id": self.block_id,
            "receipt": self.receipt,
            "reason": self.reason,
            "attempts": self.attempts,
        }


@dataclass
class Outstanding:
    """The one bundle this relay has out: signed, paid for on inclusion, not yet seen."""

    nonce: int
    encoded: bytes
    bundle_id: bytes
    tx_ids: list[bytes]
    #: The layer it was (re)built in (what `bundled(layer)` reports).
    layer: int
    #: The last processed block when it was (re)built: it is rebuilt once
    #: `include_within_layers` more blocks are certified without it. Layers in which the
    #: chain certifies nothing (a stall) do not count against the bundle.
    blocks_at: int = -1

    def encode(self) -> bytes:
        return pack(asdict(self))

    @classmethod
    def decode(cls, data: bytes) -> "Outstanding":
        return cls(**unpack(data))


@dataclass
class Stats:
    l1_spent: int = 0
    fees_earned: int = 0
    bundles_created: int = 0
    bundles_included: int = 0
    executed: int = 0
    dropped: int = 0
    evicted: int = 0
    rejected: int = 0
    last_l1_nonce: int = -1
    extra: dict[str, int] = field(default_factory=dict)


class RelayStore:
    def __init__(self, path: Path) -> None:
        self.db = open_db(path)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def batch(self) -> Iterator[Any]:
        """One atomic write: everything inside lands together or not at all."""
        with self.db.write_batch(transaction=True) as batch:
            yield batch

    # --- reading at start --------------------------------------------------------------

    def pool_txs(self) -> Iterator[tuple[bytes, bytes, int, int]]:
        """(id, raw, cost, seq) of every pooled transaction."""
        for key, value in self.db.iterator(prefix=POOL):
            raw, cost, seq = unpack(value)
            yield key[len(POOL) :], raw, cost, seq

    def statuses(self) -> Iterator[TxStatus]:
        for _, value in self.db.iterator(prefix=STATUS):
            yield TxStatus.decode(value)

    def status(self, tx_id: bytes) -> TxStatus | None:
        raw = self.db.get(STATUS + tx_id)
        return None if raw is None else TxStatus.decode(raw)

    def outstanding(self) -> Outstanding | None:
        raw = self.db.get(BUNDLE)
        return None if raw is None else Outstanding.decode(raw)

    def cursor(self, key: bytes) -> int | None:
        raw = self.db.get(key)
        return None if raw is None else int.from_bytes(raw, "big", signed=True)

    def stats(self) -> Stats:
        raw = self.db.get(STATS)
        return Stats() if raw is None else Stats(**unpack(raw))


# --- writing, always inside a batch ------------------------------------------------------


def put_tx(batch: Any, tx_id: bytes, raw: bytes, cost: int, seq: int) -> None:
    batch.put(POOL + tx_id, pack([raw, cost, seq]))


def delete_tx(batch: Any, tx_id: bytes) -> None:
    batch.delete(POOL + tx_id)


def put_status(batch: Any, status: TxStatus) -> None:
    batch.put(STATUS + status.id, status.encode())


def delete_status(batch: Any, tx_id: bytes) -> None:
    batch.delete(STATUS + tx_id)


def put_outstanding(batch: Any, outstanding: Outstanding | None) -> None:
    if outstanding is None:
        batch.delete(BUNDLE)
    else:
        batch.put(BUNDLE, outstanding.encode())


def put_cursor(batch: Any, key: bytes, layer: int) -> None:
    batch.put(key, layer.to_bytes(8, "big", signed=True))


def put_stats(batch: Any, stats: Stats) -> None:
    batch.put(STATS, pack(vars(stats)))
