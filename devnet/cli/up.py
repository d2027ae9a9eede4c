"""`devnet up | down | status`: run the devnet and look at it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from devnet.config import load_config
from devnet.daemon import leaves
from devnet.errors import DevnetError, WireError
from devnet.log import configure
from devnet.orchestrator import (
    STATE_FILE,
    OrchestratorError,
    Supervisor,
    pid_alive,
    prepare,
    read_state,
)
from devnet.wire import call_sync

DEFAULT_CONFIG = Path("configs/devnet.toml")
ConfigOption = Annotated[Path, typer.Option("--config", help="devnet TOML file")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


async def _supervise(effective: Path) -> None:
    supervisor = Supervisor(effective, announce=typer.echo)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            nursery.start_soon(supervisor.run)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def up_command(
    config: ConfigOption = DEFAULT_CONFIG,
    detach: Annotated[bool, typer.Option(help="start in the background and return")] = False,
) -> None:
    """Start the devnet: every node as its own process, until Ctrl-C (or `devnet down`)."""
    configure("warning")
    try:
        effective = prepare(config)
        data_dir = load_config(effective).network.data_dir
    except DevnetError as exc:
        raise _fail(exc) from None
    if (data_dir / STATE_FILE).exists():
        state = read_state(data_dir)
        if pid_alive(int(state["supervisor_pid"])):
            raise _fail(OrchestratorError(f"a devnet is already running from {data_dir}"))
        (data_dir / STATE_FILE).unlink()
    if detach:
        _detach(config, data_dir)
        return
    failure: DevnetError | None = None
    try:
        trio.run(_supervise, effective)
    except* KeyboardInterrupt:
        typer.echo("\nstopped")
    except* DevnetError as group:
        failure = next(e for e in leaves(group) if isinstance(e, DevnetError))
    if failure is not None:
        raise _fail(failure)


def _detach(config: Path, data_dir: Path) -> None:
    log = data_dir / "logs" / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devnet", "up", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if (data_dir / STATE_FILE).exists():
            typer.echo(log.read_text(encoding="utf-8", errors="replace").rstrip())
            return
        if proc.poll() is not None:
            raise _fail(OrchestratorError(f"the devnet failed to start; see {log}"))
        time.sleep(0.2)
    proc.terminate()
    raise _fail(OrchestratorError(f"the devnet did not become ready; see {log}"))


def down_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Stop a running devnet and every one of its processes."""
    try:
        data_dir = load_config(config).network.data_dir
        state = read_state(data_dir)
    except DevnetError as exc:
        raise _fail(exc) from None
    pid = int(state["supervisor_pid"])
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    for node in state["nodes"]:  # a supervisor that died leaves its nodes behind
        if node.get("pid") and pid_alive(int(node["pid"])):
            os.kill(int(node["pid"]), signal.SIGTERM)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    typer.echo("devnet stopped")


def node_status(node: dict[str, Any]) -> dict[str, Any]:
    host, port = node["endpoint"].rsplit(":", 1)
    row: dict[str, Any] = {"node": node["name"], "role": node["role"], "pid": node.get("pid")}
    try:
        status = call_sync(host, int(port), "status", timeout=2)
    except WireError as exc:
        return {**row, "layer": None, "applied": None, "lag": None, "health": f"down: {exc}"}
    if node["role"] in ("executor", "shadow"):
        last, layer = status.get("applied_layer"), status.get("l1_layer")
    elif node["role"] == "relay":
        last, layer = status.get("block_layer"), status.get("layer")
    else:
        last, layer = status.get("last_certified"), status.get("layer")
    lag = None if last is None or layer is None else max(0, layer - last)
    return {
        **row,
        "layer": layer,
        "applied": last,
        "lag": lag,
        "health": "ok" if lag is not None and lag <= 2 else "lagging",
    }


def status_command(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A table of the running devnet's nodes: pid, role, layer, lag, health."""
    try:
        state = read_state(load_config(config).network.data_dir)
    except DevnetError as exc:
        raise _fail(exc) from None
    rows = [node_status(n) for n in state["nodes"]]
    if as_json:
        typer.echo(json.dumps({"genesis_id": state["genesis_id"], "nodes": rows}, indent=2))
        return
    typer.echo(
        f"{'node':<12} {'role':<9} {'pid':>7} {'layer':>6} {'applied':>7} {'lag':>4}  health"
    )
    for r in rows:
        typer.echo(
            f"{r['node']:<12} {r['role']:<9} {r['pid'] or '-':>7} {_dash(r['layer']):>6} "
            f"{_dash(r['applied']):>7} {_dash(r['lag']):>4}  {r['health']}"
        )


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def attach_shadow_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Start one more shadow executor against the running devnet; it replays from genesis."""
    try:
        data_dir = load_config(config).network.data_dir
        state = read_state(data_dir)
    except DevnetError as exc:
        raise _fail(exc) from None
    effective = Path(state["config"])
    names = {n["name"] for n in state["nodes"]}
    index = 1
    while f"shadow-{index}" in names:
        index += 1
    name = f"shadow-{index}"
    port = load_config(effective).shadow.port + index
    log = data_dir / "logs" / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shadow_executor",
                "--config",
                str(effective),
                "--node",
                name,
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = {
        "name": name,
        "role": "shadow",
        "endpoint": f"127.0.0.1:{port}",
        "log": str(log),
        "pid": proc.pid,
    }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _fail(OrchestratorError(f"{name} exited; see {log}"))
        try:
            call_sync("127.0.0.1", port, "status", timeout=1)
            break
        except WireError:
            time.sleep(0.2)
    state["nodes"].append(node)
    (data_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"{name} attached at 127.0.0.1:{port} (log: {log}); it replays from genesis")
