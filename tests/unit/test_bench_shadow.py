"""`devnet bench shadow` on a tiny history: every layer verified, figures counted."""

from pathlib import Path

from devnet.bench.executor import Params
from devnet.bench.shadow import benchmark, report


def test_tiny_shadow_benchmark(tmp_path: Path) -> None:
    result = benchmark(Params(200, 40, 50, 3), cache_dir=tmp_path)
    assert result.mismatched == 0
    assert result.verified == 5 and result.layers == 4 and result.txs == 200
    lines = list(report(result))
    assert any(line.startswith("tx/s") for line in lines)
    again = benchmark(Params(200, 40, 50, 3), cache_dir=tmp_path)  # claims from the cache
    assert again.verified == 5
