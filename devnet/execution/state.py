"""Athena state in LevelDB, seen through the VM's in-memory host.

`open_state` returns an `InMemoryHost` whose account, storage and template maps load from
LevelDB on first access: the state transition and the VM run unchanged (journal, rollback
and all), and `changes()` lists what a layer wrote so it can be committed in one batch.
"""

import struct
from collections.abc import Callable
from enum import Enum, auto
from typing import Any, Generic, TypeVar

import plyvel

from athena_vm.in_memory_host import Account, InMemoryHost
from athena_vm.scale import BYTES, U64, Decoder, FixedBytes, Option, ScaleError, encode_bytes

K = TypeVar("K")
V = TypeVar("V")

ACCOUNT_PREFIX = b"A"
STORAGE_PREFIX = b"S"
TEMPLATE_PREFIX = b"T"
_TEMPLATE_LENGTH = 24
_TEMPLATE_FIELD = Option(FixedBytes(_TEMPLATE_LENGTH))
_BALANCE_NONCE = struct.Struct("<QQ")


class _Missing(Enum):
    """Not in the map (None cannot say it: the loader's None means "absent")."""

    MISSING = auto()


_MISSING = _Missing.MISSING


class LazyMap(dict[K, V], Generic[K, V]):
    """A dict that loads a missing key from `load` (None: absent) and records writes.

    Reads of loaded keys are the hot path (every balance, nonce and storage access of the
    VM), so they cost one dict lookup; only a miss reaches `load`. `registry`, when given,
    is where the map puts itself the first time it records a write after a reset, so the
    maps with writes to commit are found without scanning every loaded account.
    """

    def __init__(
        self, load: Callable[[K], V | None], registry: "list[LazyMap[Any, Any]] | None" = None
    ) -> None:
        super().__init__()
        self._load = load
        self._absent: set[K] = set()
        self._registry = registry
        self.dirty: set[K] = set()

    def _lookup(self, key: K) -> V | _Missing:
        """The value under `key`: held, else loaded (and kept), else `_MISSING`."""
        value = dict.get(self, key, _MISSING)
        if value is not _MISSING or key in self._absent:
            return value
        loaded = self._load(key)
        if loaded is None:
            self._absent.add(key)
            return _MISSING
        dict.__setitem__(self, key, loaded)
        return loaded

    def _mark(self, key: K) -> None:
        if not self.dirty and self._registry is not None:
            self._registry.append(self)
        self.dirty.add(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._lookup(key) is not _MISSING  # type: ignore[arg-type]

    def __getitem__(self, key: K) -> V:
        value = self._lookup(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        value = dict.get(self, key, _MISSING)  # the hot path: a loaded key, one lookup
        if value is _MISSING:
            value = self._lookup(key)
            if value is _MISSING:
                return default
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._absent.discard(key)
        self._mark(key)
        dict.__setitem__(self, key, value)

    def pop(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        self._mark(key)
        if self._lookup(key) is _MISSING:
            return default
        self._absent.add(key)
        return dict.pop(self, key)

    def reset(self) -> None:
        """Forget the recorded writes (they are committed)."""
        self.dirty.clear()


def encode_account(acct: Account) -> bytes:
    """balance u64 ‖ nonce u64 ‖ Option<template [24]> ‖ Vec<u8> state (storage apart).

    Written out for every account a layer touches, so spelled with `struct` rather than
    the codec objects; `decode_account` reads it back through the codec.
    """
    template = acct.template
    if template is None:
        option = b"\x00"
    elif len(template) == _TEMPLATE_LENGTH:
        option = b"\x01" + template
    else:
        option = _TEMPLATE_FIELD.encode(template)  # raises the codec's error
    try:
        header = _BALANCE_NONCE.pack(acct.balance, acct.nonce)
    except struct.error:  # out of the u64 range: the codec says which field
        header = U64.encode(acct.balance) + U64.encode(acct.nonce)
    return header + option + encode_bytes(acct.state)


def decode_account(data: bytes) -> Account:
    try:
        d = Decoder(data)
        acct = Account(U64.read(d), U64.read(d), _TEMPLATE_FIELD.read(d), BYTES.read(d))
        d.finish()
    except ScaleError as exc:
        raise ValueError(f"corrupt account record: {exc}") from None
    return acct


class StateOverlay(InMemoryHost):
    """The LevelDB-backed host: maps that load on first access and record their writes.

    `storage_maps` lists the accounts' storage maps holding writes since the last commit,
    so committing a layer costs what the layer touched, not what the overlay has loaded.
    """

    def __init__(self, db: plyvel.DB) -> None:
        super().__init__()
        self.db = db
        self.storage_maps: list[LazyMap[Any, Any]] = []
        self.accounts = LazyMap(self._load_account)
        self.templates = LazyMap(lambda t: db.get(TEMPLATE_PREFIX + t))

    def storage_map(self, address: bytes) -> "LazyMap[bytes, bytes]":
        db, prefix = self.db, STORAGE_PREFIX + address
        return LazyMap(lambda key: db.get(prefix + key), self.storage_maps)

    def _load_account(self, address: bytes) -> Account | None:
        raw = self.db.get(ACCOUNT_PREFIX + address)
        if raw is None:
            return None
        acct = decode_account(raw)
        acct.storage = self.storage_map(address)
        return acct


def open_state(db: plyvel.DB) -> StateOverlay:
    """A host over `db`'s committed Athena state; writes stay in memory until committed."""
    return StateOverlay(db)


def _storage_map(host: StateOverlay, acct: Account, address: bytes) -> LazyMap[bytes, bytes]:
    storage = acct.storage
    if not isinstance(storage, LazyMap):  # an account created during this layer
        lazy = host.storage_map(address)
        for key, value in storage.items():
            lazy[key] = value
        acct.storage = lazy
        storage = lazy
    return storage


def changes(host: InMemoryHost, db: plyvel.DB) -> dict[bytes, bytes | None]:
    """Every LevelDB key this layer changed and its new value (None: deleted)."""
    assert isinstance(host, StateOverlay) and host.db is db
    out: dict[bytes, bytes | None] = {}
    accounts = host.accounts
    templates = host.templates
    assert isinstance(accounts, LazyMap) and isinstance(templates, LazyMap)
    touched = {entry[0] for entry in host.journal}
    touched.difference_update(templates.dirty)
    touched.update(accounts.dirty)
    for address in sorted(touched):
        acct = accounts.get(address)
        if acct is None:
            out[ACCOUNT_PREFIX + address] = None
            continue
        out[ACCOUNT_PREFIX + address] = encode_account(acct)
        storage = _storage_map(host, acct, address)
        if storage.dirty:
            prefix = STORAGE_PREFIX + address
            for key in sorted(storage.dirty):
                out[prefix + key] = storage.get(key)
    for template in sorted(templates.dirty):
        out[TEMPLATE_PREFIX + template] = templates.get(template)
    return out


def reset_tracking(host: InMemoryHost) -> None:
    """After a commit: the overlay now equals the database; start a new layer's record."""
    assert isinstance(host, StateOverlay)
    host.journal.clear()
    assert isinstance(host.accounts, LazyMap) and isinstance(host.templates, LazyMap)
    host.accounts.reset()
    host.templates.reset()
    for storage in host.storage_maps:
        storage.reset()
    host.storage_maps.clear()
