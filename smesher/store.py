"""The smesher's LevelDB: certified blocks, certificates, L1 accounts, agreement records.

Each layer is committed in one atomic WriteBatch (block, certificate, changed accounts,
L1 state hash, pending reward and the last-layer marker), so a crash at any point resumes
from the last committed layer with consistent state.
"""

from collections.abc import Iterator
from pathlib import Path

from devnet.errors import DevnetError
from devnet.leveldb import open_db
from smesher.l1_state import Account

_BLOCK = b"b"
_CERT = b"c"
_ACCOUNT = b"a"
_HASH = b"h"
_RECORD = b"p"
_LAST = b"m/last"
_REWARD = b"m/reward"
_GENESIS = b"m/genesis"


class StoreError(DevnetError):
    """The database does not belong to this network or is unusable."""


def _layer_key(prefix: bytes, layer: int) -> bytes:
    return prefix + layer.to_bytes(8, "big")


def _account_bytes(acct: Account) -> bytes:
    return acct.balance.to_bytes(8, "big") + acct.nonce.to_bytes(8, "big")


class ChainStore:
    def __init__(self, path: Path) -> None:
        self.db = open_db(path, StoreError)
        #: Agreement records stored per layer (counted from the database on first use).
        self._record_counts: dict[int, int] = {}
        self.accounts: dict[bytes, Account] = {
            key[1:]: Account(int.from_bytes(v[:8], "big"), int.from_bytes(v[8:], "big"))
            for key, v in self.db.iterator(prefix=_ACCOUNT)
        }

    def close(self) -> None:
        self.db.close()

    def init_genesis(self, genesis_id: bytes, allocations: tuple[tuple[bytes, int], ...]) -> None:
        """Write the genesis allocations once; refuse a database of another network."""
        existing = self.db.get(_GENESIS)
        if existing is not None:
            if existing != genesis_id:
                raise StoreError(
                    f"the data directory belongs to network {existing.hex()}, not "
                    f"{genesis_id.hex()}: reset it or use another data directory"
                )
            return
        with self.db.write_batch(transaction=True) as batch:
            for address, balance in allocations:
                acct = Account(balance, 0)
                self.accounts[address] = acct
                batch.put(_ACCOUNT + address, _account_bytes(acct))
            batch.put(_GENESIS, genesis_id)

    def last_layer(self) -> int | None:
        raw = self.db.get(_LAST)
        return None if raw is None else int.from_bytes(raw, "big")

    def pending_reward(self) -> int:
        raw = self.db.get(_REWARD)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def block(self, layer: int) -> bytes | None:
        value: bytes | None = self.db.get(_layer_key(_BLOCK, layer))
        return value

    def certificate(self, layer: int) -> bytes | None:
        value: bytes | None = self.db.get(_layer_key(_CERT, layer))
        return value

    def state_hash(self, layer: int) -> bytes:
        return self.db.get(_layer_key(_HASH, layer)) or bytes(32)

    def commit_layer(
        self,
        layer: int,
        block: bytes,
        certificate: bytes,
        changed: dict[bytes, Account],
        l1_hash: bytes,
        pending_reward: int,
    ) -> None:
        with self.db.write_batch(transaction=True, sync=True) as batch:
            batch.put(_layer_key(_BLOCK, layer), block)
            batch.put(_layer_key(_CERT, layer), certificate)
            for address, acct in changed.items():
                batch.put(_ACCOUNT + address, _account_bytes(acct))
            batch.put(_layer_key(_HASH, layer), l1_hash)
            batch.put(_REWARD, pending_reward.to_bytes(8, "big"))
            batch.put(_LAST, layer.to_bytes(8, "big"))
            for key, _ in self.db.iterator(prefix=_layer_key(_RECORD, layer)):
                batch.delete(key)
        self.accounts.update(changed)
        for done in [lay for lay in self._record_counts if lay <= layer]:
            del self._record_counts[done]

    def add_record(self, layer: int, record: bytes) -> None:
        """An agreement record (own vote or lock) that must survive a crash."""
        seq = self._record_counts.get(layer)
        if seq is None:
            prefix = _layer_key(_RECORD, layer)
            seq = sum(1 for _ in self.db.iterator(prefix=prefix, include_value=False))
        self.db.put(_layer_key(_RECORD, layer) + seq.to_bytes(4, "big"), record, sync=True)
        self._record_counts[layer] = seq + 1

    def records(self, layer: int) -> Iterator[bytes]:
        for _, value in self.db.iterator(prefix=_layer_key(_RECORD, layer)):
            yield value
