"""The shadow executor process: its own LevelDB, rebuilt from the L1 alone.

It follows certified blocks from any smesher, verifies their certificates, applies each
layer with the very code the executor uses, and checks every state-root claim the L1
carries: from the configured executor's key, on time, and equal to its own root. On a
wrong root it asks the executor for its receipts of the layer and narrows the divergence
down to the first transaction and the state records that differ.

Verdicts are stored in the same LevelDB as they are reached. A restarted shadow answers
for every layer it judged before, and reads the claims of its last applied blocks again
(those within the claim deadline), so a claim whose verdict a stop cut short is judged.
"""

import time
from collections import deque
from dataclasses import replace
from typing import Any

import trio

from athena_vm.in_memory_host import Account
from devnet.block import Block
from devnet.certified_block import certified_block, follow_certified_blocks, stall_seconds
from devnet.config import DevnetConfig
from devnet.errors import CertificateError, DevnetError, RpcError, WireError
from devnet.execution.layer import ExecutorStore, LayerRecord, apply_layer
from devnet.execution.signature_ahead import SignaturesAhead
from devnet.execution.state import ACCOUNT_PREFIX, encode_account, open_state
from devnet.l1 import Claim
from devnet.leveldb import open_db
from devnet.log import get_logger
from devnet.wire import RpcClient, RpcServer
from devnet.wire.subscription import EventSink, Topic
from shadow_executor.verdict import (
    DIVERGENCE,
    FOREIGN_CLAIM,
    LATE_CLAIM,
    MISSING_CLAIM,
    VERIFIED,
    Difference,
    Verdict,
    decode_verdict,
    encode_verdict,
    first_receipt_difference,
)

MAX_DIVERGENCES_KEPT = 1000
#: Verdicts are stored under this prefix, the layer (8 bytes big-endian) and the kind, so
#: a restarted shadow still answers for every layer it judged before.
VERDICT_PREFIX = b"V"


class StrictDivergence(DevnetError):
    """--strict: the shadow stops at the first divergence it finds."""


class Shadow:
    def __init__(
        self,
        config: DevnetConfig,
        name: str | None = None,
        *,
        strict: bool = False,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.name = name or config.shadow.name
        self.port = config.shadow.port if port is None else port
        self.strict = strict
        self.log = get_logger(self.name)
        path = config.network.data_dir / self.name / "state"
        self.db = open_db(path)
        self.store = ExecutorStore(self.db)
        self.host = open_state(self.db)
        self.validators = config.validators()
        self.executor_key = config.network.test_key(config.executor.name).public_key
        self.claims: dict[int, Claim] = {}  # layer -> the executor's claim, until checked
        self.verdicts: dict[int, Verdict] = {}
        self.divergences: dict[int, Verdict] = {}
        self.verified_up_to: int | None = None
        self.claimed_layer: int | None = None
        self.l1_layer: int | None = None
        self.topic = Topic()
        self._speed: deque[tuple[float, int]] = deque(maxlen=64)
        self._failure: StrictDivergence | None = None
        self.ahead = SignaturesAhead(self.name) if config.shadow.signatures_ahead else None
        for _, raw in self.db.iterator(prefix=VERDICT_PREFIX):
            self._record(decode_verdict(raw))

    def executor_endpoint(self) -> str:
        return f"{self.config.executor.host}:{self.config.executor.port}"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        endpoints = [f"{s.host}:{s.port}" for s in self.config.smeshers]
        try:
            if self.ahead is not None:
                self.ahead.start()
            async with (
                RpcClient(endpoints, node=self.name, timeout=5) as l1,
                RpcClient(self.executor_endpoint(), node=self.name, timeout=5) as executor,
                trio.open_nursery() as nursery,
            ):
                from shadow_executor.rpc import register

                server = RpcServer(self.name)
                register(server, self)
                port = await nursery.start(server.serve, self.config.shadow.host, self.port)
                nursery.start_soon(self._follow, l1, executor)
                self.log.info("shadow started", port=port, applied=self.store.applied())
                task_status.started(port)
        finally:
            with trio.CancelScope(shield=True):
                if self.ahead is not None:
                    self.ahead.close()
                self.db.close()
                self.log.info("shadow stopped")

    async def _follow(self, l1: RpcClient, executor: RpcClient) -> None:
        async def handle(event: dict[str, Any]) -> bool:
            return await self._on_block(event, executor)

        await self._rescan_claims(l1, executor)
        await follow_certified_blocks(
            l1,
            lambda: self.store.next_layer,
            handle,
            self.log,
            stall_seconds(self.config.network.layer_duration_ms),
        )

    async def _on_block(self, event: dict[str, Any], executor: RpcClient) -> bool:
        expected = self.store.next_layer
        layer = int(event["layer"])
        self.l1_layer = max(self.l1_layer or 0, layer)
        if layer != expected:
            return layer < expected
        try:
            block, _ = certified_block(layer, event["block"], event["certificate"], self.validators)
        except CertificateError as exc:
            self.log.warning("block refused", layer=layer, error=str(exc))
            return False
        apply_layer(self.store, self.host, block, self.config, ahead=self.ahead)
        self._speed.append((time.monotonic(), layer))
        self._collect_claims(block)
        await self._check_claims(executor)
        self._check_deadlines(layer)
        if self._failure is not None:
            raise self._failure
        return True

    def _collect_claims(self, block: Block) -> None:
        for tx in block.l1_txs:
            if not isinstance(tx.body, Claim):
                continue
            claim = tx.body
            if tx.sender != self.executor_key:
                self._report(
                    Verdict(
                        claim.layer,
                        FOREIGN_CLAIM,
                        claim.block_id,
                        claimed_root=claim.state_root,
                        reason=f"claim signed by {tx.sender.hex()}, not the executor",
                    )
                )
                continue
            if claim.layer in self.verdicts:
                continue
            late = block.layer > claim.layer + self.config.shadow.claim_deadline_layers
            if late:
                self._report(
                    Verdict(
                        claim.layer,
                        LATE_CLAIM,
                        claim.block_id,
                        claimed_root=claim.state_root,
                        reason=f"claim for layer {claim.layer} arrived in layer {block.layer}",
                    )
                )
            self.claims.setdefault(claim.layer, claim)
            self.claimed_layer = max(self.claimed_layer or 0, claim.layer)

    async def _check_claims(self, executor: RpcClient) -> None:
        applied = self.store.applied()
        if applied is None:
            return
        for layer in sorted(c for c in self.claims if c <= applied):
            claim = self.claims.pop(layer)
            record = self.store.layer(layer)
            assert record is not None
            if (claim.state_root, claim.receipts_root, claim.block_id) == (
                record.root,
                record.receipts_root,
                record.block_id,
            ):
                verdict = Verdict(layer, VERIFIED, record.block_id, claim.state_root, record.root)
                self._store(verdict)
                self.topic.publish(verdict.as_dict())
            else:
                self._report(await self._narrow(layer, claim, record, executor))

    def _check_deadlines(self, l1_layer: int) -> None:
        deadline = self.config.shadow.claim_deadline_layers
        for layer in range(max(0, l1_layer - deadline - 4), l1_layer - deadline):
            if (
                self.config.executor.claims
                and layer not in self.verdicts
                and layer not in self.claims
            ):
                if self.store.layer(layer) is not None:
                    self._report(
                        Verdict(
                            layer,
                            MISSING_CLAIM,
                            reason=f"no claim for layer {layer} by layer {l1_layer}",
                        )
                    )

    async def _narrow(
        self, layer: int, claim: Claim, record: LayerRecord, executor: RpcClient
    ) -> Verdict:
        """Compare receipts, then state records, with what the executor serves."""
        base = Verdict(layer, DIVERGENCE, record.block_id, claim.state_root, record.root)
        try:
            theirs_layer = await executor.call("get_layer", layer=layer)
            theirs = [await executor.call("get_receipt", tx_id=t) for t in theirs_layer["tx_ids"]]
        except WireError as exc:
            return _with(base, reason=f"claimed root differs; the executor cannot be asked: {exc}")
        ours = [self.store.receipt(t) or {} for t in record.tx_ids]
        tx_id, why = first_receipt_difference(ours, theirs)
        touched = sorted({a for r in ours + theirs for a in r.get("touched", [])})
        differences = []
        for address in touched:
            try:
                acct = await executor.call("get_account", address=address)
            except WireError:
                continue
            their_record = _account_record(acct)
            our_record = self.db.get(ACCOUNT_PREFIX + address)
            if their_record != our_record:
                differences.append(Difference(ACCOUNT_PREFIX + address, our_record, their_record))
        if tx_id is None and theirs_layer.get("root") != claim.state_root:
            why = "the claim differs from the executor's own root for the layer: a tampered claim"
        return _with(base, tx_id=tx_id, reason=why, differences=tuple(differences))

    async def _rescan_claims(self, l1: RpcClient, executor: RpcClient) -> None:
        """After a restart: collect again the claims of the last blocks applied before it.

        A claim is judged right after the block carrying it is applied; one that a stop
        cut short of its verdict (or that waited for a later layer) would otherwise never
        be judged. Blocks older than the claim deadline are not read again: their claims
        were judged then, and a claim still missing is reported missing.
        """
        applied = self.store.applied()
        if applied is None:
            return
        first = max(1, applied - self.config.shadow.claim_deadline_layers)
        for layer in range(first, applied + 1):
            try:
                event = await l1.call("get_block", layer=layer)
                block, _ = certified_block(
                    layer, event["block"], event["certificate"], self.validators
                )
            except (RpcError, CertificateError) as exc:
                self.log.warning("claims of a block not read again", layer=layer, error=str(exc))
                continue
            except WireError as exc:
                self.log.warning("claims of the last blocks not read again", error=str(exc))
                break
            self._collect_claims(block)
        await self._check_claims(executor)

    def _record(self, verdict: Verdict) -> None:
        """Keep a verdict: `verified` is the layer's verdict; any other kind is the layer's
        verdict unless it has one, and is kept among the divergences."""
        layer = verdict.layer
        if verdict.kind == VERIFIED:
            self.verdicts[layer] = verdict
            self.verified_up_to = max(self.verified_up_to or -1, layer)
            return
        self.verdicts.setdefault(layer, verdict)
        if len(self.divergences) < MAX_DIVERGENCES_KEPT:
            self.divergences.setdefault(layer, verdict)

    def _store(self, verdict: Verdict) -> bool:
        """Record and persist a verdict; False if this very verdict was known already."""
        key = VERDICT_PREFIX + verdict.layer.to_bytes(8, "big") + verdict.kind.encode()
        encoded = encode_verdict(verdict)
        if self.db.get(key) == encoded:
            return False
        self.db.put(key, encoded)
        self._record(verdict)
        return True

    def _report(self, verdict: Verdict) -> None:
        if not self._store(verdict):
            return  # seen again when claims are collected again after a restart
        self.log.error(
            "divergence" if verdict.kind == DIVERGENCE else verdict.kind,
            layer=verdict.layer,
            block_id=verdict.block_id.hex(),
            tx_id=verdict.tx_id.hex() if verdict.tx_id else None,
            claimed_root=verdict.claimed_root.hex() if verdict.claimed_root else None,
            our_root=verdict.our_root.hex() if verdict.our_root else None,
            reason=verdict.reason,
            differences=[
                {
                    "key": d.key.hex(),
                    "ours": d.ours.hex() if d.ours else None,
                    "theirs": d.theirs.hex() if d.theirs else None,
                }
                for d in verdict.differences
            ],
        )
        self.topic.publish(verdict.as_dict())
        if self.strict and verdict.kind == DIVERGENCE and self._failure is None:
            self._failure = StrictDivergence(
                f"divergence at layer {verdict.layer}: {verdict.reason}"
            )

    def catch_up_speed(self) -> float:
        """Layers applied per second over the recent window (0 when idle)."""
        if len(self._speed) < 2:
            return 0.0
        (t0, l0), (t1, l1) = self._speed[0], self._speed[-1]
        return (l1 - l0) / (t1 - t0) if t1 > t0 else 0.0

    def status(self) -> dict[str, Any]:
        applied = self.store.applied()
        return {
            "name": self.name,
            "applied_layer": applied,
            "verified_up_to": self.verified_up_to,
            "executor_claimed_layer": self.claimed_layer,
            "l1_layer": self.l1_layer,
            "lag": None
            if self.l1_layer is None
            else self.l1_layer - (applied if applied is not None else -1),
            "catch_up_layers_per_s": round(self.catch_up_speed(), 2),
            "divergences": len(self.divergences),
            "root": self.store.root(),
        }

    async def follow_verdicts(self, sink: EventSink) -> None:
        await self.topic.follow(sink)


def _with(base: Verdict, **changes: Any) -> Verdict:
    return replace(base, **changes)


def _account_record(view: dict[str, Any]) -> bytes | None:
    """The executor's account view encoded like our own record, for a byte comparison."""
    if not view.get("exists"):
        return None
    return encode_account(Account(view["balance"], view["nonce"], view["template"], view["state"]))
