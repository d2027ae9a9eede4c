"""`RpcServer`: a method registry served over framed TCP, one task tree per connection.

    server = RpcServer("relay-0")

    @server.method("get_nonce")
    async def get_nonce(principal: bytes) -> int: ...

    @server.subscription("blocks")
    async def blocks(sink: EventSink) -> None:
        await block_topic.follow(sink)

    port = await nursery.start(server.serve, "127.0.0.1", 0)

Each connection has a reader (this module), a writer (`FrameConnection`), and a task per
in-flight request, so a slow handler never delays the others on the same connection. What
a peer can make the server hold is bounded: one frame at a time being read, `max_inflight`
requests, `max_subscriptions` queues of `subscriber_queue` events, an outbox of
`outbox_frames`. A frame that breaks the framing gets an error frame and the connection is
closed; a bad envelope or bad params get an error reply and the connection stays open.
When the peer closes, its in-flight handlers and subscriptions are cancelled: there is no
one left to read their replies.
Handler failures never escape the connection: an `RpcError` is sent as is, another
`DevnetError` (bad input per the shared code) as REJECTED, anything else is logged and
answered with a generic INTERNAL_ERROR.

Built-in methods: `rpc.ping` → "pong", `rpc.methods` → {methods, subscriptions},
`rpc.unsubscribe(sub)` → bool (whether it was active; no final event is sent for it).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
import trio

from devnet.errors import ConnectionClosed, DevnetError, FrameError, RpcError, WireError
from devnet.log import get_logger
from devnet.wire.codes import ErrorCode
from devnet.wire.connection import FrameConnection
from devnet.wire.envelope import (
    MAX_METHOD_LEN,
    Request,
    error_object,
    error_reply,
    parse_request,
    reply,
    request_id,
)
from devnet.wire.frame import DEFAULT_LIMITS, FrameLimits, encode_frame
from devnet.wire.params import ParamSchema
from devnet.wire.ratelimit import TokenBucket
from devnet.wire.subscription import EventSink

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)
Logger = structlog.typing.FilteringBoundLogger


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Per-server limits. Defaults suit a devnet node; tests shrink them to provoke limits."""

    limits: FrameLimits = DEFAULT_LIMITS
    max_connections: int = 256
    max_inflight: int = 64  # concurrent requests per connection; the reader waits beyond
    max_subscriptions: int = 64  # per connection
    subscriber_queue: int = 256  # events queued per subscriber before it is dropped
    outbox_frames: int = 16  # encoded frames queued per connection for the writer
    write_timeout: float = 30.0  # a peer that reads nothing this long is disconnected
    frame_timeout: float = 30.0  # a started frame must be complete within this
    rate_limit: float | None = None  # requests per second per connection; None = off
    rate_burst: int | None = None  # bucket size; defaults to max(1, rate_limit)

    def __post_init__(self) -> None:
        counts = (
            self.max_connections,
            self.max_inflight,
            self.max_subscriptions,
            self.subscriber_queue,
            self.outbox_frames,
        )
        if min(counts) < 1 or min(self.write_timeout, self.frame_timeout) <= 0:
            raise ValueError("server limits and timeouts must be positive")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be positive (or None for no limit)")


@dataclass(frozen=True, slots=True)
class _Entry:
    fn: Handler
    schema: ParamSchema
    subscription: bool


@dataclass(slots=True)
class _ActiveSub:
    sink: EventSink
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass(slots=True)
class _Peer:
    conn: FrameConnection
    log: Logger
    inflight: trio.Semaphore
    bucket: TokenBucket | None
    subs: dict[int, _ActiveSub] = field(default_factory=dict)


async def _unsubscribe_params(sub: int) -> None:
    """Schema source for the built-in `rpc.unsubscribe`."""


_UNSUBSCRIBE_SCHEMA = ParamSchema.from_function(_unsubscribe_params)
_BUILTINS = ("rpc.ping", "rpc.methods", "rpc.unsubscribe")


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


class RpcServer:
    """A registry of RPC methods and subscriptions, and the TCP server that runs them."""

    def __init__(self, node: str = "rpc", config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.log = get_logger(node).bind(component="wire")
        self._entries: dict[str, _Entry] = {}
        self.connections = 0  # open connections, for metrics and tests

    # -- registry ---------------------------------------------------------------------------

    def _register(self, name: str, fn: Handler, *, subscription: bool) -> None:
        if not 0 < len(name) <= MAX_METHOD_LEN or name.startswith("rpc."):
            raise ValueError(f"bad method name {name!r} (1..{MAX_METHOD_LEN} chars, not rpc.*)")
        if name in self._entries:
            raise ValueError(f"method {name!r} is already registered")
        schema = ParamSchema.from_function(fn, skip=1 if subscription else 0)
        self._entries[name] = _Entry(fn, schema, subscription)

    def add_method(self, name: str, fn: Handler) -> None:
        """Register `async fn(**params) -> result`; its annotations are the param schema."""
        self._register(name, fn, subscription=False)

    def add_subscription(self, name: str, fn: Handler) -> None:
        """Register `async fn(sink: EventSink, **params) -> None` that streams to `sink`."""
        self._register(name, fn, subscription=True)

    def method(self, name: str | None = None) -> Callable[[H], H]:
        """Decorator form of `add_method`; the name defaults to the function's."""

        def decorate(fn: H) -> H:
            self.add_method(name or fn.__name__, fn)
            return fn

        return decorate

    def subscription(self, name: str | None = None) -> Callable[[H], H]:
        """Decorator form of `add_subscription`."""

        def decorate(fn: H) -> H:
            self.add_subscription(name or fn.__name__, fn)
            return fn

        return decorate

    @property
    def method_names(self) -> list[str]:
        return sorted(name for name, entry in self._entries.items() if not entry.subscription)

    @property
    def subscription_names(self) -> list[str]:
        return sorted(name for name, entry in self._entries.items() if entry.subscription)

    # -- serving ----------------------------------------------------------------------------

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on host:port (0 = any free port), report the bound port, serve until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        try:
            bound: int = listeners[0].socket.getsockname()[1]
            self.log.info("rpc.listening", host=host, port=bound)
            task_status.started(bound)
            await trio.serve_listeners(self._handle_stream, listeners)
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
                self.log.info("rpc.stopped", host=host)

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        config = self.config
        log = self.log.bind(peer=_peer_name(stream))
        if self.connections >= config.max_connections:
            log.warning("rpc.connection_refused", reason="too many connections")
            refusal = error_reply(None, ErrorCode.LIMIT_EXCEEDED, "too many connections")
            with trio.move_on_after(1.0):
                try:
                    await stream.send_all(encode_frame(refusal, config.limits))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            return
        conn = FrameConnection(
            stream,
            config.limits,
            outbox_frames=config.outbox_frames,
            write_timeout=config.write_timeout,
            frame_timeout=config.frame_timeout,
        )
        bucket = None
        if config.rate_limit is not None:
            burst = config.rate_burst or max(1, int(config.rate_limit))
            bucket = TokenBucket(config.rate_limit, burst)
        peer = _Peer(conn, log, trio.Semaphore(config.max_inflight), bucket)
        self.connections += 1
        log.debug("rpc.connection_opened")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run_writer)
                await self._serve_peer(peer)
                conn.finish()  # the writer sends what is queued, then closes
        finally:
            self.connections -= 1
            for active in peer.subs.values():
                active.sink.finish()
            await conn.abort()
            log.debug("rpc.connection_closed", reason=conn.close_reason)

    async def _serve_peer(self, peer: _Peer) -> None:
        async with trio.open_nursery() as work:
            fatal = await self._read_loop(peer, work)
            # End of stream or a broken frame: nobody is left to read replies, and a
            # long-running handler must not keep the connection's resources alive.
            work.cancel_scope.cancel()
        if fatal is not None:
            peer.log.info("rpc.bad_frame", code=fatal.code, reason=fatal.message)
            with trio.move_on_after(self.config.write_timeout):
                await self._send(peer, error_reply(None, fatal.code, fatal.message))

    async def _send(self, peer: _Peer, message: dict[str, Any]) -> bool:
        try:
            await peer.conn.send(message)
        except ConnectionClosed:
            return False
        return True

    async def _read_loop(self, peer: _Peer, work: trio.Nursery) -> FrameError | None:
        """Read and dispatch until end of stream (None) or a frame error (returned)."""
        while True:
            try:
                message = await peer.conn.receive()
            except FrameError as exc:
                return exc
            if message is None:
                return None
            try:
                request = parse_request(message)
            except RpcError as exc:
                if not await self._send(
                    peer, error_reply(request_id(message), exc.code, exc.message)
                ):
                    return None
                continue
            if peer.bucket is not None and not peer.bucket.take():
                limited = error_reply(request.id, ErrorCode.RATE_LIMITED, "rate limit exceeded")
                if not await self._send(peer, limited):
                    return None
                continue
            if not await self._dispatch(peer, work, request):
                return None

    async def _dispatch(self, peer: _Peer, work: trio.Nursery, request: Request) -> bool:
        """Start handling one request; False once the connection is gone."""
        try:
            if request.method in _BUILTINS:
                return await self._send(peer, reply(request.id, self._builtin(peer, request)))
            entry = self._entries.get(request.method)
            if entry is None:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"no method {request.method!r}")
            kwargs = entry.schema.bind(request.params)
            if entry.subscription:
                if request.id in peer.subs:
                    raise RpcError(ErrorCode.INVALID_REQUEST, "id is an active subscription")
                if len(peer.subs) >= self.config.max_subscriptions:
                    raise RpcError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions")
                active = _ActiveSub(EventSink(request.id, self.config.subscriber_queue))
                peer.subs[request.id] = active
                work.start_soon(self._run_subscription, peer, request, active, entry.fn, kwargs)
            else:
                await peer.inflight.acquire()
                work.start_soon(self._run_request, peer, request, entry.fn, kwargs)
        except RpcError as exc:
            return await self._send(peer, error_reply(request.id, exc.code, exc.message))
        return True

    def _builtin(self, peer: _Peer, request: Request) -> Any:
        if request.method == "rpc.unsubscribe":
            sub = _UNSUBSCRIBE_SCHEMA.bind(request.params)["sub"]
            active = peer.subs.pop(sub, None)
            if active is None:
                return False
            active.scope.cancel()
            active.sink.finish()
            return True
        ParamSchema(()).bind(request.params)
        if request.method == "rpc.ping":
            return "pong"
        return {"methods": self.method_names, "subscriptions": self.subscription_names}

    def _failure(self, peer: _Peer, method: str, exc: Exception) -> tuple[int, str]:
        """The error to report for a handler exception (logging the unexpected ones)."""
        if isinstance(exc, RpcError):
            return exc.code, exc.message
        if isinstance(exc, DevnetError) and not isinstance(exc, WireError):
            return ErrorCode.REJECTED, str(exc)
        peer.log.error("rpc.handler_failed", method=method, exc_info=exc)
        return ErrorCode.INTERNAL_ERROR, "internal error"

    async def _run_request(
        self, peer: _Peer, request: Request, fn: Handler, kwargs: dict[str, Any]
    ) -> None:
        try:
            try:
                result = await fn(**kwargs)
            except Exception as exc:
                frame = peer.conn.encode(
                    error_reply(request.id, *self._failure(peer, request.method, exc))
                )
            else:
                try:
                    frame = peer.conn.encode(reply(request.id, result))
                except FrameError as exc:
                    peer.log.error("rpc.bad_result", method=request.method, reason=exc.message)
                    code = (
                        ErrorCode.REPLY_TOO_LARGE
                        if exc.code == ErrorCode.FRAME_TOO_LARGE
                        else ErrorCode.INTERNAL_ERROR
                    )
                    frame = peer.conn.encode(error_reply(request.id, code, exc.message))
            await peer.conn.send_encoded(frame)
        except ConnectionClosed:
            pass
        finally:
            peer.inflight.release()

    async def _run_subscription(
        self,
        peer: _Peer,
        request: Request,
        active: _ActiveSub,
        fn: Handler,
        kwargs: dict[str, Any],
    ) -> None:
        sink = active.sink
        try:
            with active.scope:
                await peer.conn.send(reply(sink.sub_id, {"sub": sink.sub_id}))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, peer, sink)
                    with sink.handler_scope:
                        try:
                            await fn(sink, **kwargs)
                        except Exception as exc:
                            sink.fail(*self._failure(peer, request.method, exc), discard=False)
                        else:
                            sink.finish()
        except ConnectionClosed:
            pass
        finally:
            if peer.subs.get(sink.sub_id) is active:
                del peer.subs[sink.sub_id]
            sink.finish()

    async def _pump(self, peer: _Peer, sink: EventSink) -> None:
        """Move a subscriber's queued events to the connection, then its final frame."""
        async for event in sink.receive:
            if sink.discard:
                break
            try:
                frame = peer.conn.encode({"sub": sink.sub_id, "event": event})
            except FrameError as exc:
                peer.log.error("rpc.bad_event", sub=sink.sub_id, reason=exc.message)
                sink.fail(ErrorCode.INTERNAL_ERROR, f"event not sendable: {exc.message}")
                break
            await peer.conn.send_encoded(frame)
        if sink.error is None:
            await peer.conn.send({"sub": sink.sub_id, "end": True})
            return
        if sink.error[0] == ErrorCode.SUBSCRIPTION_DROPPED:
            peer.log.warning("rpc.subscriber_dropped", sub=sink.sub_id, reason=sink.error[1])
        await peer.conn.send({"sub": sink.sub_id, "error": error_object(*sink.error)})
