"""`devnet bench executor` on a tiny history: the figures are sane (no timing assertions)."""

from pathlib import Path

import plyvel
import pytest
from typer.testing import CliRunner

from devnet.bench import executor as bench
from devnet.cli import app
from devnet.execution.layer import ExecutorStore

TINY = bench.Params(txs=200, accounts=50, txs_per_layer=60, seed=7)


def test_tiny_run_succeeds_and_counts(tmp_path: Path) -> None:
    result = bench.benchmark(TINY, cache_dir=tmp_path / "cache")
    assert result.ok
    assert result.succeeded == result.txs == 200
    assert result.failed == 0
    assert result.layers == TINY.layers == 4  # 60 + 60 + 60 + 20
    assert result.nonce_mismatches == 0
    assert result.seconds > 0 and result.genesis_seconds > 0
    assert result.tx_per_second > 0 and result.layers_per_second > 0
    assert result.peak_rss_kib > 0
    assert len(result.root) == 32 and result.root != bytes(32)
    assert not result.history.cached
    lines = list(bench.report(result))
    assert any(line.startswith("tx/s") for line in lines)
    assert "receipts     200 SUCCESS, 0 other" in lines
    assert f"root         {result.root.hex()}" in lines
    assert any(line.startswith("target       ≥ 3,000 tx/s ") for line in lines)


def test_cached_history_replays_to_the_same_root(tmp_path: Path) -> None:
    first = bench.benchmark(TINY, cache_dir=tmp_path)
    again = bench.benchmark(TINY, cache_dir=tmp_path)
    assert again.history.cached and again.history.blocks == first.history.blocks
    assert again.root == first.root
    other = bench.benchmark(bench.Params(200, 50, 60, seed=8), cache_dir=tmp_path)
    assert other.ok and other.root != first.root


def test_keep_leaves_a_database_at_the_last_layer(tmp_path: Path) -> None:
    keep = tmp_path / "db"
    result = bench.benchmark(TINY, keep=keep)
    db = plyvel.DB(str(keep))
    try:
        store = ExecutorStore(db)
        assert store.applied() == TINY.layers
        assert store.root() == result.root
    finally:
        db.close()
    with pytest.raises(bench.BenchError, match="new or empty"):
        bench.benchmark(TINY, keep=keep)


def test_a_broken_history_posts_no_figures(tmp_path: Path) -> None:
    config = bench.bench_config(TINY)
    history = bench.generate(TINY, config)
    # Drop layer 1: later spends of its principals now have nonce gaps and are rejected.
    broken = bench.History((history.blocks[0], *history.blocks[2:]), history.final_nonces)
    result = bench.replay(TINY, config, broken, tmp_path / "state")
    assert not result.ok
    assert result.failed > 0
    assert result.statuses["REJECTED"] == result.failed
    lines = list(bench.report(result))
    assert lines[-1].startswith("receipts")
    assert not any(line.startswith("tx/s") for line in lines)
    assert "transactions succeeded" in bench.failure(result)


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "CACHE_DIR", tmp_path)
    args = ["bench", "executor", "--txs", "120", "--accounts", "30", "--txs-per-layer", "50"]
    out = CliRunner().invoke(app, [*args, "--profile"])
    assert out.exit_code == 0, out.output
    assert "receipts     120 SUCCESS, 0 other" in out.output
    assert "layers       3 (1 … 3)" in out.output
    assert "apply_layer" in out.output  # the profile's top functions
    assert list(tmp_path.glob("executor-*.msgpack"))
    bad = CliRunner().invoke(app, ["bench", "executor", "--accounts", "1"])
    assert bad.exit_code != 0
