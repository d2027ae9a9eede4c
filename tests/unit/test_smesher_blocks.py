"""How smeshers move large blocks: once per peer, decoded once, re-sent after a reconnect.

A proposal or decision names a block of up to a few hundred kilobytes, and a slow layer
re-sends them many times; the block travels only to peers not known to hold it, and a
receiver decodes a given block once.
"""

from pathlib import Path
from typing import Any

import trio

from devnet.block import Block, decode_block
from devnet.bundle import Bundle, decode_bundle
from devnet.config import parse_config
from devnet.keys import derive_test_key
from smesher import node as smesher_node
from smesher.node import Peer, Smesher


class FakeClient:
    """A peer connection: records what each call carried, answers like a smesher."""

    def __init__(self, holds: bool = True) -> None:
        self.sessions = 1
        self.carried: list[bytes | None] = []
        self.holds = holds

    async def request(self, method: str, params: dict[str, Any], timeout: float) -> Any:
        self.carried.append(params["block"])
        return self.holds


def make_smesher(tmp_path: Path) -> Smesher:
    config = parse_config(
        {
            "network": {"genesis_time": 1_700_000_000, "data_dir": str(tmp_path / "data")},
            "smesher": [{"name": f"smesher-{i}", "port": 7100 + i} for i in range(4)],
        }
    )
    return Smesher(config, "smesher-0")


def big_block(layer: int) -> Block:
    key = derive_test_key("smesher-blocks", 0)
    bundle = Bundle(key.public_key, 0, bytes(24), tuple(bytes([i]) * 100 for i in range(50)))
    return Block(layer, (bundle.sign(key, bytes(20)),))


async def call(smesher: Smesher, peer: Peer, block: Block) -> None:
    limiter = trio.Semaphore(1)
    await limiter.acquire()
    await smesher._call_peer(peer, limiter, "peer_message", {"message": b"", "block": None}, block)


async def test_a_block_goes_to_a_peer_until_it_says_it_holds_it(tmp_path: Path) -> None:
    smesher = make_smesher(tmp_path)
    client = FakeClient()
    peer = Peer("smesher-1", client)  # type: ignore[arg-type]
    block = big_block(3)
    await call(smesher, peer, block)
    await call(smesher, peer, block)
    assert client.carried == [block.encoded, None]
    client.sessions += 1  # reconnected: the peer may have restarted and lost it
    await call(smesher, peer, block)
    assert client.carried[-1] == block.encoded
    smesher.store.close()


async def test_a_peer_that_did_not_keep_the_block_gets_it_again(tmp_path: Path) -> None:
    smesher = make_smesher(tmp_path)
    client = FakeClient(holds=False)  # e.g. isolated, or too many candidates
    peer = Peer("smesher-1", client)  # type: ignore[arg-type]
    block = big_block(3)
    for _ in range(3):
        await call(smesher, peer, block)
    assert client.carried == [block.encoded] * 3
    smesher.store.close()


def test_a_received_block_is_decoded_once_and_only_for_a_layer_to_come(
    tmp_path: Path, monkeypatch: Any
) -> None:
    smesher = make_smesher(tmp_path)
    decoded: list[bytes] = []

    def counting(raw: bytes) -> Block:
        decoded.append(raw)
        return decode_block(raw)

    monkeypatch.setattr(smesher_node, "decode_block", counting)
    block = big_block(smesher.chain.next_layer + 1)
    assert smesher._remember_block(block.encoded)
    assert smesher._remember_block(block.encoded)
    assert len(decoded) == 1 and block.id in smesher.candidates
    smesher.chain.store.last_layer = lambda: block.layer  # type: ignore[method-assign]
    assert not smesher._remember_block(big_block(block.layer).encoded)  # a past layer
    assert not smesher._remember_block(b"\xff" * 12)
    assert not smesher._remember_block(None)
    smesher.store.close()


def test_a_decoded_bundle_keeps_the_bytes_it_came_from() -> None:
    bundle = big_block(0).bundles[0]
    data = bytes(bundle.encoded)
    decoded = decode_bundle(data)
    rebuilt = Bundle(
        decoded.submitter, decoded.nonce, decoded.beneficiary, decoded.txs, decoded.signature
    )
    assert decoded.encoded is data
    assert decoded.encoded == rebuilt.encoded and decoded.id == rebuilt.id == bundle.id
