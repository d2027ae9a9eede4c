"""The authenticated state tree: a compact sparse Merkle tree over 32-byte keys.

The executor commits every layer's Athena state to one 32-byte root, the shadow executor
recomputes it independently, and a client checks a single account or storage slot against
a claimed root with `verify_proof`, trusting nothing but the hash function.

Shape. A binary tree of depth up to 256 indexed by the bits of the key (most significant
bit first; 0 goes left). It is kept compact so that updates cost O(log n) hashes rather than
256: an empty subtree is the constant `EMPTY_ROOT` (never stored), and a subtree holding
exactly one key is that key's leaf, placed as high as it goes. Internal nodes therefore
exist only where at least two keys sit below, and because keys are blake3 digests (an
attacker cannot cheaply choose long shared prefixes) the depth is about log2(n). The shape
is a function of the key set alone, so the root depends only on the final (key, value)
pairs, never on the order or batching of updates.

Hashing (blake3, one-byte domain tags so a leaf can never pass for an internal node):

    leaf      = blake3(0x01 ‖ key [32] ‖ blake3(value))
    internal  = blake3(0x02 ‖ left [32] ‖ right [32])
    empty     = 32 zero bytes (no known preimage, so it cannot be forged)

A leaf's hash does not depend on its depth, which is what lets a single-key subtree move
up or down as neighbours come and go without rehashing the leaf.

Storage. Nodes are content-addressed in a `NodeStore` (node hash -> encoding): internal
nodes as `0x02 ‖ left ‖ right`, leaves as `0x01 ‖ key ‖ value`. Every update writes only
new nodes and never deletes, so every earlier root stays readable; there is no pruning
yet (a devnet's history is small, and pruning needs reference counting or a sweep that
can come later without changing any hash).

This module is shared by the executor, the shadow executor and the client library, so it
imports no daemon package and does not even import plyvel: the LevelDB store works with
any object that has plyvel's `get`/`put` shape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

import blake3

from devnet.errors import StateTreeError

KEY_SIZE = 32
HASH_SIZE = 32
MAX_DEPTH = 8 * KEY_SIZE
EMPTY_ROOT = bytes(HASH_SIZE)

LEAF_TAG = 0x01
INTERNAL_TAG = 0x02
_LEAF = bytes([LEAF_TAG])
_INTERNAL = bytes([INTERNAL_TAG])

PROOF_VERSION = 1
_PROOF_EMPTY = 0
_PROOF_LEAF = 1

# Suggested logical-key tags (the executor's LevelDB prefixes), so accounts, storage slots
# and templates can never map to the same logical key.
ACCOUNT_TAG = b"A"
STORAGE_TAG = b"S"
TEMPLATE_TAG = b"T"
ADDRESS_SIZE = 24
SLOT_SIZE = 32

_hash = blake3.blake3


# --- hashing and key derivation --------------------------------------------------------


def value_hash(value: bytes) -> bytes:
    """blake3(value): what a leaf commits to, so proofs carry 32 bytes, not the value."""
    return _hash(value).digest()


def leaf_hash(key: bytes, value: bytes) -> bytes:
    """The hash of the leaf holding `value` under `key`."""
    return _hash(_LEAF + key + _hash(value).digest()).digest()


def _leaf_hash_from_value_hash(key: bytes, vhash: bytes) -> bytes:
    return _hash(_LEAF + key + vhash).digest()


def internal_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an internal node with these children (either may be EMPTY_ROOT)."""
    return _hash(_INTERNAL + left + right).digest()


def tree_key(logical_key: bytes) -> bytes:
    """The tree key of a logical key: its blake3 digest.

    Hashing spreads keys uniformly, which is what keeps the tree's depth near log2(n) even
    when logical keys share long prefixes (all slots of one account do).
    """
    return _hash(logical_key).digest()


def account_key(address: bytes) -> bytes:
    """Suggested tree key of an account record: blake3("A" ‖ address [24])."""
    if len(address) != ADDRESS_SIZE:
        raise StateTreeError(f"an address is {ADDRESS_SIZE} bytes, not {len(address)}")
    return tree_key(ACCOUNT_TAG + address)


def storage_key(address: bytes, slot: bytes) -> bytes:
    """Suggested tree key of a storage slot: blake3("S" ‖ address [24] ‖ slot [32])."""
    if len(address) != ADDRESS_SIZE or len(slot) != SLOT_SIZE:
        raise StateTreeError(
            f"a storage key is a {ADDRESS_SIZE}-byte address and a {SLOT_SIZE}-byte slot, "
            f"not {len(address)} and {len(slot)} bytes"
        )
    return tree_key(STORAGE_TAG + address + slot)


def template_key(template: bytes) -> bytes:
    """Suggested tree key of a deployed template: blake3("T" ‖ template address [24])."""
    if len(template) != ADDRESS_SIZE:
        raise StateTreeError(f"a template address is {ADDRESS_SIZE} bytes, not {len(template)}")
    return tree_key(TEMPLATE_TAG + template)


# --- node stores -------------------------------------------------------------------------


class NodeStore(Protocol):
    """Where tree nodes live, keyed by their hash. Nodes are immutable once written."""

    def get(self, node_hash: bytes) -> bytes | None:
        """The node's encoding, or None if this store has never seen it."""
        ...

    def put_many(self, nodes: Mapping[bytes, bytes]) -> None:
        """Store all `nodes` (hash -> encoding) at once; one call per tree update."""
        ...

    def retire(self, node_hashes: Iterable[bytes]) -> None:
        """Nodes an update replaced: no longer under the newest root.

        A store keeps them (older roots stay readable); a cache in front of it may drop
        them, since they will rarely be read again.
        """
        ...


class MemoryNodeStore:
    """A dict-backed store, for clients, tests and tools that need no persistence."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)

    def put_many(self, nodes: Mapping[bytes, bytes]) -> None:
        self.nodes.update(nodes)

    def retire(self, node_hashes: Iterable[bytes]) -> None:
        """Nothing to do: this store is the only copy, and older roots stay readable."""

    def __len__(self) -> int:
        return len(self.nodes)


DEFAULT_CACHE_NODES = 1_000_000


class NodeCache:
    """Tree nodes kept in memory across layers, in front of a LevelDB store.

    An update reads every node on the paths it changes, and the nodes near the root are on
    almost every path, layer after layer: without a cache each of those reads is a LevelDB
    get. Nodes are content-addressed and immutable, so a cached node can never be stale;
    the cache only changes speed. Every update adds the nodes it creates and drops the ones
    it replaced, so the cache converges on the nodes of the newest tree (about two per key),
    which is what the next update reads. `max_nodes` bounds it for very large states: past
    it, the oldest entries go first (a dropped node is read from LevelDB again if needed).
    """

    def __init__(self, max_nodes: int = DEFAULT_CACHE_NODES) -> None:
        if max_nodes < 1:
            raise ValueError(f"a node cache holds at least one node, not {max_nodes}")
        self.max_nodes = max_nodes
        self._nodes: dict[bytes, bytes] = {}
        #: The node under a hash, or None: the dict's own lookup, the hottest read.
        self.get: Callable[[bytes], bytes | None] = self._nodes.get

    def __len__(self) -> int:
        return len(self._nodes)

    def add_many(self, nodes: Mapping[bytes, bytes]) -> None:
        self._nodes.update(nodes)
        self._trim()

    def add(self, node_hash: bytes, node: bytes) -> None:
        self._nodes[node_hash] = node
        self._trim()

    def discard_many(self, node_hashes: Iterable[bytes]) -> None:
        pop = self._nodes.pop
        for node_hash in node_hashes:
            pop(node_hash, None)

    def _trim(self) -> None:
        excess = len(self._nodes) - self.max_nodes
        if excess > 0:
            # Dicts keep insertion order: the first keys are the oldest entries.
            for node_hash in list(islice(self._nodes, excess)):
                del self._nodes[node_hash]


class _Batch(Protocol):
    def put(self, key: bytes, value: bytes, /) -> None: ...


class _KeyValueDB(Protocol):
    def get(self, key: bytes, /) -> bytes | None: ...

    def write_batch(self) -> AbstractContextManager[_Batch]: ...


class LevelDBNodeStore:
    """Nodes in LevelDB under `prefix ‖ node hash`.

    `db` is a plyvel DB or PrefixedDB (reads go through it). With `batch`, every write goes
    into that WriteBatch, so a layer's tree nodes commit atomically with its state changes,
    receipts and applied-layer marker: pass the caller's per-layer batch and a `prefix` that
    keeps node keys apart from the caller's own (a batch opened on the plain DB does not
    apply a PrefixedDB's prefix, so the prefix must be given here). Without `batch`, each
    `put_many` writes its own atomic batch.

    Nodes written into a batch are not readable from LevelDB until the batch is written,
    so this store also remembers them: several updates may then chain within one layer.
    Use one store per batch; if the batch is discarded, discard the store with it.

    `cache` (optional) is a `NodeCache` that outlives the store, normally one per process
    shared by every layer's store: reads try it before LevelDB and fill it, writes and
    retirements keep it on the newest tree. A discarded batch leaves in it nodes LevelDB
    lacks, which is harmless: a node is only reached from a root that references it.
    """

    def __init__(
        self,
        db: _KeyValueDB,
        batch: _Batch | None = None,
        *,
        prefix: bytes = b"",
        cache: NodeCache | None = None,
    ) -> None:
        self._db = db
        self._batch = batch
        self._prefix = prefix
        self._cache = cache
        self._pending: dict[bytes, bytes] = {}
        # Where a node is looked up first: the cache holds every node put here as well,
        # so most reads end at this one dict lookup.
        self._first = self._pending.get if cache is None else cache.get

    def get(self, node_hash: bytes) -> bytes | None:
        node = self._first(node_hash)
        if node is None:
            node = self._pending.get(node_hash)  # put here, then dropped by the cache
            if node is None:
                node = self._load(node_hash)
        return node

    def _load(self, node_hash: bytes) -> bytes | None:
        node = self._db.get(self._prefix + node_hash)
        if node is not None and self._cache is not None:
            self._cache.add(node_hash, node)
        return node

    def put_many(self, nodes: Mapping[bytes, bytes]) -> None:
        prefix = self._prefix
        if self._batch is None:
            with self._db.write_batch() as batch:
                for node_hash, node in nodes.items():
                    batch.put(prefix + node_hash, node)
        else:
            put = self._batch.put
            for node_hash, node in nodes.items():
                put(prefix + node_hash, node)
            self._pending.update(nodes)
        if self._cache is not None:
            self._cache.add_many(nodes)

    def retire(self, node_hashes: Iterable[bytes]) -> None:
        """Drop replaced nodes from the cache; LevelDB keeps them for older roots."""
        if self._cache is not None:
            self._cache.discard_many(node_hashes)


# --- proofs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofLeaf:
    """The leaf a key's path ends at: the key itself (inclusion) or another (exclusion)."""

    key: bytes
    value_hash: bytes


@dataclass(frozen=True)
class Proof:
    """An inclusion or exclusion proof for one key.

    `siblings[i]` is the sibling of the key's path at depth i + 1 (root first); the path
    ends after `len(siblings)` steps at `leaf`, or at an empty subtree when `leaf` is None.
    The key's value is present iff `leaf.key` is the key. Construction validates the shape,
    so a `Proof` object is always well formed; whether it is *true* is `verify_proof`'s job.

    Bytes (version 1):

        version u8 = 1 ‖ kind u8 (0 = ends empty, 1 = ends at a leaf) ‖ depth u16 BE (≤ 256)
        ‖ bitmap [ceil(depth / 8)]   bit i (MSB first) set iff siblings[i] is not empty
        ‖ the non-empty siblings [32 each], in order
        ‖ if kind = 1: leaf key [32] ‖ leaf value hash [32]

    The encoding is canonical (padding bits zero, a listed sibling is never EMPTY_ROOT, no
    trailing bytes), so each proof has exactly one byte form and any altered byte either
    fails to decode or decodes to a different proof.
    """

    siblings: tuple[bytes, ...]
    leaf: ProofLeaf | None

    def __post_init__(self) -> None:
        if len(self.siblings) > MAX_DEPTH:
            raise StateTreeError(f"a proof has at most {MAX_DEPTH} siblings")
        for sibling in self.siblings:
            if not isinstance(sibling, bytes) or len(sibling) != HASH_SIZE:
                raise StateTreeError(f"a sibling is a {HASH_SIZE}-byte hash")
        leaf = self.leaf
        if leaf is not None and (
            not isinstance(leaf.key, bytes)
            or not isinstance(leaf.value_hash, bytes)
            or len(leaf.key) != KEY_SIZE
            or len(leaf.value_hash) != HASH_SIZE
        ):
            raise StateTreeError(f"a proof leaf is a {KEY_SIZE}-byte key and a hash")

    def includes(self, key: bytes) -> bool:
        """Whether this proof claims `key` is present (it still has to verify)."""
        return self.leaf is not None and self.leaf.key == key

    def to_bytes(self) -> bytes:
        depth = len(self.siblings)
        bitmap = 0
        present: list[bytes] = []
        for i, sibling in enumerate(self.siblings):
            if sibling != EMPTY_ROOT:
                bitmap |= 1 << (8 * _bitmap_len(depth) - 1 - i)
                present.append(sibling)
        parts = [
            bytes([PROOF_VERSION, _PROOF_EMPTY if self.leaf is None else _PROOF_LEAF]),
            depth.to_bytes(2, "big"),
            bitmap.to_bytes(_bitmap_len(depth), "big"),
            *present,
        ]
        if self.leaf is not None:
            parts += [self.leaf.key, self.leaf.value_hash]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Proof:
        """Decode a proof, raising StateTreeError (only) on anything malformed."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StateTreeError("a proof is bytes")
        data = bytes(data)
        if len(data) < 4:
            raise StateTreeError("proof truncated: no header")
        version, kind = data[0], data[1]
        if version != PROOF_VERSION:
            raise StateTreeError(f"unknown proof version {version}")
        if kind not in (_PROOF_EMPTY, _PROOF_LEAF):
            raise StateTreeError(f"unknown proof kind {kind}")
        depth = int.from_bytes(data[2:4], "big")
        if depth > MAX_DEPTH:
            raise StateTreeError(f"proof depth {depth} exceeds {MAX_DEPTH}")
        pos = 4
        nbytes = _bitmap_len(depth)
        bitmap = int.from_bytes(data[pos : pos + nbytes], "big")
        if len(data) < pos + nbytes:
            raise StateTreeError("proof truncated in the sibling bitmap")
        pos += nbytes
        if bitmap & ((1 << (8 * nbytes - depth)) - 1):
            raise StateTreeError("proof bitmap has padding bits set")
        expected = pos + HASH_SIZE * bitmap.bit_count() + (2 * HASH_SIZE if kind else 0)
        if len(data) != expected:
            raise StateTreeError(f"proof is {len(data)} bytes, its header says {expected}")
        siblings: list[bytes] = []
        for i in range(depth):
            if (bitmap >> (8 * nbytes - 1 - i)) & 1:
                sibling = data[pos : pos + HASH_SIZE]
                if sibling == EMPTY_ROOT:
                    raise StateTreeError("proof lists an empty sibling explicitly")
                siblings.append(sibling)
                pos += HASH_SIZE
            else:
                siblings.append(EMPTY_ROOT)
        leaf = None
        if kind == _PROOF_LEAF:
            leaf = ProofLeaf(data[pos : pos + KEY_SIZE], data[pos + KEY_SIZE : pos + 2 * KEY_SIZE])
        return cls(tuple(siblings), leaf)


def _bitmap_len(depth: int) -> int:
    return (depth + 7) // 8


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: Proof | bytes) -> bool:
    """Whether `proof` shows that under `root`, `key` holds `value` (None: is absent).

    Pure and self-contained: needs no store and no trust in whoever sent the proof. Never
    raises on bad input (wrong sizes, malformed proof bytes); such input does not verify.
    """
    if not isinstance(proof, Proof):
        try:
            proof = Proof.from_bytes(proof)
        except StateTreeError:
            return False
    if (
        not isinstance(root, bytes)
        or not isinstance(key, bytes)
        or len(root) != HASH_SIZE
        or len(key) != KEY_SIZE
    ):
        return False
    siblings = proof.siblings
    depth = len(siblings)
    leaf = proof.leaf
    if value is not None:
        if not isinstance(value, bytes | bytearray | memoryview):
            return False
        if leaf is None or leaf.key != key or leaf.value_hash != value_hash(bytes(value)):
            return False
        node = _leaf_hash_from_value_hash(key, leaf.value_hash)
    elif leaf is None:
        node = EMPTY_ROOT
    else:
        # Another key's leaf proves absence only if it sits on our key's path.
        if leaf.key == key:
            return False
        shared = int.from_bytes(leaf.key, "big") ^ int.from_bytes(key, "big")
        if shared >> (MAX_DEPTH - depth):
            return False
        node = _leaf_hash_from_value_hash(leaf.key, leaf.value_hash)
    k = int.from_bytes(key, "big")
    for i in range(depth - 1, -1, -1):
        if (k >> (MAX_DEPTH - 1 - i)) & 1:
            node = _hash(_INTERNAL + siblings[i] + node).digest()
        else:
            node = _hash(_INTERNAL + node + siblings[i]).digest()
    return node == root


# --- the tree ------------------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise StateTreeError(f"a state tree key is {KEY_SIZE} bytes")


class _Update:
    """One batched update: sorted changes, and the new nodes it creates.

    Subtree functions return the new subtree's hash only. Whether a new child is a lone
    leaf matters only when its sibling became empty (the leaf then moves up), which is
    rare, so `join` looks the node up then instead of every level passing it along.
    """

    def __init__(self, store: NodeStore, changes: Mapping[bytes, bytes | None]) -> None:
        self.get = store.get
        order = sorted(changes)
        self.ints = [int.from_bytes(k, "big") for k in order]
        self.keys = order
        self.values = [changes[k] for k in order]
        self.new: dict[bytes, bytes] = {}
        #: Nodes of the old tree this update replaced (some may be recreated: see `retired`).
        self.replaced: list[bytes] = []

    def retired(self) -> list[bytes]:
        """The replaced nodes that are not part of the new tree (a lone leaf that moved up
        or down keeps its hash, so it is replaced and recreated at once)."""
        new = self.new
        return [node_hash for node_hash in self.replaced if node_hash not in new]

    def load(self, node_hash: bytes) -> bytes:
        node = self.new.get(node_hash) or self.get(node_hash)
        if node is None:
            raise StateTreeError(f"state tree node {node_hash.hex()} is not in the store")
        return node

    def is_leaf(self, node_hash: bytes) -> bool:
        return self.load(node_hash)[0] == LEAF_TAG

    def leaf(self, key: bytes, value: bytes) -> bytes:
        node_hash = leaf_hash(key, value)
        self.new[node_hash] = _LEAF + key + value
        return node_hash

    def internal(self, left: bytes, right: bytes) -> bytes:
        node = _INTERNAL + left + right
        node_hash = _hash(node).digest()
        self.new[node_hash] = node
        return node_hash

    def update(self, node_hash: bytes, depth: int, lo: int, hi: int) -> bytes:
        """Apply changes [lo, hi) (lo < hi, all under this node); returns the new hash.

        This runs once per node on the changed paths, so the common steps are inline: a
        child without changes is not visited, a leaf whose value changes is rebuilt
        directly, and two non-empty children need no `join`.
        """
        if node_hash == EMPTY_ROOT:
            return self.rebuild(None, depth, lo, hi)
        node = self.get(node_hash)
        if node is None:
            raise StateTreeError(f"state tree node {node_hash.hex()} is not in the store")
        if node[0] == LEAF_TAG:
            self.replaced.append(node_hash)
            key = node[1 : 1 + KEY_SIZE]
            value = self.values[lo]
            if hi - lo == 1 and value is not None and self.keys[lo] == key:
                return self.leaf(key, value)  # the common case: a value changes
            return self.rebuild((key, node[1 + KEY_SIZE :]), depth, lo, hi)
        left = node[1:33]
        right = node[33:65]
        ints = self.ints
        shift = MAX_DEPTH - 1 - depth
        mid = bisect_left(ints, ((ints[lo] >> shift) | 1) << shift, lo, hi)
        new_left = self.update(left, depth + 1, lo, mid) if lo < mid else left
        new_right = self.update(right, depth + 1, mid, hi) if mid < hi else right
        if new_left == left and new_right == right:
            return node_hash
        self.replaced.append(node_hash)
        if new_left != EMPTY_ROOT and new_right != EMPTY_ROOT:
            node = _INTERNAL + new_left + new_right
            node_hash = _hash(node).digest()
            self.new[node_hash] = node
            return node_hash
        return self.join(new_left, new_right)

    def rebuild(self, leaf: tuple[bytes, bytes] | None, depth: int, lo: int, hi: int) -> bytes:
        """Changes landing on an empty or single-leaf subtree: build it from the merged keys.

        The existing leaf (if any) joins the changes unless a change overrides its key.
        """
        leaf_int = -1
        if leaf is not None:
            leaf_int = int.from_bytes(leaf[0], "big")
        ints: list[int] = []
        keys: list[bytes] = []
        values: list[bytes] = []
        for i in range(lo, hi):
            key_int = self.ints[i]
            if leaf is not None and leaf_int <= key_int:
                if leaf_int < key_int:
                    ints.append(leaf_int)
                    keys.append(leaf[0])
                    values.append(leaf[1])
                leaf = None
            value = self.values[i]
            if value is not None:
                ints.append(key_int)
                keys.append(self.keys[i])
                values.append(value)
        if leaf is not None:
            ints.append(leaf_int)
            keys.append(leaf[0])
            values.append(leaf[1])
        return self.build(ints, keys, values, 0, len(ints), depth)

    def build(
        self,
        ints: list[int],
        keys: list[bytes],
        values: list[bytes],
        lo: int,
        hi: int,
        depth: int,
    ) -> bytes:
        """The canonical subtree of the (sorted, distinct) keys [lo, hi) at `depth`."""
        count = hi - lo
        if count == 0:
            return EMPTY_ROOT
        if count == 1:
            return self.leaf(keys[lo], values[lo])
        boundary = _boundary(ints[lo], depth)
        mid = bisect_left(ints, boundary, lo, hi)
        left = self.build(ints, keys, values, lo, mid, depth + 1)
        right = self.build(ints, keys, values, mid, hi, depth + 1)
        # Two or more keys: never collapses (one side may be empty, the other internal).
        return self.internal(left, right)

    def join(self, left: bytes, right: bytes) -> bytes:
        """The node over two new children, collapsing a lone leaf or emptiness upward."""
        if left == EMPTY_ROOT:
            if right == EMPTY_ROOT or self.is_leaf(right):
                return right
        elif right == EMPTY_ROOT and self.is_leaf(left):
            return left
        return self.internal(left, right)


def _boundary(first: int, depth: int) -> int:
    """The smallest key with `first`'s top `depth` bits and bit `depth` set."""
    shift = MAX_DEPTH - depth
    return ((first >> shift) << shift) | (1 << (shift - 1))


class StateTree:
    """Operations on the trees held in one `NodeStore`; a root names one version.

    The object holds no root itself: the executor keeps each layer's root next to the
    layer's state, and any older root can still be read or proved against.
    """

    def __init__(self, store: NodeStore) -> None:
        self.store = store

    def update(self, root: bytes, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Apply a layer's changes (key -> new value, None deletes) and return the new root.

        The whole batch is applied in one pass, so shared upper nodes are hashed once per
        layer rather than once per key; its new nodes go to the store in one `put_many`.
        Deleting an absent key is a no-op.
        """
        for key, value in changes.items():
            _check_key(key)
            if value is not None and not isinstance(value, bytes):
                raise StateTreeError("a state tree value is bytes (or None to delete)")
        if not changes:
            return root
        upd = _Update(self.store, changes)
        new_root = upd.update(root, 0, 0, len(upd.keys))
        if upd.new:
            self.store.put_many(upd.new)
        if upd.replaced:
            self.store.retire(upd.retired())
        return new_root

    def _walk(self, root: bytes, key: bytes) -> tuple[list[bytes], bytes | None]:
        """The siblings down `key`'s path and the leaf node it ends at (None: empty)."""
        _check_key(key)
        k = int.from_bytes(key, "big")
        siblings: list[bytes] = []
        node_hash = root
        depth = 0
        while node_hash != EMPTY_ROOT:
            node = self.store.get(node_hash)
            if node is None:
                raise StateTreeError(f"state tree node {node_hash.hex()} is not in the store")
            if node[0] == LEAF_TAG:
                return siblings, node
            if (k >> (MAX_DEPTH - 1 - depth)) & 1:
                siblings.append(node[1:33])
                node_hash = node[33:65]
            else:
                siblings.append(node[33:65])
                node_hash = node[1:33]
            depth += 1
        return siblings, None

    def get(self, root: bytes, key: bytes) -> bytes | None:
        """The value of `key` under `root`, or None if absent."""
        _, leaf = self._walk(root, key)
        if leaf is not None and leaf[1 : 1 + KEY_SIZE] == key:
            return leaf[1 + KEY_SIZE :]
        return None

    def prove(self, root: bytes, key: bytes) -> Proof:
        """An inclusion proof if `key` is present under `root`, else an exclusion proof."""
        siblings, leaf = self._walk(root, key)
        proof_leaf = None
        if leaf is not None:
            proof_leaf = ProofLeaf(leaf[1 : 1 + KEY_SIZE], value_hash(leaf[1 + KEY_SIZE :]))
        return Proof(tuple(siblings), proof_leaf)

    def items(self, root: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) under `root`, in key order: for audits, dumps and tests."""
        stack = [root]
        while stack:
            node_hash = stack.pop()
            if node_hash == EMPTY_ROOT:
                continue
            node = self.store.get(node_hash)
            if node is None:
                raise StateTreeError(f"state tree node {node_hash.hex()} is not in the store")
            if node[0] == LEAF_TAG:
                yield node[1 : 1 + KEY_SIZE], node[1 + KEY_SIZE :]
            else:
                stack.append(node[33:65])
                stack.append(node[1:33])
