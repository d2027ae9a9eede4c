"""The state tree: canonical roots, batched updates, proofs, tampering, LevelDB parity."""

import random
from pathlib import Path

import blake3
import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devnet.errors import DevnetError, StateTreeError
from devnet.state_tree import (
    EMPTY_ROOT,
    LevelDBNodeStore,
    MemoryNodeStore,
    NodeCache,
    Proof,
    ProofLeaf,
    StateTree,
    account_key,
    storage_key,
    template_key,
    verify_proof,
)

# Keys that share long prefixes, down to BASE and BASE ^ 1 (255 shared bits, depth 256),
# so the deep, chain-of-internal-nodes shapes get exercised, not only random ones.
BASE = bytes.fromhex("a5" * 32)
_BASE_INT = int.from_bytes(BASE, "big")
NEAR = [BASE] + [(_BASE_INT ^ (1 << bit)).to_bytes(32, "big") for bit in range(256)]

KEYS = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.sampled_from(NEAR),
    st.builds(
        lambda n, tail: BASE[:n] + tail[n:], st.integers(0, 31), st.binary(min_size=32, max_size=32)
    ),
)
VALUES = st.binary(max_size=40)
MAPS = st.dictionaries(KEYS, VALUES, max_size=24)
CHANGES = st.dictionaries(KEYS, st.one_of(st.none(), VALUES), max_size=16)


def spec_root(items: dict[bytes, bytes]) -> bytes:
    """The root straight from the documented definition, independent of the update code."""

    def bit(key: bytes, depth: int) -> int:
        return (key[depth // 8] >> (7 - depth % 8)) & 1

    def node(keys: list[bytes], depth: int) -> bytes:
        if not keys:
            return bytes(32)
        if len(keys) == 1:
            key = keys[0]
            return blake3.blake3(b"\x01" + key + blake3.blake3(items[key]).digest()).digest()
        left = node([k for k in keys if not bit(k, depth)], depth + 1)
        right = node([k for k in keys if bit(k, depth)], depth + 1)
        return blake3.blake3(b"\x02" + left + right).digest()

    return node(sorted(items), 0)


def fresh(items: dict[bytes, bytes]) -> tuple[StateTree, bytes]:
    tree = StateTree(MemoryNodeStore())
    return tree, tree.update(EMPTY_ROOT, items)


def apply(items: dict[bytes, bytes], changes: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    out = dict(items)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@settings(max_examples=300)
@given(MAPS, st.randoms(use_true_random=False))
def test_root_is_order_and_batching_independent(items, rnd):
    _, at_once = fresh(items)
    assert at_once == spec_root(items)
    order = list(items)
    rnd.shuffle(order)
    tree = StateTree(MemoryNodeStore())
    root = EMPTY_ROOT
    while order:  # random batch sizes, random order
        size = rnd.randint(1, 4)
        batch, order = order[:size], order[size:]
        root = tree.update(root, {k: items[k] for k in batch})
    assert root == at_once


@settings(max_examples=300)
@given(MAPS, st.lists(CHANGES, max_size=5))
def test_successive_layers_equal_a_fresh_tree_of_the_final_map(items, layers):
    tree, root = fresh(items)
    expected = items
    for changes in layers:
        root = tree.update(root, changes)
        expected = apply(expected, changes)
        assert root == spec_root(expected)
    assert dict(tree.items(root)) == expected
    assert list(tree.items(root)) == sorted(expected.items())
    for key, value in expected.items():
        assert tree.get(root, key) == value


@given(MAPS, CHANGES)
def test_deletes_restore_earlier_roots_and_old_roots_stay_readable(items, changes):
    tree, root0 = fresh(items)
    root1 = tree.update(root0, changes)
    undo = {key: items.get(key) for key in changes}
    assert tree.update(root1, undo) == root0
    # The old version is still fully readable next to the new one.
    assert dict(tree.items(root0)) == items
    assert dict(tree.items(root1)) == apply(items, changes)
    assert tree.update(root0, dict.fromkeys(items)) == EMPTY_ROOT


@settings(max_examples=300)
@given(MAPS, st.lists(KEYS, max_size=8))
def test_every_inclusion_and_exclusion_proof_verifies(items, probes):
    tree, root = fresh(items)
    for key in [*items, *probes]:
        value = items.get(key)
        proof = tree.prove(root, key)
        assert proof.includes(key) == (value is not None)
        encoded = proof.to_bytes()
        assert Proof.from_bytes(encoded) == proof
        assert verify_proof(root, key, value, proof)
        assert verify_proof(root, key, value, encoded)


@settings(max_examples=300)
@given(MAPS, KEYS, st.data())
def test_tampered_value_key_root_or_proof_fails(items, probe, data):
    tree, root = fresh(items)
    key = data.draw(st.sampled_from(sorted(items))) if items and data.draw(st.booleans()) else probe
    value = items.get(key)
    proof = tree.prove(root, key)
    encoded = proof.to_bytes()

    # A wrong value: another value, a deletion claimed for a present key, or vice versa.
    other = data.draw(VALUES.filter(lambda v: v != value))
    assert not verify_proof(root, key, other, proof)
    if value is not None:
        assert not verify_proof(root, key, None, proof)

    # Another key: an inclusion proof never carries over; an exclusion proof may, but only
    # for keys that really are absent.
    bit = data.draw(st.integers(0, 255))
    key2 = (int.from_bytes(key, "big") ^ (1 << bit)).to_bytes(32, "big")
    assert not verify_proof(root, key2, value, proof) or value is None
    if verify_proof(root, key2, None, proof):
        assert tree.get(root, key2) is None

    # Another root.
    pos = data.draw(st.integers(0, 31))
    root2 = bytearray(root)
    root2[pos] ^= data.draw(st.integers(1, 255))
    assert not verify_proof(bytes(root2), key, value, proof)

    # Any single altered byte of the proof: undecodable, or a proof that fails.
    pos = data.draw(st.integers(0, len(encoded) - 1))
    bad = bytearray(encoded)
    bad[pos] ^= data.draw(st.integers(1, 255))
    assert not verify_proof(root, key, value, bytes(bad))
    try:
        decoded = Proof.from_bytes(bytes(bad))
    except StateTreeError:
        pass
    else:
        assert decoded != proof
        assert not verify_proof(root, key, value, decoded)

    # A replaced sibling, or a leaf swapped for emptiness.
    if proof.siblings:
        i = data.draw(st.integers(0, len(proof.siblings) - 1))
        sibs = list(proof.siblings)
        sibs[i] = blake3.blake3(sibs[i]).digest()
        assert not verify_proof(root, key, value, Proof(tuple(sibs), proof.leaf))
    if proof.leaf is not None and value is None:
        assert not verify_proof(root, key, None, Proof(proof.siblings, None))


@given(st.binary(max_size=600))
def test_malformed_proof_bytes_raise_only_the_module_error(data):
    try:
        proof = Proof.from_bytes(data)
    except StateTreeError:
        pass
    else:
        assert proof.to_bytes() == data  # the encoding is canonical
    assert verify_proof(EMPTY_ROOT, bytes(32), None, data) in (True, False)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x00",  # header cut short
        b"\x02\x00\x00\x00",  # unknown version
        b"\x01\x02\x00\x00",  # unknown kind
        b"\x01\x00\x01\x01" + bytes(33),  # depth 257
        b"\x01\x00\x00\x01\x80" + bytes(32),  # an empty sibling listed explicitly
        b"\x01\x00\x00\x01\x40" + b"\x11" * 32,  # a padding bit set
        b"\x01\x00\x00\x09\x80",  # bitmap cut short
        b"\x01\x01\x00\x00" + bytes(63),  # leaf cut short
    ],
)
def test_non_canonical_or_broken_encodings_are_rejected(data):
    with pytest.raises(StateTreeError):
        Proof.from_bytes(data)
    assert not verify_proof(EMPTY_ROOT, bytes(32), None, data)


@given(MAPS, KEYS, st.data())
def test_truncated_or_extended_proofs_are_rejected(items, key, data):
    tree, root = fresh(items)
    encoded = tree.prove(root, key).to_bytes()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(StateTreeError):
        Proof.from_bytes(encoded[:cut])
    with pytest.raises(StateTreeError):
        Proof.from_bytes(encoded + data.draw(st.binary(min_size=1, max_size=40)))


def test_deepest_keys_give_256_sibling_proofs():
    items = {NEAR[0]: b"a", NEAR[1]: b"b"}  # differ only in the last bit
    tree, root = fresh(items)
    assert root == spec_root(items)
    for key, value in items.items():
        proof = tree.prove(root, key)
        assert len(proof.siblings) == 256
        assert Proof.from_bytes(proof.to_bytes()) == proof
        assert verify_proof(root, key, value, proof.to_bytes())
    assert tree.update(root, {NEAR[1]: None}) == spec_root({NEAR[0]: b"a"})


def test_empty_tree_and_single_leaf():
    tree = StateTree(MemoryNodeStore())
    assert tree.update(EMPTY_ROOT, {}) == EMPTY_ROOT
    assert tree.update(EMPTY_ROOT, {bytes(32): None}) == EMPTY_ROOT
    proof = tree.prove(EMPTY_ROOT, bytes(32))
    assert proof == Proof((), None)
    assert verify_proof(EMPTY_ROOT, bytes(32), None, proof)
    root = tree.update(EMPTY_ROOT, {bytes(32): b""})  # an empty value is a value
    assert tree.get(root, bytes(32)) == b""
    assert verify_proof(root, bytes(32), b"", tree.prove(root, bytes(32)))
    assert not verify_proof(root, bytes(32), None, tree.prove(root, bytes(32)))


def test_bad_input_raises_the_module_error():
    tree = StateTree(MemoryNodeStore())
    for call in (
        lambda: tree.update(EMPTY_ROOT, {b"short": b"v"}),
        lambda: tree.update(EMPTY_ROOT, {bytes(32): "text"}),  # type: ignore[dict-item]
        lambda: tree.get(EMPTY_ROOT, bytes(31)),
        lambda: tree.prove(b"\x01" * 32, bytes(32)),  # a root the store never saw
        lambda: tree.update(b"\x01" * 32, {bytes(32): b"v"}),
        lambda: Proof((bytes(31),), None),
        lambda: Proof((), ProofLeaf(bytes(32), bytes(8))),
        lambda: Proof.from_bytes("text"),  # type: ignore[arg-type]
        lambda: account_key(bytes(20)),
        lambda: storage_key(bytes(24), bytes(31)),
        lambda: template_key(bytes(25)),
    ):
        with pytest.raises(StateTreeError):
            call()
    assert issubclass(StateTreeError, DevnetError)
    assert not verify_proof(bytes(31), bytes(32), None, Proof((), None))
    assert not verify_proof(EMPTY_ROOT, bytes(33), None, Proof((), None))


def test_key_derivation_keeps_kinds_apart():
    address, slot = bytes(range(24)), bytes(range(32))
    keys = {account_key(address), storage_key(address, slot), template_key(address)}
    assert len(keys) == 3
    assert all(len(k) == 32 for k in keys)


def _layers(seed: int, count: int) -> list[dict[bytes, bytes | None]]:
    rng = random.Random(seed)
    known: list[bytes] = []
    layers: list[dict[bytes, bytes | None]] = []
    for _ in range(count):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(1, 60)):
            if known and rng.random() < 0.5:
                key = rng.choice(known)
                changes[key] = None if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 50))
            else:
                key = rng.choice([rng.randbytes(32), rng.choice(NEAR)])
                known.append(key)
                changes[key] = rng.randbytes(rng.randint(0, 50))
        layers.append(changes)
    return layers


def test_leveldb_store_matches_memory_and_survives_reopen(tmp_path: Path):
    layers = _layers(7, 12)
    memory = StateTree(MemoryNodeStore())
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    mem_roots = [EMPTY_ROOT]
    disk_roots = [EMPTY_ROOT]
    for n, changes in enumerate(layers):
        mem_roots.append(memory.update(mem_roots[-1], changes))
        # One atomic batch per layer, shared with the caller's own writes; the layer is
        # applied in two updates to check that nodes still in the batch are readable.
        with db.write_batch(transaction=True) as batch:
            tree = StateTree(LevelDBNodeStore(db, batch, prefix=b"n/"))
            items = sorted(changes.items())
            half = tree.update(disk_roots[-1], dict(items[: len(items) // 2]))
            root = tree.update(half, dict(items[len(items) // 2 :]))
            batch.put(b"m/root/" + n.to_bytes(4, "big"), root)
        disk_roots.append(root)
        assert root == mem_roots[-1]
    db.close()

    db = plyvel.DB(str(tmp_path / "db"))
    tree = StateTree(LevelDBNodeStore(db, prefix=b"n/"))
    for n, root in enumerate(disk_roots[1:]):
        assert db.get(b"m/root/" + n.to_bytes(4, "big")) == root
        assert dict(tree.items(root)) == dict(memory.items(root))
    final = disk_roots[-1]
    for key in {k for changes in layers for k in changes}:
        value = tree.get(final, key)
        assert value == memory.get(final, key)
        assert tree.prove(final, key) == memory.prove(final, key)
        assert verify_proof(final, key, value, tree.prove(final, key).to_bytes())
    db.close()


def test_leveldb_prefixed_db_without_a_batch(tmp_path: Path):
    layers = _layers(11, 6)
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    disk = StateTree(LevelDBNodeStore(db.prefixed_db(b"tree/")))
    memory = StateTree(MemoryNodeStore())
    root_disk = root_mem = EMPTY_ROOT
    for changes in layers:
        root_disk = disk.update(root_disk, changes)
        root_mem = memory.update(root_mem, changes)
        assert root_disk == root_mem
    assert all(key.startswith(b"tree/") for key, _ in db)
    db.close()


def _live_nodes(tree: StateTree, root: bytes) -> set[bytes]:
    """The hashes of every node under `root`."""
    out: set[bytes] = set()
    stack = [root]
    while stack:
        node_hash = stack.pop()
        if node_hash == EMPTY_ROOT:
            continue
        out.add(node_hash)
        node = tree.store.get(node_hash)
        assert node is not None
        if node[0] == 0x02:
            stack += [node[1:33], node[33:65]]
    return out


@pytest.mark.parametrize("max_nodes", [1, 7, 1_000_000])
def test_node_cache_changes_no_root_and_tracks_the_newest_tree(tmp_path: Path, max_nodes: int):
    layers = _layers(13, 10)
    memory = StateTree(MemoryNodeStore())
    cache = NodeCache(max_nodes)
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    mem_root = disk_root = EMPTY_ROOT
    for changes in layers:
        mem_root = memory.update(mem_root, changes)
        with db.write_batch(transaction=True) as batch:
            tree = StateTree(LevelDBNodeStore(db, batch, prefix=b"n/", cache=cache))
            items = sorted(changes.items())  # two chained updates in one batch
            half = tree.update(disk_root, dict(items[: len(items) // 2]))
            disk_root = tree.update(half, dict(items[len(items) // 2 :]))
        assert disk_root == mem_root
        assert len(cache) <= max_nodes
        if max_nodes > 1000:  # nothing evicted: exactly the nodes of the newest tree
            live = _live_nodes(memory, mem_root)
            assert all(cache.get(h) for h in live) and len(cache) == len(live)
    reader = StateTree(LevelDBNodeStore(db, prefix=b"n/", cache=cache))
    for key in {k for changes in layers for k in changes}:
        assert reader.get(disk_root, key) == memory.get(mem_root, key)
        assert reader.prove(disk_root, key) == memory.prove(mem_root, key)
    db.close()


def test_node_cache_bounds():
    cache = NodeCache(3)
    cache.add_many({bytes([i]) * 32: bytes([i]) for i in range(5)})
    assert len(cache) == 3 and cache.get(bytes(32)) is None  # the oldest went first
    assert cache.get(bytes([4]) * 32) == b"\x04"
    cache.discard_many([bytes([4]) * 32, bytes([9]) * 32])
    assert len(cache) == 2
    with pytest.raises(ValueError):
        NodeCache(0)
