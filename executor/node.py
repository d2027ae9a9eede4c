"""The executor process: follow certified blocks, execute them, commit, claim, answer queries.

Layers are applied strictly in order. Each layer's state writes, tree nodes, receipts,
layer record and applied-layer marker go into one atomic WriteBatch; a kill at any moment
restarts from the last applied layer and recomputes exactly the same roots.
"""

from typing import Any

import blake3
import trio

from devnet.certified_block import FOLLOW_RETRY, certified_block, follow_certified_blocks
from devnet.config import DevnetConfig
from devnet.errors import CertificateError, RpcError, WireError
from devnet.execution.layer import ExecutorStore, LayerRecord, apply_layer
from devnet.execution.state import open_state
from devnet.l1 import Claim, L1Tx, l1_address
from devnet.leveldb import open_db
from devnet.log import get_logger
from devnet.wire import RpcClient, RpcServer
from devnet.wire.subscription import EventSink, Topic


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
        self.l1_layer: int | None = None
        self.claims: trio.MemorySendChannel[LayerRecord]
        self._claim_queue: trio.MemoryReceiveChannel[LayerRecord]
        self.claims, self._claim_queue = trio.open_memory_channel[LayerRecord](1024)

    def endpoints(self) -> list[str]:
        return [f"{s.host}:{s.port}" for s in self.config.smeshers]

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
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
                self.db.close()
                self.log.info("executor stopped")

    async def _follow(self, client: RpcClient) -> None:
        async def handle(event: dict[str, Any]) -> bool:
            self.l1_layer = max(self.l1_layer or 0, int(event["layer"]))
            return self._on_block(event)

        await follow_certified_blocks(client, lambda: self.store.next_layer, handle, self.log)

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
        record, receipts = apply_layer(
            self.store, self.host, block, self.config, skip_tx=self.config.executor.faults.skip_tx
        )
        self.log.info("layer applied", layer=layer, txs=len(receipts), root=record.root.hex()[:16])
        for receipt in receipts:
            self.receipts.publish(receipt)
        self.layers.publish(record.as_dict())
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
        address = l1_address(self.key.public_key)
        nonce: int | None = None
        async for record in self._claim_queue:
            for _ in range(5):
                try:
                    if nonce is None:
                        nonce = int((await client.call("get_l1_account", address=address))["nonce"])
                    await client.call("submit_l1_tx", tx=self.claim_for(record, nonce).encode())
                    nonce += 1
                    break
                except RpcError as exc:
                    self.log.warning("claim refused", layer=record.layer, error=exc.message)
                    nonce = None
                except WireError:
                    await trio.sleep(FOLLOW_RETRY)

    async def follow_receipts(self, sink: EventSink) -> None:
        await self.receipts.follow(sink)
