"""What every command that talks to a devnet shares: finding it, connecting, reporting.

Every such command takes `--config` (the devnet's TOML, whose `data_dir` holds
`devnet.json`) or `--data-dir`, prints a readable result or, with `--json`, exactly one
JSON document on stdout, and reports errors on stderr with exit code 2 (1 when a
transaction was rejected, dropped or failed) — never with a traceback, because the
output is meant for people and for scripts alike.
"""

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from devnet.client import (
    Devnet,
    TransactionDropped,
    TransactionFailed,
    TransactionRejected,
)
from devnet.client.discovery import state_path
from devnet.config import load_config
from devnet.daemon import leaves
from devnet.errors import DevnetError
from devnet.orchestrator import pid_alive

DEFAULT_CONFIG = Path("configs/devnet.toml")
#: Exit codes: a usage or environment error; a transaction that did not go through.
USAGE_ERROR, TX_ERROR = 2, 1
INTERRUPTED = 130

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", envvar="DEVNET_CONFIG", help="devnet TOML file (its data_dir is the devnet)"
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="DEVNET_DATA_DIR",
        help="the devnet's data directory (instead of --config)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document")]

P = ParamSpec("P")
R = TypeVar("R")


class CliError(DevnetError):
    """A failure to report as `error: MESSAGE` with an exit code."""

    def __init__(self, message: str, code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    raise CliError(message, code)


#: Errors that mean the transaction itself did not go through (exit code 1).
TX_ERRORS = (TransactionRejected, TransactionDropped, TransactionFailed)


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a command body so that every error becomes one line on stderr and an exit code.

    Set DEVNET_DEBUG=1 to see the traceback of an unexpected error.
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as exc:
            raise _exit_for(exc) from None

    return run


def _exit_for(exc: BaseException) -> typer.Exit:
    if isinstance(exc, BaseExceptionGroup):  # from a nursery: report the error inside
        inner = leaves(exc)
        exc = next((e for e in inner if isinstance(e, DevnetError | KeyboardInterrupt)), inner[0])
    if isinstance(exc, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return typer.Exit(INTERRUPTED)
    if isinstance(exc, CliError):
        code = exc.code
    elif isinstance(exc, TX_ERRORS):
        code = TX_ERROR
    elif isinstance(exc, DevnetError | OSError):
        code = USAGE_ERROR
    else:
        if os.environ.get("DEVNET_DEBUG"):
            traceback.print_exception(exc)
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (DEVNET_DEBUG=1 shows where)",
            err=True,
        )
        return typer.Exit(USAGE_ERROR)
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


# --- finding the devnet ----------------------------------------------------------------------


def target(config: Path, data_dir: Path | None) -> Path:
    """What `devnet.client.read_info` is given: the data directory, else the config."""
    if data_dir is not None:
        return data_dir
    if not config.exists():
        fail(f"no config at {config}; pass --config FILE or --data-dir DIR")
    return config


def data_dir_of(config: Path, data_dir: Path | None) -> Path:
    """The devnet's data directory, whether or not it is running."""
    if data_dir is not None:
        return data_dir
    return load_config(target(config, None)).network.data_dir


def check_running(where: Path) -> None:
    """Refuse a `devnet.json` whose supervisor is gone: every call would time out, and the
    user can act on 'not running' but not on a timeout."""
    path = state_path(where)
    try:
        pid = int(json.loads(path.read_text(encoding="utf-8"))["supervisor_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # missing or unreadable: read_info says so precisely
    if not pid_alive(pid):
        fail(
            f"the devnet of {path.parent} is not running (its supervisor, pid {pid}, exited); "
            "`devnet up` starts it again, `devnet down` clears what is left"
        )


def connect(config: Path, data_dir: Path | None, timeout: float = 10.0) -> Devnet:
    """The client of the running devnet (close it, or use it in a `with`)."""
    where = target(config, data_dir)
    check_running(where)
    return Devnet.connect(where, timeout=timeout)


# --- output ----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """`value` with bytes as hex, so node replies (msgpack) print as JSON."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit_json(doc: Any) -> None:
    """The one JSON document of a `--json` command."""
    typer.echo(json.dumps(jsonable(doc), indent=2))


def dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """Aligned `name  value` lines."""
    rows = list(pairs)
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {dash(value)}" for name, value in rows)


def table(headers: list[str], rows: list[list[object]], right: frozenset[str] = frozenset()) -> str:
    """A plain text table; columns named in `right` are right-aligned (numbers)."""
    cells = [[dash(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if h in right else v.ljust(w)
            for h, v, w in zip(headers, values, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def receipt_lines(receipt: dict[str, Any]) -> str:
    """A receipt (its JSON form) for people."""
    outcome = receipt["status"] + (f": {receipt['reason']}" if receipt.get("reason") else "")
    pairs: list[tuple[str, object]] = [
        ("tx", receipt["tx_id"]),
        ("status", outcome),
        ("layer", f"{receipt['layer']} (index {receipt['index']})"),
        ("principal", f"{receipt['principal']} (nonce {receipt['nonce']})"),
        ("gas used", receipt["gas_used"]),
        ("fee", receipt["fee"]),
        ("output", receipt["output"]),
    ]
    pairs += [("log", line) for line in receipt.get("logs") or ()]
    return fields(pairs)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def is_tty() -> bool:
    return sys.stdin.isatty()
