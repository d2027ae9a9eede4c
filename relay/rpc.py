"""The relay's public RPC: submit and track transactions, query the pool, reach the executor.

Refusals of `submit_tx` are RpcErrors whose message starts with the rule's kind
(`stale_nonce: …`, see `relay.pool` and `relay.node`), with the code telling a client what
to do: 400 the transaction is wrong, 409 it is already known, 429 the relay is full (try
later or pay more), 503 the executor is unreachable. `submit_txs` admits a batch with one
executor query per principal and one durable write, and answers each transaction with its
id or with the error `submit_tx` would have raised.
"""

from typing import TYPE_CHECKING, Any

from devnet.config import RelayConfig
from devnet.errors import DevnetError, RpcError, TransactionRejected, WireError
from devnet.wire import FrameLimits, RpcServer, ServerConfig
from devnet.wire.subscription import EventSink
from relay.pool import DUPLICATE, POOL_FULL, PRINCIPAL_FULL, PoolRejection

if TYPE_CHECKING:
    from relay.node import Relay

REJECTED = 400
NOT_FOUND = 404
KNOWN = 409
BUSY = 429
UNAVAILABLE = 503
#: Transactions in one `submit_txs` call; the request frame's size bounds it too.
MAX_BATCH = 1024

_CODES = {DUPLICATE: KNOWN, POOL_FULL: BUSY, PRINCIPAL_FULL: BUSY}


def server_config(rc: RelayConfig) -> ServerConfig:
    """Per-connection bounds for a public endpoint: request size, rate, concurrency."""
    return ServerConfig(
        limits=FrameLimits(max_frame=rc.max_request_bytes),
        max_connections=128,
        max_inflight=8,
        max_subscriptions=64,
        rate_limit=float(rc.rate_limit) if rc.rate_limit else None,
    )


def rejection(exc: TransactionRejected) -> RpcError:
    if isinstance(exc, PoolRejection):
        return RpcError(_CODES.get(exc.kind, REJECTED), str(exc))
    return RpcError(REJECTED, f"invalid: {exc.reason}")


def batch_result(outcome: bytes | DevnetError) -> dict[str, Any]:
    """One entry of a `submit_txs` reply."""
    if isinstance(outcome, bytes):
        return {"id": outcome}
    error = rejection(outcome) if isinstance(outcome, TransactionRejected) else outcome
    if not isinstance(error, RpcError):
        error = RpcError(UNAVAILABLE, str(error))
    return {"error": {"code": error.code, "message": error.message}}


def register(server: RpcServer, relay: "Relay") -> None:
    async def status() -> dict[str, Any]:
        return relay.status()

    async def submit_tx(tx: bytes) -> bytes:
        """Admit a signed Athena transaction; its id once it is durably in the pool."""
        try:
            return await relay.submit(tx)
        except TransactionRejected as exc:
            raise rejection(exc) from None

    async def submit_txs(txs: list[bytes]) -> list[dict[str, Any]]:
        """Admit a batch; per transaction, in order, `{id}` once it is durably in the pool
        or `{error: {code, message}}` as `submit_tx` would refuse it. One call admits up to
        `MAX_BATCH` transactions for the price of one request (and counts as one against
        the connection's rate limit)."""
        if len(txs) > MAX_BATCH:
            raise RpcError(REJECTED, f"a batch holds at most {MAX_BATCH} transactions")
        return [batch_result(outcome) for outcome in await relay.submit_many(txs)]

    async def tx_status(id: bytes) -> dict[str, Any]:
        """{id, state, layer, block_id, receipt, reason, attempts}; state is pending,
        bundled (layer), included (layer, block_id), executed (receipt) or dropped (reason)."""
        found = relay.status_of(id)
        if found is None:
            raise RpcError(NOT_FOUND, f"unknown transaction {id.hex()}")
        return found.view()

    async def subscribe_tx(sink: EventSink, id: bytes) -> None:
        await relay.watch(sink, id)

    async def mempool() -> dict[str, Any]:
        return relay.mempool()

    async def forward(method: str, **params: Any) -> Any:
        try:
            return await relay.executor.call(method, **params)
        except RpcError:
            raise
        except WireError as exc:
            raise RpcError(UNAVAILABLE, f"the executor is unavailable: {exc}") from None

    async def estimate(tx: bytes) -> dict[str, Any]:
        """The executor's dry run of `tx` on its current state (its receipt record)."""
        result: dict[str, Any] = await forward("estimate", tx=tx)
        return result

    async def get_account(address: bytes) -> dict[str, Any]:
        result: dict[str, Any] = await forward("get_account", address=address)
        return result

    for name, fn in (
        ("status", status),
        ("submit_tx", submit_tx),
        ("submit_txs", submit_txs),
        ("tx_status", tx_status),
        ("mempool", mempool),
        ("estimate", estimate),
        ("get_account", get_account),
    ):
        server.add_method(name, fn)
    server.add_subscription("subscribe_tx", subscribe_tx)
