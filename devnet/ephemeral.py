"""A fresh devnet for one run of scenarios or tests: its own data directory, free ports.

    with ephemeral_devnet(Path("configs/devnet.toml")) as fresh:
        with Devnet.connect(fresh.data_dir) as net: ...

The given config is copied with every port replaced by a free one and the data directory
moved to a new temporary directory, then started with `devnet up --detach` as a user would.
On exit the devnet is stopped with `devnet down`; its directory is removed unless `keep` is
set (by the caller, or because the block raised) so its logs can be read.
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from devnet.config import ConfigError, parse_config
from devnet.errors import DevnetError

START_TIMEOUT = 150
STOP_TIMEOUT = 60


class EphemeralError(DevnetError):
    """The fresh devnet could not be started; the message points at its logs."""


@dataclass
class Fresh:
    directory: Path
    keep: bool = False

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config(self) -> Path:
        return self.directory / "devnet.toml"


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def relocated(doc: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """`doc` with a new data dir, genesis at first start, and free ports everywhere."""
    doc = {**doc}
    smeshers = [dict(s) for s in doc.get("smesher", [])]
    tables = ["executor", "relay", "shadow", "supervisor"]
    ports = iter(free_ports(len(smeshers) + len(tables)))
    for smesher in smeshers:
        smesher["port"] = next(ports)
    doc["smesher"] = smeshers
    for name in tables:
        doc[name] = {**doc.get(name, {}), "port": next(ports)}
    doc["network"] = {**doc.get("network", {}), "data_dir": str(data_dir), "genesis_time": 0}
    return doc


def write_config(source: Path, directory: Path) -> Path:
    """The relocated copy of `source` in `directory` (checked before anything starts)."""
    try:
        doc = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {source}: {exc}") from None
    doc = relocated(doc, directory / "data")
    parse_config(doc)
    path = directory / "devnet.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def _devnet(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@contextmanager
def ephemeral_devnet(config: Path, *, keep: bool = False) -> Iterator[Fresh]:
    """Start a fresh devnet from `config` and stop it when the block ends."""
    fresh = Fresh(Path(tempfile.mkdtemp(prefix="athena-devnet-")), keep)
    try:
        path = write_config(Path(config), fresh.directory)
        started = _devnet("up", "--config", str(path), "--detach", timeout=START_TIMEOUT)
        if started.returncode != 0:
            raise EphemeralError(
                f"the devnet did not start: {started.stderr.strip() or started.stdout.strip()} "
                f"(logs in {fresh.data_dir / 'logs'})"
            )
        yield fresh
    except BaseException:
        fresh.keep = True
        raise
    finally:
        if (fresh.data_dir / "devnet.json").exists():
            _devnet("down", "--config", str(fresh.config), timeout=STOP_TIMEOUT)
        if fresh.keep:
            sys.stderr.write(f"devnet data kept in {fresh.directory}\n")
        else:
            shutil.rmtree(fresh.directory, ignore_errors=True)
