"""`devnet up | down | reset`: run the devnet, stop it, start afresh."""

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from devnet.cli.common import (
    DEFAULT_CONFIG,
    TX_ERROR,
    ConfigOption,
    DataDirOption,
    JsonOption,
    command,
    data_dir_of,
    emit_json,
    fail,
    is_tty,
    warn,
)
from devnet.config import load_config
from devnet.daemon import leaves
from devnet.errors import DevnetError
from devnet.log import configure
from devnet.orchestrator import (
    EFFECTIVE_CONFIG,
    STATE_FILE,
    OrchestratorError,
    Supervisor,
    launch_up,
    pid_alive,
    prepare,
    read_state,
    wait_up,
)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


async def _supervise(effective: Path) -> None:
    supervisor = Supervisor(effective, announce=typer.echo)
    async with trio.open_nursery() as nursery:
        # SIGINT too: a shell starts background jobs with SIGINT ignored, and then Python
        # never turns Ctrl-C or `kill -INT` into KeyboardInterrupt.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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
    start = log.stat().st_size if log.exists() else 0  # print only this run's banner
    proc = launch_up(config, log)
    if wait_up(proc, data_dir, 90):
        typer.echo(_banner(log, start))
        return
    if proc.poll() is not None:
        raise _fail(OrchestratorError(f"the devnet failed to start; see {log}"))
    proc.terminate()
    raise _fail(OrchestratorError(f"the devnet did not become ready; see {log}"))


#: The last line of the supervisor's banner, printed right after it writes devnet.json.
BANNER_END = b"Ctrl-C stops every node."


def _banner(log: Path, start: int) -> str:
    """This run's part of the supervisor log, once the banner is complete (it is written
    just after devnet.json, so it may still be on its way)."""
    deadline = time.monotonic() + 5
    while True:
        with open(log, "rb") as f:
            f.seek(start)
            text = f.read()
        if BANNER_END in text or time.monotonic() > deadline:
            return text.decode("utf-8", errors="replace").strip("\n")
        time.sleep(0.05)


SUPERVISOR_STOP_SECONDS = 30.0
NODE_STOP_SECONDS = 10.0


def stop_devnet(data_dir: Path) -> dict[str, Any]:
    """Stop the devnet of `data_dir` as `devnet down` does: SIGTERM to the supervisor (which
    stops its nodes in order), then any node a dead supervisor left behind. What was done."""
    state = read_state(data_dir)
    pid = int(state["supervisor_pid"])
    was_running = pid_alive(pid)
    if was_running:
        _stop_pid(pid, SUPERVISOR_STOP_SECONDS)
    leftovers: list[str] = []
    # A supervisor that stopped cleanly removed devnet.json; one that died left its nodes.
    if (data_dir / STATE_FILE).exists():
        for node in state["nodes"]:
            node_pid = node.get("pid")
            if node_pid and pid_alive(int(node_pid)):
                _stop_pid(int(node_pid), NODE_STOP_SECONDS)
                leftovers.append(node["name"])
        (data_dir / STATE_FILE).unlink(missing_ok=True)
    return {
        "data_dir": str(data_dir),
        "supervisor_pid": pid,
        "supervisor_was_running": was_running,
        "leftovers_stopped": leftovers,
    }


def _stop_pid(pid: int, seconds: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `seconds`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + seconds
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pid_alive(pid):
            return


@command
def down_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop a running devnet and every one of its processes (attached shadows too)."""
    done = stop_devnet(data_dir_of(config, data_dir))
    if as_json:
        emit_json(done)
        return
    if done["leftovers_stopped"]:
        warn(f"the supervisor had left {', '.join(done['leftovers_stopped'])} running")
    typer.echo("devnet stopped")


# --- reset -------------------------------------------------------------------------------------

#: What marks a project checkout (or any directory that is not ours to delete).
FOREIGN_MARKERS = (".git", "pyproject.toml", "setup.py")


def check_deletable(path: Path) -> None:
    """Refuse to delete anything that does not look like a devnet data directory: `reset`
    runs `rm -rf` on a path taken from a config, where a typo must not cost a home
    directory or a checkout."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved in (Path(resolved.anchor), Path.home().resolve()) or resolved in (
        cwd,
        *cwd.parents,
    ):
        fail(f"refusing to delete {path}: it is / , your home or (a parent of) this directory")
    foreign = [m for m in FOREIGN_MARKERS if (resolved / m).exists()]
    if foreign:
        fail(f"refusing to delete {path}: it holds {', '.join(foreign)}, not a devnet's data")
    if not looks_like_data_dir(resolved):
        fail(
            f"refusing to delete {path}: it holds no devnet.toml, devnet.json, logs/ or node "
            "database, so it is not a devnet data directory"
        )


def looks_like_data_dir(path: Path) -> bool:
    """What `devnet up` writes there: devnet.json, node logs, a node's LevelDB
    (`NODE/KIND/CURRENT`), or an effective devnet.toml naming this very directory as its
    data_dir (a devnet.toml alone may just be a user's config next to its data dir)."""
    if (path / STATE_FILE).is_file() or any((path / "logs").glob("*.log")):
        return True
    if any(path.glob("*/*/CURRENT")):
        return True
    return _names_itself(path / EFFECTIVE_CONFIG, path)


def _names_itself(config: Path, path: Path) -> bool:
    try:
        return load_config(config).network.data_dir.resolve() == path.resolve()
    except (DevnetError, OSError):
        return False


def _confirm(path: Path, yes: bool) -> None:
    if yes:
        return
    if not is_tty():
        fail(f"refusing to delete {path} without --yes (there is no terminal to ask)")
    if not typer.confirm(f"delete {path} and everything in it?", err=True):
        fail("nothing deleted", code=TX_ERROR)


@command
def reset_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop the devnet if it runs and delete its data directory.

    The next `devnet up` starts a new network from genesis, with a new genesis time and id.
    Asks first on a terminal; elsewhere --yes is required.
    """
    path = data_dir_of(config, data_dir)
    if not path.exists():
        if as_json:
            emit_json({"data_dir": str(path), "stopped": False, "deleted": False})
        else:
            typer.echo(f"{path} does not exist: nothing to reset")
        return
    check_deletable(path)
    _confirm(path, yes)
    stopped = (path / STATE_FILE).exists()
    if stopped:
        stop_devnet(path)
    shutil.rmtree(path)
    doc = {"data_dir": str(path), "stopped": stopped, "deleted": True}
    if as_json:
        emit_json(doc)
        return
    typer.echo(("devnet stopped; " if stopped else "") + f"{path} deleted")
