"""The smesher process: layer clock, gossip, agreement per layer, sync, RPC.

Everything runs in one trio nursery. The agreement is a sans-IO state machine; this module
feeds it messages and timeouts and performs its outputs. Proposals and decisions carry the
candidate block's bytes, so a node always has the block a value names before it votes.
"""

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import trio

from devnet.block import Block, decode_block
from devnet.certificate import Certificate
from devnet.certified_block import certified_block
from devnet.config import DevnetConfig
from devnet.errors import CertificateError, DevnetError, WireError
from devnet.log import get_logger
from devnet.wire import RpcClient, RpcServer
from devnet.wire.subscription import EventSink
from smesher.agreement import (
    Agreement,
    Broadcast,
    Decided,
    Decision,
    Message,
    Output,
    Persist,
    Proposal,
    ScheduleTimeout,
    Timeouts,
    decode_message,
    encode_message,
)
from smesher.chain import Chain, Committed
from smesher.store import ChainStore

PEER_QUEUE = 256
PEER_CONCURRENCY = 16
PEER_CALL_TIMEOUT = 2.0
MAX_FUTURE_LAYERS = 4
MAX_BUFFERED_MESSAGES = 4096
MAX_CANDIDATES = 64


@dataclass
class Peer:
    """A connection to another smesher and the calls waiting to go out on it.

    The outbox drops its *oldest* call when full: agreement messages go stale quickly, and a
    backlog of old rounds delivered late would only delay the current ones.
    """

    name: str
    client: RpcClient
    outbox: deque[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=PEER_QUEUE)
    )
    wake: trio.Event = field(default_factory=trio.Event)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Smesher:
    def __init__(self, config: DevnetConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.node = config.smesher(name)
        self.key = config.smesher_key(name)
        self.log = get_logger(name)
        self.store = ChainStore(config.network.data_dir / name / "chain")
        self.chain = Chain(config, self.store)
        self.timeouts = Timeouts.for_layer(config.network.layer_duration_ms)
        self.committed = trio.Event()  # set, then replaced, at every commit
        self.peers: list[Peer] = []
        self.candidates: dict[bytes, Block] = {}
        self.agreement: Agreement | None = None
        self.layer_done = trio.Event()
        self.future: dict[int, list[tuple[Message, bytes | None]]] = defaultdict(list)
        self.nursery: trio.Nursery | None = None
        #: Cut off from its peers by `set_isolated` (a test partition).
        self.isolated = False

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                server = self._server()
                port = await nursery.start(server.serve, self.node.host, self.node.port)
                for other in self.config.smeshers:
                    if other.name != self.name:
                        await self._connect(nursery, other.name, f"{other.host}:{other.port}")
                nursery.start_soon(self._consensus_loop)
                nursery.start_soon(self._sync_loop)
                self.log.info("smesher started", port=port, next_layer=self.chain.next_layer)
                task_status.started(port)
        finally:
            with trio.CancelScope(shield=True):
                self.store.close()
                self.log.info("smesher stopped")

    async def _connect(self, nursery: trio.Nursery, name: str, endpoint: str) -> None:
        client = await nursery.start(_open_client, endpoint, self.name)
        peer = Peer(name, client)
        self.peers.append(peer)
        nursery.start_soon(self._peer_sender, peer)

    async def _peer_sender(self, peer: Peer) -> None:
        """Send queued calls without waiting for one reply before the next call."""
        limiter = trio.Semaphore(PEER_CONCURRENCY)
        async with trio.open_nursery() as calls:
            while True:
                await peer.wake.wait()
                peer.wake = trio.Event()
                while peer.outbox:
                    await limiter.acquire()
                    calls.start_soon(self._call_peer, peer, limiter, *peer.outbox.popleft())

    async def _call_peer(
        self, peer: Peer, limiter: trio.Semaphore, method: str, params: dict[str, Any]
    ) -> None:
        try:
            await peer.client.request(method, params, timeout=PEER_CALL_TIMEOUT)
        except WireError:
            pass  # the agreement resends; sync covers what is lost for good
        finally:
            limiter.release()

    def to_peers(self, method: str, params: dict[str, Any]) -> None:
        """Queue a call to every peer without waiting; a full outbox drops its oldest."""
        if self.isolated:
            return
        for peer in self.peers:
            peer.outbox.append((method, params))
            peer.wake.set()

    # --- the layer loop --------------------------------------------------------------

    async def _consensus_loop(self) -> None:
        while True:
            layer = self.chain.next_layer
            start = self.config.network.layer_start_ms(layer)
            if start > now_ms():
                await trio.sleep((start - now_ms()) / 1000)
            if self.chain.next_layer != layer:
                continue  # sync committed it meanwhile
            await self._run_layer(layer)

    async def _run_layer(self, layer: int) -> None:
        candidate = self.chain.build_block(layer)
        self.candidates[candidate.id] = candidate
        agreement = Agreement(
            layer,
            self.key,
            self.chain.validators,
            (candidate.id,),
            timeouts=self.timeouts,
            is_valid=lambda value: self._value_is_valid(value, layer),
        )
        agreement.restore(decode_message(r) for r in self.store.records(layer))
        self.agreement = agreement
        self.layer_done = trio.Event()
        outputs = agreement.start()
        for message, block in self.future.pop(layer, []):
            self._remember_block(block)
            outputs += agreement.on_message(message)
        self._perform(agreement, outputs)
        await self.layer_done.wait()
        self.agreement = None
        for old in [lay for lay in self.future if lay <= layer]:
            del self.future[old]

    def _value_is_valid(self, value: tuple[bytes, ...], layer: int) -> bool:
        block = self.candidates.get(value[0]) if len(value) == 1 else None
        if block is None:
            self.log.debug("proposed block not received yet", layer=layer)
            return False
        valid = self.chain.is_valid(block, layer)
        if not valid:
            try:
                self.chain.check_block(block, layer)
            except DevnetError as exc:
                self.log.warning("invalid block proposed", layer=layer, error=str(exc))
        return valid

    def _perform(self, agreement: Agreement, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Persist):
                self.store.add_record(agreement.layer, encode_message(out.record))
            elif isinstance(out, Broadcast):
                self.to_peers("peer_message", self._envelope(out.message))
            elif isinstance(out, ScheduleTimeout):
                assert self.nursery is not None
                self.nursery.start_soon(self._timer, agreement, out)
            elif isinstance(out, Decided):
                self._decided(agreement.layer, out.value, out.certificate)

    def _envelope(self, message: Message) -> dict[str, Any]:
        params: dict[str, Any] = {"message": encode_message(message), "block": None}
        if isinstance(message, Proposal | Decision):
            block = self.candidates.get(message.value[0]) if len(message.value) == 1 else None
            if block is not None:
                params["block"] = block.encoded
        return params

    async def _timer(self, agreement: Agreement, out: ScheduleTimeout) -> None:
        await trio.sleep(out.delay_ms / 1000)
        if self.agreement is agreement:
            self._perform(agreement, agreement.on_timeout(out.kind, out.round))

    def _decided(self, layer: int, value: tuple[bytes, ...], cert: Certificate) -> None:
        block = self.candidates.get(value[0]) if len(value) == 1 else None
        if block is None:
            self.log.warning("decided a block we do not have; waiting for sync", layer=layer)
            return
        self._commit(block, cert)

    def _commit(self, block: Block, cert: Certificate) -> None:
        try:
            committed = self.chain.commit(block, cert)
        except DevnetError as exc:
            self.log.error("cannot commit certified block", layer=block.layer, error=str(exc))
            return
        self._published(committed)
        self.candidates = {
            bid: b for bid, b in self.candidates.items() if b.layer > committed.layer
        }
        self.layer_done.set()

    def _published(self, committed: Committed) -> None:
        self.log.info(
            "layer certified",
            layer=committed.layer,
            block=committed.block.id.hex(),
            bundles=len(committed.block.bundles),
            l1_txs=len(committed.block.l1_txs),
        )
        self.committed.set()
        self.committed = trio.Event()

    def block_event(self, layer: int) -> dict[str, Any] | None:
        raw = self.store.block(layer)
        cert = self.store.certificate(layer)
        if raw is None or cert is None:
            return None
        return {
            "layer": layer,
            "block_id": decode_block(raw).id,
            "block": raw,
            "certificate": cert,
            "l1_state_hash": self.store.state_hash(layer),
        }

    def _remember_block(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            block = decode_block(raw)
        except DevnetError:
            return
        if block.layer >= self.chain.next_layer and len(self.candidates) < MAX_CANDIDATES:
            self.candidates.setdefault(block.id, block)

    def isolate(self, isolated: bool) -> None:
        if isolated != self.isolated:
            self.log.warning("partitioned from peers" if isolated else "partition healed")
        self.isolated = isolated
        if isolated:
            for peer in self.peers:
                peer.outbox.clear()

    def on_peer_message(self, message: bytes, block: bytes | None) -> None:
        if self.isolated:
            return
        try:
            msg = decode_message(message)
        except DevnetError:
            return
        layer = msg.certificate.layer if isinstance(msg, Decision) else msg.layer
        self._remember_block(block)
        agreement = self.agreement
        if agreement is not None and layer == agreement.layer:
            self._perform(agreement, agreement.on_message(msg))
        elif self.chain.next_layer <= layer < self.chain.next_layer + MAX_FUTURE_LAYERS:
            pending = self.future[layer]
            if len(pending) < MAX_BUFFERED_MESSAGES:
                pending.append((msg, block))

    # --- sync ------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        """Fetch certified layers a peer has and we lack (after a restart or a partition)."""
        interval = self.config.network.layer_duration_ms / 1000
        while True:
            await trio.sleep(interval)
            for peer in self.peers:
                if not self.isolated:
                    await self._sync_from(peer)

    async def _sync_from(self, peer: Peer) -> None:
        try:
            status = await peer.client.call("status", timeout=PEER_CALL_TIMEOUT)
            while status["last_certified"] is not None and (
                status["last_certified"] >= self.chain.next_layer
            ):
                layer = self.chain.next_layer
                reply = await peer.client.call("get_block", layer=layer, timeout=PEER_CALL_TIMEOUT)
                if not self._adopt(layer, reply["block"], reply["certificate"]):
                    return
        except (WireError, KeyError, TypeError):
            return

    def _adopt(self, layer: int, raw: bytes, raw_cert: bytes) -> bool:
        if layer != self.chain.next_layer:
            return False
        try:
            block, cert = certified_block(layer, raw, raw_cert, self.chain.validators)
        except CertificateError as exc:
            self.log.warning("peer sent a block we refuse", layer=layer, error=str(exc))
            return False
        self.log.info("synced layer", layer=layer)
        self._commit(block, cert)
        return self.chain.next_layer == layer + 1

    # --- RPC -------------------------------------------------------------------------

    def _server(self) -> RpcServer:
        from smesher.rpc import register

        server = RpcServer(self.name)
        register(server, self)
        return server

    def status(self) -> dict[str, Any]:
        last = self.store.last_layer()
        return {
            "name": self.name,
            "layer": self.config.network.layer_at(now_ms()),
            "last_certified": last,
            "l1_state_hash": self.store.state_hash(last) if last is not None else None,
            "peers": [{"name": p.name, "connected": p.client.connected} for p in self.peers],
            "mempool": len(self.chain.bundles),
            "l1_pool": len(self.chain.l1_txs),
            "genesis_id": self.chain.genesis_id,
            "isolated": self.isolated,
        }

    async def follow_blocks(self, sink: EventSink, from_layer: int) -> None:
        """History from `from_layer`, then live blocks, in order and without gaps."""
        layer = from_layer
        while True:
            committed = self.committed
            last = self.store.last_layer()
            while last is not None and layer <= last:
                event = self.block_event(layer)
                if event is None or not sink.publish(event):
                    return
                layer += 1
                await trio.lowlevel.checkpoint()
            await committed.wait()


async def _open_client(
    endpoint: str, name: str, *, task_status: trio.TaskStatus[RpcClient] = trio.TASK_STATUS_IGNORED
) -> None:
    async with RpcClient(endpoint, node=name, timeout=PEER_CALL_TIMEOUT) as client:
        task_status.started(client)
        await trio.sleep_forever()
