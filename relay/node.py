"""The relay process: admit transactions, bundle them every layer, track each to its end.

Tasks in one nursery:

- the public RPC server (`relay.rpc`);
- `_follow_blocks`: certified blocks from the smeshers, in layer order. A tracked
  transaction found in any bundle of a block is `included`; a bundle of ours resolves the
  outstanding bundle and its L1 fee is counted;
- `_collect_outcomes`: once the executor has applied a layer, the included transactions of
  that layer become `executed` (with the receipt), or go back to the pool when the block
  rule cut them or the executor refused them on a state that has since moved on;
- `_bundle_loop`: once per layer, halfway into it, (re)submit the outstanding bundle,
  rebuild it with the same L1 nonce when it is overdue, or build a new one from the pool.

One bundle is out at a time, under one L1 nonce. Rebuilding an overdue bundle keeps its
nonce, so whichever incarnation a block takes, the others become stale: a transaction
can never be carried twice by this relay, and Athena nonces make a second execution
impossible anyway. Every change of state is written to LevelDB (`relay.store`) before it
is acknowledged, so a killed relay restarts where it was and re-submits what it promised.
"""

import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import blake3
import trio

from athena_vm import StatusCode
from devnet.builtin_templates import template
from devnet.bundle import Bundle
from devnet.certified_block import certified_block, next_or_stall, stall_seconds
from devnet.config import DevnetConfig
from devnet.errors import (
    CertificateError,
    DevnetError,
    RpcError,
    TransactionRejected,
    WireError,
)
from devnet.l1 import l1_address
from devnet.log import get_logger
from devnet.state_transition import TransitionConfig
from devnet.transaction import Transaction, decode_transaction
from devnet.wire import ErrorCode, RpcClient, RpcServer, Topic
from devnet.wire.subscription import EventSink
from relay import admission
from relay.pool import (
    DUPLICATE,
    POOL_FULL,
    AccountView,
    Pool,
    PoolLimits,
    PoolRejection,
    PoolTx,
    admit,
    bundle_weight,
    lock,
    remove,
    restore,
    revalidate,
    saturated,
    select,
    unlock,
)
from relay.shortcut import WalletShortcut
from relay.store import (
    BLOCKS,
    BUNDLED,
    DROPPED,
    EXECUTED,
    EXECUTED_STATE,
    INCLUDED,
    PENDING,
    Outstanding,
    RelayStore,
    TxStatus,
    delete_status,
    delete_tx,
    put_cursor,
    put_outstanding,
    put_stats,
    put_status,
    put_tx,
)
from relay.views import ExecutorViews, Viewed

INVALID = "invalid"

CALL_TIMEOUT = 5.0
SUBMIT_TIMEOUT = 2.0
SUBMIT_FANOUT = 3
RETRY = 0.5
#: When the relay bundles, as a fraction of the layer, and how long it waits for a late
#: block that would resolve its outstanding bundle (see `_bundle_loop`).
BUNDLE_PHASE = 0.5
BUNDLE_LATEST = 0.8
#: Transactions checked between two yields to the event loop (about 10 ms of VM work).
CHECK_SLICE = 16
#: Principals whose account is re-read from the executor per bundling round, best first.
REFRESH_BUDGET = 256
#: Submissions checked (executor round trip and VM) at once; others wait their turn.
ADMISSION_CONCURRENCY = 16
#: Announced layers whose executed ids are kept until their outcomes are collected.
LAYER_IDS_KEPT = 64
#: Receipts asked for in one `get_receipts` call (their reply stays far below a frame).
RECEIPT_BATCH = 512
#: Executor queries in flight at once when collecting receipts or refreshing accounts
#: (the executor serves 64 requests per connection at a time).
QUERY_CONCURRENCY = 64
#: Bundle encoding outside the transactions: key, nonce (compact, ≤ 9), beneficiary,
#: list length (compact, ≤ 4 up to 2^30 items), signature.
BUNDLE_OVERHEAD = 32 + 9 + 24 + 4 + 64


@dataclass
class _Watch:
    """The subscribers of one transaction's status, ended together at its final state."""

    topic: Topic
    done: trio.Event


def now_ms() -> int:
    """Wall-clock milliseconds: layers are wall-clock (genesis time + layer × duration)."""
    return time.time_ns() // 1_000_000


def _template_of(principal: admission.Principal, tx: Transaction) -> bytes | None:
    """The template whose `verify` checks `tx`: the principal's, or for an account not
    spawned yet (possibly funded already), the one its self-spawn names."""
    return principal.template if principal.template is not None else tx.template


class Relay:
    def __init__(self, config: DevnetConfig, name: str | None = None) -> None:
        self.config = config
        self.rc = config.relay
        self.name = name or self.rc.name
        self.log = get_logger(self.name)
        self.key = config.network.test_key(self.name)
        self.l1_address = l1_address(self.key.public_key)
        self.beneficiary = self.key.wallet_address(template("wallet").address)
        self.genesis_id = config.network.genesis_id
        self.validators = config.validators()
        self.tconfig = TransitionConfig(genesis_id=self.genesis_id)
        self.store = RelayStore(config.network.data_dir / self.name / "relay")
        self.pool = Pool(
            PoolLimits(self.rc.pool_max_txs, self.rc.pool_max_bytes, self.rc.max_per_principal)
        )
        #: Statuses of the transactions in the pool (pending, bundled, included).
        self.active: dict[bytes, TxStatus] = {}
        #: Ids with a final status, oldest first; the statuses themselves (receipts can be
        #: large) stay in LevelDB, and the oldest are forgotten beyond `max_finished`.
        self.finished: OrderedDict[bytes, None] = OrderedDict()
        self.max_finished = max(10_000, 4 * self.rc.pool_max_txs)
        self.included: defaultdict[int, set[bytes]] = defaultdict(set)
        self.outstanding: Outstanding | None = None
        #: Ids of earlier incarnations of the outstanding bundle not carried into the
        #: current one: a block may still take such an incarnation, so they stay in flight.
        self.superseded: set[bytes] = set()
        self.stats = self.store.stats()
        self.block_cursor = self.store.cursor(BLOCKS)
        self.exec_cursor = self.store.cursor(EXECUTED)
        self.executor_layer = -1
        self.view_layer: dict[bytes, int] = {}
        self.views = ExecutorViews(lambda method, **p: self._executor_call(method, **p))
        self.shortcut = WalletShortcut()
        self.watches: dict[bytes, _Watch] = {}
        self.wake = trio.Event()
        self.admission = trio.Semaphore(ADMISSION_CONCURRENCY)
        self.l1_short = False
        self._finish_seq = 0
        self._dirty: dict[bytes, TxStatus] = {}
        self._forgotten: set[bytes] = set()
        self._pool_added: dict[bytes, PoolTx] = {}
        self._pool_deleted: set[bytes] = set()
        self._outstanding_dirty = False
        self._batch_receipts = True
        #: Whether the executor's layer stream is up (else the collector polls `status`).
        self._executor_pushes = False
        #: Executed ids of the layers the stream announced and outcomes not collected yet.
        self._layer_ids: dict[int, list[bytes]] = {}
        #: Receipts the executor pushed with each applied layer (`subscribe_layers`).
        self._layer_receipts: dict[int, dict[bytes, dict[str, Any]]] = {}
        self.executor: RpcClient
        self.smeshers: RpcClient
        self.submitters: list[RpcClient] = []
        self._load()

    # --- persistence -------------------------------------------------------------------

    def _load(self) -> None:
        """Rebuild memory from LevelDB: the pool, statuses, outstanding bundle, cursors."""
        raws = {tx_id: (raw, cost, seq) for tx_id, raw, cost, seq in self.store.pool_txs()}
        finished: list[tuple[int, bytes]] = []
        for status in self.store.statuses():
            if status.final:
                finished.append((status.finished, status.id))
                continue
            entry = raws.get(status.id)
            if entry is None:
                continue  # written together, so this cannot happen; never trust it blindly
            raw, cost, seq = entry
            tx = decode_transaction(raw)
            pooled = PoolTx(
                tx.id, raw, tx.principal, tx.nonce, tx.gas_price, tx.gas_limit, cost, seq
            )
            restore(self.pool, pooled, locked=status.state in (BUNDLED, INCLUDED))
            self.active[status.id] = status
            if status.state == INCLUDED and status.layer is not None:
                self.included[status.layer].add(status.id)
        for _, tx_id in sorted(finished):
            self.finished[tx_id] = None
        self._finish_seq = max((seq for seq, _ in finished), default=0) + 1
        stored = self.store.outstanding()
        bundled = {s.id for s in self.active.values() if s.state == BUNDLED}
        if stored is not None:
            self.outstanding = stored
            self.superseded = bundled - set(stored.tx_ids)
        elif bundled:  # cannot happen (resolved in one batch), but never leave them stuck
            for tx_id in bundled:
                self._to_pending(self.active[tx_id])
            self._commit()
        if self.active or stored is not None:
            self.log.info(
                "relay state restored",
                pool=len(self.pool),
                outstanding=stored.nonce if stored else None,
                block_cursor=self.block_cursor,
            )

    def _commit(self, cursors: dict[bytes, int] | None = None) -> None:
        """Write every change made since the last commit in one batch, then tell the
        subscribers of the statuses that changed (never before they are durable)."""
        with self.store.batch() as batch:
            for tx_id in self._pool_deleted:
                delete_tx(batch, tx_id)
            for tx in self._pool_added.values():
                put_tx(batch, tx.id, tx.raw, tx.cost, tx.seq)
            for status in self._dirty.values():
                put_status(batch, status)
            for tx_id in self._forgotten:
                delete_status(batch, tx_id)
            if self._outstanding_dirty:
                put_outstanding(batch, self.outstanding)
            for key, layer in (cursors or {}).items():
                put_cursor(batch, key, layer)
            put_stats(batch, self.stats)
        changed = list(self._dirty.values())
        self._dirty.clear()
        self._forgotten.clear()
        self._pool_added.clear()
        self._pool_deleted.clear()
        self._outstanding_dirty = False
        for status in changed:
            self._notify(status)

    # --- status transitions (memory only; `_commit` makes them durable) ----------------

    def status_of(self, tx_id: bytes) -> TxStatus | None:
        active = self.active.get(tx_id)
        if active is not None:
            return active
        if tx_id in self.finished:
            return self._dirty.get(tx_id) or self.store.status(tx_id)
        return None

    def _mark(self, status: TxStatus) -> None:
        self._dirty[status.id] = status
        self._forgotten.discard(status.id)

    def _forget_tx(self, tx_id: bytes) -> None:
        if remove(self.pool, tx_id) is not None:
            self._pool_deleted.add(tx_id)
            self._pool_added.pop(tx_id, None)

    def _finish(self, status: TxStatus, state: str, **fields: Any) -> None:
        """Move a transaction to a final state and out of the pool."""
        status.state = state
        for name, value in fields.items():
            setattr(status, name, value)
        status.finished = self._finish_seq
        self._finish_seq += 1
        self.active.pop(status.id, None)
        self._forget_tx(status.id)
        self.superseded.discard(status.id)
        if status.layer is not None:
            self.included.get(status.layer, set()).discard(status.id)
        self.finished[status.id] = None
        self.finished.move_to_end(status.id)
        if state == EXECUTED_STATE:
            self.stats.executed += 1
            if status.ours and status.receipt is not None:
                self.stats.fees_earned += int(status.receipt.get("relay_fee") or 0)
        else:
            self.stats.dropped += 1
        self._mark(status)
        while len(self.finished) > self.max_finished:
            old, _ = self.finished.popitem(last=False)
            self._dirty.pop(old, None)
            self._forgotten.add(old)

    def _drop(self, status: TxStatus, reason: str) -> None:
        self.log.debug("transaction dropped", tx=status.id.hex()[:16], reason=reason)
        self._finish(status, DROPPED, reason=reason)

    def _to_pending(self, status: TxStatus) -> None:
        if status.state == INCLUDED and status.layer is not None:
            self.included.get(status.layer, set()).discard(status.id)
        status.state, status.layer, status.block_id, status.ours = PENDING, None, None, False
        unlock(self.pool, [status.id])
        self._mark(status)

    def _retry(self, status: TxStatus, why: str) -> None:
        """Back to the pool after a failed attempt, or dropped after too many."""
        status.attempts += 1
        if status.attempts >= self.rc.max_attempts:
            self._drop(status, f"{why}; gave up after {status.attempts} attempts")
        else:
            self._to_pending(status)

    def _notify(self, status: TxStatus) -> None:
        watch = self.watches.get(status.id)
        if watch is None:
            return
        watch.topic.publish(status.view())
        if status.final:
            watch.done.set()
            del self.watches[status.id]

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with AsyncExitStack() as stack:
                ex = self.config.executor
                self.executor = await stack.enter_async_context(
                    RpcClient(f"{ex.host}:{ex.port}", node=self.name, timeout=CALL_TIMEOUT)
                )
                endpoints = [f"{s.host}:{s.port}" for s in self.config.smeshers]
                self.smeshers = await stack.enter_async_context(
                    RpcClient(endpoints, node=self.name, timeout=CALL_TIMEOUT)
                )
                # One smesher each, never another: a client that fails over could end up
                # on the same smesher as the others (all of them did when only one was
                # listening yet), and a bundle handed to a smesher that is cut off from
                # its peers would then reach no block.
                for endpoint in endpoints[:SUBMIT_FANOUT]:
                    self.submitters.append(
                        await stack.enter_async_context(
                            RpcClient(endpoint, node=self.name, timeout=SUBMIT_TIMEOUT)
                        )
                    )
                async with trio.open_nursery() as nursery:
                    from relay.rpc import register, server_config

                    server = RpcServer(self.name, server_config(self.rc))
                    register(server, self)
                    port = await nursery.start(server.serve, self.rc.host, self.rc.port)
                    nursery.start_soon(self._follow_blocks)
                    nursery.start_soon(self._collect_outcomes)
                    nursery.start_soon(self._follow_executor)
                    nursery.start_soon(self._bundle_loop)
                    self.log.info(
                        "relay started",
                        port=port,
                        l1_address=self.l1_address.hex(),
                        pool=len(self.pool),
                    )
                    task_status.started(port)
        finally:
            with trio.CancelScope(shield=True):
                self.store.close()
                self.log.info("relay stopped")

    # --- admission ---------------------------------------------------------------------

    async def submit(self, raw: bytes) -> bytes:
        """Admit one transaction; its id, or a `TransactionRejected` saying why not (an
        `RpcError` when the executor cannot be asked).

        A refusal changes nothing. An admitted transaction is durable before this returns.
        """
        (outcome,) = await self.submit_many([raw])
        if isinstance(outcome, bytes):
            return outcome
        raise outcome

    async def submit_many(self, raws: list[bytes]) -> list[bytes | DevnetError]:
        """Admit a batch: for each transaction, in order, its id or why it was refused
        (`TransactionRejected`, or an `RpcError` when the executor cannot be asked).

        Cheaper per transaction than one `submit` each: one executor query per principal
        (none for a principal already read at the executor's current layer) and one
        durable write for the whole batch, made before this returns. A refusal changes
        nothing, and a principal's nonces are admitted in the batch's order.
        """
        outcomes: list[bytes | DevnetError] = []
        screened: dict[int, Transaction] = {}
        for i, raw in enumerate(raws):
            try:
                screened[i] = self._screen(raw)
                outcomes.append(b"")
            except TransactionRejected as exc:
                outcomes.append(exc)
        if screened:
            async with self.admission:
                await self._check_and_admit(raws, screened, outcomes)
        if any(isinstance(outcome, bytes) for outcome in outcomes):
            self._commit()
        self.stats.rejected += sum(isinstance(o, TransactionRejected) for o in outcomes)
        return outcomes

    def _screen(self, raw: bytes) -> Transaction:
        """The checks that need nothing but the bytes and what the relay already tracks."""
        tx = admission.screen(raw, self.tconfig.max_tx_size, self.rc.min_gas_price)
        known = self.active.get(tx.id)
        if known is not None:
            raise PoolRejection(
                DUPLICATE, f"transaction {tx.id.hex()} is already known ({known.state})"
            )
        if saturated(self.pool, len(raw)):
            raise PoolRejection(POOL_FULL, "the pool is full of transactions in flight")
        return tx

    async def _check_and_admit(
        self,
        raws: list[bytes],
        screened: dict[int, Transaction],
        outcomes: list[bytes | DevnetError],
    ) -> None:
        """The executor's checks and the pool's rules for each screened transaction, in
        order; the outcomes are filled in. Yields every `CHECK_SLICE` transactions, so a
        large batch does not hold up block following or bundling."""
        views = await self.views.principals(tx.principal for tx in screened.values())
        templates = await self._templates_for(screened.values(), views)
        for n, (i, tx) in enumerate(screened.items()):
            if n and n % CHECK_SLICE == 0:
                await trio.lowlevel.checkpoint()
            outcomes[i] = self._check_one(raws[i], tx, views[tx.principal], templates)

    async def _templates_for(
        self, txs: Iterable[Transaction], views: dict[bytes, Viewed | RpcError]
    ) -> dict[bytes, bytes | RpcError | None]:
        """The code of every template the transactions' `verify` runs (a funded account
        not spawned yet exists without a template: its self-spawn names the template)."""
        wanted: set[bytes] = set()
        for tx in txs:
            viewed = views[tx.principal]
            if not isinstance(viewed, RpcError):
                address = _template_of(viewed[0], tx)
                if address is not None:
                    wanted.add(address)
        codes: dict[bytes, bytes | RpcError | None] = {}
        for address in wanted:
            try:
                codes[address] = await self.views.template(address)
            except RpcError as exc:
                codes[address] = exc
        return codes

    def _check_one(
        self,
        raw: bytes,
        tx: Transaction,
        viewed: Viewed | RpcError,
        templates: dict[bytes, bytes | RpcError | None],
    ) -> bytes | DevnetError:
        if isinstance(viewed, RpcError):
            return viewed
        principal, layer = viewed
        address = _template_of(principal, tx)
        code = templates.get(address) if address is not None else None
        if isinstance(code, RpcError):
            return code
        known = {address: code} if address is not None and code is not None else {}
        try:
            pooled = admission.check(
                raw, tx.principal, principal, known, self.tconfig, self.shortcut, tx
            )
            return self._admit(pooled, principal.account, layer)
        except PoolRejection as exc:
            return exc
        except TransactionRejected as exc:
            return PoolRejection(INVALID, exc.reason)

    def _admit(self, pooled: PoolTx, account: AccountView, layer: int) -> bytes:
        """The pool's rules, then the statuses (memory only: the caller commits)."""
        result = admit(self.pool, pooled, account)
        self.view_layer[pooled.principal] = layer
        stored = result.tx
        self._pool_added[stored.id] = stored
        self.active[stored.id] = status = TxStatus(stored.id, stored.principal, stored.nonce)
        self.finished.pop(stored.id, None)  # a dropped transaction may come back
        self._mark(status)
        if result.replaced is not None:
            old = self.active.get(result.replaced.id)
            self._pool_deleted.add(result.replaced.id)
            if old is not None:
                self._finish(
                    old,
                    DROPPED,
                    reason=f"replaced by {stored.id.hex()} at gas price {stored.gas_price}",
                )
        for victim in result.evicted:
            self._pool_deleted.add(victim.id)
            self.stats.evicted += 1
            evicted = self.active.get(victim.id)
            if evicted is not None:
                self._finish(
                    evicted,
                    DROPPED,
                    reason=f"evicted: the pool is full and gas price {victim.gas_price} "
                    "was among the lowest (or its predecessor was)",
                )
        return stored.id

    async def _executor_call(self, method: str, **params: Any) -> Any:
        """Every executor query goes through here (one place to fake in tests); a lost
        connection becomes a 503 RpcError, which callers that retry treat as any WireError."""
        try:
            return await self.executor.call(method, timeout=CALL_TIMEOUT, **params)
        except RpcError:
            raise
        except WireError as exc:
            raise RpcError(503, f"the executor is unavailable: {exc}") from None

    # --- blocks ------------------------------------------------------------------------

    async def _follow_blocks(self) -> None:
        while True:
            try:
                if self.block_cursor is None:
                    status = await self.smeshers.call("status")
                    last = status["last_certified"]
                    start = -1 if last is None else int(last)
                    # Nothing is tracked yet: history before now concerns no one here.
                    self.block_cursor = self.exec_cursor = start
                    self._commit({BLOCKS: start, EXECUTED: start})
                async with self.smeshers.subscribe(
                    "subscribe_blocks", from_layer=self.block_cursor + 1
                ) as events:
                    stall = stall_seconds(self.config.network.layer_duration_ms)
                    while (
                        event := await next_or_stall(events, stall, self.smeshers, self.log)
                    ) is not None:
                        if not self._on_block(event):
                            break
            except WireError as exc:
                self.log.debug("block stream interrupted", error=str(exc))
            await trio.sleep(RETRY)

    def _on_block(self, event: dict[str, Any]) -> bool:
        """Process the next certified block; False to re-subscribe (a gap or a bad block)."""
        assert self.block_cursor is not None
        layer = int(event["layer"])
        if layer <= self.block_cursor:
            return True
        if layer > self.block_cursor + 1:
            return False
        try:
            block, _ = certified_block(layer, event["block"], event["certificate"], self.validators)
        except CertificateError as exc:
            self.log.warning("block refused", layer=layer, error=str(exc))
            return False
        resolved = False
        for bundle in block.bundles:  # sorted by id, as the block rule reads them
            ours = bundle.payer == self.l1_address
            for raw in bundle.txs:
                status = self.active.get(blake3.blake3(raw).digest())
                if status is not None and status.state in (PENDING, BUNDLED):
                    if status.state == PENDING:
                        lock(self.pool, [status.id])
                    status.state, status.layer, status.block_id = INCLUDED, layer, block.id
                    status.ours = ours
                    self.superseded.discard(status.id)
                    self.included[layer].add(status.id)
                    self._mark(status)
            if ours:
                self.stats.l1_spent += bundle.fee(self.config.l1.byte_price)
                self.stats.bundles_included += 1
                self.stats.last_l1_nonce = max(self.stats.last_l1_nonce, bundle.nonce)
                if self.outstanding is not None and bundle.nonce >= self.outstanding.nonce:
                    resolved = True
        if resolved:
            self._resolve_outstanding()
        self.block_cursor = layer
        self._commit({BLOCKS: layer})
        self._wake()
        return True

    def _resolve_outstanding(self) -> None:
        """Our L1 nonce was used: whatever of ours is still `bundled` was not included and
        never can be any more (every incarnation had that nonce)."""
        assert self.outstanding is not None
        for tx_id in [*self.outstanding.tx_ids, *self.superseded]:
            status = self.active.get(tx_id)
            if status is not None and status.state == BUNDLED:
                if status.attempts >= self.rc.max_attempts:
                    self._drop(
                        status,
                        f"not included within {self.rc.include_within_layers} layers, "
                        f"{status.attempts} times",
                    )
                else:
                    self._to_pending(status)
        self.outstanding = None
        self.superseded.clear()
        self._outstanding_dirty = True

    def _wake(self) -> None:
        self.wake.set()
        self.wake = trio.Event()

    # --- execution outcomes ------------------------------------------------------------

    async def _follow_executor(self) -> None:
        """Applied layers as the executor announces them (`subscribe_layers`).

        The relay then learns of a layer at once rather than at its next status poll: its
        admission views of the previous layer are dropped before clients who watch the
        executor submit again (a stale next nonce refuses their newer nonces as too
        high), and collecting the layer's outcomes starts without waiting. While the
        stream is down, the collector polls `status` as before.
        """
        while True:
            try:
                async with self.executor.subscribe("subscribe_layers", receipts=True) as layers:
                    status = await self._executor_call("status")
                    if status["applied_layer"] is not None:
                        self._executor_applied(int(status["applied_layer"]), None)
                    self._executor_pushes = True
                    async for record in layers:
                        self._executor_applied(
                            int(record["layer"]), list(record["tx_ids"]), record.get("receipts")
                        )
            except WireError as exc:
                self.log.debug("executor layer stream interrupted", error=str(exc))
            self._executor_pushes = False
            await trio.sleep(RETRY)

    def _executor_applied(
        self,
        layer: int,
        tx_ids: list[bytes] | None,
        receipts: list[dict[str, Any]] | None = None,
    ) -> None:
        if tx_ids is not None:
            self._layer_ids[layer] = tx_ids
            if receipts is not None and len(receipts) == len(tx_ids):
                self._layer_receipts[layer] = dict(zip(tx_ids, receipts, strict=True))
            while len(self._layer_ids) > LAYER_IDS_KEPT:
                oldest = min(self._layer_ids)
                del self._layer_ids[oldest]
                self._layer_receipts.pop(oldest, None)
        if layer > self.executor_layer:
            self.executor_layer = layer
            self.views.advance(layer)
            self._wake()

    async def _collect_outcomes(self) -> None:
        interval = self.config.network.layer_duration_ms / 4000
        while True:
            with trio.move_on_after(interval):
                await self.wake.wait()
            try:
                await self._collect_once()
            except WireError as exc:
                self.log.debug("executor unavailable", error=str(exc))
                await trio.sleep(RETRY)

    async def _collect_once(self) -> None:
        if not self._executor_pushes:
            status = await self._executor_call("status")
            applied = status["applied_layer"]
            if applied is None:
                return
            self._executor_applied(int(applied), None)
        while (
            self.exec_cursor is not None
            and self.block_cursor is not None
            and self.exec_cursor < min(self.executor_layer, self.block_cursor)
        ):
            layer = self.exec_cursor + 1
            outcomes, accounts = await self._gather_layer(layer)
            self._apply_outcomes(layer, outcomes, accounts)
            self.included.pop(layer, None)
            self.exec_cursor = layer
            self._commit({EXECUTED: layer})
        await self._refresh_views()

    async def _gather_layer(
        self, layer: int
    ) -> tuple[dict[bytes, dict[str, Any] | None], dict[bytes, AccountView]]:
        """What the executor did with our transactions included at `layer`: each one's
        receipt, or None if the block rule left it out; and the current accounts of the
        principals whose transactions it refused."""
        ids = sorted(self.included.get(layer, ()))
        outcomes: dict[bytes, dict[str, Any] | None] = {}
        accounts: dict[bytes, AccountView] = {}
        if not ids:
            return outcomes, accounts
        known = self._layer_ids.pop(layer, None)
        pushed = self._layer_receipts.pop(layer, {})
        if known is None:
            known = (await self._executor_call("get_layer", layer=layer))["tx_ids"]
        executed = set(known)
        for tx_id in ids:
            if tx_id not in executed:
                outcomes[tx_id] = None
        # Pushed with the layer, except a refusal: the executor keeps the receipt of an
        # earlier execution of the same id over it, and that one counts.
        receipts = {
            i: pushed[i] for i in ids if i in pushed and pushed[i]["status"] != StatusCode.REJECTED
        }
        receipts.update(
            await self._receipts([i for i in ids if i in executed and i not in receipts])
        )
        outcomes.update(receipts)
        for tx_id in ids:
            outcomes.setdefault(tx_id, None)  # listed but without a receipt: treat as cut
        refused = {
            r["principal"]
            for r in receipts.values()
            if r["status"] == StatusCode.REJECTED and r["principal"] is not None
        }
        for principal, view in (await self._query_many("get_account", "address", refused)).items():
            accounts[principal] = AccountView(int(view["nonce"]), int(view["balance"]))
        return outcomes, accounts

    async def _receipts(self, ids: list[bytes]) -> dict[bytes, dict[str, Any]]:
        """The executor's receipts of these transactions (those it has): one
        `get_receipts` call per `RECEIPT_BATCH` ids when the executor offers it, else one
        `get_receipt` per id. At a thousand transactions a layer, single calls cost the
        executor (whose one thread also applies the layers) and the relay more than the
        rest of collecting outcomes."""
        if self._batch_receipts:
            try:
                found: dict[bytes, dict[str, Any]] = {}
                for start in range(0, len(ids), RECEIPT_BATCH):
                    chunk = ids[start : start + RECEIPT_BATCH]
                    replies = await self._executor_call("get_receipts", tx_ids=chunk)
                    found.update((i, r) for i, r in zip(chunk, replies, strict=True) if r)
                return found
            except RpcError as exc:
                if exc.code != ErrorCode.METHOD_NOT_FOUND:
                    raise
                self._batch_receipts = False  # an executor without it: one call per id
        return await self._query_many("get_receipt", "tx_id", ids)

    async def _query_many(
        self, method: str, param: str, keys: list[bytes] | set[bytes]
    ) -> dict[bytes, dict[str, Any]]:
        """One executor query per key, `QUERY_CONCURRENCY` at a time. Raises the first
        error (the caller retries the whole step; raised from inside the nursery, several
        failures would escape as an ExceptionGroup that no `except WireError` catches); a
        key the executor does not know (404) is left out."""
        results: dict[bytes, dict[str, Any]] = {}
        errors: list[RpcError] = []
        limit = trio.CapacityLimiter(QUERY_CONCURRENCY)

        async def one(key: bytes) -> None:
            async with limit:
                if errors:
                    return
                try:
                    results[key] = await self._executor_call(method, **{param: key})
                except RpcError as exc:
                    if exc.code != 404:
                        errors.append(exc)

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(one, key)
        if errors:
            raise errors[0]
        return results

    def _apply_outcomes(
        self,
        layer: int,
        outcomes: dict[bytes, dict[str, Any] | None],
        accounts: dict[bytes, AccountView],
    ) -> None:
        for tx_id, receipt in outcomes.items():
            status = self.active.get(tx_id)
            if status is None or status.state != INCLUDED or status.layer != layer:
                continue
            if receipt is None:
                self._retry(status, f"included in layer {layer} but left out by the block rule")
            elif receipt["status"] != StatusCode.REJECTED:
                self._finish(status, EXECUTED_STATE, receipt=receipt)
                self._nonce_used(status.principal, status.nonce, layer)
            else:
                account = accounts.get(status.principal)
                reason = str(receipt.get("reason") or "refused by the executor")
                if account is not None and status.nonce >= account.nonce:
                    self._retry(status, f"refused by the executor: {reason}")
                else:
                    self._drop(status, f"refused by the executor: {reason}")
        for principal, account in accounts.items():
            self.view_layer[principal] = layer
            self.pool.accounts[principal] = account

    def _nonce_used(self, principal: bytes, nonce: int, layer: int) -> None:
        """Our transaction with `nonce` ran at `layer`: the principal's next nonce is past
        it. Bundles select each principal's transactions from its next nonce on, so
        without this a principal's newer transactions would wait for a re-read of its
        account — an executor query on the way to every bundle, stalled whenever the
        executor is busy applying a layer."""
        view = self.pool.accounts.get(principal)
        if view is not None and view.nonce <= nonce:
            self.pool.accounts[principal] = AccountView(nonce + 1, view.balance)
            self.view_layer[principal] = max(self.view_layer.get(principal, -1), layer)

    # --- bundling ----------------------------------------------------------------------

    async def _bundle_loop(self) -> None:
        """Bundle once per layer, `BUNDLE_PHASE` into it.

        The smeshers build the next block at the layer's start, so a bundle sent halfway
        through still makes it, and carries every transaction that arrived meanwhile: the
        earlier a bundle goes out, the longer what it carries waits for the block. If the
        outstanding bundle's block is certified late, the round waits for it (until
        `BUNDLE_LATEST`) rather than re-sending that bundle and skipping a layer.
        """
        network = self.config.network
        duration = network.layer_duration_ms
        while True:
            now = now_ms()
            layer = network.layer_at(now)
            target = network.layer_start_ms(layer) + int(duration * BUNDLE_PHASE)
            if target <= now:
                layer += 1
                target = network.layer_start_ms(layer) + int(duration * BUNDLE_PHASE)
            await trio.sleep((target - now) / 1000)
            latest = network.layer_start_ms(layer) + int(duration * BUNDLE_LATEST)
            await self._await_resolution(latest)
            try:
                await self._bundle_step(layer)
            except WireError as exc:
                self.log.warning("bundling round failed", layer=layer, error=str(exc))

    async def _await_resolution(self, until_ms: int) -> None:
        """Wait (at most until `until_ms`) for the block that resolves the outstanding
        bundle, when one is out and this layer's block (built from the pools at the
        layer's start, so the one that can take it) is not processed yet."""
        while self.outstanding is not None:
            expected = self.config.network.layer_at(now_ms())
            if self.block_cursor is not None and self.block_cursor >= expected:
                return  # the latest block did not take it: re-send (or rebuild) it
            left = until_ms - now_ms()
            if left <= 0:
                return
            with trio.move_on_after(left / 1000):
                await self.wake.wait()

    async def _bundle_step(self, layer: int) -> None:
        outstanding = self.outstanding
        if outstanding is not None:
            cursor = -1 if self.block_cursor is None else self.block_cursor
            blocks_since = cursor - outstanding.blocks_at
            if blocks_since < self.rc.include_within_layers:
                await self._send(outstanding.encoded)
                return
            await self._rebuild(outstanding)
            return
        if self.pool.pending_count() == 0:
            return
        account = await self.smeshers.call("get_l1_account", address=self.l1_address)
        if self.outstanding is not None:
            return  # cannot happen (only this task builds), but never build two
        nonce = max(int(account["nonce"]), self.stats.last_l1_nonce + 1)
        bundle = self._build(nonce, [], int(account["balance"]))
        if bundle is not None:
            await self._send(bundle.encoded)

    def _build(self, nonce: int, carried: list[PoolTx], balance: int) -> Bundle | None:
        """Select, sign and persist a bundle (the outstanding one from now on); no awaits,
        so the pool cannot change under it."""
        budget = self.rc.bundle_max_bytes - BUNDLE_OVERHEAD
        budget -= sum(bundle_weight(tx) for tx in carried)
        gas = self.config.l1.block_gas_limit - sum(tx.gas_limit for tx in carried)
        chosen = carried + select(self.pool, budget, gas)
        if not chosen:
            return None
        bundle = Bundle(
            self.key.public_key, nonce, self.beneficiary, tuple(tx.raw for tx in chosen)
        ).sign(self.key, self.genesis_id)
        fee = bundle.fee(self.config.l1.byte_price)
        if fee > balance:
            if not self.l1_short:
                self.log.warning("L1 balance too low for a bundle", fee=fee, balance=balance)
            self.l1_short = True
            return None
        self.l1_short = False
        layer = self.config.network.layer_at(now_ms())
        lock(self.pool, [tx.id for tx in chosen])
        for tx in chosen:
            status = self.active[tx.id]
            status.state, status.layer = BUNDLED, layer
            self._mark(status)
        self.outstanding = Outstanding(
            nonce,
            bundle.encoded,
            bundle.id,
            [tx.id for tx in chosen],
            layer,
            -1 if self.block_cursor is None else self.block_cursor,
        )
        self._outstanding_dirty = True
        self.stats.bundles_created += 1
        self._commit()
        self.log.info(
            "bundle built", nonce=nonce, txs=len(chosen), bytes=len(bundle.encoded), layer=layer
        )
        if self.stats.bundles_created == self.rc.faults.crash_after_bundle:
            self.log.warning("fault: crashing after persisting a bundle, before submitting it")
            os._exit(3)
        return bundle

    async def _rebuild(self, old: Outstanding) -> None:
        """The outstanding bundle is overdue: rebuild it under the same L1 nonce with what
        is still worth carrying and what has arrived since."""
        account = await self.smeshers.call("get_l1_account", address=self.l1_address)
        if int(account["nonce"]) > old.nonce:
            status = await self.smeshers.call("status")
            last = status["last_certified"]
            if last is not None and self.block_cursor is not None and self.block_cursor >= last:
                # Every block is processed and none had our bundle: the nonce went elsewhere.
                self.log.warning("L1 nonce used outside this relay", nonce=old.nonce)
                self.stats.last_l1_nonce = max(self.stats.last_l1_nonce, int(account["nonce"]) - 1)
                self._resolve_outstanding()
                self._commit()
            return
        if self.outstanding is not old:
            return  # a block resolved it while we waited
        carried: list[PoolTx] = []
        for tx_id in old.tx_ids:
            status = self.active.get(tx_id)
            tx = self.pool.txs.get(tx_id)
            if status is None or tx is None or status.state != BUNDLED:
                continue
            status.attempts += 1
            self._mark(status)
            if status.attempts >= self.rc.max_attempts:
                self.superseded.add(tx_id)  # still in flight until the nonce is used
            else:
                carried.append(tx)
        self.superseded.update(set(old.tx_ids) - {tx.id for tx in carried})
        self.superseded = {i for i in self.superseded if i in self.active}
        bundle = self._build(old.nonce, carried, int(account["balance"]))
        if bundle is None:
            # Nothing better to send: keep the old one and wait again.
            old.blocks_at = -1 if self.block_cursor is None else self.block_cursor
            self._outstanding_dirty = True
            self._commit()
            await self._send(old.encoded)
            return
        self.log.info("bundle rebuilt", nonce=old.nonce, carried=len(carried))
        await self._send(bundle.encoded)

    async def _send(self, encoded: bytes) -> None:
        """Submit to several smeshers at once; each gossips it on. Re-sent every layer
        until a block takes it, so a smesher that restarted (and lost its pool) gets it."""
        accepted = 0

        async def one(client: RpcClient) -> None:
            nonlocal accepted
            try:
                await client.call("submit_bundle", bundle=encoded, timeout=SUBMIT_TIMEOUT)
                accepted += 1
            except RpcError as exc:
                self.log.debug("bundle refused", error=exc.message)
            except WireError:
                pass

        async with trio.open_nursery() as nursery:
            for client in self.submitters:
                nursery.start_soon(one, client)
        if accepted == 0:
            self.log.warning("no smesher accepted the bundle; retrying next layer")

    async def _refresh_views(self) -> None:
        """Re-read the accounts of principals with pending transactions whose view predates
        the executor's latest layer, and drop what the new state invalidates."""
        best: dict[bytes, int] = {}
        for tx in self.pool.txs.values():
            if tx.id in self.pool.locked:
                continue
            if self.view_layer.get(tx.principal, -2) >= self.executor_layer and (
                tx.principal in self.pool.accounts
            ):
                continue
            best[tx.principal] = max(best.get(tx.principal, 0), tx.gas_price)
        stale = sorted(best, key=lambda p: -best[p])[:REFRESH_BUDGET]
        if not stale:
            return
        layer = self.executor_layer
        views = {
            principal: AccountView(int(view["nonce"]), int(view["balance"]))
            for principal, view in (await self._query_many("get_account", "address", stale)).items()
        }
        used = [
            tx.id
            for principal, account in views.items()
            for tx in self.pool.principal_txs(principal)
            if tx.nonce < account.nonce and tx.id not in self.pool.locked
        ]
        receipts = await self._receipts(used)
        changed = False
        for principal, account in views.items():
            self.view_layer[principal] = layer
            for tx, reason in revalidate(self.pool, principal, account):
                self._pool_deleted.add(tx.id)
                status = self.active.get(tx.id)
                if status is None:
                    continue
                changed = True
                receipt = receipts.get(tx.id)
                if receipt is not None and receipt["status"] != StatusCode.REJECTED:
                    self._finish(status, EXECUTED_STATE, receipt=receipt)
                else:
                    self._drop(status, reason)
        if len(self.view_layer) > 2 * len(self.pool.nonces) + 1024:
            self.view_layer = {p: v for p, v in self.view_layer.items() if p in self.pool.nonces}
        if changed:
            self._commit()

    # --- queries -----------------------------------------------------------------------

    async def watch(self, sink: EventSink, tx_id: bytes) -> None:
        """Stream a transaction's status: the current one, then every change, ending with
        its final state."""
        status = self.status_of(tx_id)
        if status is None:
            raise RpcError(404, f"unknown transaction {tx_id.hex()}")
        sink.publish(status.view())
        if status.final:
            return
        watch = self.watches.get(tx_id)
        if watch is None:
            watch = self.watches[tx_id] = _Watch(Topic(), trio.Event())
        try:
            with watch.topic.attached(sink):
                await watch.done.wait()
        finally:
            if not len(watch.topic) and self.watches.get(tx_id) is watch:
                del self.watches[tx_id]

    def mempool(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "count": len(pool),
            "bytes": pool.total_bytes,
            "pending": pool.pending_count(),
            "in_flight": len(pool.locked),
            "principals": len(pool.nonces),
            "max_txs": pool.limits.max_txs,
            "max_bytes": pool.limits.max_bytes,
            "max_per_principal": pool.limits.max_per_principal,
            "min_gas_price": self.rc.min_gas_price,
            "tracked": len(self.active) + len(self.finished),
            "evicted": self.stats.evicted,
            "rejected": self.stats.rejected,
        }

    def status(self) -> dict[str, Any]:
        network = self.config.network
        out = self.outstanding
        return {
            "name": self.name,
            "layer": network.layer_at(now_ms()),
            "block_layer": self.block_cursor,
            "executed_layer": self.exec_cursor,
            "executor_layer": self.executor_layer,
            "l1_address": self.l1_address,
            "beneficiary": self.beneficiary,
            "l1_spent": self.stats.l1_spent,
            "athena_fees_earned": self.stats.fees_earned,
            "l1_balance_short": self.l1_short,
            "bundles_created": self.stats.bundles_created,
            "bundles_included": self.stats.bundles_included,
            "outstanding": None
            if out is None
            else {
                "nonce": out.nonce,
                "id": out.bundle_id,
                "txs": len(out.tx_ids),
                "layer": out.layer,
            },
            "executed": self.stats.executed,
            "dropped": self.stats.dropped,
            "mempool": self.mempool(),
            "admission": {
                "account_reads": self.views.queries,
                "account_reads_saved": self.views.hits,
                "wallet_shortcut": self.shortcut.enabled,
                "wallet_shortcut_taken": self.shortcut.taken,
            },
        }
