"""The smesher's RPC methods: public ones for users and relays, `peer_message` for peers."""

from typing import TYPE_CHECKING, Any

from devnet.bundle import decode_bundle
from devnet.errors import RpcError
from devnet.l1 import decode_l1_tx
from devnet.wire import RpcServer
from devnet.wire.subscription import EventSink
from smesher.chain import ChainError

if TYPE_CHECKING:
    from smesher.node import Smesher

NOT_FOUND = 404
REFUSED = 400


def register(server: RpcServer, node: "Smesher") -> None:
    chain = node.chain

    async def status() -> dict[str, Any]:
        return node.status()

    async def submit_bundle(bundle: bytes) -> dict[str, Any]:
        """Admit a bundle into the pool and gossip it to the other smeshers."""
        try:
            decoded = decode_bundle(bundle, node.config.l1.max_bundle_bytes)
            fresh = chain.admit_bundle(decoded)
        except ChainError as exc:
            raise RpcError(REFUSED, str(exc)) from None
        if fresh:
            node.to_peers("gossip_bundle", {"bundle": bundle})
        return {"id": decoded.id, "known": not fresh}

    async def gossip_bundle(bundle: bytes) -> bool:
        if node.isolated:
            return False
        try:
            return chain.admit_bundle(decode_bundle(bundle, node.config.l1.max_bundle_bytes))
        except ChainError as exc:
            raise RpcError(REFUSED, str(exc)) from None

    async def submit_l1_tx(tx: bytes) -> dict[str, Any]:
        try:
            decoded = decode_l1_tx(tx)
            fresh = chain.admit_l1_tx(decoded)
        except ChainError as exc:
            raise RpcError(REFUSED, str(exc)) from None
        if fresh:
            node.to_peers("gossip_l1_tx", {"tx": tx})
        return {"id": decoded.id, "known": not fresh}

    async def gossip_l1_tx(tx: bytes) -> bool:
        if node.isolated:
            return False
        try:
            return chain.admit_l1_tx(decode_l1_tx(tx))
        except ChainError as exc:
            raise RpcError(REFUSED, str(exc)) from None

    async def get_block(layer: int) -> dict[str, Any]:
        event = node.block_event(layer)
        if event is None:
            raise RpcError(NOT_FOUND, f"layer {layer} is not certified here")
        return event

    async def get_l1_account(address: bytes) -> dict[str, Any]:
        if len(address) != 24:
            raise RpcError(REFUSED, "an address is 24 bytes")
        acct = node.store.accounts.get(address)
        return {"balance": acct.balance if acct else 0, "nonce": acct.nonce if acct else 0}

    async def peer_message(message: bytes, block: bytes | None) -> bool:
        """An agreement message from a peer; True if we hold the block it came with, so
        the peer stops attaching that block to its later messages."""
        return node.on_peer_message(message, block)

    async def set_isolated(isolated: bool) -> dict[str, Any]:
        """Test fault: cut this smesher off from its peers (no agreement messages, gossip or
        sync either way) or heal it. Its public RPC keeps answering."""
        node.isolate(isolated)
        return node.status()

    async def subscribe_blocks(sink: EventSink, from_layer: int = 0) -> None:
        await node.follow_blocks(sink, from_layer)

    for name, fn in (
        ("status", status),
        ("submit_bundle", submit_bundle),
        ("gossip_bundle", gossip_bundle),
        ("submit_l1_tx", submit_l1_tx),
        ("gossip_l1_tx", gossip_l1_tx),
        ("get_block", get_block),
        ("get_l1_account", get_l1_account),
        ("peer_message", peer_message),
        ("set_isolated", set_isolated),
    ):
        server.add_method(name, fn)
    server.add_subscription("subscribe_blocks", subscribe_blocks)
