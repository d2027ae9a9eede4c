"""The supervisor's process control on stand-in processes: kill keeps a node down, start and
restart bring it back (with overrides), pause freezes it, and a crash is restarted or
reported as the config says."""

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from devnet.config import load_config
from devnet.ephemeral import write_config
from devnet.orchestrator import (
    CRASHED,
    PAUSED,
    RUNNING,
    STOPPED,
    Node,
    OrchestratorError,
    Supervisor,
)

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import sys, time; time.sleep(600)"]


def supervisor(tmp_path: Path, restart_crashed: bool = True) -> Supervisor:
    config = write_config(ROOT / "configs" / "devnet.toml", tmp_path)
    text = config.read_text()
    text = text.replace(
        "restart_crashed = true", f"restart_crashed = {str(restart_crashed).lower()}"
    )
    text = text.replace("restart_delay_ms = 1000", "restart_delay_ms = 10")
    config.write_text(text)
    assert load_config(config).supervisor.restart_crashed is restart_crashed
    sup = Supervisor(config, announce=lambda _: None)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    sup.nodes = [Node("a", "smesher", "127.0.0.1", 1, SLEEPER, logs / "a.log")]
    sup.ready = True
    sup._write_state = lambda: None  # type: ignore[method-assign]
    return sup


async def settle(condition: object, seconds: float = 10) -> None:
    with trio.fail_after(seconds):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.02)


async def test_kill_start_restart_pause(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    node = sup.nodes[0]
    async with trio.open_nursery() as nursery:
        await nursery.start(sup._keep_running, node)
        await settle(lambda: node.alive)
        first = node.process.pid  # type: ignore[union-attr]
        assert node.state == RUNNING

        await sup.kill("a")
        assert node.state == STOPPED and not node.alive
        await trio.sleep(0.2)
        assert not node.alive  # a killed node stays down

        await sup.start("a")
        assert node.state == RUNNING and node.process.pid != first  # type: ignore[union-attr]

        second = node.process.pid  # type: ignore[union-attr]
        await sup.restart("a", ("executor.port=1",))
        assert node.alive and node.process.pid != second
        assert node.overrides == ("executor.port=1",) and node.crashes == 0

        sup.pause("a")
        assert node.state == PAUSED
        sup.resume("a")
        assert node.state == RUNNING

        with pytest.raises(OrchestratorError, match="no node named"):
            sup.node("zz")
        sup.stopping = True
        await sup._stop_all()
        nursery.cancel_scope.cancel()


async def test_a_crash_is_restarted(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    node = sup.nodes[0]
    async with trio.open_nursery() as nursery:
        await nursery.start(sup._keep_running, node)
        await settle(lambda: node.alive)
        pid = node.process.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        await settle(lambda: node.alive and node.process.pid != pid)  # type: ignore[union-attr]
        assert node.crashes == 1 and node.restarts == 1 and node.exit_code == -signal.SIGKILL
        sup.stopping = True
        await sup._stop_all()
        nursery.cancel_scope.cancel()


async def test_a_crash_is_reported_when_restarts_are_off(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, restart_crashed=False)
    node = sup.nodes[0]
    async with trio.open_nursery() as nursery:
        await nursery.start(sup._keep_running, node)
        await settle(lambda: node.alive)
        os.kill(node.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        await settle(lambda: node.state == CRASHED)
        await trio.sleep(0.2)
        assert not node.alive and node.view()["state"] == CRASHED
        await sup.start("a")
        assert node.state == RUNNING
        sup.stopping = True
        await sup._stop_all()
        nursery.cancel_scope.cancel()
