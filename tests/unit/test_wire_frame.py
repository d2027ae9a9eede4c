"""Wire framing: msgpack round trips, decoder limits, the frame reader, small helpers."""

import random
import struct
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from devnet.errors import FrameError
from devnet.wire import Backoff, ErrorCode, FrameLimits, FrameReader, parse_endpoint
from devnet.wire.frame import HEADER, decode_payload, encode_frame, encode_payload
from devnet.wire.ratelimit import TokenBucket

# Every msgpack type the devnet sends: nil, bool, 64-bit ints, float64, str, bin, array, map.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=80)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=10) | st.binary(max_size=10), children, max_size=6)
    ),
    max_leaves=40,
)
messages = st.dictionaries(st.text(max_size=10), values, max_size=5)


def payload_of(value: Any) -> bytes:
    """Bytes from an independent encoder, as a hostile or foreign peer would send them."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def nested_maps(depth: int) -> bytes:
    """`depth` maps nested as {"a": {"a": ... nil}}, hand-assembled."""
    return b"\x81\xa1a" * depth + b"\xc0"


@settings(max_examples=60)
@given(messages)
def test_round_trip_preserves_every_type(message: dict[str, Any]) -> None:
    frame = encode_frame(message)
    (length,) = HEADER.unpack_from(frame)
    assert length == len(frame) - HEADER.size
    assert decode_payload(frame[HEADER.size :]) == message
    assert msgpack.unpackb(frame[HEADER.size :], raw=False) == message  # plain msgpack


def test_bytes_travel_as_bin_and_text_as_str() -> None:
    payload = encode_payload({"b": b"\x00\xff", "s": "é"})
    assert b"\xc4\x02\x00\xff" in payload  # bin 8, length 2
    assert b"\xa2\xc3\xa9" in payload  # fixstr, UTF-8
    assert decode_payload(payload) == {"b": b"\x00\xff", "s": "é"}


def test_tuples_and_bytearrays_decode_as_lists_and_bytes() -> None:
    assert decode_payload(encode_payload({"t": (1, 2), "b": bytearray(b"x")})) == {
        "t": [1, 2],
        "b": b"x",
    }


def test_bytes_map_keys_round_trip() -> None:
    assert decode_payload(encode_payload({"m": {b"\x01": 1}})) == {"m": {b"\x01": 1}}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", ErrorCode.PARSE_ERROR),
        (b"\xc1", ErrorCode.PARSE_ERROR),  # the one never-used msgpack byte
        (b"\x82\xa1a\x01", ErrorCode.PARSE_ERROR),  # truncated map
        (payload_of({"a": 1}) + b"\x00", ErrorCode.PARSE_ERROR),  # trailing bytes
        (b"\x81\xa2\xff\xfe\x01", ErrorCode.PARSE_ERROR),  # str key that is not UTF-8
        (b"\x81\x01\x02", ErrorCode.PARSE_ERROR),  # int map key
        (b"\x81\xa1a\xd4\x05\x00", ErrorCode.PARSE_ERROR),  # ext type 5
        (payload_of({"t": msgpack.Timestamp(1, 0)}), ErrorCode.PARSE_ERROR),
        (nested_maps(33), ErrorCode.PARSE_ERROR),
        (b"\x91" * 5000 + b"\xc0", ErrorCode.PARSE_ERROR),  # beyond msgpack's own stack
        (payload_of([1, 2]), ErrorCode.INVALID_REQUEST),
        (payload_of("map?"), ErrorCode.INVALID_REQUEST),
        (payload_of(7), ErrorCode.INVALID_REQUEST),
        (payload_of(None), ErrorCode.INVALID_REQUEST),
    ],
)
def test_decoder_rejects_hostile_payloads(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(FrameError) as caught:
        decode_payload(payload)
    assert caught.value.code == code


def test_depth_bound_is_inclusive() -> None:
    assert decode_payload(nested_maps(32))
    with pytest.raises(FrameError, match="nesting deeper than 32"):
        decode_payload(nested_maps(33))


def test_explicit_length_and_count_limits() -> None:
    small = FrameLimits(max_frame=64, max_array_len=4, max_map_len=2, max_containers=5)
    assert decode_payload(payload_of({"a": [1, 2, 3, 4]}), small)
    too_big: list[dict[str, Any]] = [
        {"a": [1, 2, 3, 4, 5]},  # array too long
        {"a": 1, "b": 2, "c": 3},  # map too long
        {"a": [[], [], [], [], []]},  # too many containers
        {"a": "x" * 65},  # str longer than the frame limit
    ]
    for value in too_big:
        with pytest.raises(FrameError):
            decode_payload(payload_of(value), small)


@pytest.mark.parametrize(
    "message",
    [
        {"k": object()},
        {"k": {1: "int key"}},
        {"k": 1 << 64},
        {"k": {1, 2}},
    ],
)
def test_encoder_refuses_what_a_peer_would_reject(message: dict[str, Any]) -> None:
    with pytest.raises(FrameError):
        encode_payload(message)


def test_encoder_refuses_too_deep_and_too_large() -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(FrameError, match="nesting"):
        encode_payload(deep)
    with pytest.raises(FrameError) as caught:
        encode_payload({"b": b"x" * 100}, FrameLimits(max_frame=64))
    assert caught.value.code == ErrorCode.FRAME_TOO_LARGE


class ChunkStream(trio.abc.ReceiveStream):
    """Delivers fixed chunks, then end of stream (or hangs, to test timeouts)."""

    def __init__(self, chunks: list[bytes], *, hang: bool = False) -> None:
        self.chunks = list(chunks)
        self.hang = hang
        self.received = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            if self.hang:
                await trio.sleep_forever()
            return b""
        chunk = self.chunks.pop(0)
        self.received += len(chunk)
        return chunk

    async def aclose(self) -> None:
        pass


async def read_all(reader: FrameReader) -> list[dict[str, Any]]:
    out = []
    while (message := await reader.read()) is not None:
        out.append(message)
    return out


@settings(max_examples=20)
@given(st.lists(messages, max_size=4), st.data())
def test_reader_reassembles_frames_from_any_chunking(
    batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    wire = b"".join(encode_frame(message) for message in batch)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=8)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    stream = ChunkStream([chunk for chunk in chunks if chunk])
    assert trio.run(read_all, FrameReader(stream)) == batch


async def test_reader_rejects_oversized_prefix_without_reading_payload() -> None:
    stream = ChunkStream([HEADER.pack(65), b"x" * 65])
    with pytest.raises(FrameError) as caught:
        await FrameReader(stream, FrameLimits(max_frame=64)).read()
    assert caught.value.code == ErrorCode.FRAME_TOO_LARGE
    assert stream.received == 4


async def test_reader_reports_truncated_frame() -> None:
    stream = ChunkStream([struct.pack(">I", 10) + b"\x81"])
    with pytest.raises(FrameError, match="middle of a frame"):
        await FrameReader(stream).read()


async def test_reader_times_out_a_stalled_frame(autojump_clock: trio.abc.Clock) -> None:
    stream = ChunkStream([struct.pack(">I", 10)], hang=True)
    with pytest.raises(FrameError, match="incomplete after 5 s"):
        await FrameReader(stream, frame_timeout=5).read()


async def test_reader_waits_without_deadline_between_frames(autojump_clock: trio.abc.Clock) -> None:
    stream = ChunkStream([], hang=True)
    with trio.move_on_after(3600) as scope:
        await FrameReader(stream, frame_timeout=1).read()
    assert scope.cancelled_caught


def test_frame_limits_validate() -> None:
    with pytest.raises(ValueError):
        FrameLimits(max_frame=1 << 32)
    with pytest.raises(ValueError):
        FrameLimits(max_depth=0)


def test_token_bucket_allows_burst_then_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] = 100  # refill is capped at the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_backoff_is_bounded_jittered_and_seedable() -> None:
    backoff = Backoff(initial=0.1, factor=2, maximum=1.0, jitter=0.5)
    delays = [backoff.delay(attempt, random.Random(7)) for attempt in range(10)]
    assert delays == [backoff.delay(attempt, random.Random(7)) for attempt in range(10)]
    for attempt, delay in enumerate(delays):
        base = min(1.0, 0.1 * 2**attempt)
        assert base * 0.5 <= delay <= base
    assert backoff.delay(10_000, random.Random(1)) <= 1.0
    state = random.getstate()
    backoff.delay(3, random.Random())
    assert random.getstate() == state  # the global source is untouched


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [("127.0.0.1:7000", ("127.0.0.1", 7000)), ("[::1]:80", ("::1", 80)), (("h", 1), ("h", 1))],
)
def test_parse_endpoint(text: Any, endpoint: tuple[str, int]) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize("text", ["nohost", "h:", ":80", "h:0", "h:70000", "h:x"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)
