"""The devnet's TOML configuration, parsed into frozen dataclasses.

One file describes the whole network; each process takes its own part by name. Every
invalid field fails at start with the field's path and the reason.
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from devnet.address import KNOWN_HRPS, decode_address
from devnet.bundle import DEFAULT_MAX_BUNDLE_BYTES, MAX_BUNDLE_BYTES
from devnet.errors import AddressError, DevnetError
from devnet.keys import KeyPair, derive_test_key
from devnet.l1 import l1_address

GENESIS_ID_LENGTH = 20


class ConfigError(DevnetError):
    """A configuration file is unreadable or a field is invalid; the message names it."""


@dataclass(frozen=True)
class NetworkConfig:
    genesis_time: int
    layer_duration_ms: int
    genesis_extra: str
    hrp: str
    key_phrase: str
    data_dir: Path

    @property
    def genesis_id(self) -> bytes:
        """blake3(decimal unix genesis time ‖ extra data)[0:20]."""
        seed = str(self.genesis_time).encode() + self.genesis_extra.encode()
        return blake3.blake3(seed).digest()[:GENESIS_ID_LENGTH]

    def test_key(self, role: str) -> KeyPair:
        """The deterministic key of a role (`smesher-0`, `relay-0`, `executor`, `user-3`)."""
        return derive_test_key(f"{self.key_phrase}/{role}", 0)

    def layer_at(self, unix_ms: int) -> int:
        return max(0, (unix_ms - self.genesis_time * 1000) // self.layer_duration_ms)

    def layer_start_ms(self, layer: int) -> int:
        return self.genesis_time * 1000 + layer * self.layer_duration_ms


@dataclass(frozen=True)
class L1Config:
    byte_price: int
    layer_subsidy: int
    block_gas_limit: int
    max_bundle_bytes: int
    genesis: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True)
class SmesherConfig:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class ExecutorFaults:
    """Test-only misbehaviour, off unless set: the shadow executor must catch both."""

    wrong_root_at_layer: int | None = None
    skip_tx: bytes | None = None


@dataclass(frozen=True)
class ExecutorConfig:
    name: str = "executor"
    host: str = "127.0.0.1"
    port: int = 7200
    #: The executor's share of every Athena fee, in basis points; the relay gets the rest.
    fee_share_bps: int = 2000
    #: Publish a state-root claim to L1 every layer.
    claims: bool = True
    #: Check wallet signatures in a helper process while a layer executes.
    signatures_ahead: bool = True
    faults: ExecutorFaults = ExecutorFaults()


@dataclass(frozen=True)
class ShadowConfig:
    name: str = "shadow-0"
    host: str = "127.0.0.1"
    port: int = 7400
    #: A claim not seen on L1 within this many layers after its layer is reported late.
    claim_deadline_layers: int = 10
    #: Check wallet signatures in a helper process while a layer executes.
    signatures_ahead: bool = True


@dataclass(frozen=True)
class RelayFaults:
    """Test-only misbehaviour, off unless set: a crash at the worst moment for recovery."""

    #: Exit at once, as a kill would, after persisting bundle number N (counted over the
    #: relay's whole life) and before submitting it; -1 never.
    crash_after_bundle: int = -1


@dataclass(frozen=True)
class RelayConfig:
    name: str = "relay-0"
    host: str = "127.0.0.1"
    port: int = 7300
    #: The lowest gas price the relay admits (its fee share must pay for the L1 bytes).
    min_gas_price: int = 1
    #: Transactions of one principal in flight (pending, bundled or included) at once.
    max_per_principal: int = 100
    #: The pool's caps; beyond them the lowest gas price is evicted first.
    pool_max_txs: int = 10_000
    pool_max_bytes: int = 32 * 1024 * 1024
    #: The largest bundle the relay builds (at most `l1.max_bundle_bytes`).
    bundle_max_bytes: int = 256 * 1024
    #: Layers a bundle may wait for inclusion before it is rebuilt (same L1 nonce).
    include_within_layers: int = 5
    #: How often a transaction may go back to the pool (its bundle not included, or cut
    #: from its block) before it is dropped.
    max_attempts: int = 3
    #: Requests per second per connection (a burst of as many is allowed); 0 = no limit.
    rate_limit: int = 1000
    #: The largest request frame, in bytes (a transaction is at most 128 KiB).
    max_request_bytes: int = 512 * 1024
    faults: RelayFaults = RelayFaults()


@dataclass(frozen=True)
class AthenaGenesis:
    """Athena accounts at genesis: the built-in templates and spawned test wallets."""

    test_wallets: int = 10
    test_wallet_balance: int = 10**15


@dataclass(frozen=True)
class SupervisorConfig:
    """`devnet up`'s own settings: its control endpoint and what it does when a node dies."""

    host: str = "127.0.0.1"
    port: int = 7000
    #: Start a node again when it exits on its own (a node stopped by `devnet kill` stays down).
    restart_crashed: bool = True
    #: Seconds to wait before restarting a crashed node.
    restart_delay_ms: int = 1000


@dataclass(frozen=True)
class DevnetConfig:
    network: NetworkConfig
    l1: L1Config
    smeshers: tuple[SmesherConfig, ...]
    executor: ExecutorConfig = ExecutorConfig()
    athena: AthenaGenesis = AthenaGenesis()
    shadow: ShadowConfig = ShadowConfig()
    relay: RelayConfig = RelayConfig()
    supervisor: SupervisorConfig = SupervisorConfig()

    def smesher(self, name: str) -> SmesherConfig:
        for node in self.smeshers:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.smeshers)
        raise ConfigError(f"no smesher named {name!r} (configured: {known})")

    def smesher_key(self, name: str) -> KeyPair:
        return self.network.test_key(name)

    def validators(self) -> list[bytes]:
        return [self.smesher_key(n.name).public_key for n in self.smeshers]


class _Fields:
    """Typed access to one TOML table, naming the path of any bad field."""

    def __init__(self, table: dict[str, Any], path: str) -> None:
        self.table = table
        self.path = path

    def _field(self, key: str) -> str:
        """The path of `key` in this table (no leading dot at the root)."""
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, kind: type, default: Any) -> Any:
        value = self.table.get(key, default)
        if value is None:
            raise ConfigError(f"{self._field(key)}: missing")
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ConfigError(f"{self._field(key)}: expected {kind.__name__}, got {value!r}")
        return value

    def integer(self, key: str, default: int | None = None, low: int = 0, high: int = 2**63) -> int:
        value: int = self._get(key, int, default)
        if not low <= value <= high:
            raise ConfigError(f"{self._field(key)}: {value} is outside {low}..{high}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value: str = self._get(key, str, default)
        return value

    def tables(self, key: str) -> list["_Fields"]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{self._field(key)}: expected an array of tables")
        return [_Fields(v, f"{self._field(key)}[{i}]") for i, v in enumerate(value)]

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self._get(key, bool, default)
        return value

    def table_of(self, key: str) -> "_Fields":
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self._field(key)}: expected a table")
        return _Fields(value, self._field(key))


def _network(f: _Fields) -> NetworkConfig:
    hrp = f.text("hrp", "atest")
    if hrp not in KNOWN_HRPS:
        raise ConfigError(f"network.hrp: {hrp!r} is not one of {sorted(KNOWN_HRPS)}")
    return NetworkConfig(
        genesis_time=f.integer("genesis_time", 0),
        layer_duration_ms=f.integer("layer_duration_ms", 1000, low=200, high=3_600_000),
        genesis_extra=f.text("genesis_extra", "athena-devnet"),
        hrp=hrp,
        key_phrase=f.text("key_phrase", "athena-devnet"),
        data_dir=Path(f.text("data_dir", "data")).resolve(),
    )


def _l1(f: _Fields, network: NetworkConfig) -> L1Config:
    genesis = []
    for entry in f.tables("genesis"):
        balance = entry.integer("balance", low=0, high=2**64 - 1)
        if "key" in entry.table:
            address = l1_address(network.test_key(entry.text("key")).public_key)
        else:
            try:
                address = decode_address(entry.text("address"), network.hrp)
            except AddressError as exc:
                raise ConfigError(f"{entry.path}.address: {exc}") from None
        genesis.append((address, balance))
    return L1Config(
        byte_price=f.integer("byte_price", 1),
        layer_subsidy=f.integer("layer_subsidy", 1_000_000, high=2**40),
        block_gas_limit=f.integer("block_gas_limit", 100_000_000, low=1),
        max_bundle_bytes=f.integer(
            "max_bundle_bytes", DEFAULT_MAX_BUNDLE_BYTES, low=1024, high=MAX_BUNDLE_BYTES
        ),
        genesis=tuple(genesis),
    )


def _smeshers(f: _Fields) -> tuple[SmesherConfig, ...]:
    nodes = []
    for entry in f.tables("smesher"):
        nodes.append(
            SmesherConfig(
                name=entry.text("name"),
                host=entry.text("host", "127.0.0.1"),
                port=entry.integer("port", low=1, high=65535),
            )
        )
    if not nodes:
        raise ConfigError("smesher: at least one [[smesher]] is required")
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(f"smesher: duplicate names in {names}")
    return tuple(nodes)


def _executor(f: _Fields) -> ExecutorConfig:
    faults = f.table_of("fault")
    wrong = faults.integer("wrong_root_at_layer", -1, low=-1)
    skip = faults.text("skip_tx", "")
    try:
        skip_id = bytes.fromhex(skip) if skip else None
    except ValueError:
        raise ConfigError(f"{faults._field('skip_tx')}: not a hex transaction id") from None
    if skip_id is not None and len(skip_id) != 32:
        raise ConfigError(f"{faults._field('skip_tx')}: a transaction id is 32 bytes")
    return ExecutorConfig(
        name=f.text("name", "executor"),
        host=f.text("host", "127.0.0.1"),
        port=f.integer("port", 7200, low=1, high=65535),
        fee_share_bps=f.integer("fee_share_bps", 2000, high=10_000),
        claims=f.flag("claims", True),
        signatures_ahead=f.flag("signatures_ahead", True),
        faults=ExecutorFaults(None if wrong < 0 else wrong, skip_id),
    )


def _shadow(f: _Fields) -> ShadowConfig:
    return ShadowConfig(
        name=f.text("name", "shadow-0"),
        host=f.text("host", "127.0.0.1"),
        port=f.integer("port", 7400, low=1, high=65535),
        claim_deadline_layers=f.integer("claim_deadline_layers", 10, low=1, high=1000),
        signatures_ahead=f.flag("signatures_ahead", True),
    )


def _relay(f: _Fields, l1: L1Config) -> RelayConfig:
    faults = f.table_of("fault")
    return RelayConfig(
        name=f.text("name", "relay-0"),
        host=f.text("host", "127.0.0.1"),
        port=f.integer("port", 7300, low=1, high=65535),
        min_gas_price=f.integer("min_gas_price", 1, low=1),
        max_per_principal=f.integer("max_per_principal", 100, low=1, high=10_000),
        pool_max_txs=f.integer("pool_max_txs", 10_000, low=1, high=10_000_000),
        pool_max_bytes=f.integer("pool_max_bytes", 32 * 1024 * 1024, low=1024, high=2**34),
        bundle_max_bytes=f.integer(
            "bundle_max_bytes",
            min(256 * 1024, l1.max_bundle_bytes),
            low=1024,
            high=l1.max_bundle_bytes,
        ),
        include_within_layers=f.integer("include_within_layers", 5, low=1, high=1000),
        max_attempts=f.integer("max_attempts", 3, low=1, high=100),
        rate_limit=f.integer("rate_limit", 1000, high=1_000_000),
        max_request_bytes=f.integer(
            "max_request_bytes", 512 * 1024, low=64 * 1024, high=4 * 1024 * 1024
        ),
        faults=RelayFaults(faults.integer("crash_after_bundle", -1, low=-1)),
    )


def _athena(f: _Fields) -> AthenaGenesis:
    return AthenaGenesis(
        test_wallets=f.integer("test_wallets", 10, high=100_000),
        test_wallet_balance=f.integer("test_wallet_balance", 10**15, high=2**63),
    )


def _supervisor(f: _Fields) -> SupervisorConfig:
    return SupervisorConfig(
        host=f.text("host", "127.0.0.1"),
        port=f.integer("port", 7000, low=1, high=65535),
        restart_crashed=f.flag("restart_crashed", True),
        restart_delay_ms=f.integer("restart_delay_ms", 1000, high=600_000),
    )


def _check_endpoints(config: DevnetConfig) -> None:
    """Two nodes on one host:port would fail only when the second starts; say it now."""
    nodes = [(f"smesher[{i}]", n.host, n.port) for i, n in enumerate(config.smeshers)]
    nodes += [
        ("executor", config.executor.host, config.executor.port),
        ("relay", config.relay.host, config.relay.port),
        ("shadow", config.shadow.host, config.shadow.port),
        ("supervisor", config.supervisor.host, config.supervisor.port),
    ]
    seen: dict[tuple[str, int], str] = {}
    for path, host, port in nodes:
        other = seen.setdefault((host, port), path)
        if other != path:
            raise ConfigError(f"{path}.port: {host}:{port} is already used by {other}")


def parse_config(doc: dict[str, Any]) -> DevnetConfig:
    root = _Fields(doc, "")
    network = _network(root.table_of("network"))
    l1 = _l1(root.table_of("l1"), network)
    config = DevnetConfig(
        network,
        l1,
        _smeshers(root),
        _executor(root.table_of("executor")),
        _athena(root.table_of("athena")),
        _shadow(root.table_of("shadow")),
        relay=_relay(root.table_of("relay"), l1),
        supervisor=_supervisor(root.table_of("supervisor")),
    )
    _check_endpoints(config)
    return config


def apply_override(doc: dict[str, Any], override: str) -> None:
    """Set one `dotted.path=value` in a parsed TOML document (value in TOML syntax, or a
    bare string), so a node can be restarted with one field changed (`--set`)."""
    path, sep, text = override.partition("=")
    keys = path.strip().split(".")
    if not sep or not all(keys):
        raise ConfigError(f"override {override!r}: expected dotted.path=value")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    table = doc
    for depth, key in enumerate(keys[:-1]):
        child = table.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(f"override {override!r}: {where} is not a table")
        table = child
    table[keys[-1]] = value


def load_config(path: Path, overrides: tuple[str, ...] = ()) -> DevnetConfig:
    """Read and check a devnet TOML file; a relative data_dir is relative to the cwd."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    for override in overrides:
        apply_override(doc, override)
    return parse_config(doc)
