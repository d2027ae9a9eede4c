"""`devnet kill | start | restart | pause | resume | partition | heal | attach-shadow`.

Every process belongs to the supervisor of `devnet up`, so these commands ask it (through
the client library) rather than signalling pids themselves: it then knows a killed node is
meant to stay down, restarts it with the right `--set` overrides, and stops an attached
shadow on `devnet down`. Each prints the node's view afterwards (`--json`: the view as the
supervisor reports it).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from devnet.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    DataDirOption,
    JsonOption,
    command,
    connect,
    emit_json,
    fail,
)
from devnet.client import Devnet, Node
from devnet.config import load_config

NodeArgument = Annotated[str, typer.Argument(metavar="NODE", help="node name, e.g. smesher-3")]
SmesherArgument = Annotated[str, typer.Argument(metavar="SMESHER", help="smesher name")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="PATH=VALUE", help="config override for this node (repeatable)"),
]


def describe(view: dict[str, Any]) -> str:
    """One line for people: name, state, pid, restarts, crashes, overrides."""
    line = (
        f"{view['name']} ({view['role']}): {view['state']}; pid {view.get('pid') or '-'}, "
        f"restarts {view.get('restarts', 0)}, crashes {view.get('crashes', 0)}"
    )
    if view.get("exit_code") is not None and view["state"] != "running":
        line += f", last exit status {view['exit_code']}"
    if view.get("overrides"):
        line += f"; overrides: {' '.join(view['overrides'])}"
    return line


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(view)
    else:
        typer.echo(describe(view))


def _node(net: Devnet, name: str) -> Node:
    return net.node(name)  # ClientError naming the known nodes when there is no such node


def _act(
    config: Path,
    data_dir: Path | None,
    name: str,
    as_json: bool,
    action: Callable[[Node], dict[str, Any]],
) -> None:
    with connect(config, data_dir) as net:
        view = action(_node(net, name))
    _show(view, as_json)


def _overrides(net: Devnet, overrides: list[str] | None, clear: bool) -> list[str] | None:
    """The overrides to send (None keeps the node's current ones), checked against the
    devnet's config first: a typo is reported here instead of as a node that will not start."""
    if clear:
        if overrides:
            fail("--clear-overrides and --set exclude each other")
        return []
    if not overrides:
        return None
    load_config(net.info.config, tuple(overrides))
    return overrides


@command
def kill_command(
    node: NodeArgument,
    graceful: Annotated[bool, typer.Option(help="SIGTERM instead of SIGKILL")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop a node (SIGKILL, or SIGTERM with --graceful); it stays down until `devnet start`."""
    _act(config, data_dir, node, as_json, lambda n: n.kill(graceful))


@command
def start_command(
    node: NodeArgument,
    overrides: SetOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a stopped or crashed node; returns once it answers RPC."""
    with connect(config, data_dir) as net:
        chosen = _overrides(net, overrides, clear=False)
        target = _node(net, node)
        target.start(chosen)
        view = target.state()
    _show(view, as_json)


@command
def restart_command(
    node: NodeArgument,
    overrides: SetOption = None,
    clear_overrides: Annotated[
        bool, typer.Option("--clear-overrides", help="drop the overrides of an earlier --set")
    ] = False,
    hard: Annotated[bool, typer.Option("--hard", help="SIGKILL instead of SIGTERM")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop a node and start it again; returns once it answers RPC.

    `--set path=value` overrides stay with the node until a restart gives others or
    --clear-overrides drops them.
    """
    with connect(config, data_dir) as net:
        chosen = _overrides(net, overrides, clear_overrides)
        target = _node(net, node)
        target.restart(chosen, graceful=not hard)
        view = target.state()
    _show(view, as_json)


@command
def pause_command(
    node: NodeArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Freeze a node (SIGSTOP): it keeps its sockets but answers nothing until resumed."""
    _act(config, data_dir, node, as_json, lambda n: n.pause())


@command
def resume_command(
    node: NodeArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused node (SIGCONT)."""
    _act(config, data_dir, node, as_json, lambda n: n.resume())


def _isolate(config: Path, data_dir: Path | None, name: str, isolated: bool, as_json: bool) -> None:
    with connect(config, data_dir) as net:
        target = _node(net, name)
        status = target.partition() if isolated else target.heal()
    doc = {"name": name, "isolated": bool(status.get("isolated")), "status": status}
    if as_json:
        emit_json(doc)
        return
    what = "cut off from its peers" if doc["isolated"] else "connected to its peers again"
    typer.echo(
        f"{name}: {what} (layer {status.get('layer')}, "
        f"last certified {status.get('last_certified')})"
    )


@command
def partition_command(
    smesher: SmesherArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cut a smesher off from its peers both ways (its RPC still answers) until `heal`."""
    _isolate(config, data_dir, smesher, True, as_json)


@command
def heal_command(
    smesher: SmesherArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reconnect a partitioned smesher; it catches up by sync."""
    _isolate(config, data_dir, smesher, False, as_json)


@command
def attach_shadow_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start one more shadow executor; it replays from genesis.

    The supervisor runs it like any other node, so `devnet down` stops it too.
    """
    with connect(config, data_dir) as net:
        shadow = net.attach_shadow()
        shadow.wait_ready()
        view = shadow.state()
    if as_json:
        emit_json(view)
        return
    typer.echo(
        f"{view['name']} attached at {view['endpoint']} (pid {view['pid']}, log {view['log']}); "
        "it replays from genesis"
    )
