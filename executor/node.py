"""The executor process: follow certified blocks, execute them, commit, claim, answer queries.

Layers are applied strictly in order. Each layer's state writes, tree nodes, receipts,
layer record and applied-layer marker go into one atomic WriteBatch; a kill at any moment
restarts from the last applied layer and recomputes exactly the same roots.
"""

import time
from typing import Any

import blake3
import trio

from devnet.certified_block import (
    FOLLOW_RETRY,
    certified_block,
    follow_certified_blocks,
    stall_seconds,
)
from devnet.config import DevnetConfig
from devnet.errors import CertificateError, RpcError, WireError
from devnet.execution.layer import ExecutorStore, LayerRecord, apply_layer
from devnet.execution.signature_ahead import SignaturesAhead
from devnet.execution.state import open_state
from devnet.l1 import Claim, L1Tx, l1_address
from devnet.leveldb import open_db
from devnet.log import get_logger
from devnet.wire import RpcClient, RpcServer
from devnet.wire.subscription import EventSink, Topic
from executor.claims import ClaimBook

#: Layers before a restart whose claims are checked for, and sent again if missing.
RECLAIM_LAYERS = 8
#: Receipts pushed with a layer at most (a larger layer's would not fit in one frame:
#: followers fetch them with `get_receipts`).
MAX_PUSHED_RECEIPTS = 4096


class Executor:
    def __init__(self, config: DevnetConfig, name: str | None = None) -> None:
        self.config = config
        self.name = name or config.executor.name
        self.log = get_logger(self.name)
        path = config.network.data_dir / self.name / "state"
        self.db = open_db(path)
        self.store = ExecutorStore(self.db)
        self.host = open_state(self.db)
        self.validators = config.validators()
        self.key = config.network.test_key(self.name)
        self.receipts = Topic()
        self.layers = Topic()
        self.layers_with_receipts = Topic()
        self.l1_layer: int | None = None
        self.book = ClaimBook(self.key.public_key)
        self.claims: trio.MemorySendChannel[LayerRecord]
        self._claim_queue: trio.MemoryReceiveChannel[LayerRecord]
        self.claims, self._claim_queue = trio.open_memory_channel[LayerRecord](1024)
        self.ahead = SignaturesAhead(self.name) if config.executor.signatures_ahead else None

    def endpoints(self) -> list[str]:
        return [f"{s.host}:{s.port}" for s in self.config.smeshers]

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            if self.ahead is not None:
                self.ahead.start()
            async with RpcClient(self.endpoints(), node=self.name, timeout=5) as client:
                async with trio.open_nursery() as nursery:
                    from executor.rpc import register

                    server = RpcServer(self.name)
                    register(server, self, client)
                    port = await nursery.start(
                        server.serve, self.config.executor.host, self.config.executor.port
                    )
                    nursery.start_soon(self._follow, client)
                    if self.config.executor.claims:
                        nursery.start_soon(self._publish_claims, client)
                    self.log.info("executor started", port=port, applied=self.store.applied())
                    task_status.started(port)
        finally:
            with trio.CancelScope(shield=True):
                if self.ahead is not None:
                    self.ahead.close()
                self.db.close()
                self.log.info("executor stopped")

    async def _follow(self, client: RpcClient) -> None:
        async def handle(event: dict[str, Any]) -> bool:
            self.l1_layer = max(self.l1_layer or 0, int(event["layer"]))
            return self._on_block(event)

        await follow_certified_blocks(
            client,
            lambda: self.store.next_layer,
            handle,
            self.log,
            stall_seconds(self.config.network.layer_duration_ms),
        )

    def _on_block(self, event: dict[str, Any]) -> bool:
        """Apply one certified block; False to re-subscribe (a gap or a bad block)."""
        expected = self.store.next_layer
        layer = int(event["layer"])
        if layer < expected:
            return True
        if layer > expected:
            return False
        try:
            block, _ = certified_block(layer, event["block"], event["certificate"], self.validators)
        except CertificateError as exc:
            self.log.warning("block refused", layer=layer, error=str(exc))
            return False
        self.book.carried(block)
        record, receipts = apply_layer(
            self.store,
            self.host,
            block,
            self.config,
            skip_tx=self.config.executor.faults.skip_tx,
            ahead=self.ahead,
        )
        self.log.info("layer applied", layer=layer, txs=len(receipts), root=record.root.hex()[:16])
        for receipt in receipts:
            self.receipts.publish(receipt)
        announced = record.as_dict()
        self.layers.publish(announced)
        if len(self.layers_with_receipts):
            if len(receipts) <= MAX_PUSHED_RECEIPTS:
                announced = {**announced, "receipts": receipts}
            self.layers_with_receipts.publish(announced)
        try:
            self.claims.send_nowait(record)
        except trio.WouldBlock:
            self.log.warning("claim queue full; a claim is skipped", layer=layer)
        return True

    def claim_for(self, record: LayerRecord, nonce: int) -> L1Tx:
        root = record.root
        if record.layer == self.config.executor.faults.wrong_root_at_layer:
            root = blake3.blake3(b"tampered" + root).digest()  # test-only fault
        claim = Claim(record.layer, record.block_id, root, record.receipts_root)
        return L1Tx(self.key.public_key, nonce, claim).sign(
            self.key, self.config.network.genesis_id
        )

    async def _publish_claims(self, client: RpcClient) -> None:
        """Send every applied layer's claim, and again until a certified block carries it."""
        address = l1_address(self.key.public_key)
        layer_seconds = self.config.network.layer_duration_ms / 1000
        await self._reclaim_recent(client)
        while True:
            with trio.move_on_after(layer_seconds):
                self.book.add(await self._claim_queue.receive())
            while True:
                try:
                    self.book.add(self._claim_queue.receive_nowait())
                except trio.WouldBlock:
                    break
            if not self.book.pending:
                continue
            try:
                nonce = int((await client.call("get_l1_account", address=address))["nonce"])
                l1_layer = self.config.network.layer_at(int(time.time() * 1000))
                for claim in self.book.due(l1_layer, nonce, self.claim_for):
                    assert claim.tx is not None
                    try:
                        await client.call("submit_l1_tx", tx=claim.tx.encode())
                    except RpcError as exc:
                        self.log.warning(
                            "claim refused", layer=claim.record.layer, error=exc.message
                        )
            except WireError:
                await trio.sleep(FOLLOW_RETRY)

    async def _reclaim_recent(self, client: RpcClient) -> None:
        """After a restart: claim again the last layers applied before it whose claims no
        certified block carries (the previous process may not have sent them, or they may
        have been lost with its pending nonces)."""
        applied = self.store.applied()
        if applied is None:
            return
        first = max(0, applied - RECLAIM_LAYERS + 1)
        for layer in range(first, applied + 1):
            record = self.store.layer(layer)
            if record is not None:
                self.book.add(record)
        later = first + 1
        while self.book.pending:
            try:
                event = await client.call("get_block", layer=later)
            except RpcError:
                return  # not certified yet: what is still pending gets claimed
            except WireError:
                await trio.sleep(FOLLOW_RETRY)
                continue
            try:
                block, _ = certified_block(
                    later, event["block"], event["certificate"], self.validators
                )
            except CertificateError:
                return
            self.book.carried(block)
            later += 1

    async def follow_receipts(self, sink: EventSink) -> None:
        await self.receipts.follow(sink)
