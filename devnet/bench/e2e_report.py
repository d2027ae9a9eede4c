"""`devnet bench e2e`, the report: the figures of a run and the lines printed for them."""

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devnet.bench.e2e import CpuUse, Outcome

RSS_LIMIT_MB = 300.0
TARGET_TPS = 1000.0
TARGET_P99_LAYERS = 3
TARGET_SHADOW_LAG = 1


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Figures:
    """The numbers the report prints, derived from an outcome."""

    seconds: float
    acked: int
    executed: int
    tps: float
    steady_tps: float
    per_layer: list[int]
    latency_ms: list[float]
    latency_layers: list[float]
    exec_lag: list[float]
    shadow_lag: list[float]
    verified_lag: list[float]


def figures(outcome: "Outcome") -> Figures:
    load, recorder, network = outcome.load, outcome.recorder, outcome.config.network
    started, stopped = float(load["started"]), float(load["stopped"])
    seconds = max(1e-9, stopped - started)
    warm = min(5.0, seconds / 4)
    ours = {bytes(e[0]): float(e[3]) for e in load["acked"]}
    latency_ms, latency_layers = [], []
    for tx_id, sent in ((bytes(e[0]), float(e[3])) for e in load["acked"]):
        layer = outcome.executed_in.get(tx_id)
        if layer is not None:
            latency_ms.append((recorder.layers[layer][0] - sent) * 1000)
            latency_layers.append(float(layer - network.layer_at(int(sent * 1000))))
    in_window, steady = 0, 0
    per_layer = []
    for at, txs in recorder.layers.values():
        count = sum(1 for t in txs if t in ours)
        if started <= at <= stopped:
            in_window += count
            if at >= started + warm:
                steady += count
                per_layer.append(count)
    during = [s for s in recorder.samples if started <= s.at <= stopped]
    return Figures(
        seconds,
        len(ours),
        in_window,
        in_window / seconds,
        steady / max(1e-9, seconds - warm),
        per_layer,
        latency_ms,
        latency_layers,
        [float(s.certified - s.executor) for s in during],
        [float(s.certified - s.shadow) for s in during],
        [float(s.certified - s.verified) for s in during],
    )


def _spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    if not values:
        return "no data"
    fmt = f"{{:,.{digits}f}}{unit}"
    return "  ".join(
        f"{name} {fmt.format(value)}"
        for name, value in (
            ("p50", percentile(values, 50)),
            ("p99", percentile(values, 99)),
            ("max", max(values)),
        )
    )


def report(outcome: "Outcome") -> Iterator[str]:
    p, load, f = outcome.params, outcome.load, figures(outcome)
    layer_ms = outcome.config.network.layer_duration_ms
    yield f"devnet        {outcome.topology}; {layer_ms} ms layers"
    yield (
        f"wallets       {p.wallets} ({outcome.funded} funded and spawned first in "
        f"{outcome.funding_seconds:.1f} s, not measured)"
    )
    method = "submit_txs" if outcome.batched else "submit_tx"
    yield (
        f"presigned     {int(load.get('presigned', 0)):,} spends in "
        f"{float(load.get('presign_seconds', 0)):.1f} s before the run (not measured)"
    )
    yield (
        f"load          {f.seconds:.1f} s from a separate process, ≤ {p.inflight:,} in flight, "
        f"batches of ≤ {p.batch} over {p.connections} connections ({method}, "
        f"{load['calls']:,} calls)"
    )
    refused = sum(load["rejections"].values())
    yield f"acknowledged  {f.acked:,} ({f.acked / f.seconds:,.1f} tx/s), {refused:,} refused"
    if load["rejections"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(load["rejections"].items()))
        yield f"refused by    {reasons}"
    if load["call_errors"]:
        errors = ", ".join(f"{k} ×{v}" for k, v in sorted(load["call_errors"].items()))
        yield f"call errors   {errors}"
    busy = [n for n in f.per_layer if n]
    layers = (
        f"{len(busy)} of {len(f.per_layer)} layers carried ours, "
        f"{statistics.mean(busy):,.0f} on average, at most {max(busy):,}"
        if busy
        else "no layer carried ours"
    )
    yield (
        f"executed      {f.executed:,} during the load: {f.tps:,.1f} tx/s "
        f"(after the first {min(5.0, f.seconds / 4):.0f} s: {f.steady_tps:,.1f} tx/s; {layers})"
    )
    yield f"latency       submit → receipt {_spread(f.latency_ms, ' ms')}"
    yield f"              in layers {_spread(f.latency_layers)}"
    yield f"executor lag  layers behind the last certified: {_spread(f.exec_lag)}"
    yield f"shadow lag    applied: {_spread(f.shadow_lag)}; verified: {_spread(f.verified_lag)}"
    rss = "  ".join(
        f"{name} {'-' if mb is None else f'{mb:.0f}'}" for name, mb in outcome.rss_mb.items()
    )
    yield f"peak RSS MB   {rss}  load {int(load['peak_rss_kib']) / 1024:.0f}"
    yield from cpu_lines(outcome.cpu, f.tps)
    yield from checks(outcome)
    yield from targets(outcome, f)


def cpu_lines(cpu: "CpuUse", tps: float) -> Iterator[str]:
    """Cores used, and CPU milliseconds per executed transaction: the second does not
    depend on what else the machine was running, so it says which process bounds the
    rate (total ms per transaction × rate ≤ 1000 × cores)."""
    if not cpu.cores:
        return
    ours = sum(cpu.cores.values())
    yield "CPU cores     " + "  ".join(f"{name} {used:.2f}" for name, used in cpu.cores.items())
    yield (
        f"              devnet + load {ours:.2f}; the machine {cpu.machine_busy:.2f} busy of "
        f"{cpu.machine_cores:.0f} ({max(0.0, cpu.machine_busy - ours):.2f} elsewhere)"
    )
    if tps > 0:
        per_tx = {name: used * 1000 / tps for name, used in cpu.cores.items()}
        smeshers = sum(v for k, v in per_tx.items() if k.startswith("smesher"))
        others = "  ".join(f"{k} {v:.2f}" for k, v in per_tx.items() if not k.startswith("smesher"))
        total = sum(per_tx.values())
        yield (
            f"CPU ms/tx     {others}  smeshers {smeshers:.2f}; total {total:.2f} "
            f"(≈ {1000 * cpu.machine_cores / total:,.0f} tx/s if the devnet had every core)"
        )


def checks(outcome: "Outcome") -> Iterator[str]:
    acked = len(outcome.load["acked"])
    executed = acked - len(outcome.failed)
    mark = "ok" if not outcome.failed and not outcome.nonce_mismatches else "FAILED"
    yield (
        f"exactly once  {mark}: {executed:,} of {acked:,} acknowledged executed successfully, "
        f"{len(outcome.nonce_mismatches)} wallets with a wrong nonce, "
        f"{outcome.repeated} re-included (and refused there)"
    )
    for tx_id, why in list(outcome.failed.items())[:5]:
        yield f"              {tx_id.hex()[:16]}: {why}"
    for index, expected, got in outcome.nonce_mismatches[:5]:
        yield f"              user-{index}: nonce {got}, expected {expected}"
    mark = "ok" if not outcome.unverified and not outcome.divergences else "FAILED"
    yield (
        f"shadow        {mark}: layers {outcome.first_layer}–{outcome.last_layer}, "
        f"{len(outcome.unverified)} not verified, {len(outcome.divergences)} divergences"
    )
    for verdict in outcome.divergences[:3]:
        yield f"              {verdict['kind']} at layer {verdict['layer']}: {verdict['reason']}"
    for layer, why in list(outcome.unverified.items())[:5]:
        yield f"              layer {layer}: {why}"
    if outcome.killed:
        yield f"leftovers     killed after the supervisor stopped: {', '.join(outcome.killed)}"


def targets(outcome: "Outcome", f: Figures) -> Iterator[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    p99 = percentile(f.latency_layers, 99) if f.latency_layers else math.inf
    shadow = max(f.shadow_lag, default=math.inf)
    rss = max((mb for mb in outcome.rss_mb.values() if mb is not None), default=0.0)
    yield (
        f"targets       ≥ {TARGET_TPS:,.0f} tx/s {mark(f.steady_tps >= TARGET_TPS)}; "
        f"p99 ≤ {TARGET_P99_LAYERS} layers {mark(p99 <= TARGET_P99_LAYERS)}; "
        f"shadow lag ≤ {TARGET_SHADOW_LAG} {mark(shadow <= TARGET_SHADOW_LAG)}; "
        f"RSS ≤ {RSS_LIMIT_MB:.0f} MB {mark(rss <= RSS_LIMIT_MB)}"
    )
