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
import subprocess
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


#: A node's states as the supervisor reports them.
RUNNING, PAUSED, STOPPED, CRASHED, STARTING = "running", "paused", "stopped", "crashed", "starting"


@dataclass
class Node:
    """One process of the devnet and what the supervisor wants of it."""

    name: str
    role: str
    host: str
    port: int
    command: list[str]
    log: Path
    process: trio.Process | None = None
    restarts: int = 0
    crashes: int = 0
    exit_code: int | None = None
    #: `--set` overrides the node runs with (from `devnet restart NODE --set …`).
    overrides: tuple[str, ...] = ()
    #: False after `devnet kill`: the node stays down until started again.
    wanted: bool = True
    paused: bool = False
    #: Set while the current process is being stopped to be started again.
    restarting: bool = False
    #: Exited on its own and was not restarted (`restart_crashed = false`).
    crashed: bool = False
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def state(self) -> str:
        if self.alive:
            return PAUSED if self.paused else RUNNING
        if self.crashed:
            return CRASHED
        return STARTING if self.wanted else STOPPED

    def notify(self) -> None:
        """Wake the task keeping this node running (its wishes changed)."""
        self.changed.set()
        self.changed = trio.Event()

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "endpoint": self.endpoint,
            "log": str(self.log),
            "pid": self.process.pid if self.alive and self.process else None,
            "state": self.state,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "exit_code": self.exit_code,
            "overrides": list(self.overrides),
        }


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
    ready: bool = False

    def __post_init__(self) -> None:
        self.config = load_config(self.config_path)
        self.nodes = plan(self.config, self.config_path)
        self.state_path = self.config.network.data_dir / STATE_FILE
        self.logs = self.config.network.data_dir / "logs"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await nursery.start(self._serve_control)
                for node in self.nodes:
                    await nursery.start(self._keep_running, node)
                await self._wait_ready()
                self.ready = True
                self._write_state()
                self.announce(self.banner())
                task_status.started()
                await self._status_lines()
        finally:
            with trio.CancelScope(shield=True):
                await self._stop_all()
                self.state_path.unlink(missing_ok=True)

    async def _serve_control(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from devnet.control import control_server

        sc = self.config.supervisor
        try:
            await control_server(self).serve(sc.host, sc.port, task_status=task_status)
        except OSError as exc:
            raise OrchestratorError(
                f"cannot listen on {sc.host}:{sc.port} for the supervisor: {exc.strerror}; "
                "is another devnet running? (set [supervisor] port)"
            ) from None

    async def _keep_running(
        self, node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the node's process while it is wanted; restart it when it crashes (if the
        config says so) and when asked to."""
        task_status.started()
        while True:
            while not node.wanted:
                await node.changed.wait()
            await self._spawn(node)
            assert node.process is not None
            code = await node.process.wait()
            node.exit_code, node.paused = code, False
            if self.stopping:
                return
            if not self.ready:
                raise OrchestratorError(
                    f"{node.name} exited with status {code} while starting: "
                    f"{last_error(node.log)} (log: {node.log})"
                )
            self._write_state()
            if not node.wanted or node.restarting:
                node.restarting = False
                continue
            node.crashes += 1
            if not self.config.supervisor.restart_crashed:
                node.wanted, node.crashed = False, True
                self.announce(f"! {node.name} exited with status {code} (log: {node.log})")
                continue
            self.announce(f"! {node.name} exited with status {code}; restarting (log: {node.log})")
            node.restarts += 1
            await trio.sleep(self.config.supervisor.restart_delay_ms / 1000)

    async def _spawn(self, node: Node) -> None:
        command = list(node.command)
        for override in node.overrides:
            command += ["--set", override]
        with open(node.log, "ab") as log:
            node.process = await trio.lowlevel.open_process(
                command,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        node.crashed = False
        node.notify()
        if self.ready:
            self._write_state()

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise OrchestratorError(f"no node named {name!r} (nodes: {known})")

    async def kill(self, name: str, graceful: bool = False) -> Node:
        """Stop a node (SIGKILL, or SIGTERM when graceful) and keep it down."""
        node = self.node(name)
        node.wanted = False
        await self._terminate(node, graceful)
        node.notify()
        return node

    async def start(self, name: str, overrides: tuple[str, ...] | None = None) -> Node:
        """Start a stopped (or crashed) node again."""
        node = self.node(name)
        if overrides is not None:
            node.overrides = overrides
        node.wanted, node.crashed = True, False
        node.notify()
        await self._until_alive(node)
        return node

    async def restart(
        self, name: str, overrides: tuple[str, ...] | None = None, graceful: bool = True
    ) -> Node:
        """Stop the node and start it again, with new `--set` overrides if given."""
        node = self.node(name)
        if overrides is not None:
            node.overrides = overrides
        if node.alive:
            node.restarting = True
            await self._terminate(node, graceful)
        node.wanted, node.crashed = True, False
        node.restarts += 1
        node.notify()
        await self._until_alive(node)
        return node

    async def attach_shadow(self) -> Node:
        """One more shadow executor, supervised like the others; it replays from genesis."""
        names = {n.name for n in self.nodes}
        index = 1
        while f"shadow-{index}" in names:
            index += 1
        shadow = self.config.shadow
        port = shadow.port + index
        name = f"shadow-{index}"
        command = [
            sys.executable, "-m", "shadow_executor", "--config", str(self.config_path),
            "--node", name, "--port", str(port),
        ]  # fmt: skip
        node = Node(name, "shadow", shadow.host, port, command, self.logs / f"{name}.log")
        self.nodes.append(node)
        self.nursery.start_soon(self._keep_running, node)
        await self._until_alive(node)
        return node

    def pause(self, name: str) -> Node:
        """Freeze a node's process (SIGSTOP): its sockets stay open but it answers nothing."""
        node = self._running(name)
        node.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        node.paused = True
        return node

    def resume(self, name: str) -> Node:
        node = self._running(name)
        node.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        node.paused = False
        return node

    def _running(self, name: str) -> Node:
        node = self.node(name)
        if not node.alive:
            raise OrchestratorError(f"{name} is not running ({node.state})")
        return node

    async def _until_alive(self, node: Node) -> None:
        with trio.move_on_after(10):
            while not node.alive:
                await node.changed.wait()
        if not node.alive:
            raise OrchestratorError(f"{node.name} did not start; see {node.log}")

    async def _terminate(self, node: Node, graceful: bool) -> None:
        process = node.process
        if process is None or process.returncode is not None:
            return
        if node.paused:
            process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        node.paused = False

    async def _wait_ready(self) -> None:
        """Until every smesher has certified a layer, the executor applied one, the relay
        follows blocks and the shadow verified one."""
        with trio.move_on_after(READY_TIMEOUT) as scope:
            for node in self.nodes:
                field = progress_field(node.role)
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
            line = await self._status_line(by_role)
            if sys.stdout.isatty():
                print(f"\r{line:<110}", end="", flush=True)

    async def _status_line(self, by_role: dict[str, Node]) -> str:
        l1 = await _status(by_role["smesher"])
        executor = await _status(by_role["executor"]) if "executor" in by_role else {}
        shadow = await _status(by_role["shadow"]) if "shadow" in by_role else {}
        pool = await _call(by_role["relay"], "mempool") if "relay" in by_role else {}
        applied = executor.get("applied_layer")
        txs = "-"
        if applied is not None:
            record = await _call(by_role["executor"], "get_layer", layer=applied)
            txs = str(len(record.get("tx_ids", []))) if record else "-"
        return (
            f"layer {l1.get('layer', '-')}  txs {txs}"
            f"  applied {_dash(applied)}  verified {_dash(shadow.get('verified_up_to'))}"
            f"  divergences {_dash(shadow.get('divergences'))}"
            f"  mempool {_dash(pool.get('count'))}  bundles {_dash(l1.get('mempool'))}"
            f"  nodes {self._alive()}/{len(self.nodes)}"
        )

    def _alive(self) -> int:
        return sum(1 for n in self.nodes if n.alive)

    async def _stop_all(self) -> None:
        self.stopping = True
        for node in reversed(self.nodes):
            await self._terminate(node, graceful=True)

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
            "supervisor": f"{self.config.supervisor.host}:{self.config.supervisor.port}",
            "nodes": [n.view() for n in self.nodes],
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
        lines.append(f"  supervisor   {state['supervisor']}  (devnet kill|restart|pause|resume)")
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
        lines += [
            "",
            "  Try:  devnet wallet list · devnet status · devnet logs executor -f",
            "        devnet scenario run examples/scenarios/*.py --attach",
            "        scripting (client library, scenarios, pytest fixture): docs/scripting.md",
            "",
            "  Ctrl-C (or `devnet down`) stops every node.",
            "",
        ]
        return "\n".join(lines)


def progress_field(role: str) -> str:
    """The status field that says how far a node of `role` has come: the last layer it
    certified, applied, verified or followed."""
    return {
        "executor": "applied_layer",
        "shadow": "verified_up_to",
        "relay": "block_layer",
    }.get(role, "last_certified")


def last_error(log: Path) -> str:
    """The error a node logged last (its JSON `error` field), or its last log line."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
    except OSError:
        return "no log"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("error"):
            return str(entry["error"])
    return lines[-1] if lines else "nothing logged"


async def _status(node: Node) -> dict[str, Any]:
    return await _call(node, "status")


async def _call(node: Node, method: str, **params: Any) -> dict[str, Any]:
    """A node's answer, or {} when it cannot give one (down, starting, refusing)."""
    try:
        async with RpcClient(node.endpoint, reconnect=False, timeout=2, connect_timeout=1) as c:
            result: dict[str, Any] = await c.call(method, **params)
            return result
    except WireError:
        return {}


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def launch_up(config: Path, log: Path) -> "subprocess.Popen[bytes]":
    """`devnet up --config CONFIG` in the background, in its own session (a Ctrl-C in the
    caller's terminal does not reach it), its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "devnet", "up", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_up(process: "subprocess.Popen[bytes]", data_dir: Path, timeout: float) -> bool:
    """Whether the devnet `process` runs became ready (its `devnet.json` written) within
    `timeout` seconds; False as soon as the process exits, or when the time is up."""
    deadline = time.monotonic() + timeout
    while not (data_dir / STATE_FILE).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


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
