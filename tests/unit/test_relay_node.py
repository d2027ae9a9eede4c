"""The relay's state machine without processes: a fake executor, real LevelDB, real blocks.

Admission, bundling, inclusion, outcomes and every restart in between: what the relay
acknowledged is what it reloads.
"""

from pathlib import Path
from typing import Any

import pytest

from devnet import methods
from devnet.block import Block
from devnet.builtin_templates import template
from devnet.bundle import Bundle, decode_bundle
from devnet.certificate import Certificate, encode_certificate, value_id
from devnet.config import DevnetConfig, parse_config
from devnet.errors import RpcError
from devnet.transaction import Transaction
from relay.node import Relay
from relay.pool import DUPLICATE, PoolRejection
from relay.store import BUNDLED, DROPPED, EXECUTED_STATE, INCLUDED, PENDING
from smesher.agreement import Step, sign_vote

WALLET = template("wallet")
SINK = bytes(4) + b"\x11" * 20


def make_config(tmp_path: Path) -> DevnetConfig:
    return parse_config(
        {
            "network": {"genesis_time": 1_700_000_000, "data_dir": str(tmp_path / "data")},
            "smesher": [{"name": f"smesher-{i}", "port": 7100 + i} for i in range(4)],
            "relay": {"max_attempts": 2, "bundle_max_bytes": 1024},
        }
    )


class FakeExecutor:
    """Answers the relay's admission queries from a dict of wallets."""

    def __init__(self, config: DevnetConfig) -> None:
        self.accounts: dict[bytes, dict[str, Any]] = {}
        for i in range(3):
            key = config.network.test_key(f"user-{i}")
            address = key.wallet_address(WALLET.address)
            self.accounts[address] = {
                "address": address,
                "exists": True,
                "balance": 10**12,
                "nonce": 0,
                "template": WALLET.address,
                "state": key.public_key,
            }

    async def call(self, method: str, **params: Any) -> Any:
        if method == "get_account":
            return self.accounts[params["address"]]
        if method == "get_template":
            if params["address"] != WALLET.address:
                raise RpcError(404, "no template")
            return WALLET.code
        raise AssertionError(method)


def open_relay(config: DevnetConfig) -> Relay:
    relay = Relay(config)
    relay._executor_call = FakeExecutor(config).call  # type: ignore[method-assign]
    if relay.block_cursor is None:
        relay.block_cursor = relay.exec_cursor = -1
    return relay


def tx(config: DevnetConfig, user: int, nonce: int, price: int = 1) -> Transaction:
    key = config.network.test_key(f"user-{user}")
    unsigned = Transaction(
        key.wallet_address(WALLET.address), nonce, 50_000, price, methods.spend(SINK, 1)
    )
    signed: Transaction = unsigned.sign(key, config.network.genesis_id)
    return signed


def certified(config: DevnetConfig, block: Block) -> dict[str, Any]:
    vid = value_id((block.id,))
    votes = [
        sign_vote(config.smesher_key(n.name), Step.PRECOMMIT, block.layer, 0, vid)
        for n in config.smeshers[:3]
    ]
    cert = Certificate(block.layer, 0, vid, tuple(sorted((v.voter, v.signature) for v in votes)))
    return {"layer": block.layer, "block": block.encoded, "certificate": encode_certificate(cert)}


def state(relay: Relay, t: Transaction) -> str:
    status = relay.status_of(t.id)
    assert status is not None
    return status.state


async def test_admitted_bundled_included_executed_survive_every_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    relay = open_relay(config)
    txs = [tx(config, 0, n) for n in range(3)] + [tx(config, 1, 0, price=3)]
    for t in txs:
        assert await relay.submit(t.encode()) == t.id
    with pytest.raises(PoolRejection) as info:
        await relay.submit(txs[0].encode())
    assert info.value.kind == DUPLICATE
    relay.store.close()

    relay = open_relay(config)  # everything acknowledged is back
    assert len(relay.pool) == 4 and all(state(relay, t) == PENDING for t in txs)
    await relay._refresh_views()  # accounts are re-read after a restart, before bundling
    bundle = relay._build(0, [], 10**9)
    assert bundle is not None and relay.outstanding is not None
    assert [b for b in bundle.txs] == [txs[3].encode(), *(t.encode() for t in txs[:3])]
    relay.store.close()

    relay = open_relay(config)  # killed after persisting the bundle: it is still ours to send
    assert relay.outstanding is not None and relay.outstanding.encoded == bundle.encoded
    assert all(state(relay, t) == BUNDLED for t in txs) and relay.pool.pending_count() == 0
    assert relay._on_block(certified(config, Block(0)))
    assert relay._on_block(certified(config, Block(1, (bundle,))))
    assert relay.outstanding is None and relay.block_cursor == 1
    assert relay.stats.l1_spent == bundle.fee(config.l1.byte_price)
    relay.store.close()

    relay = open_relay(config)
    assert all(state(relay, t) == INCLUDED for t in txs) and relay.included[1] == {
        t.id for t in txs
    }
    receipt = {"status": 0, "relay_fee": 7, "layer": 1}
    outcomes: dict[bytes, dict[str, Any] | None] = {t.id: receipt for t in txs[:3]}
    outcomes[txs[3].id] = None  # the block rule left it out
    relay._apply_outcomes(1, outcomes, {})
    relay._commit()
    assert [state(relay, t) for t in txs] == [EXECUTED_STATE] * 3 + [PENDING]
    assert relay.stats.fees_earned == 21 and relay.active[txs[3].id].attempts == 1
    relay.store.close()

    relay = open_relay(config)
    done = relay.status_of(txs[0].id)
    assert done is not None and done.receipt == receipt  # from LevelDB, not memory
    assert len(relay.pool) == 1 and relay.stats.fees_earned == 21
    relay.store.close()


async def test_an_older_incarnation_taking_the_nonce_sends_the_rest_back(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    relay = open_relay(config)
    first, second = tx(config, 0, 0), tx(config, 2, 0)
    for t in (first, second):
        await relay.submit(t.encode())
    relay._build(5, [], 10**9)
    # A block takes another bundle of ours with the same nonce, carrying only `first`.
    key = config.network.test_key("relay-0")
    older = Bundle(key.public_key, 5, relay.beneficiary, (first.encode(),))
    older = older.sign(key, config.network.genesis_id)
    assert relay._on_block(certified(config, Block(0, (older,))))
    assert relay.outstanding is None
    assert state(relay, first) == INCLUDED and state(relay, second) == PENDING
    # Cut from its block twice (max_attempts = 2): dropped, with the reason.
    for layer in (1, 2):
        relay._build(6 + layer, [], 10**9)
        assert relay.outstanding is not None
        carrier = decode_bundle(relay.outstanding.encoded)
        assert relay._on_block(certified(config, Block(layer, (carrier,))))
        relay._apply_outcomes(layer, {second.id: None}, {})
    status = relay.status_of(second.id)
    assert status is not None and status.state == DROPPED
    assert "left out by the block rule" in str(status.reason) and "2 attempts" in str(status.reason)
    relay.store.close()


class FakeSmeshers:
    """The L1 as the bundling round sees it: the relay's account and the chain's tip."""

    def __init__(self) -> None:
        self.nonce = 0
        self.last_certified = 0

    async def call(self, method: str, **params: Any) -> Any:
        if method == "get_l1_account":
            return {"nonce": self.nonce, "balance": 10**9}
        if method == "status":
            return {"last_certified": self.last_certified}
        raise AssertionError(method)


async def test_an_overdue_bundle_is_rebuilt_under_the_same_nonce(tmp_path: Path) -> None:
    config = make_config(tmp_path)  # include_within_layers = 5 (the default)
    relay = open_relay(config)
    relay.smeshers = FakeSmeshers()  # type: ignore[assignment]
    first, second, late = tx(config, 0, 0), tx(config, 0, 1), tx(config, 1, 0)
    for t in (first, second):
        await relay.submit(t.encode())
    await relay._bundle_step(0)
    original = relay.outstanding
    assert original is not None and original.nonce == 0 and len(original.tx_ids) == 2
    # A stalled chain certifies nothing: however long that lasts, the bundle is not overdue.
    for layer in range(1, 20):
        await relay._bundle_step(layer)
    assert relay.outstanding is original
    # Five certified blocks without it: rebuilt, same nonce, carrying what arrived since.
    await relay.submit(late.encode())
    for layer in range(5):
        assert relay._on_block(certified(config, Block(layer)))
    await relay._bundle_step(20)
    rebuilt = relay.outstanding
    assert rebuilt is not None and rebuilt is not original
    assert rebuilt.nonce == 0 and set(rebuilt.tx_ids) == {first.id, second.id, late.id}
    assert relay.active[first.id].attempts == 1
    # A block takes the *original*: the late one was not in it and goes back to the pool.
    old_bundle = decode_bundle(original.encoded)
    assert relay._on_block(certified(config, Block(5, (old_bundle,))))
    assert relay.outstanding is None
    assert [state(relay, t) for t in (first, second, late)] == [INCLUDED, INCLUDED, PENDING]
    relay.store.close()
    relay = open_relay(config)  # and that is what a restart finds
    assert [state(relay, t) for t in (first, second, late)] == [INCLUDED, INCLUDED, PENDING]
    assert relay.outstanding is None and relay.stats.last_l1_nonce == 0
    relay.store.close()
