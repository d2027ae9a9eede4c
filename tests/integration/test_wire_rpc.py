"""RPC over real TCP on 127.0.0.1: hostile peers, params, concurrency, subscriptions,
reconnects and timeouts. Hostile bytes are written with raw sockets and an independent
msgpack encoder, never through the code under test."""

import random
import socket
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack
import pytest
import trio

from devnet.errors import ConnectionClosed, RequestTimeout, RpcError, TransactionError
from devnet.wire import (
    Backoff,
    ErrorCode,
    EventSink,
    RpcClient,
    RpcServer,
    ServerConfig,
    Topic,
    call_sync,
)

HOST = "127.0.0.1"
FAST_BACKOFF = Backoff(initial=0.02, maximum=0.1)


def build_server(config: ServerConfig | None = None) -> tuple[RpcServer, Topic]:
    server = RpcServer("test-rpc", config)
    topic = Topic()
    arrived: list[trio.Event] = []

    @server.method()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @server.method()
    async def echo(value: Any, delay: float = 0.0) -> Any:
        await trio.sleep(delay)
        return value

    @server.method()
    async def typed(
        blob: bytes,
        name: str,
        flag: bool,
        items: list[int],
        meta: dict[str, bytes],
        maybe: int | None = None,
        ratio: float = 1.0,
    ) -> dict[str, Any]:
        return {"blob": blob, "name": name, "flag": flag, "items": items, "meta": meta}

    @server.method()
    async def sleep(seconds: float) -> str:
        await trio.sleep(seconds)
        return "woke"

    @server.method()
    async def fail(kind: str) -> None:
        if kind == "app":
            raise RpcError(7, "insufficient funds")
        if kind == "devnet":
            raise TransactionError("bad nonce")
        raise ValueError("handler bug")

    @server.method()
    async def big(size: int) -> bytes:
        return b"\x00" * size

    @server.method()
    async def unencodable() -> Any:
        return object()

    @server.method()
    async def rendezvous(n: int) -> int:
        """Returns only once `n` calls are in progress at the same time."""
        event = trio.Event()
        arrived.append(event)
        if len(arrived) >= n:
            for waiting in arrived:
                waiting.set()
        await event.wait()
        return len(arrived)

    @server.subscription()
    async def ticks(sink: EventSink, count: int, fail_with: int | None = None) -> None:
        for i in range(count):
            sink.publish(i)
            await trio.sleep(0)
        if fail_with is not None:
            raise RpcError(fail_with, "tick source broke")

    @server.subscription()
    async def feed(sink: EventSink) -> None:
        await topic.follow(sink)

    return server, topic


@dataclass
class Served:
    server: RpcServer
    topic: Topic
    port: int


@pytest.fixture
async def served(nursery: trio.Nursery) -> Served:
    server, topic = build_server()
    port = await nursery.start(server.serve, HOST, 0)
    return Served(server, topic, port)


def frame(value: Any) -> bytes:
    payload: bytes = msgpack.packb(value, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


class RawPeer:
    """A hand-driven TCP peer that reads frames with its own minimal parser."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def open(cls, port: int) -> "RawPeer":
        return cls(await trio.open_tcp_stream(HOST, port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        with trio.fail_after(5):
            while True:
                if len(self.buffer) >= 4:
                    (length,) = struct.unpack_from(">I", self.buffer)
                    if len(self.buffer) >= 4 + length:
                        payload = bytes(self.buffer[4 : 4 + length])
                        del self.buffer[: 4 + length]
                        message: dict[str, Any] = msgpack.unpackb(payload, raw=False)
                        return message
                try:
                    chunk = await self.stream.receive_some(1 << 20)
                except trio.BrokenResourceError:  # connection reset by the server
                    chunk = b""
                if not chunk:
                    assert not self.buffer, "stream ended inside a frame"
                    return None
                self.buffer += chunk

    async def request(self, message: Any) -> dict[str, Any] | None:
        await self.send(frame(message))
        return await self.read()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def assert_serves(port: int) -> None:
    """A fresh client on a fresh connection still gets answers."""
    async with RpcClient((HOST, port), reconnect=False) as client:
        assert await client.call("add", a=40, b=2) == 42


# -- hostile frames: error frame, then the server closes the connection -------------------

HOSTILE_FRAMES = {
    "http request": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.FRAME_TOO_LARGE),
    "garbage payload": (struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1", ErrorCode.PARSE_ERROR),
    "prefix over limit": (struct.pack(">I", 4 * 1024 * 1024 + 1), ErrorCode.FRAME_TOO_LARGE),
    "empty frame": (struct.pack(">I", 0), ErrorCode.PARSE_ERROR),
    "truncated": (struct.pack(">I", 100) + frame({"id": 1})[4:], ErrorCode.PARSE_ERROR),
    "deep map": (struct.pack(">I", 301) + b"\x81\xa1a" * 100 + b"\xc0", ErrorCode.PARSE_ERROR),
    "very deep array": (struct.pack(">I", 5001) + b"\x91" * 5000 + b"\xc0", ErrorCode.PARSE_ERROR),
    "array": (frame([1, 2, 3]), ErrorCode.INVALID_REQUEST),
    "string": (frame("hello"), ErrorCode.INVALID_REQUEST),
    "integer": (frame(5), ErrorCode.INVALID_REQUEST),
    "ext type": (struct.pack(">I", 6) + b"\x81\xa1a\xd4\x05\x00", ErrorCode.PARSE_ERROR),
    "int map key": (struct.pack(">I", 3) + b"\x81\x01\x02", ErrorCode.PARSE_ERROR),
    "bad utf-8": (struct.pack(">I", 5) + b"\x81\xa2\xff\xfe\x01", ErrorCode.PARSE_ERROR),
}


@pytest.mark.parametrize("case", list(HOSTILE_FRAMES))
async def test_hostile_frame_gets_error_frame_and_close(served: Served, case: str) -> None:
    data, code = HOSTILE_FRAMES[case]
    peer = await RawPeer.open(served.port)
    await peer.send(data)
    await peer.stream.send_eof()  # half-close: we can still read the verdict
    reply = await peer.read()
    assert reply is not None and set(reply) == {"error"}
    assert reply["error"]["code"] == code
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    assert await peer.read() is None  # then the server closed the connection
    await peer.aclose()
    await assert_serves(served.port)


async def test_valid_requests_before_a_bad_frame_are_answered(served: Served) -> None:
    peer = await RawPeer.open(served.port)
    assert await peer.request({"id": 1, "method": "add", "params": {"a": 1}}) == {
        "id": 1,
        "result": 1,
    }
    reply = await peer.request([1])
    assert reply is not None and reply["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert await peer.read() is None
    await peer.aclose()


async def test_peer_vanishing_mid_frame_does_not_hurt_server(served: Served) -> None:
    peer = await RawPeer.open(served.port)
    await peer.send(struct.pack(">I", 1000) + b"\x81")
    await peer.aclose()  # full close: the error frame has nowhere to go
    await assert_serves(served.port)


async def test_stalled_frame_times_out(nursery: trio.Nursery) -> None:
    server, _ = build_server(ServerConfig(frame_timeout=0.2))
    port = await nursery.start(server.serve, HOST, 0)
    peer = await RawPeer.open(port)
    await peer.send(struct.pack(">I", 50) + b"\x81")
    reply = await peer.read()
    assert reply is not None and "incomplete" in reply["error"]["message"]
    assert await peer.read() is None
    await peer.aclose()
    await assert_serves(port)


# -- bad envelopes and params: an error reply, and the connection stays open --------------

BAD_ENVELOPES = {
    "id is a string": ({"id": "1", "method": "add", "params": {}}, None),
    "id is negative": ({"id": -1, "method": "add", "params": {}}, None),
    "id is a bool": ({"id": True, "method": "add", "params": {}}, None),
    "id is missing": ({"method": "add", "params": {}}, None),
    "method is an int": ({"id": 3, "method": 5, "params": {}}, 3),
    "method is empty": ({"id": 3, "method": "", "params": {}}, 3),
    "params is a list": ({"id": 3, "method": "add", "params": [1, 2]}, 3),
    "unknown key": ({"id": 3, "method": "add", "params": {}, "jsonrpc": "2.0"}, 3),
    "a reply sent to the server": ({"id": 3, "result": 1}, 3),
}


@pytest.mark.parametrize("case", list(BAD_ENVELOPES))
async def test_bad_envelope_gets_error_reply(served: Served, case: str) -> None:
    message, answered_id = BAD_ENVELOPES[case]
    peer = await RawPeer.open(served.port)
    reply = await peer.request(message)
    assert reply is not None
    assert reply.get("id") == answered_id
    assert ("id" in reply) == (answered_id is not None)
    assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST
    # The same connection keeps working.
    assert await peer.request({"id": 9, "method": "add", "params": {"a": 2}}) == {
        "id": 9,
        "result": 2,
    }
    await peer.aclose()


GOOD_TYPED: dict[str, Any] = {
    "blob": b"\x00\x01",
    "name": "n",
    "flag": True,
    "items": [1, 2],
    "meta": {"k": b"v"},
}

BAD_PARAMS = {
    "unknown method": ("nope", {}, ErrorCode.METHOD_NOT_FOUND, "nope"),
    "missing": ("add", {"b": 1}, ErrorCode.INVALID_PARAMS, "missing param 'a'"),
    "extra": ("add", {"a": 1, "c": 2}, ErrorCode.INVALID_PARAMS, "unknown param 'c'"),
    "str for int": (
        "add",
        {"a": "1"},
        ErrorCode.INVALID_PARAMS,
        "param 'a': expected int, got str",
    ),
    "bool for int": ("add", {"a": True}, ErrorCode.INVALID_PARAMS, "param 'a': expected int"),
    "float for int": ("add", {"a": 1.5}, ErrorCode.INVALID_PARAMS, "param 'a'"),
    "str for bytes": (
        "typed",
        {**GOOD_TYPED, "blob": "00"},
        ErrorCode.INVALID_PARAMS,
        "param 'blob': expected bytes, got str",
    ),
    "int for bool": ("typed", {**GOOD_TYPED, "flag": 1}, ErrorCode.INVALID_PARAMS, "'flag'"),
    "list element": (
        "typed",
        {**GOOD_TYPED, "items": [1, "2"]},
        ErrorCode.INVALID_PARAMS,
        "param 'items[1]': expected int, got str",
    ),
    "dict value": (
        "typed",
        {**GOOD_TYPED, "meta": {"k": 1}},
        ErrorCode.INVALID_PARAMS,
        "param 'meta['k']': expected bytes, got int",
    ),
    "optional": (
        "typed",
        {**GOOD_TYPED, "maybe": "x"},
        ErrorCode.INVALID_PARAMS,
        "param 'maybe': expected int, got str",
    ),
    "bytes param name": ("add", {b"a": 1}, ErrorCode.INVALID_PARAMS, "not a string"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
async def test_bad_params_name_the_field(served: Served, case: str) -> None:
    method, params, code, text = BAD_PARAMS[case]
    peer = await RawPeer.open(served.port)
    reply = await peer.request({"id": 5, "method": method, "params": params})
    assert reply is not None and reply["id"] == 5
    assert reply["error"]["code"] == code
    assert text in reply["error"]["message"]
    assert await peer.request({"id": 6, "method": "rpc.ping"}) == {"id": 6, "result": "pong"}
    await peer.aclose()


async def test_typed_params_accept_optional_float_and_none(served: Served) -> None:
    async with RpcClient((HOST, served.port)) as client:
        result = await client.call("typed", **GOOD_TYPED, maybe=None, ratio=2)
        assert result == GOOD_TYPED
        assert await client.call("echo", value={"b": b"\xff", "l": [None, 1.5, -(1 << 63)]}) == {
            "b": b"\xff",
            "l": [None, 1.5, -(1 << 63)],
        }


def test_registration_rejects_unsupported_signatures() -> None:
    server = RpcServer("test-rpc")

    async def untyped(a) -> None:
        pass

    async def star(*args: int) -> None:
        pass

    async def odd(a: set[int]) -> None:
        pass

    for fn in (untyped, star, odd):
        with pytest.raises(TypeError):
            server.add_method("m", fn)
    with pytest.raises(ValueError):
        server.add_method("rpc.mine", odd)


# -- handler failures -------------------------------------------------------------------


async def test_handler_failures_become_error_replies(served: Served) -> None:
    async with RpcClient((HOST, served.port)) as client:
        expected = {
            "app": (7, "insufficient funds"),
            "devnet": (ErrorCode.REJECTED, "bad nonce"),
            "bug": (ErrorCode.INTERNAL_ERROR, "internal error"),
        }
        for kind, (code, message) in expected.items():
            with pytest.raises(RpcError) as caught:
                await client.call("fail", kind=kind)
            assert (caught.value.code, caught.value.message) == (code, message)
        with pytest.raises(RpcError) as caught:
            await client.call("big", size=5 * 1024 * 1024)
        assert caught.value.code == ErrorCode.REPLY_TOO_LARGE
        with pytest.raises(RpcError) as caught:
            await client.call("unencodable")
        assert caught.value.code == ErrorCode.INTERNAL_ERROR
        assert len(await client.call("big", size=1024 * 1024)) == 1024 * 1024
        assert await client.call("rpc.methods") == {
            "methods": sorted(
                ["add", "big", "echo", "fail", "rendezvous", "sleep", "typed", "unencodable"]
            ),
            "subscriptions": ["feed", "ticks"],
        }


# -- concurrency, limits ------------------------------------------------------------------


async def test_many_parallel_calls_on_one_connection(served: Served) -> None:
    rng = random.Random(3)
    results: dict[int, Any] = {}
    async with RpcClient((HOST, served.port)) as client:

        async def one(i: int) -> None:
            results[i] = await client.call("echo", value=[i, b"%d" % i], delay=rng.random() / 50)

        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(one, i)
            # Handled concurrently: 20 calls that each wait for all 20 to have arrived.
            for _ in range(20):
                nursery.start_soon(partial(client.call, "rendezvous", n=20))
        assert served.server.connections == 1
    assert results == {i: [i, b"%d" % i] for i in range(300)}


async def test_rate_limit(nursery: trio.Nursery) -> None:
    server, _ = build_server(ServerConfig(rate_limit=0.5, rate_burst=3))
    port = await nursery.start(server.serve, HOST, 0)
    async with RpcClient((HOST, port)) as client:
        outcomes = []
        for _ in range(6):
            try:
                outcomes.append(await client.call("add", a=1))
            except RpcError as exc:
                outcomes.append(exc.code)
    assert outcomes == [1, 1, 1] + [ErrorCode.RATE_LIMITED] * 3


async def test_connection_limit(nursery: trio.Nursery) -> None:
    server, _ = build_server(ServerConfig(max_connections=1))
    port = await nursery.start(server.serve, HOST, 0)
    async with RpcClient((HOST, port)) as client:
        assert await client.call("add", a=1) == 1
        peer = await RawPeer.open(port)
        reply = await peer.read()
        assert reply is not None and reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
        assert await peer.read() is None
        await peer.aclose()
        assert await client.call("add", a=2) == 2


# -- subscriptions --------------------------------------------------------------------------


async def test_subscription_streams_then_ends(served: Served) -> None:
    async with RpcClient((HOST, served.port)) as client:
        async with client.subscribe("ticks", count=50) as events:
            assert [event async for event in events] == list(range(50))
        async with client.subscribe("ticks", count=3, fail_with=11) as events:
            received = []
            with pytest.raises(RpcError) as caught:
                async for event in events:
                    received.append(event)
        assert received == [0, 1, 2] and caught.value.code == 11
        with pytest.raises(RpcError) as caught:
            async with client.subscribe("ticks", count="many"):
                pass
        assert caught.value.code == ErrorCode.INVALID_PARAMS


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def test_unsubscribe_detaches_and_connection_stays_usable(served: Served) -> None:
    async with RpcClient((HOST, served.port)) as client:
        async with client.subscribe("feed") as events:
            await wait_until(lambda: len(served.topic) == 1)
            served.topic.publish("first")
            assert await events.__anext__() == "first"
        await wait_until(lambda: len(served.topic) == 0)
        assert await client.call("add", a=5) == 5


async def test_raw_unsubscribe_and_subscription_limit(nursery: trio.Nursery) -> None:
    server, topic = build_server(ServerConfig(max_subscriptions=1))
    port = await nursery.start(server.serve, HOST, 0)
    peer = await RawPeer.open(port)
    assert await peer.request({"id": 1, "method": "feed"}) == {"id": 1, "result": {"sub": 1}}
    reply = await peer.request({"id": 2, "method": "feed"})
    assert reply is not None and reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    topic.publish({"n": 1})
    assert await peer.read() == {"sub": 1, "event": {"n": 1}}
    unsubscribe = {"id": 3, "method": "rpc.unsubscribe", "params": {"sub": 1}}
    assert await peer.request(unsubscribe) == {"id": 3, "result": True}
    assert await peer.request({**unsubscribe, "id": 4}) == {"id": 4, "result": False}
    assert len(topic) == 0
    await peer.aclose()


async def test_slow_subscriber_is_dropped_while_fast_one_keeps_up(nursery: trio.Nursery) -> None:
    server, topic = build_server(ServerConfig(subscriber_queue=8, outbox_frames=2))
    port = await nursery.start(server.serve, HOST, 0)
    pad = b"\xaa" * (256 * 1024)

    slow = await RawPeer.open(port)  # subscribes, then never reads
    assert await slow.request({"id": 1, "method": "feed"}) == {"id": 1, "result": {"sub": 1}}

    async with RpcClient((HOST, port)) as client, client.subscribe("feed") as events:
        await wait_until(lambda: len(topic) == 2)
        fast: list[int] = []
        published = 0

        async def consume() -> None:
            async for event in events:
                fast.append(event["n"])

        nursery.start_soon(consume)
        # Publish while the fast subscriber keeps up (at most 2 behind); the slow one's
        # socket buffers fill, then its queue, then it is dropped: publish never waits.
        with trio.fail_after(15):
            while len(topic) == 2 or published < 5:
                assert published < 400, "slow subscriber never dropped"
                topic.publish({"n": published, "pad": pad})
                published += 1
                await wait_until(lambda n=published: len(fast) >= n - 2)
        await wait_until(lambda: len(fast) == published)
        assert fast == list(range(published))

    events_seen = 0
    while True:
        message = await slow.read()
        assert message is not None, "no drop notice before end of stream"
        assert message["sub"] == 1
        if "error" in message:
            break
        assert message["event"]["n"] == events_seen
        events_seen += 1
    assert message["error"]["code"] == ErrorCode.SUBSCRIPTION_DROPPED
    assert "too slow" in message["error"]["message"]
    assert events_seen < published
    print(f"slow subscriber dropped after {events_seen} of {published} events")
    # The slow peer's connection survives its dropped subscription.
    assert await slow.request({"id": 2, "method": "rpc.ping"}) == {"id": 2, "result": "pong"}
    await slow.aclose()


async def test_client_drops_a_consumer_that_does_not_read(served: Served) -> None:
    async with RpcClient((HOST, served.port), subscription_buffer=4) as client:
        async with client.subscribe("feed") as events:
            await wait_until(lambda: len(served.topic) == 1)
            for i in range(10):
                served.topic.publish(i)
            await wait_until(lambda: len(served.topic) == 0)  # the client unsubscribed
            received = []
            with pytest.raises(RpcError) as caught:
                async for event in events:
                    received.append(event)
        assert received == [0, 1, 2, 3]
        assert caught.value.code == ErrorCode.SUBSCRIPTION_DROPPED
        assert await client.call("add", a=1) == 1


# -- client: timeouts, reconnects, endpoints ------------------------------------------------


async def test_request_timeout_leaves_connection_usable(served: Served) -> None:
    async with RpcClient((HOST, served.port)) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeout):
            await client.call("sleep", seconds=30, timeout=0.2)
        assert trio.current_time() - start < 2
        assert await client.call("add", a=1, timeout=2) == 1


async def run_server(
    server: RpcServer, port: int, scope: trio.CancelScope, *, task_status: Any
) -> None:
    with scope:
        await server.serve(HOST, port, task_status=task_status)


async def test_client_reconnects_after_server_restart(nursery: trio.Nursery) -> None:
    server, _ = build_server()
    first = trio.CancelScope()
    port = await nursery.start(run_server, server, 0, first)
    async with RpcClient((HOST, port), backoff=FAST_BACKOFF, rng=random.Random(5)) as client:
        assert await client.call("add", a=1) == 1
        async with trio.open_nursery() as inner:
            pending: list[BaseException] = []

            async def doomed() -> None:
                try:
                    await client.call("sleep", seconds=30)
                except ConnectionClosed as exc:
                    pending.append(exc)

            inner.start_soon(doomed)
            await wait_until(lambda: client.connected)
            await trio.sleep(0.05)
            first.cancel()  # the server goes away with a call in flight
        assert len(pending) == 1  # an in-flight call fails, it is not silently re-sent
        await wait_until(lambda: not client.connected)

        async def restart() -> None:
            await trio.sleep(0.3)
            await nursery.start(run_server, server, port, trio.CancelScope())

        nursery.start_soon(restart)
        # A call made while the server is down waits for the reconnection.
        assert await client.call("add", a=2, timeout=5) == 2
        assert client.endpoint == (HOST, port)


def free_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


async def test_client_tries_every_endpoint(served: Served) -> None:
    dead = free_port()
    endpoints: list[str | tuple[str, int]] = [f"{HOST}:{dead}", (HOST, served.port)]
    async with RpcClient(endpoints, backoff=FAST_BACKOFF, rng=random.Random(1)) as client:
        assert await client.call("add", a=3) == 3
        assert client.endpoint == (HOST, served.port)


async def test_unreachable_server() -> None:
    port = free_port()
    async with RpcClient((HOST, port), backoff=FAST_BACKOFF, rng=random.Random(2)) as client:
        with pytest.raises(RequestTimeout):
            await client.call("add", a=1, timeout=0.3)
    async with RpcClient((HOST, port), reconnect=False) as client:
        with pytest.raises(ConnectionClosed, match="cannot connect"):
            await client.call("add", a=1)


async def test_call_sync_for_the_cli(served: Served) -> None:
    result = await trio.to_thread.run_sync(
        lambda: call_sync(HOST, served.port, "echo", value=b"\x01", timeout=5)
    )
    assert result == b"\x01"
    with pytest.raises(RpcError):
        await trio.to_thread.run_sync(lambda: call_sync(HOST, served.port, "add", a="x"))
    with pytest.raises(ConnectionClosed):
        await trio.to_thread.run_sync(lambda: call_sync(HOST, free_port(), "rpc.ping"))


async def test_client_exception_is_not_wrapped(served: Served) -> None:
    with pytest.raises(KeyError):
        async with RpcClient((HOST, served.port)) as client:
            await client.call("rpc.ping")
            raise KeyError("mine")


async def test_switch_endpoint_moves_to_the_next_one(nursery: trio.Nursery) -> None:
    ports = []
    for _ in range(2):
        server, _topic = build_server()
        ports.append(await nursery.start(server.serve, HOST, 0))
    async with RpcClient([(HOST, p) for p in ports], backoff=FAST_BACKOFF) as client:
        assert await client.call("add", a=1) == 1
        assert client.endpoint == (HOST, ports[0])
        async with client.subscribe("feed") as events:
            client.switch_endpoint("falls behind")
            with pytest.raises(ConnectionClosed, match="falls behind"):
                await anext(events)
        assert await client.call("add", a=2) == 2
        assert client.endpoint == (HOST, ports[1])
        client.switch_endpoint("and back")
        assert await client.call("add", a=3) == 3
        assert client.endpoint == (HOST, ports[0])


def blocks_from(topic: Topic) -> Any:
    async def subscribe_blocks(sink: EventSink, from_layer: int) -> None:
        await topic.follow(sink)

    return subscribe_blocks


async def test_a_silent_block_stream_moves_the_follower_on(nursery: trio.Nursery) -> None:
    """A follower whose smesher answers but certifies nothing (cut off from its peers)
    moves to the next smesher after `stall` seconds and goes on from where it was."""
    from devnet.certified_block import follow_certified_blocks
    from devnet.log import get_logger

    topics, ports = [], []
    for _ in range(2):
        server = RpcServer("test-smesher")
        topic = Topic()
        server.add_subscription("subscribe_blocks", blocks_from(topic))
        topics.append(topic)
        ports.append(await nursery.start(server.serve, HOST, 0))
    seen: list[tuple[int, int]] = []
    async with RpcClient([(HOST, p) for p in ports], backoff=FAST_BACKOFF) as client:

        async def handle(event: dict[str, Any]) -> bool:
            assert client.endpoint is not None
            seen.append((event["layer"], ports.index(client.endpoint[1])))
            return True

        nursery.start_soon(
            follow_certified_blocks, client, lambda: len(seen), handle, get_logger("t"), 0.5
        )
        with trio.fail_after(5):
            while not len(topics[0]):
                await trio.sleep(0.01)
        topics[0].publish({"layer": 0})
        while len(seen) < 1:
            await trio.sleep(0.01)
        # the first smesher goes silent; the second one has subscribers within the stall
        while not len(topics[1]):
            await trio.sleep(0.01)
        topics[1].publish({"layer": 1})
        while len(seen) < 2:
            await trio.sleep(0.01)
    assert seen == [(0, 0), (1, 1)]
