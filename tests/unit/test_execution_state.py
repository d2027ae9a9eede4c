"""The LevelDB-backed host (`devnet.execution.state`): lazy loads, recorded writes, resets."""

from pathlib import Path

import plyvel

from athena_vm.in_memory_host import Account
from devnet.execution.state import (
    ACCOUNT_PREFIX,
    STORAGE_PREFIX,
    LazyMap,
    StateOverlay,
    changes,
    decode_account,
    encode_account,
    open_state,
    reset_tracking,
)

A = bytes(4) + b"\xaa" * 20
B = bytes(4) + b"\xbb" * 20
SLOT = b"\x01" * 32
VALUE = b"\x02" * 32


def commit(host: StateOverlay, db: plyvel.DB) -> dict[bytes, bytes | None]:
    writes = changes(host, db)
    with db.write_batch(transaction=True) as batch:
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
    reset_tracking(host)
    return writes


def test_writes_reach_the_database_and_tracking_resets(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    host = open_state(db)
    host.set_balance(A, 7)
    host.set_storage(A, SLOT, VALUE)
    writes = commit(host, db)
    assert set(writes) == {ACCOUNT_PREFIX + A, STORAGE_PREFIX + A + SLOT}
    assert commit(host, db) == {}  # nothing left over once committed
    assert not host.storage_maps and not host.journal

    fresh = open_state(db)  # a restarted process sees the same state
    assert fresh.get_balance(A) == 7 and fresh.get_storage(A, SLOT) == VALUE
    assert fresh.get_balance(B) == 0 and not fresh.account_exists(B)

    fresh.set_storage(A, SLOT, bytes(32))  # deletes the slot
    mark = fresh.snapshot()
    fresh.set_balance(B, 3)  # creates B, then rolled back: B must not be written
    fresh.rollback(mark)
    writes = commit(fresh, db)
    assert writes[STORAGE_PREFIX + A + SLOT] is None
    assert writes.get(ACCOUNT_PREFIX + B) is None  # absent, or a delete of an absent key
    assert db.get(STORAGE_PREFIX + A + SLOT) is None and db.get(ACCOUNT_PREFIX + B) is None
    assert decode_account(db.get(ACCOUNT_PREFIX + A)) == Account(7, 0, None, b"", {})
    db.close()


def test_lazy_map_loads_once_and_registers_when_first_written() -> None:
    loads: list[bytes] = []
    registry: list[LazyMap[bytes, bytes]] = []

    def load(key: bytes) -> bytes | None:
        loads.append(key)
        return b"v" if key == b"here" else None

    lazy: LazyMap[bytes, bytes] = LazyMap(load, registry)
    assert lazy.get(b"here") == b"v" and lazy[b"here"] == b"v" and b"here" in lazy
    assert lazy.get(b"gone") is None and b"gone" not in lazy and lazy.get(b"gone", b"d") == b"d"
    assert loads == [b"here", b"gone"]  # each key is loaded at most once
    assert not registry
    lazy[b"new"] = b"x"
    lazy.pop(b"here")
    assert registry == [lazy] and lazy.dirty == {b"new", b"here"}
    assert b"here" not in lazy and loads == [b"here", b"gone"]
    lazy.reset()
    lazy[b"again"] = b"y"
    assert registry == [lazy, lazy]  # registered again after a reset


def test_account_encoding_round_trips() -> None:
    for acct in (Account(), Account(2**64 - 1, 5, B, b"state", {})):
        assert decode_account(encode_account(acct)) == acct
