"""The devnet TOML config: the default file loads; every bad field names its path."""

import copy
from pathlib import Path
from typing import Any

import pytest

from devnet.address import encode_address
from devnet.config import ConfigError, load_config, parse_config
from devnet.l1 import l1_address

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"
ADDRESS = bytes(4) + b"\x42" * 20


def doc() -> dict[str, Any]:
    return {
        "network": {"genesis_time": 1_700_000_000, "layer_duration_ms": 500, "hrp": "atest"},
        "l1": {
            "byte_price": 2,
            "genesis": [
                {"key": "relay-0", "balance": 100},
                {"address": encode_address(ADDRESS, "atest"), "balance": 5},
            ],
        },
        "smesher": [{"name": "a", "port": 7010}, {"name": "b", "port": 7011, "host": "::1"}],
    }


def test_default_config_loads() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert [s.name for s in config.smeshers] == [f"smesher-{i}" for i in range(4)]
    assert [s.port for s in config.smeshers] == [7100, 7101, 7102, 7103]
    assert config.network.hrp == "atest"
    assert config.network.layer_duration_ms == 1000
    assert len(config.network.genesis_id) == 20
    assert config.l1.byte_price == 1
    assert config.l1.max_bundle_bytes == 1024 * 1024
    assert len(config.l1.genesis) == 3
    relay = l1_address(config.network.test_key("relay-0").public_key)
    assert (relay, 10**12) in config.l1.genesis
    assert len(set(config.validators())) == 4
    assert config.smesher("smesher-2").port == 7102
    with pytest.raises(ConfigError, match="no smesher named"):
        config.smesher("nobody")


def test_parsed_values_and_defaults() -> None:
    config = parse_config(doc())
    assert config.network.genesis_time == 1_700_000_000
    assert config.network.genesis_extra == "athena-devnet"
    assert config.network.data_dir.is_absolute()
    assert config.l1.byte_price == 2
    assert config.l1.layer_subsidy == 1_000_000
    assert config.l1.genesis[1] == (ADDRESS, 5)
    assert config.smeshers[0].host == "127.0.0.1"
    assert config.smeshers[1].host == "::1"
    assert config.network.layer_at(1_700_000_000_000 + 1250) == 2
    assert config.network.layer_at(0) == 0
    assert config.network.layer_start_ms(2) == 1_700_000_001_000
    other = doc()
    other["network"]["genesis_extra"] = "other"
    assert parse_config(other).network.genesis_id != config.network.genesis_id


def _set(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc())
    target: Any = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


def _delete(path: tuple[str | int, ...]) -> dict[str, Any]:
    d = copy.deepcopy(doc())
    target: Any = d
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return d


BAD_FIELDS = [
    # wrong types
    (_set(("network", "genesis_time"), "soon"), "network.genesis_time"),
    (_set(("network", "genesis_time"), True), "network.genesis_time"),
    (_set(("network", "layer_duration_ms"), 1.5), "network.layer_duration_ms"),
    (_set(("network", "hrp"), 5), "network.hrp"),
    (_set(("network", "data_dir"), ["x"]), "network.data_dir"),
    (_set(("l1", "byte_price"), "1"), "l1.byte_price"),
    (_set(("smesher", 0, "port"), "7000"), "smesher[0].port"),
    (_set(("smesher", 1, "name"), 3), "smesher[1].name"),
    (_set(("l1", "genesis", 0, "balance"), 1.0), "l1.genesis[0].balance"),
    (_set(("l1", "genesis", 0, "key"), 1), "l1.genesis[0].key"),
    (_set(("network",), "x"), "network"),
    (_set(("l1",), []), "l1"),
    (_set(("smesher",), {"name": "a"}), "smesher"),
    (_set(("l1", "genesis"), [1, 2]), "l1.genesis"),
    # out of range
    (_set(("network", "genesis_time"), -1), "network.genesis_time"),
    (_set(("network", "layer_duration_ms"), 199), "network.layer_duration_ms"),
    (_set(("network", "layer_duration_ms"), 3_600_001), "network.layer_duration_ms"),
    (_set(("l1", "byte_price"), -1), "l1.byte_price"),
    (_set(("l1", "layer_subsidy"), 2**40 + 1), "l1.layer_subsidy"),
    (_set(("l1", "block_gas_limit"), 0), "l1.block_gas_limit"),
    (_set(("l1", "max_bundle_bytes"), 1023), "l1.max_bundle_bytes"),
    (_set(("l1", "max_bundle_bytes"), 4 * 1024 * 1024 + 1), "l1.max_bundle_bytes"),
    (_set(("l1", "genesis", 0, "balance"), 2**64), "l1.genesis[0].balance"),
    (_set(("l1", "genesis", 0, "balance"), -5), "l1.genesis[0].balance"),
    (_set(("smesher", 0, "port"), 0), "smesher[0].port"),
    (_set(("smesher", 1, "port"), 65536), "smesher[1].port"),
    # missing
    (_delete(("smesher", 1, "name")), "smesher[1].name"),
    (_delete(("smesher", 0, "port")), "smesher[0].port"),
    (_delete(("l1", "genesis", 0, "balance")), "l1.genesis[0].balance"),
    (_delete(("l1", "genesis", 1, "address")), "l1.genesis[1].address"),
    (_delete(("smesher",)), "smesher"),
    (_set(("smesher",), []), "smesher"),
    # duplicates, addresses, hrp
    (_set(("smesher", 1, "name"), "a"), "smesher"),
    (_set(("l1", "genesis", 1, "address"), "atest1notanaddress"), "l1.genesis[1].address"),
    (
        _set(("l1", "genesis", 1, "address"), encode_address(ADDRESS, "stest")),
        "l1.genesis[1].address",
    ),
    (_set(("network", "hrp"), "bc"), "network.hrp"),
    # two nodes on one endpoint
    (_set(("smesher", 1), {"name": "b", "port": 7010}), "smesher[1].port"),
    (_set(("supervisor",), {"port": 7010}), "supervisor.port"),
    (_set(("executor",), {"port": 7011, "host": "::1"}), "executor.port"),
    (_set(("supervisor",), {"restart_crashed": "yes"}), "supervisor.restart_crashed"),
    (_set(("executor",), {"claims": 1}), "executor.claims"),
]


@pytest.mark.parametrize(("document", "path"), BAD_FIELDS)
def test_invalid_field_names_its_path(document: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    message = str(info.value)
    assert message.startswith(path + ":") or message.startswith(path + "["), message


def test_duplicate_names_are_listed() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        parse_config(_set(("smesher", 1, "name"), "a"))


def test_another_hrp_decodes_its_own_addresses() -> None:
    d = _set(("network", "hrp"), "stest")
    with pytest.raises(ConfigError, match=r"l1\.genesis\[1\]\.address"):
        parse_config(d)
    d["l1"]["genesis"][1]["address"] = encode_address(ADDRESS, "stest")
    assert parse_config(d).l1.genesis[1] == (ADDRESS, 5)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[network\ngenesis_time = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(binary)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[network]\nlayer_duration_ms = "fast"\n[[smesher]]\nname = "a"\nport = 1\n')
    with pytest.raises(ConfigError, match=r"network\.layer_duration_ms"):
        load_config(wrong)
    good = tmp_path / "good.toml"
    good.write_text('[[smesher]]\nname = "solo"\nport = 9000\n')
    config = load_config(good)
    assert config.smeshers[0].name == "solo"
    assert config.l1.genesis == ()


def test_supervisor_defaults() -> None:
    config = parse_config(doc())
    assert (config.supervisor.host, config.supervisor.port) == ("127.0.0.1", 7000)
    assert config.supervisor.restart_crashed is True
    assert load_config(DEFAULT_CONFIG).supervisor.port == 7000


def test_overrides_set_one_field(tmp_path: Path) -> None:
    path = tmp_path / "devnet.toml"
    path.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    config = load_config(
        path,
        (
            "executor.fault.wrong_root_at_layer=12",
            "relay.min_gas_price = 3",
            "network.genesis_extra=other",
            "supervisor.restart_crashed=false",
        ),
    )
    assert config.executor.faults.wrong_root_at_layer == 12
    assert config.relay.min_gas_price == 3
    assert config.network.genesis_extra == "other"
    assert config.supervisor.restart_crashed is False
    with pytest.raises(ConfigError, match=r"expected dotted\.path=value"):
        load_config(path, ("executor.port",))
    with pytest.raises(ConfigError, match=r"network\.hrp is not a table"):
        load_config(path, ("network.hrp.x=1",))
    with pytest.raises(ConfigError, match=r"executor\.port"):
        load_config(path, ("executor.port=-1",))
