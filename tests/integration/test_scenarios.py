"""The user's path end to end: `devnet up` in the background, the example scenarios and a
pytest suite using the `devnet` fixture run against it, then `devnet down` leaves nothing.

The devnet runs from a copy of configs/devnet.toml with free ports and its own data dir,
started exactly as `make up` starts it (`devnet up`, in the foreground of a background
process).
"""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.ephemeral import write_config
from devnet.orchestrator import pid_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.py"))
START_SECONDS = 120


def devnet_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def node_logs(running: "Running", lines: int = 40) -> str:
    """The last warnings and errors of every node, to say why a scenario failed."""
    out = []
    for log in sorted((running.data_dir / "logs").glob("*.log")):
        notable = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if '"level": "warning"' in line or '"level": "error"' in line
        ]
        out.append(f"--- {log.name}: last {lines} warnings/errors\n" + "\n".join(notable[-lines:]))
    return "\n".join(out)


class Running:
    def __init__(self, config: Path, process: subprocess.Popen[bytes]) -> None:
        self.config = config
        self.process = process
        self.data_dir = config.parent / "data"
        self.state = json.loads((self.data_dir / "devnet.json").read_text())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    config = write_config(ROOT / "configs" / "devnet.toml", tmp_path_factory.mktemp("devnet"))
    log = open(config.parent / "up.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "devnet", "up", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    state = config.parent / "data" / "devnet.json"
    deadline = time.monotonic() + START_SECONDS
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"devnet up did not start: {(config.parent / 'up.log').read_text()}")
        time.sleep(0.2)
    try:
        yield Running(config, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def test_example_scenarios_pass(running: Running) -> None:
    assert len(SCENARIOS) >= 6
    done = devnet_cli(
        "scenario", "run", *map(str, SCENARIOS), "--attach", "--config", str(running.config),
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + node_logs(running)
    results = json.loads(done.stdout)
    assert [r["scenario"] for r in results] == [p.stem for p in SCENARIOS]
    for result in results:
        assert result["ok"] and result["steps"], result
        assert all(step["ok"] and step["error"] is None for step in result["steps"])


def test_a_failing_step_fails_the_run(running: Running, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""Fails on purpose."""\n\n'
        "def scenario(s):\n"
        "    with s.step('balance is positive'):\n"
        "        assert s.net.wallets[0].balance() > 0\n"
        "    s.partition('smesher-1')\n"
        "    s.check('one equals two', lambda: 1 == 2)\n"
        "    with s.step('never reached'):\n"
        "        pass\n"
    )
    done = devnet_cli("scenario", "run", str(bad), "--attach", "--config", str(running.config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✔ balance is positive" in done.stdout
    assert "✘ one equals two" in done.stdout
    assert "never reached" not in done.stdout
    assert "✔ heal smesher-1" in done.stdout  # the fault it left is undone
    assert "0/1 scenarios passed" in done.stdout
    status = devnet_cli("status", "--json", "--config", str(running.config))
    smesher = next(n for n in json.loads(status.stdout)["nodes"] if n["node"] == "smesher-1")
    assert smesher["health"] != "isolated", smesher

    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    done = devnet_cli("scenario", "run", str(empty), "--attach", "--config", str(running.config))
    assert done.returncode == 2 and "defines no scenario(s) function" in done.stderr


def test_pytest_fixture_runs_user_tests(running: Running, tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "def test_alice_pays_bob(devnet):\n"
        "    alice, bob = devnet.wallets[0], devnet.wallets[1]\n"
        "    before = bob.balance()\n"
        "    assert alice.spend(bob, 10).ok\n"
        "    assert bob.balance() == before + 10\n"
        "    assert devnet.proof(bob).verify()\n"
    )
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--devnet-attach", str(running.data_dir), str(tmp_path / "test_user.py"),
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_down_leaves_no_process(running: Running) -> None:
    state = json.loads((running.data_dir / "devnet.json").read_text())
    pids = [int(n["pid"]) for n in state["nodes"] if n.get("pid")]
    assert len(pids) >= 7 and all(pid_alive(pid) for pid in pids)
    done = devnet_cli("down", "--config", str(running.config))
    assert done.returncode == 0, done.stderr
    assert running.process.wait(30) is not None
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not (running.data_dir / "devnet.json").exists()


def test_fresh_devnet_for_a_scenario_run(tmp_path: Path) -> None:
    """Without --attach the runner starts its own devnet and removes it afterwards."""
    scenario = tmp_path / "one.py"
    scenario.write_text(
        '"""One spend on a fresh devnet."""\n\n'
        "def scenario(s):\n"
        "    with s.step('spend', within_layers=10):\n"
        "        assert s.net.wallets[0].spend(s.net.wallets[1], 1).ok\n"
    )
    done = devnet_cli("scenario", "run", str(scenario), "--config", "configs/devnet.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 scenarios passed" in done.stdout
    assert "kept" not in done.stderr
