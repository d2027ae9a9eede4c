"""`devnet bench e2e` in miniature: a real devnet, a short load, the correctness checks.

Only what must hold whatever the machine's speed is asserted: every acknowledged spend ran
exactly once, the shadow verified every layer of the run, and no process is left behind.
Rates and latencies are the benchmark's output, not a test's business.
"""

import time
from pathlib import Path

from devnet.bench import e2e
from devnet.orchestrator import pid_alive
from tests.integration.cluster import free_ports


def write_config(directory: Path) -> Path:
    """A devnet with the default topology on free ports."""
    ports = free_ports(8)
    lines = [
        "[network]",
        "layer_duration_ms = 1000",
        f'data_dir = "{directory / "data"}"',
        "[l1]",
        *(
            line
            for role in ("relay-0", "executor", "user-0")
            for line in ("[[l1.genesis]]", f'key = "{role}"', "balance = 1000000000000")
        ),
    ]
    for i, port in enumerate(ports[:4]):
        lines += ["[[smesher]]", f'name = "smesher-{i}"', f"port = {port}"]
    lines += ["[executor]", f"port = {ports[4]}", "[relay]", f"port = {ports[5]}"]
    lines += ["[shadow]", f"port = {ports[6]}", "[supervisor]", f"port = {ports[7]}"]
    path = directory / "devnet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_short_run_executes_every_acknowledged_spend_once(tmp_path: Path) -> None:
    params = e2e.Params(
        config=write_config(tmp_path),
        seconds=5,
        wallets=12,  # two more than the genesis funds: the funding phase runs too
        inflight=300,
        batch=50,
        connections=2,
        data_dir=tmp_path / "run",
        presign_rate=20,
    )
    outcome = e2e.run(params)
    report = "\n".join(e2e.report(outcome))
    assert outcome.funded == 2, report
    assert outcome.load["acked"], report
    assert outcome.correct, report
    assert len(outcome.executed_in) >= len(outcome.load["acked"])
    assert not outcome.killed
    assert {"executor/helper", "shadow-0/helper"} <= outcome.rss_mb.keys(), report
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in outcome.pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [name for name, pid in outcome.pids.items() if pid_alive(pid)]
    assert not (tmp_path / "run").exists()  # the data directory is removed unless --keep
