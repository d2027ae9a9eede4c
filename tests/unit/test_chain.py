"""The smesher's chain logic on a real LevelDB: pools, block building, validity, commits.

Certificates are real: precommit votes signed with the validators' test keys.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from athena_vm.payload import Payload
from devnet.block import Block, decode_block
from devnet.bundle import Bundle
from devnet.certificate import Certificate, decode_certificate, encode_certificate, value_id
from devnet.config import DevnetConfig, parse_config
from devnet.keys import KeyPair
from devnet.l1 import L1Tx, Transfer, l1_address
from devnet.methods import spend
from devnet.transaction import Transaction
from smesher.agreement import Step, sign_vote
from smesher.chain import Chain, ChainError
from smesher.l1_state import Account
from smesher.store import ChainStore, StoreError

SUBSIDY = 1000
RICH = 10**9
POOR = 300
BENEFICIARY = bytes(4) + b"\xbe" * 20
OUTSIDER = bytes(4) + b"\x0f" * 20


def make_config(tmp_path: Path, *, extra: str = "chain-test", **l1: Any) -> DevnetConfig:
    return parse_config(
        {
            "network": {
                "genesis_time": 1_700_000_000,
                "genesis_extra": extra,
                "key_phrase": "chain-test",
                "data_dir": str(tmp_path / "data"),
            },
            "l1": {
                "byte_price": 1,
                "layer_subsidy": SUBSIDY,
                "max_bundle_bytes": 2048,
                "genesis": [
                    {"key": "relay-0", "balance": RICH},
                    {"key": "relay-1", "balance": POOR},
                    {"key": "user-0", "balance": RICH},
                ],
            }
            | l1,
            "smesher": [{"name": f"smesher-{i}", "port": 7100 + i} for i in range(4)],
        }
    )


@pytest.fixture
def config(tmp_path: Path) -> DevnetConfig:
    return make_config(tmp_path)


@pytest.fixture
def chain(config: DevnetConfig, tmp_path: Path) -> Iterator[Chain]:
    store = ChainStore(tmp_path / "db")
    yield Chain(config, store)
    store.close()


def key(config: DevnetConfig, role: str) -> KeyPair:
    return config.network.test_key(role)


def address(config: DevnetConfig, role: str) -> bytes:
    return l1_address(key(config, role).public_key)


def athena_tx(config: DevnetConfig, nonce: int = 0, payload_bytes: int = 0) -> bytes:
    user = key(config, "user-0")
    payload = spend(bytes(24), 1)
    if payload_bytes:  # padding, to make big transactions
        payload = Payload(payload.selector, bytes(payload_bytes))
    tx = Transaction(bytes(4) + b"\x01" * 20, nonce, 1000, 1, payload)
    return tx.sign(user, config.network.genesis_id).encode()


def make_bundle(
    config: DevnetConfig,
    nonce: int,
    role: str = "relay-0",
    txs: tuple[bytes, ...] | None = None,
    genesis_id: bytes | None = None,
) -> Bundle:
    raw = txs if txs is not None else (athena_tx(config, nonce),)
    signer = key(config, role)
    bundle = Bundle(signer.public_key, nonce, BENEFICIARY, raw)
    return bundle.sign(signer, genesis_id or config.network.genesis_id)


def make_transfer(config: DevnetConfig, nonce: int, amount: int, role: str = "user-0") -> L1Tx:
    signer = key(config, role)
    tx = L1Tx(signer.public_key, nonce, Transfer(OUTSIDER, amount))
    return tx.sign(signer, config.network.genesis_id)


def certify(
    config: DevnetConfig, block: Block, signers: int = 3, layer: int | None = None, round_: int = 0
) -> Certificate:
    vid = value_id((block.id,))
    at = block.layer if layer is None else layer
    votes = [
        sign_vote(config.smesher_key(node.name), Step.PRECOMMIT, at, round_, vid)
        for node in config.smeshers[:signers]
    ]
    pairs = tuple(sorted((v.voter, v.signature) for v in votes))
    return Certificate(at, round_, vid, pairs)


def total_supply(store: ChainStore) -> int:
    return sum(a.balance for a in store.accounts.values()) + store.pending_reward()


# --- genesis and the store -----------------------------------------------------------


def test_genesis_applied_once(config: DevnetConfig, tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "db")
    chain = Chain(config, store)
    relay = address(config, "relay-0")
    assert store.accounts[relay] == Account(RICH, 0)
    assert chain.next_layer == 0
    bundle = make_bundle(config, 0)
    assert chain.admit_bundle(bundle)
    block = chain.build_block(0)
    chain.commit(block, certify(config, block))
    store.close()

    store = ChainStore(tmp_path / "db")
    chain = Chain(config, store)  # init_genesis again: must not reset the accounts
    assert store.accounts[relay] == Account(RICH - bundle.fee(1), 1)
    assert chain.next_layer == 1
    store.close()

    other = make_config(tmp_path, extra="another network")
    store = ChainStore(tmp_path / "db")
    with pytest.raises(StoreError, match="belongs to network"):
        Chain(other, store)
    store.close()


def test_store_refuses_a_second_opener(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "db")
    with pytest.raises(StoreError, match="cannot open"):
        ChainStore(tmp_path / "db")
    store.close()


def test_commit_layer_is_atomic(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "db")
    store.init_genesis(bytes(20), ((OUTSIDER, 5),))
    store.add_record(0, b"vote")
    bad = {OUTSIDER: Account(7, 1), BENEFICIARY: Account(-1, 0)}  # cannot be encoded
    with pytest.raises(OverflowError):
        store.commit_layer(0, b"block", b"cert", bad, bytes(32), 9)
    store.close()
    store = ChainStore(tmp_path / "db")
    assert store.last_layer() is None
    assert store.block(0) is None
    assert store.certificate(0) is None
    assert store.pending_reward() == 0
    assert store.accounts == {OUTSIDER: Account(5, 0)}
    assert list(store.records(0)) == [b"vote"]
    store.commit_layer(0, b"block", b"cert", {OUTSIDER: Account(7, 1)}, b"\x01" * 32, 9)
    assert list(store.records(0)) == []  # the layer's agreement records go with the commit
    store.close()


# --- pools ---------------------------------------------------------------------------


def test_admit_bundle(chain: Chain, config: DevnetConfig) -> None:
    bundle = make_bundle(config, 0)
    assert chain.admit_bundle(bundle) is True
    assert chain.admit_bundle(bundle) is False
    assert chain.admit_bundle(make_bundle(config, 5)) is True  # a future nonce may wait

    with pytest.raises(ChainError, match="signature"):
        chain.admit_bundle(make_bundle(config, 1, genesis_id=bytes(20)))
    with pytest.raises(ChainError, match="empty"):
        chain.admit_bundle(make_bundle(config, 1, txs=()))
    with pytest.raises(ChainError, match="malformed"):
        chain.admit_bundle(make_bundle(config, 1, txs=(b"junk",)))
    big = make_bundle(config, 1, txs=tuple(athena_tx(config, n) for n in range(20)))
    assert len(big.encoded) > config.l1.max_bundle_bytes
    with pytest.raises(ChainError, match="exceeds"):
        chain.admit_bundle(big)
    unpayable = make_bundle(config, 0, role="relay-1", txs=(athena_tx(config, 0, 300),))
    assert unpayable.fee(1) > POOR
    with pytest.raises(ChainError, match="cannot pay"):
        chain.admit_bundle(unpayable)
    with pytest.raises(ChainError, match="cannot pay"):
        chain.admit_bundle(make_bundle(config, 0, role="user-1"))  # no account at all
    assert set(chain.bundles) == {bundle.id, make_bundle(config, 5).id}


def test_admit_bundle_refuses_a_stale_nonce(chain: Chain, config: DevnetConfig) -> None:
    first = make_bundle(config, 0)
    chain.admit_bundle(first)
    block = chain.build_block(0)
    chain.commit(block, certify(config, block))
    assert first.id not in chain.bundles
    with pytest.raises(ChainError, match="stale"):
        chain.admit_bundle(make_bundle(config, 0, txs=(athena_tx(config, 9),)))
    assert chain.admit_bundle(make_bundle(config, 1))


def test_admit_l1_tx(chain: Chain, config: DevnetConfig) -> None:
    tx = make_transfer(config, 0, 10)
    assert chain.admit_l1_tx(tx) is True
    assert chain.admit_l1_tx(tx) is False
    forged = L1Tx(tx.sender, 0, Transfer(OUTSIDER, 11), tx.signature)
    with pytest.raises(ChainError, match="signature"):
        chain.admit_l1_tx(forged)
    block = chain.build_block(0)
    assert block.l1_txs == (tx,)
    chain.commit(block, certify(config, block))
    with pytest.raises(ChainError, match="stale"):
        chain.admit_l1_tx(make_transfer(config, 0, 12))
    assert chain.l1_txs == {}


# --- building and checking blocks ----------------------------------------------------


def test_build_block_picks_what_fits(chain: Chain, config: DevnetConfig) -> None:
    rich = [make_bundle(config, n) for n in (0, 1, 3)]  # 3 waits for the missing 2
    poor = [make_bundle(config, n, role="relay-1") for n in (0, 1)]
    assert poor[0].fee(1) <= POOR < poor[0].fee(1) + poor[1].fee(1)
    for bundle in rich + poor:
        assert chain.admit_bundle(bundle)
    transfers = [make_transfer(config, 0, 5), make_transfer(config, 2, 5)]  # 2: gap
    for tx in transfers:
        chain.admit_l1_tx(tx)
    block = chain.build_block(0)
    assert block.layer == 0
    assert block.prev_certificate == b""
    assert list(block.bundles) == sorted([rich[0], rich[1], poor[0]], key=lambda b: b.id)
    assert block.l1_txs == (transfers[0],)
    chain.check_block(block, 0)
    assert chain.is_valid(block, 0)

    committed = chain.commit(block, certify(config, block))
    # What was left stays pooled; the next block carries the certificate of this one.
    assert set(chain.bundles) == {rich[2].id, poor[1].id}
    nxt = chain.build_block(1)
    assert nxt.prev_certificate == committed.certificate
    assert nxt.bundles == ()  # relay-0 still misses nonce 2; relay-1 cannot pay
    chain.check_block(nxt, 1)


def test_check_block_layer_and_certificates(chain: Chain, config: DevnetConfig) -> None:
    empty = chain.build_block(0)
    with pytest.raises(ChainError, match="not 1"):
        chain.check_block(empty, 1)
    with pytest.raises(ChainError, match="not the next layer"):
        chain.check_block(Block(1), 1)
    with pytest.raises(ChainError, match="carries no certificate"):
        chain.check_block(Block(0, prev_certificate=b"x"), 0)
    assert not chain.is_valid(Block(0, prev_certificate=b"x"), 0)

    cert0 = certify(config, empty)
    chain.commit(empty, cert0)
    good = Block(1, prev_certificate=encode_certificate(cert0))
    chain.check_block(good, 1)
    with pytest.raises(ChainError, match="malformed previous certificate"):
        chain.check_block(Block(1), 1)
    with pytest.raises(ChainError, match="malformed previous certificate"):
        chain.check_block(Block(1, prev_certificate=b"\x00" * 10), 1)
    bad_certs = [
        certify(config, empty, signers=2),  # below the quorum of 3 out of 4
        certify(config, Block(0, prev_certificate=b"other")),  # another block
        certify(config, empty, layer=1),  # another layer
    ]
    forged = certify(config, empty)
    sig = forged.signatures[0]
    bad_certs.append(
        Certificate(0, 0, forged.value_id, ((sig[0], bytes(64)), *forged.signatures[1:]))
    )
    for cert in bad_certs:
        block = Block(1, prev_certificate=encode_certificate(cert))
        with pytest.raises(ChainError, match="does not certify"):
            chain.check_block(block, 1)


def test_check_block_refuses_bad_contents(chain: Chain, config: DevnetConfig) -> None:
    bad_signature = make_bundle(config, 0, genesis_id=bytes(20))
    empty_bundle = make_bundle(config, 0, txs=())
    for bundle in (bad_signature, empty_bundle):
        with pytest.raises(ChainError, match="invalid bundle"):
            chain.check_block(Block(0, (bundle,)), 0)
    with pytest.raises(ChainError, match="nonce"):
        chain.check_block(Block(0, (make_bundle(config, 1),)), 0)
    unpayable = make_bundle(config, 0, role="relay-1", txs=(athena_tx(config, 0, 300),))
    with pytest.raises(ChainError, match="fee"):
        chain.check_block(Block(0, (unpayable,)), 0)
    tx = make_transfer(config, 0, 5)
    forged = L1Tx(tx.sender, 0, Transfer(OUTSIDER, 6), tx.signature)
    with pytest.raises(ChainError, match="L1 transaction signature"):
        chain.check_block(Block(0, (), (forged,)), 0)
    with pytest.raises(ChainError, match="exceeds"):
        chain.check_block(Block(0, (), (make_transfer(config, 0, RICH + 1),)), 0)
    big = make_bundle(config, 0, txs=tuple(athena_tx(config, n) for n in range(20)))
    assert len(big.encoded) > config.l1.max_bundle_bytes
    with pytest.raises(ChainError, match="exceeds"):
        chain.check_block(Block(0, (big,)), 0)
    chain.check_block(Block(0, (make_bundle(config, 0),), (tx,)), 0)


# --- committing ----------------------------------------------------------------------


def test_commit_refuses_a_wrong_certificate_or_layer(chain: Chain, config: DevnetConfig) -> None:
    block = Block(0, (make_bundle(config, 0),))
    for cert in (
        certify(config, block, signers=2),
        certify(config, Block(0)),
        certify(config, block, layer=1),
    ):
        with pytest.raises(ChainError, match="does not verify"):
            chain.commit(block, cert)
    with pytest.raises(ChainError, match="next layer is 0"):
        chain.commit(Block(1), certify(config, Block(1)))
    assert chain.store.last_layer() is None
    chain.commit(block, certify(config, block))
    with pytest.raises(ChainError, match="next layer is 1"):
        chain.commit(block, certify(config, block))


def test_commit_persists_the_layer(config: DevnetConfig, tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "db")
    chain = Chain(config, store)
    genesis_supply = total_supply(store)
    relay, user = address(config, "relay-0"), address(config, "user-0")
    bundle = make_bundle(config, 0)
    transfer = make_transfer(config, 0, 777)
    chain.admit_bundle(bundle)
    chain.admit_l1_tx(transfer)
    block0 = chain.build_block(0)
    cert0 = certify(config, block0, signers=3, round_=2)
    committed = chain.commit(block0, cert0)
    fees = bundle.fee(1) + len(transfer.encode())
    assert committed.layer == 0
    assert committed.certificate == encode_certificate(cert0)
    assert chain.bundles == {} and chain.l1_txs == {}
    store.close()

    store = ChainStore(tmp_path / "db")
    chain = Chain(config, store)
    assert store.last_layer() == 0
    assert store.block(0) == block0.encoded
    assert decode_block(store.block(0) or b"") == block0
    assert decode_certificate(store.certificate(0) or b"") == cert0
    assert store.state_hash(0) == committed.l1_hash
    assert store.pending_reward() == SUBSIDY + fees
    assert store.accounts[relay] == Account(RICH - bundle.fee(1), 1)
    assert store.accounts[user] == Account(RICH - len(transfer.encode()) - 777, 1)
    assert store.accounts[OUTSIDER] == Account(777, 0)
    assert total_supply(store) == genesis_supply + SUBSIDY

    # Layer 1 pays layer 0's reward to the signers of its certificate.
    block1 = chain.build_block(1)
    chain.check_block(block1, 1)
    committed1 = chain.commit(block1, certify(config, block1))
    signers = sorted(l1_address(k) for k, _ in cert0.signatures)
    share, rest = divmod(SUBSIDY + fees, 3)
    assert [store.accounts[s].balance for s in signers] == [share + rest, share, share]
    assert store.pending_reward() == SUBSIDY
    assert total_supply(store) == genesis_supply + 2 * SUBSIDY
    assert committed1.l1_hash != committed.l1_hash
    store.close()

    store = ChainStore(tmp_path / "db")
    assert store.last_layer() == 1
    assert [store.accounts[s].balance for s in signers] == [share + rest, share, share]
    store.close()


def test_large_bundles_survive_a_block_round_trip(tmp_path: Path) -> None:
    # The config may allow bundles of up to 4 MiB; a block carrying one must still decode
    # (peers, sync and the block events all decode stored blocks).
    config = make_config(tmp_path, max_bundle_bytes=2 * 1024 * 1024)
    store = ChainStore(tmp_path / "db")
    chain = Chain(config, store)
    txs = tuple(athena_tx(config, n, 120 * 1024) for n in range(10))
    bundle = make_bundle(config, 0, txs=txs)
    assert 1024 * 1024 < len(bundle.encoded) <= config.l1.max_bundle_bytes
    assert chain.admit_bundle(bundle)
    block = chain.build_block(0)
    assert block.bundles == (bundle,)
    chain.commit(block, certify(config, block))
    assert decode_block(store.block(0) or b"") == block
    store.close()
