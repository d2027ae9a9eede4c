"""Athena state in LevelDB, seen through the VM's in-memory host.

`open_state` returns an `InMemoryHost` whose account, storage and template maps load from
LevelDB on first access: the state transition and the VM run unchanged (journal, rollback
and all), and `changes()` lists what a layer wrote so it can be committed in one batch.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

import plyvel

from athena_vm.in_memory_host import Account, InMemoryHost
from athena_vm.scale import BYTES, U64, Decoder, FixedBytes, Option, ScaleError

K = TypeVar("K")
V = TypeVar("V")

ACCOUNT_PREFIX = b"A"
STORAGE_PREFIX = b"S"
TEMPLATE_PREFIX = b"T"
_TEMPLATE_FIELD = Option(FixedBytes(24))


class LazyMap(dict[K, V], Generic[K, V]):
    """A dict that loads a missing key from `load` (None: absent) and records writes."""

    def __init__(self, load: Callable[[K], V | None]) -> None:
        super().__init__()
        self._load = load
        self._absent: set[K] = set()
        self.dirty: set[K] = set()

    def _fetch(self, key: K) -> bool:
        if dict.__contains__(self, key):
            return True
        if key in self._absent:
            return False
        value = self._load(key)
        if value is None:
            self._absent.add(key)
            return False
        dict.__setitem__(self, key, value)
        return True

    def __contains__(self, key: object) -> bool:
        return self._fetch(key)  # type: ignore[arg-type]

    def __getitem__(self, key: K) -> V:
        self._fetch(key)
        return dict.__getitem__(self, key)

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        return dict.__getitem__(self, key) if self._fetch(key) else default

    def __setitem__(self, key: K, value: V) -> None:
        self._absent.discard(key)
        self.dirty.add(key)
        dict.__setitem__(self, key, value)

    def pop(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        self.dirty.add(key)
        if self._fetch(key):
            value = dict.pop(self, key)
            self._absent.add(key)
            return value
        return default


def encode_account(acct: Account) -> bytes:
    """balance u64 ‖ nonce u64 ‖ Option<template [24]> ‖ Vec<u8> state (storage apart)."""
    return (
        U64.encode(acct.balance)
        + U64.encode(acct.nonce)
        + _TEMPLATE_FIELD.encode(acct.template)
        + BYTES.encode(acct.state)
    )


def decode_account(data: bytes) -> Account:
    try:
        d = Decoder(data)
        acct = Account(U64.read(d), U64.read(d), _TEMPLATE_FIELD.read(d), BYTES.read(d))
        d.finish()
    except ScaleError as exc:
        raise ValueError(f"corrupt account record: {exc}") from None
    return acct


def open_state(db: plyvel.DB) -> InMemoryHost:
    """A host over `db`'s committed Athena state; writes stay in memory until committed."""

    def load_account(address: bytes) -> Account | None:
        raw = db.get(ACCOUNT_PREFIX + address)
        if raw is None:
            return None
        acct = decode_account(raw)
        storage: LazyMap[bytes, bytes] = LazyMap(lambda key: db.get(STORAGE_PREFIX + address + key))
        acct.storage = storage
        return acct

    host = InMemoryHost()
    host.accounts = LazyMap(load_account)
    host.templates = LazyMap(lambda t: db.get(TEMPLATE_PREFIX + t))
    return host


def _storage_map(acct: Account, address: bytes, db: plyvel.DB) -> LazyMap[bytes, bytes]:
    storage = acct.storage
    if not isinstance(storage, LazyMap):  # an account created during this layer
        lazy: LazyMap[bytes, bytes] = LazyMap(lambda key: db.get(STORAGE_PREFIX + address + key))
        for key, value in storage.items():
            lazy[key] = value
        acct.storage = lazy
        storage = lazy
    return storage


def changes(host: InMemoryHost, db: plyvel.DB) -> dict[bytes, bytes | None]:
    """Every LevelDB key this layer changed and its new value (None: deleted)."""
    out: dict[bytes, bytes | None] = {}
    accounts = host.accounts
    assert isinstance(accounts, LazyMap) and isinstance(host.templates, LazyMap)
    touched = {a for a, _ in host.journal} - host.templates.dirty
    for address in sorted(accounts.dirty | touched):
        acct = accounts.get(address)
        if acct is None:
            out[ACCOUNT_PREFIX + address] = None
            continue
        out[ACCOUNT_PREFIX + address] = encode_account(acct)
        storage = _storage_map(acct, address, db)
        for key in sorted(storage.dirty):
            value = storage.get(key)
            out[STORAGE_PREFIX + address + key] = value
    for template in sorted(host.templates.dirty):
        out[TEMPLATE_PREFIX + template] = host.templates.get(template)
    return out


def reset_tracking(host: InMemoryHost) -> None:
    """After a commit: the overlay now equals the database; start a new layer's record."""
    host.journal.clear()
    assert isinstance(host.accounts, LazyMap) and isinstance(host.templates, LazyMap)
    host.accounts.dirty.clear()
    host.templates.dirty.clear()
    for acct in dict.values(host.accounts):
        if isinstance(acct.storage, LazyMap):
            acct.storage.dirty.clear()
