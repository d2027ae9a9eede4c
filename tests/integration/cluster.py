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


def write_config(directory: Path, smeshers: int = 4, layer_ms: int = 500) -> Path:
    ports = free_ports(smeshers)
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
    executor_port = free_ports(1)[0]
    lines += ["[executor]", f"port = {executor_port}", "[athena]", "test_wallets = 4"]
    path = directory / "devnet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Cluster:
    config_path: Path
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def config(self) -> DevnetConfig:
        return load_config(self.config_path)

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        role = "executor" if name == "executor" else "smesher"
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", role, "--config", str(self.config_path), "--node", name],
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
        cfg = self.config
        node = cfg.executor if name == cfg.executor.name else cfg.smesher(name)
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
