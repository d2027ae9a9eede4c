"""Four smesher processes on loopback: agreement, crash, restart and sync, bundles, hostile RPC."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from devnet import methods
from devnet.block import decode_block
from devnet.builtin_templates import template
from devnet.bundle import Bundle
from devnet.errors import RpcError
from devnet.l1 import L1Tx, Transfer, l1_address
from devnet.transaction import Transaction
from devnet.wire import RpcClient
from tests.integration.cluster import Cluster, write_config

NAMES = [f"smesher-{i}" for i in range(4)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    logs = tmp_path / "logs"
    logs.mkdir()
    c = Cluster(write_config(tmp_path), logs)
    for name in NAMES:
        c.start(name)
    try:
        yield c
    finally:
        c.stop_all()


def blocks(c: Cluster, name: str, upto: int) -> list[tuple[bytes, bytes]]:
    out = []
    for layer in range(upto + 1):
        reply = c.call(name, "get_block", layer=layer)
        out.append((reply["block_id"], reply["l1_state_hash"]))
    return out


def signed_bundle(c: Cluster, nonce: int, txs: tuple[bytes, ...]) -> Bundle:
    cfg = c.config
    relay = cfg.network.test_key("relay-0")
    beneficiary = bytes(24)
    return Bundle(relay.public_key, nonce, beneficiary, txs).sign(relay, cfg.network.genesis_id)


def athena_tx(c: Cluster, index: int) -> bytes:
    cfg = c.config
    user = cfg.network.test_key(f"user-{index}")
    wallet = template("wallet")
    tx = Transaction(
        user.wallet_address(wallet.address),
        0,
        100_000,
        1,
        methods.spawn_wallet(user.public_key),
        wallet.address,
    )
    return tx.sign(user, cfg.network.genesis_id).encode()


def test_agreement_crash_restart_and_sync(cluster: Cluster) -> None:
    c = cluster
    c.wait("every node to certify layer 3", lambda: all(c.last(n) >= 3 for n in NAMES))
    reference = blocks(c, "smesher-0", 3)
    for name in NAMES[1:]:
        assert blocks(c, name, 3) == reference

    c.kill("smesher-3")
    mark = c.last("smesher-0")
    c.wait(
        "the other three to keep certifying",
        lambda: all(c.last(n) >= mark + 4 for n in NAMES[:3]),
    )
    c.start("smesher-3")
    c.wait(
        "the restarted node to catch up",
        lambda: c.last("smesher-3") >= c.last("smesher-0") - 1 >= mark + 4,
    )
    upto = min(c.last(n) for n in NAMES)
    reference = blocks(c, "smesher-0", upto)
    for name in NAMES[1:]:
        assert blocks(c, name, upto) == reference, name


def test_bundles_and_l1_transactions_are_included(cluster: Cluster) -> None:
    c = cluster
    cfg = c.config
    c.wait("layer 1", lambda: c.last("smesher-0") >= 1)
    relay_address = l1_address(cfg.network.test_key("relay-0").public_key)
    before = c.call("smesher-0", "get_l1_account", address=relay_address)
    bundle = signed_bundle(c, before["nonce"], (athena_tx(c, 0), athena_tx(c, 1)))
    reply = c.call("smesher-1", "submit_bundle", bundle=bundle.encoded)
    assert reply == {"id": bundle.id, "known": False}
    again = c.call("smesher-2", "submit_bundle", bundle=bundle.encoded)
    assert again["id"] == bundle.id  # gossiped already, or admitted once more: stored once

    user = cfg.network.test_key("user-0")
    recipient = bytes(4) + b"\x42" * 20
    account = c.call("smesher-0", "get_l1_account", address=l1_address(user.public_key))
    transfer = L1Tx(user.public_key, account["nonce"], Transfer(recipient, 12345))
    transfer = transfer.sign(user, cfg.network.genesis_id)
    c.call("smesher-0", "submit_l1_tx", tx=transfer.encode())

    def included() -> bool:
        after = c.call("smesher-3", "get_l1_account", address=relay_address)
        got = c.call("smesher-3", "get_l1_account", address=recipient)
        return bool(after["nonce"] == before["nonce"] + 1 and got["balance"] == 12345)

    c.wait("the bundle and the transfer in a block", included)
    after = c.call("smesher-3", "get_l1_account", address=relay_address)
    assert after["balance"] == before["balance"] - bundle.fee(cfg.l1.byte_price)
    found = []
    for layer in range(c.last("smesher-3") + 1):
        event = c.call("smesher-0", "get_block", layer=layer)
        if bundle.encoded in event["block"]:
            found.append(layer)
    assert len(found) == 1


HOSTILE: list[tuple[str, dict[str, object], str | None]] = [
    ("submit_bundle", {"bundle": "not bytes"}, "expected bytes"),
    ("submit_bundle", {}, "missing"),
    ("submit_bundle", {"bundle": b"\x00" * 10}, "malformed bundle"),
    ("submit_bundle", {"bundle": b"\x00" * (2 * 1024 * 1024)}, "exceeds"),
    ("get_block", {"layer": "x"}, "expected int"),
    ("get_block", {"layer": 10**9}, "not certified"),
    ("get_l1_account", {"address": b"short"}, "24 bytes"),
    ("submit_l1_tx", {"tx": b"\x01\x02"}, "malformed"),
    ("peer_message", {"message": b"\xff" * 50, "block": b"junk"}, None),
    ("no_such_method", {}, "no method"),
]


def test_hostile_rpc_input(cluster: Cluster) -> None:
    c = cluster
    c.wait("the node to serve", lambda: c.call("smesher-0", "status")["name"] == "smesher-0")
    for method, params, message in HOSTILE:
        if message is None:
            c.call("smesher-0", method, **params)  # ignored quietly
        else:
            with pytest.raises(RpcError, match=message):
                c.call("smesher-0", method, **params)
        assert c.call("smesher-0", "status")["name"] == "smesher-0"
    mark = c.last("smesher-0")
    c.wait("certification to go on", lambda: c.last("smesher-0") >= mark + 2)


def test_bad_signatures_and_replays_are_refused(cluster: Cluster) -> None:
    c = cluster
    cfg = c.config
    c.wait("layer 0", lambda: c.last("smesher-0") >= 0)
    good = signed_bundle(c, 0, (athena_tx(c, 0),))
    forged = Bundle(good.submitter, good.nonce, good.beneficiary, good.txs, bytes(64))
    with pytest.raises(RpcError, match="bad bundle signature"):
        c.call("smesher-0", "submit_bundle", bundle=forged.encoded)
    other_key = cfg.network.test_key("user-0")
    stolen = Bundle(other_key.public_key, 0, good.beneficiary, good.txs, good.signature)
    with pytest.raises(RpcError, match="bad bundle signature"):
        c.call("smesher-0", "submit_bundle", bundle=stolen.encoded)
    c.call("smesher-0", "submit_bundle", bundle=good.encoded)
    c.wait(
        "the bundle to be included",
        lambda: c.call("smesher-0", "get_l1_account", address=good.payer)["nonce"] == 1,
    )
    with pytest.raises(RpcError, match="stale bundle nonce"):
        c.call("smesher-0", "submit_bundle", bundle=good.encoded)
    assert c.call("smesher-0", "status")["mempool"] == 0


async def test_subscribe_blocks_streams_history_then_live(cluster: Cluster) -> None:
    c = cluster
    node = c.config.smesher("smesher-2")
    seen: list[int] = []
    async with RpcClient(f"{node.host}:{node.port}", timeout=10) as client:
        with trio.fail_after(30):
            while (await client.call("status"))["last_certified"] is None or (
                await client.call("status")
            )["last_certified"] < 2:
                await trio.sleep(0.1)
            async with client.subscribe("subscribe_blocks", from_layer=1) as events:
                async for event in events:
                    seen.append(event["layer"])
                    assert event["block_id"] == decode_block(event["block"]).id
                    if len(seen) == 6:
                        break
    assert seen == list(range(1, 7))
