"""The relay's batch admission and its cheaper paths to the executor.

- `submit_many` answers per transaction, in order, makes one executor query per principal
  (none while the executor's layer has not moved on), and what it acknowledged is durable.
- Receipts come in one `get_receipts` call per batch when the executor has that method,
  one `get_receipt` per id otherwise.
- A transaction of ours that ran moves its principal's next nonce on, so the next bundle
  takes the principal's newer transactions without re-reading its account.
"""

from collections import Counter
from pathlib import Path
from typing import Any

from devnet.block import Block
from devnet.config import DevnetConfig
from devnet.errors import RpcError
from devnet.wire import ErrorCode
from relay.pool import DUPLICATE, STALE_NONCE, PoolRejection
from relay.rpc import batch_result
from relay.store import EXECUTED_STATE, PENDING
from tests.unit.test_relay_node import FakeExecutor, certified, make_config, open_relay, tx


class CountingExecutor(FakeExecutor):
    """The fake executor, counting calls, with receipts and optionally `get_receipts`."""

    def __init__(self, config: DevnetConfig, batch_receipts: bool) -> None:
        super().__init__(config)
        self.calls: Counter[str] = Counter()
        self.receipts: dict[bytes, dict[str, Any]] = {}
        self.batch_receipts = batch_receipts
        self.layer_ids: list[bytes] = []

    async def call(self, method: str, **params: Any) -> Any:
        self.calls[method] += 1
        if method == "get_receipt":
            found = self.receipts.get(params["tx_id"])
            if found is None:
                raise RpcError(404, "no receipt")
            return found
        if method == "get_receipts":
            if not self.batch_receipts:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND, "no method 'get_receipts'")
            return [self.receipts.get(t) for t in params["tx_ids"]]
        if method == "get_layer":
            return {"tx_ids": self.layer_ids}
        if method == "status":
            return {"applied_layer": 1}
        return await super().call(method, **params)


def relay_with(tmp_path: Path, batch_receipts: bool = True) -> tuple[Any, CountingExecutor]:
    config = make_config(tmp_path)
    relay = open_relay(config)
    executor = CountingExecutor(config, batch_receipts)
    relay._executor_call = executor.call  # type: ignore[method-assign]
    relay.config = config
    return relay, executor


async def test_a_batch_is_answered_per_transaction_in_order(tmp_path: Path) -> None:
    relay, executor = relay_with(tmp_path)
    config = relay.config
    good = [tx(config, 0, n) for n in range(3)] + [tx(config, 1, 0)]
    raws = [t.encode() for t in good] + [good[0].encode(), b"\x04\x02", tx(config, 2, 0).encode()]
    executor.accounts[tx(config, 2, 0).principal]["nonce"] = 1  # its nonce 0 is used
    outcomes = await relay.submit_many(raws)
    assert outcomes[:4] == [t.id for t in good]
    assert isinstance(outcomes[4], PoolRejection) and outcomes[4].kind == DUPLICATE
    assert isinstance(outcomes[5], PoolRejection) and outcomes[5].kind == "malformed"
    assert isinstance(outcomes[6], PoolRejection) and outcomes[6].kind == STALE_NONCE
    assert executor.calls["get_account"] == 3  # one per principal, not per transaction
    assert relay.stats.rejected == 3
    replies = [batch_result(o) for o in outcomes]
    assert replies[0] == {"id": good[0].id}
    assert replies[4]["error"]["code"] == 409 and replies[5]["error"]["code"] == 400
    relay.store.close()
    reopened = open_relay(config)  # acknowledged means durable
    assert all(reopened.status_of(t.id) is not None for t in good)
    assert len(reopened.pool) == 4
    reopened.store.close()


async def test_views_are_read_once_per_executor_layer(tmp_path: Path) -> None:
    relay, executor = relay_with(tmp_path)
    config = relay.config
    await relay.submit_many([tx(config, 0, 0).encode()])
    await relay.submit_many([tx(config, 0, 1).encode(), tx(config, 0, 2).encode()])
    assert executor.calls["get_account"] == 1
    relay.views.advance(5)  # the executor applied another layer: the view may be stale
    await relay.submit_many([tx(config, 0, 3).encode()])
    assert executor.calls["get_account"] == 2
    relay.store.close()


async def executed_layer(
    relay: Any, executor: CountingExecutor, count: int, later: int = 0
) -> list[Any]:
    """`count` transactions of user-0 bundled, included at layer 1 and executed; `later`
    more of its transactions arrive while those are in flight."""
    config = relay.config
    txs = [tx(config, 0, n) for n in range(count)]
    await relay.submit_many([t.encode() for t in txs])
    bundle = relay._build(0, [], 10**9)
    newer = [tx(config, 0, n) for n in range(count, count + later)]
    await relay.submit_many([t.encode() for t in newer])
    assert relay._on_block(certified(config, Block(0)))
    assert relay._on_block(certified(config, Block(1, (bundle,))))
    executor.layer_ids = [t.id for t in txs]
    for t in txs:
        executor.receipts[t.id] = {"status": 0, "relay_fee": 1, "principal": t.principal}
    executor.accounts[txs[0].principal]["nonce"] = count
    relay.executor_layer = 0
    await relay._collect_once()
    return txs + newer


async def test_receipts_come_in_one_call_when_the_executor_can(tmp_path: Path) -> None:
    relay, executor = relay_with(tmp_path, batch_receipts=True)
    txs = await executed_layer(relay, executor, 5)
    assert all(relay.status_of(t.id).state == EXECUTED_STATE for t in txs)
    assert executor.calls["get_receipts"] == 1 and executor.calls["get_receipt"] == 0
    relay.store.close()


async def test_receipts_come_one_by_one_from_an_executor_without_the_batch(
    tmp_path: Path,
) -> None:
    relay, executor = relay_with(tmp_path, batch_receipts=False)
    txs = await executed_layer(relay, executor, 5)
    assert all(relay.status_of(t.id).state == EXECUTED_STATE for t in txs)
    assert executor.calls["get_receipt"] == 5
    relay.store.close()


async def test_a_principal_whose_transactions_ran_is_bundled_again_at_once(
    tmp_path: Path,
) -> None:
    relay, executor = relay_with(tmp_path)
    txs = await executed_layer(relay, executor, 3, later=2)
    newer = txs[3:]
    # Its next nonce is 3 now, without asking the executor again (one read, at admission).
    assert relay.pool.accounts[newer[0].principal].nonce == 3
    bundle = relay._build(1, [], 10**9)
    assert bundle is not None and bundle.txs == tuple(t.encode() for t in newer)
    assert executor.calls["get_account"] == 1
    assert all(relay.status_of(t.id).state != PENDING for t in newer)
    relay.store.close()
