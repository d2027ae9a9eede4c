"""`RpcClient`: calls and subscriptions over one reconnecting connection.

    async with RpcClient(["127.0.0.1:7100", "127.0.0.1:7101"]) as client:
        nonce = await client.call("get_nonce", principal=address)
        async with client.subscribe("blocks") as events:
            async for block in events: ...

A background task keeps one connection to the first reachable endpoint, trying the others
in turn and backing off (`Backoff`) after a full round of failures. Calls made while
disconnected wait for the next connection, within their timeout. A call already sent when
the connection drops fails with ConnectionClosed instead of being re-sent: methods such as
transaction submission are not idempotent, so retrying is the caller's decision. Likewise a
subscription ends with ConnectionClosed and the caller re-subscribes, knowing events may have
been missed in between.

Replies are routed by request id, which is unique for the client's lifetime, so a late reply
from an earlier connection can never be mistaken for a newer one. Each subscription buffers
up to `subscription_buffer` events for its consumer; a consumer that falls further behind is
dropped locally (SUBSCRIPTION_DROPPED) instead of stalling replies to every other call.
"""

import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import count
from types import TracebackType
from typing import Any

import structlog
import trio

from devnet.errors import ConnectionClosed, FrameError, RequestTimeout, RpcError, WireError
from devnet.log import get_logger
from devnet.wire.backoff import Backoff
from devnet.wire.codes import ErrorCode
from devnet.wire.connection import FrameConnection
from devnet.wire.envelope import parse_error_object, request_id, valid_id
from devnet.wire.frame import DEFAULT_LIMITS, FrameLimits

Endpoint = tuple[str, int]
EndpointLike = str | tuple[str, int]
Logger = structlog.typing.FilteringBoundLogger


def parse_endpoint(value: EndpointLike) -> Endpoint:
    """("host", port) from a tuple, "host:port" or "[v6 host]:port"."""
    if isinstance(value, tuple):
        host, port = value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"endpoint {value!r} is not host:port")
        host, port = host.removeprefix("[").removesuffix("]"), int(port_text)
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad endpoint {value!r}")
    return host, port


def _endpoints(value: EndpointLike | Sequence[EndpointLike]) -> list[Endpoint]:
    items: Sequence[EndpointLike]
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        items = [(str(value[0]), value[1])]
    else:
        items = value
    endpoints = [parse_endpoint(item) for item in items]
    if not endpoints:
        raise ValueError("no endpoints")
    return endpoints


class Subscription:
    """The events of one subscription, as an async iterator.

    Iteration stops when the server ends the subscription normally, and raises RpcError when
    it ends with an error (e.g. SUBSCRIPTION_DROPPED) or ConnectionClosed when the connection
    is lost. Events already buffered are delivered first.
    """

    def __init__(self, sub_id: int, buffer: int) -> None:
        self.sub_id = sub_id
        self._send, self._receive = trio.open_memory_channel[Any](buffer)
        self._error: WireError | None = None
        self.ended = False

    def _deliver(self, event: Any) -> bool:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        return True

    def _end(self, error: WireError | None) -> None:
        if not self.ended:
            self.ended = True
            self._error = error
            self._send.close()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None


class _Waiter:
    """One pending call's reply slot."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self._result: Any = None
        self._error: WireError | None = None

    def resolve(self, result: Any = None, error: WireError | None = None) -> None:
        if not self.done.is_set():
            self._result, self._error = result, error
            self.done.set()

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


class _Session:
    """One live connection: routes replies to waiters and events to subscriptions."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        endpoint: Endpoint,
        limits: FrameLimits,
        next_id: Callable[[], int],
        log: Logger,
    ) -> None:
        self.conn = FrameConnection(stream, limits, outbox_frames=64)
        self.endpoint = endpoint
        self.pending: dict[int, _Waiter] = {}
        self.subs: dict[int, Subscription] = {}
        self.healthy = False  # the server sent at least one frame
        self._next_id = next_id
        self._log = log
        self._reason = "closed by server"
        self._scope = trio.CancelScope()
        #: Set by `RpcClient.switch_endpoint`: the next connection tries another endpoint.
        self.abandoned = False

    @property
    def alive(self) -> bool:
        return not self.abandoned and not self.conn.closed.is_set()

    async def run(self) -> str:
        """Serve the connection until it ends; returns why it ended."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.conn.run_writer)
                    await self._read_loop()
                    nursery.cancel_scope.cancel()
        finally:
            await self.conn.abort()
            host, port = self.endpoint
            lost = ConnectionClosed(f"connection to {host}:{port} lost: {self._reason}")
            for waiter in self.pending.values():
                waiter.resolve(error=lost)
            for sub in self.subs.values():
                sub._end(lost)
            self.pending.clear()
            self.subs.clear()
        return self._reason

    def abandon(self, reason: str) -> None:
        """End the connection from our side (`run` returns `reason`)."""
        self._reason = reason
        self.abandoned = True
        self._scope.cancel()

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.conn.receive()
            except FrameError as exc:
                self._reason = f"bad frame from server: {exc.message}"
                return
            if message is None:
                return
            self.healthy = True
            self._route(message)

    def unsubscribe_nowait(self, sub_id: int) -> None:
        """Forget a subscription and tell the server, without waiting (safe in `finally`)."""
        if self.subs.pop(sub_id, None) is not None:
            request = {
                "id": self._next_id(),
                "method": "rpc.unsubscribe",
                "params": {"sub": sub_id},
            }
            self.conn.send_nowait(request)

    def _route(self, message: dict[str, Any]) -> None:
        sub_id = message.get("sub")
        if valid_id(sub_id):
            self._route_event(sub_id, message)
            return
        rid = request_id(message)
        waiter = self.pending.pop(rid, None) if rid is not None else None
        if waiter is not None:
            if "error" in message:
                waiter.resolve(error=parse_error_object(message["error"]))
            elif "result" in message:
                waiter.resolve(message["result"])
            else:
                waiter.resolve(error=RpcError(ErrorCode.INTERNAL_ERROR, "malformed reply"))
        elif "id" not in message and "error" in message:
            error = parse_error_object(message["error"])
            self._reason = f"server error {error.code}: {error.message}"
            self._log.warning("rpc.server_error", code=error.code, reason=error.message)
        # Anything else is a reply nobody waits for any more (timed out, unsubscribe ack).

    def _route_event(self, sub_id: int, message: dict[str, Any]) -> None:
        sub = self.subs.get(sub_id)
        if sub is None:
            return  # an event already in flight when we unsubscribed
        if "event" in message:
            if not sub._deliver(message["event"]):
                self.unsubscribe_nowait(sub_id)
                sub._end(
                    RpcError(
                        ErrorCode.SUBSCRIPTION_DROPPED,
                        "consumer too slow: client-side event buffer full",
                    )
                )
            return
        del self.subs[sub_id]
        sub._end(parse_error_object(message["error"]) if "error" in message else None)


class RpcClient:
    """An async RPC client for one or several equivalent endpoints; use `async with`."""

    def __init__(
        self,
        endpoints: EndpointLike | Sequence[EndpointLike],
        *,
        node: str = "client",
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        limits: FrameLimits = DEFAULT_LIMITS,
        subscription_buffer: int = 1024,
    ) -> None:
        self.endpoints = _endpoints(endpoints)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.limits = limits
        self.subscription_buffer = subscription_buffer
        self._rng = rng or random.Random()  # own instance: never touches global `random`
        self._log = get_logger(node).bind(component="wire")
        self._ids = count(1)
        self._session: _Session | None = None
        #: Connections made so far: a change tells a caller that what it sent earlier
        #: went to a peer that may since have restarted (and forgotten it).
        self.sessions = 0
        self._failure: ConnectionClosed | None = None
        self._closed = False
        self._changed = trio.Event()
        self._stack: AsyncExitStack | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> "RpcClient":
        if self._stack is not None:
            raise RuntimeError("RpcClient is not reusable")
        self._stack = AsyncExitStack()
        await self._stack.enter_async_context(self._running())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None
        return await self._stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """Run the connection keeper for the `async with` body, then shut it down.

        An error from the body is re-raised after the nursery has closed, so callers see
        their own exception rather than an ExceptionGroup wrapping it.
        """
        caught: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._maintain)
            try:
                yield
            except Exception as exc:
                caught = exc
            finally:
                self._closed = True
                self._notify()
                nursery.cancel_scope.cancel()
        if caught is not None:
            raise caught

    async def aclose(self) -> None:
        """Close the connection (as leaving `async with` does); pending calls and
        subscriptions get ConnectionClosed."""
        if self._stack is not None and not self._closed:
            await self._stack.aclose()

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.alive

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint currently connected to, if any."""
        return self._session.endpoint if self.connected and self._session else None

    def switch_endpoint(self, reason: str) -> None:
        """Drop the current connection and connect to the next endpoint in the list.

        For a peer that still answers but has fallen behind or been cut off from the rest
        of the network, which a broken connection would not reveal. Pending calls and
        subscriptions end with ConnectionClosed, as on any lost connection.
        """
        if self._session is not None and self._session.alive:
            self._session.abandon(reason)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _connect_any(self, start: int) -> tuple[int, trio.SocketStream] | str:
        """Try every endpoint once from `start`; the index and stream, or why all failed."""
        reasons = []
        for offset in range(len(self.endpoints)):
            index = (start + offset) % len(self.endpoints)
            host, port = self.endpoints[index]
            try:
                with trio.fail_after(self.connect_timeout):
                    return index, await trio.open_tcp_stream(host, port)
            except (OSError, trio.TooSlowError) as exc:
                reasons.append(f"{host}:{port}: {exc or 'timed out'}")
        return "; ".join(reasons)

    async def _maintain(self) -> None:
        """Keep a connection up: connect, serve, and after a loss back off and reconnect."""
        attempt = 0
        index = 0
        while True:
            outcome = await self._connect_any(index)
            if isinstance(outcome, str):
                reason = f"cannot connect: {outcome}"
            else:
                index, stream = outcome
                session = _Session(
                    stream, self.endpoints[index], self.limits, self._next_id, self._log
                )
                self._session = session
                self.sessions += 1
                self._notify()
                self._log.info(
                    "rpc.connected", endpoint=f"{session.endpoint[0]}:{session.endpoint[1]}"
                )
                try:
                    reason = await session.run()
                finally:
                    self._session = None
                    self._notify()
                self._log.info("rpc.disconnected", reason=reason)
                if session.healthy:
                    attempt = 0
                if session.abandoned:
                    index = (index + 1) % len(self.endpoints)
                    continue
            if not self.reconnect:
                self._failure = ConnectionClosed(reason)
                self._notify()
                return
            await trio.sleep(self.backoff.delay(attempt, self._rng))
            attempt += 1

    def _next_id(self) -> int:
        return next(self._ids)

    async def _wait_session(self) -> _Session:
        while True:
            if self._closed:
                raise ConnectionClosed("client is closed")
            if self._session is not None and self._session.alive:
                return self._session
            if self._failure is not None:
                raise self._failure
            await self._changed.wait()

    # -- calls ------------------------------------------------------------------------------

    async def call(self, method: str, /, *, timeout: float | None = None, **params: Any) -> Any:
        """Call `method` with keyword params; its result, or RpcError, RequestTimeout,
        ConnectionClosed. `timeout` (seconds, default the client's) covers reconnecting too."""
        return await self.request(method, params, timeout=timeout)

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """`call` with the params as a mapping, for params named like `call`'s keywords."""
        limit = self.timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            session = await self._wait_session()
            waiter = await self._send_request(session, method, params)
            return waiter.result()
        raise RequestTimeout(method, limit)

    async def _send_request(
        self,
        session: _Session,
        method: str,
        params: Mapping[str, Any] | None,
        sub: Subscription | None = None,
    ) -> _Waiter:
        rid = sub.sub_id if sub is not None else self._next_id()
        message = {"id": rid, "method": method, "params": dict(params or {})}
        frame = session.conn.encode(message)  # FrameError: not sendable, nothing registered
        waiter = _Waiter()
        session.pending[rid] = waiter
        if sub is not None:
            session.subs[rid] = sub
        try:
            await session.conn.send_encoded(frame)
            await waiter.done.wait()
        finally:
            session.pending.pop(rid, None)
        return waiter

    @asynccontextmanager
    async def subscribe(
        self, method: str, /, *, timeout: float | None = None, **params: Any
    ) -> AsyncIterator[Subscription]:
        """Open a subscription; iterate the yielded `Subscription` for its events.

        `timeout` bounds only the opening. Leaving the block unsubscribes.
        """
        limit = self.timeout if timeout is None else timeout
        sub = Subscription(self._next_id(), self.subscription_buffer)
        session: _Session | None = None
        opened = False
        try:
            with trio.move_on_after(limit):
                session = await self._wait_session()
                waiter = await self._send_request(session, method, params, sub)
                try:
                    waiter.result()
                except RpcError:
                    session.subs.pop(sub.sub_id, None)  # refused: nothing to unsubscribe
                    raise
                opened = True
            if not opened:
                raise RequestTimeout(method, limit)
            yield sub
        finally:
            if session is not None:  # also after a timeout: the server may have said yes
                session.unsubscribe_nowait(sub.sub_id)
            sub._end(None)


def call_sync(host: str, port: int, method: str, /, *, timeout: float = 10.0, **params: Any) -> Any:
    """One call from synchronous code (the CLI): connect once, call, close. No retries."""

    async def once() -> Any:
        async with RpcClient(
            (host, port), reconnect=False, timeout=timeout, connect_timeout=timeout
        ) as client:
            return await client.call(method, **params)

    return trio.run(once)
