"""`devnet up`: run every node of a devnet as its own process under one trio supervisor.

The supervisor prepares the data directory (the effective config, with the genesis time
fixed at first start so a restart resumes the same network), starts the nodes, waits until
they certify, writes `devnet.json` for scripts, and shuts everything down in order on
Ctrl-C or SIGTERM.
"""

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from devnet.address import encode_address
from devnet.config import (
    DevnetConfig,
    ExecutorConfig,
    RelayConfig,
    ShadowConfig,
    SmesherConfig,
    load_config,
)
from devnet.errors import DevnetError, WireError
from devnet.l1 import l1_address
from devnet.wire import RpcClient

STATE_FILE = "devnet.json"
EFFECTIVE_CONFIG = "devnet.toml"
READY_TIMEOUT = 60.0


class OrchestratorError(DevnetError):
    """The devnet cannot be started, found or stopped; the message says what to do."""


def prepare(config_path: Path) -> Path:
    """The data directory's effective config: the given one, genesis time fixed once."""
    config = load_config(config_path)
    data_dir = config.network.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    effective = data_dir / EFFECTIVE_CONFIG
    if effective.exists():
        return effective
    text = Path(config_path).read_text(encoding="utf-8")
    if config.network.genesis_time == 0:
        text, count = re.subn(
            r"(?m)^(\s*genesis_time\s*=\s*)0\b", rf"\g<1>{int(time.time()) + 1}", text
        )
        if count == 0:
            text = re.sub(
                r"(?m)^\[network\]\s*$", f"[network]\ngenesis_time = {int(time.time()) + 1}", text
            )
    text = re.sub(r'(?m)^(\s*data_dir\s*=\s*)"[^"]*"', rf'\g<1>"{data_dir}"', text)
    effective.write_text(text, encoding="utf-8")
    return effective


@dataclass
class Node:
    name: str
    role: str
    host: str
    port: int
    command: list[str]
    log: Path
    process: trio.Process | None = None
    restarts: int = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def plan(config: DevnetConfig, config_path: Path) -> list[Node]:
    """Every node of the network, in start order (stopped in reverse)."""
    logs = config.network.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    daemons: list[tuple[str, str, SmesherConfig | ExecutorConfig | RelayConfig | ShadowConfig]]
    daemons = [("smesher", "smesher", s) for s in config.smeshers]
    daemons += [
        ("executor", "executor", config.executor),
        ("relay", "relay", config.relay),
        ("shadow_executor", "shadow", config.shadow),
    ]
    return [
        Node(
            node.name,
            role,
            node.host,
            node.port,
            [sys.executable, "-m", module, "--config", str(config_path), "--node", node.name],
            logs / f"{node.name}.log",
        )
        for module, role, node in daemons
    ]


def athena_accounts(config: DevnetConfig) -> list[dict[str, Any]]:
    """The Athena test wallets spawned and funded at genesis."""
    from devnet.builtin_templates import template

    wallet = template("wallet").address
    out = []
    for i in range(config.athena.test_wallets):
        key = config.network.test_key(f"user-{i}")
        out.append(
            {
                "role": f"user-{i}",
                "layer": "Athena",
                "address": encode_address(key.wallet_address(wallet), config.network.hrp),
                "balance": config.athena.test_wallet_balance,
                "private_key": key.seed.hex(),
            }
        )
    return out


def test_accounts(config: DevnetConfig) -> list[dict[str, Any]]:
    """The genesis-funded L1 accounts whose keys are deterministic test keys."""
    out = []
    roles = {
        l1_address(config.network.test_key(r).public_key): r
        for r in ("relay-0", "executor", *(f"user-{i}" for i in range(10)))
    }
    for address, balance in config.l1.genesis:
        role = roles.get(address)
        key = config.network.test_key(role) if role else None
        out.append(
            {
                "role": role,
                "layer": "L1",
                "address": encode_address(address, config.network.hrp),
                "balance": balance,
                "private_key": key.seed.hex() if key else None,
            }
        )
    return out


@dataclass
class Supervisor:
    config_path: Path
    announce: Callable[[str], None] = print
    nodes: list[Node] = field(default_factory=list)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.config = load_config(self.config_path)
        self.nodes = plan(self.config, self.config_path)
        self.state_path = self.config.network.data_dir / STATE_FILE

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for node in self.nodes:
                    await nursery.start(self._keep_running, node)
                await self._wait_ready()
                self._write_state()
                self.announce(self.banner())
                task_status.started()
                await self._status_lines()
        finally:
            with trio.CancelScope(shield=True):
                await self._stop_all()
                self.state_path.unlink(missing_ok=True)

    async def _keep_running(
        self, node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        while True:
            with open(node.log, "ab") as log:
                node.process = await trio.lowlevel.open_process(
                    node.command,
                    stdout=log,
                    stderr=log,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            if not started:
                started = True
                task_status.started()
            code = await node.process.wait()
            if self.stopping:
                return
            self.announce(f"! {node.name} exited with status {code}; restarting (log: {node.log})")
            node.restarts += 1
            await trio.sleep(1.0)

    async def _wait_ready(self) -> None:
        """Until every smesher has certified a layer, the executor applied one, the relay
        follows blocks and the shadow verified one."""
        with trio.move_on_after(READY_TIMEOUT) as scope:
            for node in self.nodes:
                field = {
                    "executor": "applied_layer",
                    "shadow": "verified_up_to",
                    "relay": "block_layer",
                }.get(node.role, "last_certified")
                while (await _status(node)).get(field) is None:
                    await trio.sleep(0.2)
        if scope.cancelled_caught:
            raise OrchestratorError(
                f"the devnet did not become ready within {READY_TIMEOUT:.0f} s; "
                f"see the logs in {self.config.network.data_dir / 'logs'}"
            )

    async def _status_lines(self) -> None:
        """One line, rewritten every layer: layer, txs, applied, verified, mempool."""
        interval = self.config.network.layer_duration_ms / 1000
        by_role = {n.role: n for n in reversed(self.nodes)}
        while True:
            await trio.sleep(interval)
            l1 = await _status(by_role["smesher"])
            executor = await _status(by_role["executor"]) if "executor" in by_role else {}
            shadow = await _status(by_role["shadow"]) if "shadow" in by_role else {}
            line = (
                f"layer {l1.get('layer', '-')}  certified {l1.get('last_certified', '-')}"
                f"  applied {executor.get('applied_layer', '-')}"
                f"  verified {shadow.get('verified_up_to', '-')}"
                f"  divergences {shadow.get('divergences', '-')}"
                f"  mempool {l1.get('mempool', '-')}  nodes {self._alive()}/{len(self.nodes)}"
            )
            if sys.stdout.isatty():
                print(f"\r{line:<100}", end="", flush=True)

    def _alive(self) -> int:
        return sum(1 for n in self.nodes if n.process and n.process.returncode is None)

    async def _stop_all(self) -> None:
        self.stopping = True
        for node in reversed(self.nodes):
            if node.process and node.process.returncode is None:
                node.process.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await node.process.wait()
                if node.process.returncode is None:
                    node.process.kill()
                    await node.process.wait()

    def state(self) -> dict[str, Any]:
        net = self.config.network
        return {
            "supervisor_pid": os.getpid(),
            "config": str(self.config_path),
            "data_dir": str(net.data_dir),
            "genesis_time": net.genesis_time,
            "genesis_id": net.genesis_id.hex(),
            "layer_duration_ms": net.layer_duration_ms,
            "hrp": net.hrp,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "endpoint": n.endpoint,
                    "log": str(n.log),
                    "pid": n.process.pid if n.process else None,
                }
                for n in self.nodes
            ],
            "accounts": athena_accounts(self.config) + test_accounts(self.config),
        }

    def _write_state(self) -> None:
        self.state_path.write_text(json.dumps(self.state(), indent=2) + "\n", encoding="utf-8")

    def banner(self) -> str:
        state = self.state()
        lines = ["", "athena-devnet is up", ""]
        lines.append(f"  genesis id   {state['genesis_id']}")
        lines.append(f"  data dir     {state['data_dir']}")
        lines.append(f"  state file   {self.state_path}")
        lines.append("")
        for node in state["nodes"]:
            lines.append(
                f"  {node['name']:<12} {node['role']:<9} {node['endpoint']:<16} {node['log']}"
            )
        lines += ["", "  Test accounts — TEST KEYS ONLY: never use them outside this devnet", ""]
        for acct in state["accounts"]:
            lines.append(
                f"  {acct['layer']} {acct['role'] or '-':<9} {acct['address']}  "
                f"balance {acct['balance']}"
            )
            if acct["private_key"]:
                lines.append(f"      private key {acct['private_key']}")
        lines += ["", "  Ctrl-C stops every node.", ""]
        return "\n".join(lines)


async def _status(node: Node) -> dict[str, Any]:
    try:
        async with RpcClient(node.endpoint, reconnect=False, timeout=2, connect_timeout=1) as c:
            result: dict[str, Any] = await c.call("status")
            return result
    except WireError:
        return {}


def read_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OrchestratorError(f"no devnet is running from {data_dir} (no {STATE_FILE})") from None
    except ValueError as exc:
        raise OrchestratorError(f"{path} is corrupt: {exc}") from None
    return state


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
