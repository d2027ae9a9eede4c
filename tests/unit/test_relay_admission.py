"""The relay's VM-backed admission checks and its configuration table."""

from typing import Any

import pytest

from devnet import methods
from devnet.builtin_templates import template
from devnet.config import ConfigError, parse_config
from devnet.errors import TransactionRejected
from devnet.keys import derive_test_key
from devnet.state_transition import TransitionConfig, apply_transaction
from devnet.transaction import Transaction
from relay.admission import Principal, check, host_for
from relay.pool import AccountView

GENESIS = bytes(range(20))
CONFIG = TransitionConfig(GENESIS)
WALLET = template("wallet")
KEY = derive_test_key("relay-admission", 0)
ADDRESS = KEY.wallet_address(WALLET.address)
RECIPIENT = bytes(4) + b"\x33" * 20
SPAWNED = Principal(AccountView(3, 10**9), WALLET.address, KEY.public_key, True)
TEMPLATES = {WALLET.address: WALLET.code}


def spend_tx(amount: int, nonce: int = 3, key: Any = KEY) -> Transaction:
    tx = Transaction(ADDRESS, nonce, 50_000, 2, methods.spend(RECIPIENT, amount))
    signed: Transaction = tx.sign(key, GENESIS)
    return signed


def test_cost_is_max_fee_plus_what_the_template_says_the_call_moves() -> None:
    tx = spend_tx(12_345)
    pooled = check(tx.encode(), ADDRESS, SPAWNED, TEMPLATES, CONFIG)
    assert (pooled.id, pooled.nonce, pooled.gas_price) == (tx.id, 3, 2)
    assert pooled.cost == tx.max_fee + 12_345
    proxy = Transaction(ADDRESS, 3, 50_000, 1, methods.proxy(RECIPIENT, None, None, 77))
    proxied = check(proxy.sign(KEY, GENESIS).encode(), ADDRESS, SPAWNED, TEMPLATES, CONFIG)
    assert proxied.cost == proxy.max_fee + 77


def test_refusals_use_the_executors_own_reasons() -> None:
    forged = spend_tx(1, key=derive_test_key("someone else", 0))
    with pytest.raises(TransactionRejected) as info:
        check(forged.encode(), ADDRESS, SPAWNED, TEMPLATES, CONFIG)
    # The executor would refuse it for exactly the same reason.
    host = host_for(ADDRESS, SPAWNED, TEMPLATES)
    assert apply_transaction(host, forged.encode(), CONFIG).reason == info.value.reason
    assert "invalid signature" in info.value.reason
    missing = Principal(AccountView(0, 0), None, b"", False)
    with pytest.raises(TransactionRejected, match="does not exist"):
        check(spend_tx(1).encode(), ADDRESS, missing, TEMPLATES, CONFIG)
    with pytest.raises(TransactionRejected, match="malformed"):
        check(b"\x04\x02", ADDRESS, SPAWNED, TEMPLATES, CONFIG)


def test_a_self_spawn_is_checked_against_its_template() -> None:
    tx = Transaction(
        ADDRESS, 0, 100_000, 1, methods.spawn_wallet(KEY.public_key), WALLET.address
    ).sign(KEY, GENESIS)
    funded = Principal(AccountView(0, 10**9), None, b"", True)
    pooled = check(tx.encode(), ADDRESS, funded, TEMPLATES, CONFIG)
    assert pooled.cost == tx.max_fee
    with pytest.raises(TransactionRejected, match="unknown template"):
        check(tx.encode(), ADDRESS, funded, {}, CONFIG)


def _doc(**relay: Any) -> dict[str, Any]:
    return {
        "network": {"genesis_time": 1},
        "l1": {"max_bundle_bytes": 65536},
        "smesher": [{"name": "s", "port": 1}],
        "relay": relay,
    }


def test_relay_config_defaults_and_validation() -> None:
    relay = parse_config(_doc()).relay
    assert (relay.name, relay.port, relay.min_gas_price, relay.max_per_principal) == (
        "relay-0",
        7300,
        1,
        100,
    )
    assert relay.bundle_max_bytes == 65536  # never above what a smesher accepts
    assert parse_config(_doc(fault={"crash_after_bundle": 2})).relay.faults.crash_after_bundle == 2
    for fields, path in (
        ({"bundle_max_bytes": 65537}, "relay.bundle_max_bytes"),
        ({"min_gas_price": 0}, "relay.min_gas_price"),
        ({"pool_max_txs": "many"}, "relay.pool_max_txs"),
        ({"include_within_layers": 0}, "relay.include_within_layers"),
        ({"max_request_bytes": 10}, "relay.max_request_bytes"),
        ({"fault": {"crash_after_bundle": -2}}, "relay.fault.crash_after_bundle"),
    ):
        with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
            parse_config(_doc(**fields))
