"""Signatures checked ahead in a helper process: the worker's protocol, the VM's memo, the
real helper process, and that execution with it is the same as without it."""

import io
import struct
import time
from pathlib import Path

import msgpack
import plyvel
import pytest

from athena_vm import ed25519
from devnet.bench import executor as bench
from devnet.block import decode_block, ordered_transactions
from devnet.execution.layer import ExecutorStore, apply_layer
from devnet.execution.signature_ahead import SignaturesAhead, wallet_signatures
from devnet.execution.signature_worker import CHUNK, FrameError, serve
from devnet.execution.state import open_state
from devnet.keys import KeyPair

KEY = KeyPair.from_seed(bytes(range(32)))
OTHER = KeyPair.from_seed(bytes(32))


def triple(i: int, valid: bool = True) -> bytes:
    message = b"transaction %d" % i
    signature = (KEY if valid else OTHER).sign(message)
    return ed25519.memo_key(KEY.public_key, message, signature)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def answers(stream: bytes) -> list[list[bytes]]:
    out, reader = [], io.BytesIO(stream)
    while head := reader.read(4):
        (length,) = struct.unpack(">I", head)
        out.append(msgpack.unpackb(reader.read(length)))
    return out


@pytest.fixture(autouse=True)
def empty_memo() -> None:
    ed25519.forget_all()


def test_worker_answers_the_valid_keys_a_chunk_at_a_time() -> None:
    keys = [triple(i, valid=i % 3 != 0) for i in range(CHUNK * 2 + 5)]
    out = io.BytesIO()
    serve(io.BytesIO(frame(msgpack.packb(keys)) + frame(msgpack.packb([keys[0]]))), out)
    chunks = answers(out.getvalue())
    assert len(chunks) == 3  # the second request's only key is invalid: no answer for it
    assert [k for chunk in chunks for k in chunk] == [k for i, k in enumerate(keys) if i % 3]


@pytest.mark.parametrize(
    "stream, error",
    [
        (b"\x00\x00", "inside a frame's length"),
        (struct.pack(">I", 10) + b"abc", "inside a frame"),
        (frame(msgpack.packb({"a": 1})), "list of byte strings"),
        (frame(msgpack.packb([b"x", 3])), "list of byte strings"),
        (struct.pack(">I", 2**31), "exceeds"),
    ],
)
def test_worker_refuses_a_malformed_request(stream: bytes, error: str) -> None:
    with pytest.raises(FrameError, match=error):
        serve(io.BytesIO(stream), io.BytesIO())


def test_memo_answers_only_the_exact_valid_triple_once() -> None:
    message = b"spend"
    good = KEY.sign(message)
    ed25519.remember_valid([ed25519.memo_key(KEY.public_key, message, good)])
    assert not ed25519.verify(KEY.public_key, b"spenD", good)  # another message: in place
    assert ed25519.known_valid() == 1
    assert ed25519.verify(KEY.public_key, message, good)
    assert ed25519.known_valid() == 0  # used up
    assert ed25519.verify(KEY.public_key, message, good)  # and verified in place again
    assert not ed25519.verify(KEY.public_key[:31], message, good)
    assert not ed25519.verify(KEY.public_key, message, good[:63])


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ed25519, "MAX_KNOWN_VALID", 4)
    ed25519.remember_valid([triple(i) for i in range(4)])
    ed25519.remember_valid([triple(9)])
    assert ed25519.known_valid() == 1


def wait_for(predicate: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the helper did not answer in time"
        time.sleep(0.01)


def test_helper_process_fills_the_memo_with_the_valid_ones() -> None:
    keys = [triple(i, valid=i % 2 == 0) for i in range(100)]
    ahead = SignaturesAhead("test")
    ahead.start()
    try:
        assert ahead.alive
        ahead.submit(keys)
        wait_for(lambda: ed25519.known_valid() == 50)
        message, signature = b"transaction 0", KEY.sign(b"transaction 0")
        assert ed25519.verify(KEY.public_key, message, signature)
    finally:
        ahead.close()
    assert not ahead.alive
    assert (ahead.submitted, ahead.answered, ahead.used) == (100, 50, 1)
    assert "100 checked ahead" in ahead.describe()


def test_a_dead_helper_leaves_verification_in_place() -> None:
    ahead = SignaturesAhead("test")
    ahead.start()
    assert ahead._process is not None
    ahead._process.kill()
    ahead._process.wait()
    ahead.submit([triple(1)])  # dropped: the helper is gone
    assert ed25519.known_valid() == 0
    assert ed25519.verify(KEY.public_key, b"transaction 1", KEY.sign(b"transaction 1"))
    ahead.close()
    ahead.close()  # idempotent


def test_execution_is_the_same_with_and_without_the_helper(tmp_path: Path) -> None:
    params = bench.Params(txs=400, accounts=60, txs_per_layer=100, seed=11)
    with_helper = bench.benchmark(params, cache_dir=tmp_path)
    in_place = bench.benchmark(params, cache_dir=tmp_path, signatures_ahead=False)
    assert with_helper.ok and in_place.ok
    assert with_helper.root == in_place.root
    assert with_helper.statuses == in_place.statuses
    assert with_helper.signatures is not None
    assert "400 checked ahead" in with_helper.signatures.describe()
    assert in_place.signatures is None


def test_the_vm_answers_from_the_memo_with_the_keys_wallet_signatures_names(
    tmp_path: Path,
) -> None:
    """Deterministic, no helper: the keys `wallet_signatures` computes for a block are exactly
    the checks its wallets' `verify` makes, and the VM takes each from the memo."""
    params = bench.Params(txs=30, accounts=10, txs_per_layer=30, seed=5)
    config = bench.bench_config(params)
    history = bench.generate(params, config)
    genesis, block = (decode_block(raw) for raw in history.blocks)
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    try:
        store, host = ExecutorStore(db), open_state(db)
        apply_layer(store, host, genesis, config)
        items = ordered_transactions(block, config.l1.block_gas_limit)
        keys = wallet_signatures(items, host, config.network.genesis_id)
        assert len(keys) == len(set(keys)) == 30
        ed25519.remember_valid(keys)
        _, receipts = apply_layer(store, host, block, config)
    finally:
        db.close()
    assert [r["status_name"] for r in receipts] == ["SUCCESS"] * 30
    assert ed25519.known_valid() == 0  # every one of them answered a check of the VM
