"""Real smesher processes for integration tests: a config on free ports, start, kill, restart."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devnet.config import DevnetConfig, load_config
from devnet.wire import call_sync

ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def write_config(
    directory: Path,
    smeshers: int = 4,
    layer_ms: int = 500,
    extra_executors: tuple[str, ...] = (),
    relay: dict[str, Any] | None = None,
    test_wallets: int = 4,
) -> Path:
    """A devnet config on free ports; each of `extra_executors` gets its own file too.

    An extra executor's file is `devnet-NAME.toml`: the same network (smeshers, genesis
    time, Athena genesis) with its own executor port and `claims = false`. Its `[executor]
    name` stays the primary's, because that name picks the account the executor's fee share
    goes to, which is part of the state: the node is started with `--node NAME`, which
    picks its data directory `data/NAME/state`.

    The relay (`relay-0`, started like any node) gets a free port and the `relay` fields
    (a dict value becomes a sub-table, e.g. `{"fault": {"crash_after_bundle": 1}}`).
    """
    ports = free_ports(smeshers + 1 + len(extra_executors))
    executor_ports, ports = ports[smeshers:], ports[:smeshers]
    genesis = int(time.time()) + 1
    lines = [
        "[network]",
        f"genesis_time = {genesis}",
        f"layer_duration_ms = {layer_ms}",
        f'data_dir = "{directory / "data"}"',
        "[l1]",
        "byte_price = 1",
        "layer_subsidy = 1000",
    ]
    for i, port in enumerate(ports):
        lines += ["[[smesher]]", f'name = "smesher-{i}"', f"port = {port}"]
    for role in ("relay-0", "user-0", "executor"):
        lines += ["[[l1.genesis]]", f'key = "{role}"', "balance = 1000000000"]
    athena = ["[athena]", f"test_wallets = {test_wallets}"]
    for name, port in zip(extra_executors, executor_ports[1:], strict=True):
        own = [*lines, "[executor]", f"port = {port}", "claims = false", *athena]
        (directory / f"devnet-{name}.toml").write_text("\n".join(own) + "\n")
    lines += ["[executor]", f"port = {executor_ports[0]}", *athena]
    lines += _relay_table(free_ports(1)[0], relay or {})
    path = directory / "devnet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _relay_table(port: int, fields: dict[str, Any]) -> list[str]:
    def value(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    lines = ["[relay]", f"port = {port}"]
    lines += [f"{k} = {value(v)}" for k, v in fields.items() if not isinstance(v, dict)]
    for table, sub in fields.items():
        if isinstance(sub, dict):
            lines += [f"[relay.{table}]", *(f"{k} = {value(v)}" for k, v in sub.items())]
    return lines


@dataclass
class Cluster:
    config_path: Path
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Executors beyond the config's own: node name -> its config file (see write_config).
    executors: dict[str, Path] = field(default_factory=dict)

    @property
    def config(self) -> DevnetConfig:
        return load_config(self.config_path)

    def config_of(self, name: str) -> Path:
        return self.executors.get(name, self.config_path)

    def is_executor(self, name: str) -> bool:
        return name in self.executors or name == self.config.executor.name

    def role(self, name: str) -> str:
        if self.is_executor(name):
            return "executor"
        return "relay" if name == self.config.relay.name else "smesher"

    def start(self, name: str) -> None:
        role = self.role(name)
        config = str(self.config_of(name))
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own copy
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", role, "--config", config, "--node", name],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()

    def call(self, name: str, method: str, **params: Any) -> Any:
        cfg = load_config(self.config_of(name))
        role = self.role(name)
        node = (
            cfg.executor
            if role == "executor"
            else cfg.relay
            if role == "relay"
            else cfg.smesher(name)
        )
        return call_sync(node.host, node.port, method, timeout=5, **params)

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; logs in {self.logs}")

    def last(self, name: str) -> int:
        value = self.call(name, "status")["last_certified"]
        return -1 if value is None else int(value)
