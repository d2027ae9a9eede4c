"""Determinism of the executor's layer application, without processes.

The same blocks applied with `apply_layer` into fresh LevelDB databases give identical
layer records whether the database stays open, is reopened before every layer (a
restarted executor), or serves estimates between layers; and every root equals the root
of an independent in-memory run built from nothing.
"""

from pathlib import Path

import plyvel
import pytest

from athena_vm.address import template_address
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.payload import Payload, selector
from athena_vm.status import StatusCode
from devnet import methods
from devnet.block import Block
from devnet.config import DevnetConfig, parse_config
from devnet.execution.layer import ExecutorStore, LayerRecord, apply_layer
from devnet.execution.ledger import transition_config
from devnet.execution.state import open_state
from devnet.state_transition import apply_transaction
from devnet.state_tree import EMPTY_ROOT
from devnet.transaction import Transaction, decode_transaction
from tests.athena_replay import (
    GAS,
    SLOT0,
    WALLET,
    ReplayedLayer,
    Wallets,
    counter_wallet,
    replay_in_memory,
    replay_leveldb,
    u64,
)


@pytest.fixture(scope="module")
def counter_code(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return counter_wallet(tmp_path_factory.mktemp("counter_wallet"))


def make_config(tmp_path: Path) -> DevnetConfig:
    return parse_config(
        {
            "network": {
                "genesis_time": 1_700_000_000,
                "genesis_extra": "replay-test",
                "key_phrase": "replay-test",
                "data_dir": str(tmp_path / "data"),
            },
            "l1": {"genesis": [{"key": "relay-0", "balance": 10**9}]},
            "smesher": [{"name": "smesher-0", "port": 7100}],
            "athena": {"test_wallets": 4},
        }
    )


def call(name: str) -> Payload:
    """A counter-wallet method without arguments."""
    return Payload(selector(name), b"")


def scenario(config: DevnetConfig, code: bytes) -> list[Block]:
    """Ten layers: spends, failures, a deploy, self-spawns, storage writes and deletes."""
    w = Wallets(config)
    counter = template_address(code)
    fresh, counted = w.address("fresh"), w.address("counted", counter)
    nobody = bytes(4) + b"\x77" * 20
    relay_nonce = 0

    def block(layer: int, *bundles: tuple[bytes, ...]) -> Block:
        nonlocal relay_nonce
        built = []
        for txs in bundles:
            built.append(w.bundle("relay-0", relay_nonce, txs))
            relay_nonce += 1
        return Block(layer, tuple(sorted(built, key=lambda b: b.id)))

    blocks = [
        block(0),
        block(
            1,
            (
                w.spend("user-0", w.address("user-1"), 1_000),
                w.spend("user-0", fresh, 10**9),
                w.spend("user-0", counted, 10**9),
                w.spend("user-1", w.address("user-2"), 2_000),
            ),
            (
                w.spend("user-2", w.address("user-3"), 10**16),  # over the balance
                w.spend("user-1", nobody, 5, signer="user-3"),  # forged
                w.tx("user-3", methods.deploy(code)),
            ),
        ),
        block(2),
        block(3, (w.spawn("fresh"), w.spawn("counted", counter))),
        block(4, (w.spend("fresh", nobody, 777),)),
    ]
    layer5 = (
        w.tx("counted", call("bump"), tpl=counter),
        w.tx("user-0", methods.proxy(counted, "bump", None)),
        w.tx("user-0", methods.proxy(counted, "bump_then_fail", None, amount=5)),
        w.tx("counted", call("bump"), tpl=counter),
    )
    blocks.append(block(5, layer5, layer5[:2]))  # a duplicate's transactions run once
    blocks.append(block(6, (w.tx("counted", call("clear"), tpl=counter),)))
    cheap = w.spend("user-2", nobody, 1)
    w.nonces[w.address("user-2")] -= 1  # the same (principal, nonce) at a higher price wins
    blocks.append(block(7, (cheap,), (w.spend("user-2", nobody, 2, price=2),)))
    blocks.append(block(8))
    blocks.append(block(9, (w.tx("counted", call("bump"), tpl=counter),)))
    return blocks


def by_tx(layers: list[ReplayedLayer]) -> dict[bytes, dict[str, object]]:
    return {r["tx_id"]: r for layer in layers for r in layer.receipts}


def test_reference_run_covers_the_scenario(tmp_path: Path, counter_code: bytes) -> None:
    """The scenario does what it says, so the determinism test below means something."""
    config = make_config(tmp_path)
    host, layers = replay_in_memory(config, scenario(config, counter_code))
    statuses = [[r["status_name"] for r in layer.receipts] for layer in layers]
    assert statuses[0] == statuses[2] == statuses[8] == []
    assert sorted(statuses[1]) == sorted(["SUCCESS"] * 5 + ["INSUFFICIENT_BALANCE", "REJECTED"])
    assert statuses[3] == ["SUCCESS", "SUCCESS"]
    assert sorted(statuses[5]) == ["FAILURE", "SUCCESS", "SUCCESS", "SUCCESS"]
    assert statuses[7] == ["SUCCESS"]  # one of the two nonce-0 spends: the dearer one
    assert layers[7].receipts[0]["fee"] == 2 * layers[7].receipts[0]["gas_used"]
    w = Wallets(config)
    counted = w.address("counted", template_address(counter_code))
    assert host.template_code(template_address(counter_code)) == counter_code
    assert host.get_storage(counted, SLOT0) == u64(1) + bytes(24)
    roots = [layer.root for layer in layers]
    assert EMPTY_ROOT not in roots
    assert roots[1] == roots[2] != roots[3]  # an empty layer changes nothing
    assert len(set(roots)) == 8


def test_apply_layer_is_deterministic(tmp_path: Path, counter_code: bytes) -> None:
    config = make_config(tmp_path)
    blocks = scenario(config, counter_code)
    _, reference = replay_in_memory(config, blocks)
    w = Wallets(config)
    tconfig = transition_config(config)
    user = w.key("user-0")
    principal = user.wallet_address(WALLET)
    counted = w.address("counted", template_address(counter_code))
    spawns = [w.spawn("fresh"), w.spawn("never-funded")]  # valid while "fresh" is unspawned

    def estimate(host: InMemoryHost, layer: int) -> None:
        """What the RPC's estimate does between layers: run, then roll back.

        With user-0's current nonce, so the probes run in full: a spend creating an
        account, a deploy of a template not yet (or already) deployed, a storage write."""
        payloads = [
            methods.spend(bytes(4) + bytes([layer]) * 20, 3),
            methods.deploy(counter_code),
            methods.proxy(counted, "bump", None, amount=1),
        ]
        probes = [
            Transaction(principal, host.nonce(principal), GAS, 1, payload)
            .sign(user, config.network.genesis_id)
            .encode()
            for payload in payloads
        ]
        for raw in [*probes, *spawns, b"\x01garbage"]:
            mark = host.snapshot()
            receipt = apply_transaction(host, raw, tconfig)
            host.rollback(mark)
            if raw in probes:
                assert not receipt.rejected, receipt.reason

    runs: list[list[LayerRecord]] = [
        replay_leveldb(tmp_path / "plain", config, blocks),
        replay_leveldb(tmp_path / "reopened", config, blocks, reopen=True),
        replay_leveldb(tmp_path / "estimated", config, blocks, between=estimate),
    ]
    for records in runs[1:]:
        assert records == runs[0]
    for record, expected in zip(runs[0], reference, strict=True):
        assert record.layer == expected.layer
        assert record.block_id == expected.block_id
        assert record.root == expected.root, f"layer {record.layer}"
        assert record.receipts_root == expected.receipts_root
        assert list(record.tx_ids) == expected.tx_ids
    assert by_tx(reference)  # non-trivial


def test_failed_deploy_changes_only_fee_and_nonce(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    w = Wallets(config)
    bundle = w.bundle("relay-0", 0, (w.tx("user-3", methods.deploy(b"\x7fELF no")),))
    blocks = [Block(0), Block(1, (bundle,))]
    host, layers = replay_in_memory(config, blocks)
    (receipt,) = layers[1].receipts
    assert receipt["status"] == StatusCode.FAILURE
    user = w.address("user-3")
    assert host.nonce(user) == 1
    assert host.get_balance(user) == config.athena.test_wallet_balance - receipt["fee"]
    assert len(host.templates) == 4  # the built-in ones only
    records = replay_leveldb(tmp_path / "db", config, blocks)
    assert [r.root for r in records] == [layer.root for layer in layers]


def test_a_repeated_transaction_keeps_the_receipt_of_its_execution(tmp_path: Path) -> None:
    """The same signed transaction in two layers runs once; the receipt served for its id
    is the one of that run, not a later inclusion's rejection; a transaction rejected
    first and executed later is served with its execution."""
    config = make_config(tmp_path)
    w = Wallets(config)
    spend = w.spend("user-0", w.address("user-1"), 10)
    early = w.spend("user-0", w.address("user-1"), 20)  # nonce 1: a gap in layer 1
    blocks = [
        Block(0),
        Block(1, (w.bundle("relay-0", 0, (early,)),)),
        Block(2, (w.bundle("relay-0", 1, (spend, early)),)),
        Block(3, (w.bundle("relay-0", 2, (spend,)),)),
    ]
    _, layers = replay_in_memory(config, blocks)
    statuses = {
        (layer.layer, r["tx_id"]): r["status_name"] for layer in layers for r in layer.receipts
    }
    sid, eid = decode_transaction(spend).id, decode_transaction(early).id
    assert statuses == {
        (1, eid): "REJECTED",
        (2, sid): "SUCCESS",
        (2, eid): "SUCCESS",
        (3, sid): "REJECTED",
    }
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    try:
        store, host = ExecutorStore(db), open_state(db)
        for block in blocks:
            apply_layer(store, host, block, config)
        spent, executed = store.receipt(sid), store.receipt(eid)
        assert spent is not None and executed is not None
        assert (spent["layer"], spent["status_name"]) == (2, "SUCCESS")
        assert (executed["layer"], executed["status_name"]) == (2, "SUCCESS")
    finally:
        db.close()
