"""`devnet status [--json]`: every node as the supervisor sees it and as it reports itself.

The supervisor knows the process (pid, running / paused / stopped / crashed, restarts); the
node knows its progress (layer, last applied layer, lag). A node that is not running is not
asked — it could not answer, and a paused one would only time out — so its health is its
state.
"""

import json
from pathlib import Path
from typing import Any

import trio
import typer

from devnet.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    DataDirOption,
    JsonOption,
    command,
    connect,
    emit_json,
    table,
    warn,
)
from devnet.client import AsyncDevnet, ClientError, Devnet
from devnet.client.discovery import state_path
from devnet.errors import RpcError

#: A node this many layers behind the chain is "lagging".
LAG_OK = 2
STATUS_TIMEOUT = 2.0
#: What each role reports as (the layer it reached, the layer it is at).
PROGRESS = {
    "executor": ("applied_layer", "l1_layer"),
    "shadow": ("applied_layer", "l1_layer"),
    "relay": ("block_layer", "layer"),
    "smesher": ("last_certified", "layer"),
}


def progress(role: str, status: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(layer, applied, lag) from a node's own status."""
    applied_field, layer_field = PROGRESS.get(role, PROGRESS["smesher"])
    applied, layer = status.get(applied_field), status.get(layer_field)
    lag = None if applied is None or layer is None else max(0, layer - applied)
    return layer, applied, lag


def health(state: str, role: str, status: dict[str, Any] | None, error: str | None) -> str:
    """One word (or a short phrase) for the table: the process state when it is not
    running, else what the node's own status says."""
    if state != "running":
        return state
    if status is None:
        return f"down: {error}" if error else "down"
    if status.get("isolated"):
        return "isolated"
    if role == "shadow" and status.get("divergences"):
        return f"divergences {status['divergences']}"
    lag = progress(role, status)[2]
    return "ok" if lag is not None and lag <= LAG_OK else "lagging"


def row(view: dict[str, Any], status: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    """A node's row: the supervisor's view plus its progress and health."""
    layer, applied, lag = progress(view["role"], status) if status else (None, None, None)
    return {
        "node": view["name"],
        "role": view["role"],
        "pid": view.get("pid"),
        "state": view.get("state", "unknown"),
        "restarts": view.get("restarts", 0),
        "crashes": view.get("crashes", 0),
        "endpoint": view.get("endpoint"),
        "layer": layer,
        "applied": applied,
        "lag": lag,
        "health": health(view.get("state", "unknown"), view["role"], status, error),
    }


async def _probe(net: AsyncDevnet, name: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with trio.fail_after(STATUS_TIMEOUT):
            return await net.node(name).status(), None
    except trio.TooSlowError:
        return None, "no answer"
    except (ClientError, RpcError) as exc:
        return None, str(exc)


async def _probe_all(
    net: AsyncDevnet, names: list[str]
) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """Every running node's status at once: one slow node costs one timeout, not one each."""
    results: dict[str, tuple[dict[str, Any] | None, str | None]] = {}

    async def one(name: str) -> None:
        results[name] = await _probe(net, name)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    return results


def _views(net: Devnet) -> tuple[list[dict[str, Any]], bool]:
    """The supervisor's node views, or (when it does not answer) devnet.json's as last
    written; the flag says which."""
    try:
        return net.nodes(), True
    except (ClientError, RpcError) as exc:
        warn(f"the supervisor does not answer ({exc}); showing devnet.json as last written")
    state = json.loads(state_path(net.info.path).read_text(encoding="utf-8"))
    nodes: list[dict[str, Any]] = state["nodes"]
    return nodes, False


def collect(config: Path, data_dir: Path | None) -> dict[str, Any]:
    """The whole status document (what --json prints)."""
    with connect(config, data_dir, timeout=STATUS_TIMEOUT) as net:
        views, live = _views(net)
        running = [v["name"] for v in views if v.get("state") == "running"]
        statuses = net.run(_probe_all, net.net, running)
        info = net.info
    rows = [row(v, *statuses.get(v["name"], (None, None))) for v in views]
    return {
        "genesis_id": info.genesis_id.hex(),
        "data_dir": str(info.data_dir),
        "supervisor": info.supervisor,
        "supervisor_answered": live,
        "layer": info.layer_now(),
        "nodes": rows,
    }


HEADERS = ["node", "role", "pid", "state", "restarts", "layer", "applied", "lag", "health"]
NUMERIC = frozenset({"pid", "restarts", "layer", "applied", "lag"})


@command
def status_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """A table of the running devnet's nodes: pid, state, restarts, layer, lag, health."""
    doc = collect(config, data_dir)
    if as_json:
        emit_json(doc)
        return
    rows = [[r[h] for h in HEADERS] for r in doc["nodes"]]
    typer.echo(table(HEADERS, rows, right=NUMERIC))
