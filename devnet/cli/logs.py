"""`devnet logs NODE [-f] [-n LINES] [--raw] [--json]`: a node's log, readable.

Nodes log JSON lines (structlog), which scripts want and people do not; the default
rendering is one line per entry — time, level, event, then key=value — and `--raw` prints
the lines as written. The log is found through devnet.json while the devnet runs, else at
`DATA_DIR/logs/NODE.log`, so a crashed or stopped devnet's logs can still be read.
"""

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from devnet.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    DataDirOption,
    JsonOption,
    command,
    data_dir_of,
    emit_json,
    fail,
)
from devnet.client.discovery import STATE_FILE

#: Keys shown in the fixed columns (or implied by the file: every line is one node's).
FIXED_KEYS = ("timestamp", "level", "event", "node", "exception")
#: With -f and no -n, start from this many earlier lines, as `tail -f` does.
FOLLOW_BACKLOG = 10
POLL_SECONDS = 0.2
_BLOCK = 8192


def render_line(line: str) -> str:
    """One log line for people: `HH:MM:SS.mmm level   event  key=value …`, followed by an
    exception's traceback, indented. A line that is not a structlog JSON entry (a crash's
    traceback on stderr, say) is shown as it is."""
    entry = parse_entry(line)
    if entry is None:
        return line.rstrip("\n")
    head = f"{short_time(entry.get('timestamp'))} {entry.get('level', '-')!s:<7} "
    head += str(entry.get("event", ""))
    extras = " ".join(
        f"{key}={format_value(value)}" for key, value in entry.items() if key not in FIXED_KEYS
    )
    text = f"{head}  {extras}" if extras else head
    exception = entry.get("exception")
    if exception:
        text += "\n" + "\n".join(f"    {row}" for row in str(exception).splitlines())
    return text


def parse_entry(line: str) -> dict[str, Any] | None:
    """The JSON object of a structlog line, or None for anything else."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "event" in entry else None


def short_time(stamp: object) -> str:
    """`2026-01-02T03:04:05.678901Z` → `03:04:05.678` (the day rarely matters in a devnet's
    log, and the column stays narrow); anything else as it is."""
    if not isinstance(stamp, str) or "T" not in stamp:
        return "-" if stamp is None else str(stamp)
    clock = stamp.split("T", 1)[1].rstrip("Z")
    return clock[:12]


def format_value(value: object) -> str:
    """A value as `key=value` shows it: plain words bare, everything else as JSON."""
    if isinstance(value, str) and value and not any(c in value for c in ' ="\n\t'):
        return value
    return json.dumps(value, separators=(",", ":"))


def tail_lines(path: Path, count: int | None) -> tuple[list[str], int]:
    """The last `count` lines (all with None) and the offset the file was read up to, where
    following it goes on. An unterminated last line is left for the follower."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        data = _read_all(f) if count is None else _read_tail(f, end, count)
    complete = data[: data.rfind(b"\n") + 1]
    lines = complete.decode("utf-8", errors="replace").splitlines()
    if count is not None:
        lines = lines[-count:] if count else []
    return lines, end - (len(data) - len(complete))


def _read_all(f: Any) -> bytes:
    f.seek(0)
    data: bytes = f.read()
    return data


def _read_tail(f: Any, end: int, count: int) -> bytes:
    """Blocks from the end until they hold `count` complete lines (plus a partial one)."""
    start, data = end, b""
    while start > 0 and data.count(b"\n") <= count:
        start = max(0, start - _BLOCK)
        f.seek(start)
        data = f.read(end - start)
    return data


def follow(
    path: Path,
    offset: int,
    emit: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Print lines appended to `path` from `offset` on, polling; a file that is truncated or
    replaced (a reset devnet) is read again from its start. `rounds` bounds the polls (for
    tests); None polls until interrupted."""
    buffered = b""
    ident = _ident(path)
    done = 0
    while rounds is None or done < rounds:
        done += 1
        now = _ident(path)
        if now is None:  # deleted (a reset): whatever comes next is read from its start
            offset, buffered, ident = 0, b"", None
            sleep(POLL_SECONDS)
            continue
        if now[0] != (ident or now)[0] or now[1] < offset:
            offset, buffered = 0, b""
        ident = now
        chunk = _read_from(path, offset)
        offset += len(chunk)
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        for raw in complete:
            emit(raw.decode("utf-8", errors="replace"))
        if not chunk:
            sleep(POLL_SECONDS)


def _ident(path: Path) -> tuple[int, int] | None:
    """(inode, size) of the file, None while it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(1 << 20)
    except FileNotFoundError:
        return b""


def log_path(data_dir: Path, node: str) -> Path:
    """The node's log: the one devnet.json names while the devnet runs, else
    `DATA_DIR/logs/NODE.log`."""
    for entry in _running_nodes(data_dir):
        if entry.get("name") == node and entry.get("log"):
            return Path(entry["log"])
    path = data_dir / "logs" / f"{node}.log"
    if not path.exists():
        fail(f"no log for {node!r} in {data_dir / 'logs'} (logs: {_known_logs(data_dir)})")
    return path


def _running_nodes(data_dir: Path) -> list[dict[str, Any]]:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        nodes = state["nodes"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def _known_logs(data_dir: Path) -> str:
    names = sorted(p.stem for p in (data_dir / "logs").glob("*.log"))
    return ", ".join(names) if names else "none"


def entries(lines: list[str]) -> Iterator[dict[str, Any]]:
    """`--json`: each line's JSON object, or {"raw": line} for one that is not JSON."""
    for line in lines:
        yield parse_entry(line) or {"raw": line}


@command
def logs_command(
    node: Annotated[str, typer.Argument(metavar="NODE", help="node name, or 'supervisor'")],
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines until Ctrl-C")
    ] = False,
    lines: Annotated[
        int | None,
        typer.Option("--lines", "-n", min=0, help="only the last N lines (default: all; -f: 10)"),
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="the JSON lines as written")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a node's log (`supervisor` is `devnet up --detach`'s own output)."""
    if as_json and follow_:
        fail("--json prints one document and cannot follow; use -f --raw for JSON lines")
    path = log_path(data_dir_of(config, data_dir), node)
    count = FOLLOW_BACKLOG if follow_ and lines is None else lines
    backlog, offset = tail_lines(path, count)
    if as_json:
        emit_json(list(entries(backlog)))
        return
    show: Callable[[str], None] = typer.echo if raw else (lambda s: typer.echo(render_line(s)))
    try:
        for line in backlog:
            show(line)
        if follow_:
            follow(path, offset, show)
    except KeyboardInterrupt:
        return  # Ctrl-C is how -f ends
    except BrokenPipeError:  # `devnet logs NODE | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
