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

from devnet.block import Block, block_id, decode_block
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


CallKey = tuple[str, tuple[tuple[str, Any], ...]]


def call_key(method: str, params: dict[str, Any]) -> CallKey:
    """What makes two peer calls identical: the method and its params (bytes or None)."""
    return method, tuple(sorted(params.items()))


@dataclass
class Peer:
    """A connection to another smesher and the calls waiting to go out on it.

    The outbox drops its *oldest* call when full: agreement messages go stale quickly, and a
    backlog of old rounds delivered late would only delay the current ones.
    """

    name: str
    client: RpcClient
    #: (method, params, the block the call carries if the peer lacks it)
    outbox: deque[tuple[str, dict[str, Any], Block | None]] = field(
        default_factory=lambda: deque(maxlen=PEER_QUEUE)
    )
    wake: trio.Event = field(default_factory=trio.Event)
    #: Ids of blocks the peer said it holds, on its current connection (`client.sessions`).
    has_blocks: set[bytes] = field(default_factory=set)
    session: int = 0
    #: `call_key`s of the calls queued or in flight (see `queue`).
    pending: set[CallKey] = field(default_factory=set)

    def queue(self, method: str, params: dict[str, Any], block: Block | None) -> None:
        """Queue a call unless an identical one is still queued or in flight.

        A node stuck in a round re-broadcasts its messages every resend interval, to
        repair *lost* messages. On a loaded machine a peer's calls drain slower than that:
        queuing every copy filled the outbox with duplicates, so a fresh vote waited
        behind seconds of stale copies, every round timed out before its votes arrived,
        and a layer took 20 rounds and more (rounds only outgrow a delay slowly). A copy
        of a call that has not gone out yet repairs nothing, so it is skipped; once the
        call is done (delivered or failed) the next resend queues it again.
        """
        key = call_key(method, params)
        if key in self.pending:
            return
        if len(self.outbox) == PEER_QUEUE:  # drop the oldest, and forget it
            old_method, old_params, _ = self.outbox.popleft()
            self.pending.discard(call_key(old_method, old_params))
        self.pending.add(key)
        self.outbox.append((method, params, block))
        self.wake.set()

    def clear(self) -> None:
        """Drop every queued call (calls in flight forget their key when they end)."""
        for method, params, _ in self.outbox:
            self.pending.discard(call_key(method, params))
        self.outbox.clear()

    def lacks(self, block: Block) -> bool:
        """Whether a call should carry `block`: not known to be held by the peer. A new
        connection may be to a restarted peer, which holds nothing."""
        if self.session != self.client.sessions:
            self.session = self.client.sessions
            self.has_blocks.clear()
        return block.id not in self.has_blocks

    def holds(self, block: Block, session: int) -> None:
        if session == self.client.sessions:
            if len(self.has_blocks) >= MAX_CANDIDATES:
                self.has_blocks.clear()
            self.has_blocks.add(block.id)


PERSIST, BROADCAST, DECIDED = "persist", "broadcast", "decided"


@dataclass(frozen=True)
class Effect:
    """One agreement output to perform in order: a record to write, a message to send, a
    decision to commit."""

    kind: str
    args: tuple[Any, ...]


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
        #: Agreement outputs waiting for a record to be written first (see `_effects_loop`).
        self.effects: deque[Effect] = deque()
        self.effects_wake = trio.Event()

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
                nursery.start_soon(self._effects_loop)
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
                    if not peer.outbox:  # emptied meanwhile (`isolate`)
                        limiter.release()
                        break
                    calls.start_soon(self._call_peer, peer, limiter, *peer.outbox.popleft())

    async def _call_peer(
        self,
        peer: Peer,
        limiter: trio.Semaphore,
        method: str,
        params: dict[str, Any],
        block: Block | None,
    ) -> None:
        """One call; a block goes along only if the peer is not known to hold it, and
        the peer's answer (True: it holds the block now) spares sending it again."""
        key = call_key(method, params)
        try:
            session = peer.client.sessions
            carried = block if block is not None and peer.lacks(block) else None
            if carried is not None:
                params = {**params, "block": carried.encoded}
            held = await peer.client.request(method, params, timeout=PEER_CALL_TIMEOUT)
            if carried is not None and held is True:
                peer.holds(carried, session)
        except WireError:
            pass  # the agreement resends; sync covers what is lost for good
        finally:
            peer.pending.discard(key)
            limiter.release()

    def to_peers(self, method: str, params: dict[str, Any], block: Block | None = None) -> None:
        """Queue a call to every peer without waiting; a full outbox drops its oldest.

        `block` is attached (as the `block` param) for the peers that may lack it: a
        proposal or decision of a block of a few hundred kilobytes is re-sent many times
        in a slow layer, and sending the block each time was most of the bytes they sent.
        """
        if self.isolated:
            return
        for peer in self.peers:
            peer.queue(method, params, block)

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
        """Perform the agreement's outputs, in order where order matters (see `_effects_loop`)."""
        for out in outputs:
            if isinstance(out, Persist):
                self._effect(Effect(PERSIST, (agreement.layer, encode_message(out.record))))
            elif isinstance(out, Broadcast):
                self._effect(Effect(BROADCAST, self._envelope(out.message)))
            elif isinstance(out, ScheduleTimeout):
                assert self.nursery is not None
                self.nursery.start_soon(self._timer, agreement, out)
            elif isinstance(out, Decided):
                self._effect(Effect(DECIDED, (agreement.layer, out.value, out.certificate)))

    def _effect(self, effect: Effect) -> None:
        """Perform a broadcast or a decision now if nothing is waiting to be written,
        else after what is; a record to persist always goes to the writer."""
        if effect.kind != PERSIST and not self.effects:
            self._apply(effect)
            return
        self.effects.append(effect)
        self.effects_wake.set()

    def _apply(self, effect: Effect) -> None:
        if effect.kind == BROADCAST:
            params, block = effect.args
            self.to_peers("peer_message", params, block)
        elif effect.kind == DECIDED and effect.args[0] == self.chain.next_layer:
            self._decided(*effect.args)  # unless sync committed the layer meanwhile

    async def _effects_loop(self) -> None:
        """Write agreement records, each before the outputs that follow it.

        A record is written with fsync so that a restarted node never signs a conflicting
        vote; on a machine whose disk is shared by busy processes one fsync took up to a
        tenth of a second, and done inline it froze the node's whole event loop (messages,
        timers, its RPC) that long, several times a layer. In a worker thread it holds up
        only what must wait for it: the broadcasts and the decision queued behind it.
        """
        while True:
            while not self.effects:
                await self.effects_wake.wait()
                self.effects_wake = trio.Event()
            effect = self.effects[0]
            if effect.kind == PERSIST:
                await trio.to_thread.run_sync(self.store.add_record, *effect.args)
            else:
                self._apply(effect)
            self.effects.popleft()

    def _envelope(self, message: Message) -> tuple[dict[str, Any], Block | None]:
        """A `peer_message` call's params, and the block a proposal or decision names
        (attached for the peers that may lack it, see `to_peers`)."""
        params: dict[str, Any] = {"message": encode_message(message), "block": None}
        block = None
        if isinstance(message, Proposal | Decision) and len(message.value) == 1:
            block = self.candidates.get(message.value[0])
        return params, block

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

    def _remember_block(self, raw: bytes | None) -> bool:
        """Keep a candidate block a peer sent with a proposal or a decision; whether we
        hold it now (the sender then stops attaching it, see `to_peers`).

        A peer may still send the same block a few times (calls already in flight); one
        of a past layer, or already known by its id (the hash of its bytes, as decoding
        is canonical), is not decoded again.
        """
        if raw is None:
            return False
        if len(raw) < 8 or int.from_bytes(raw[:8], "little") < self.chain.next_layer:
            return False  # the encoding starts with the layer, a u64 (a bad one fails below)
        if block_id(raw) in self.candidates:
            return True
        if len(self.candidates) >= MAX_CANDIDATES:
            return False
        try:
            block = decode_block(raw)
        except DevnetError:
            return False
        if block.layer < self.chain.next_layer:
            return False
        self.candidates.setdefault(block.id, block)
        return True

    def isolate(self, isolated: bool) -> None:
        if isolated != self.isolated:
            self.log.warning("partitioned from peers" if isolated else "partition healed")
        self.isolated = isolated
        if isolated:
            for peer in self.peers:
                peer.clear()

    def on_peer_message(self, message: bytes, block: bytes | None) -> bool:
        """Handle an agreement message; whether we hold the block it came with."""
        if self.isolated:
            return False
        try:
            msg = decode_message(message)
        except DevnetError:
            return False
        layer = msg.certificate.layer if isinstance(msg, Decision) else msg.layer
        held = self._remember_block(block)
        agreement = self.agreement
        if agreement is not None and layer == agreement.layer:
            self._perform(agreement, agreement.on_message(msg))
        elif self.chain.next_layer <= layer < self.chain.next_layer + MAX_FUTURE_LAYERS:
            pending = self.future[layer]
            if len(pending) < MAX_BUFFERED_MESSAGES:
                pending.append((msg, block))
        return held

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
