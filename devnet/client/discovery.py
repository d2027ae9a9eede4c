"""Finding a running devnet: its `devnet.json`, written by `devnet up` once it is ready.

A target may be the data directory, the `devnet.json` file itself, or a devnet TOML config
(whose `data_dir` holds the file). With no target, `$DEVNET_DATA_DIR`, then
`$DEVNET_CONFIG`, then `configs/devnet.toml` in the working directory, then `./data`.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devnet.client.errors import ClientError
from devnet.keys import KeyPair

STATE_FILE = "devnet.json"
DEFAULT_CONFIG = Path("configs/devnet.toml")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str
    endpoint: str
    log: Path


@dataclass(frozen=True)
class DevnetInfo:
    """What a client needs to know of a devnet, read from its `devnet.json`."""

    path: Path
    data_dir: Path
    config: Path
    genesis_id: bytes
    genesis_time: int
    layer_duration_ms: int
    hrp: str
    supervisor: str | None
    nodes: tuple[NodeInfo, ...]
    wallet_keys: tuple[KeyPair, ...]

    def node(self, name: str) -> NodeInfo:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise ClientError(f"no node named {name!r} (nodes: {known})")

    def by_role(self, role: str) -> list[NodeInfo]:
        return [n for n in self.nodes if n.role == role]

    def layer_now(self) -> int:
        """The current layer by the clock (layers tick whether or not blocks are made)."""
        elapsed = time.time_ns() // 1_000_000 - self.genesis_time * 1000
        return max(0, elapsed // self.layer_duration_ms)


def state_path(target: str | Path | None = None) -> Path:
    """Where the devnet.json of `target` is (see the module docstring)."""
    if target is None:
        env_dir = os.environ.get("DEVNET_DATA_DIR")
        env_config = os.environ.get("DEVNET_CONFIG")
        if env_dir:
            target = Path(env_dir)
        elif env_config:
            target = Path(env_config)
        elif DEFAULT_CONFIG.exists():
            target = DEFAULT_CONFIG
        else:
            target = Path("data")
    path = Path(target)
    if path.suffix == ".toml":
        from devnet.config import load_config

        return load_config(path).network.data_dir / STATE_FILE
    if path.is_dir():
        return path / STATE_FILE
    return path


def read_info(target: str | Path | None = None) -> DevnetInfo:
    path = state_path(target)
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientError(
            f"no devnet is running from {path.parent} (no {path.name}); start one with "
            "`devnet up` or pass its data directory"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    return parse_info(path, state)


def parse_info(path: Path, state: dict[str, Any]) -> DevnetInfo:
    try:
        nodes = tuple(
            NodeInfo(n["name"], n["role"], n["endpoint"], Path(n["log"])) for n in state["nodes"]
        )
        keys = tuple(
            KeyPair.from_seed(bytes.fromhex(a["private_key"]))
            for a in state["accounts"]
            if a["layer"] == "Athena" and a.get("private_key")
        )
        return DevnetInfo(
            path=path,
            data_dir=Path(state["data_dir"]),
            config=Path(state["config"]),
            genesis_id=bytes.fromhex(state["genesis_id"]),
            genesis_time=int(state["genesis_time"]),
            layer_duration_ms=int(state["layer_duration_ms"]),
            hrp=str(state["hrp"]),
            supervisor=state.get("supervisor"),
            nodes=nodes,
            wallet_keys=keys,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ClientError(f"{path} is not a devnet state file: {exc!r}") from None
