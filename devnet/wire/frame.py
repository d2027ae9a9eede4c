"""Framing: a 4-byte big-endian length, then one msgpack map.

The decoder faces untrusted peers, so every msgpack limit is set explicitly (msgpack's own
defaults are sized for 100 MiB buffers) and two bounds msgpack lacks are added: a nesting
depth, checked after unpacking, and a total container count, checked while unpacking so a
small frame cannot expand into millions of Python lists. Extension types (timestamps
included) are rejected: the devnet's messages never use them. Map keys must be str or bytes
(msgpack's `strict_map_key`), which the encoder enforces too, so whatever one side sends the
other side accepts.
"""

import struct
from dataclasses import dataclass
from typing import Any, NoReturn

import msgpack
import trio

from devnet.errors import FrameError
from devnet.wire.codes import ErrorCode

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
_MAX_ERROR_DETAIL = 200  # decoder messages can quote peer bytes; keep replies short

# Python types a frame may carry. bytes travel as msgpack bin, str as msgpack str.
_SCALARS = (type(None), bool, int, float, str, bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Bounds on one frame; both peers should use the same values (defaults match)."""

    max_frame: int = DEFAULT_MAX_FRAME  # payload bytes, excluding the 4-byte header
    max_depth: int = 32  # nesting of maps/arrays; the top-level map is depth 1
    max_array_len: int = 1 << 20
    max_map_len: int = 1 << 16
    max_containers: int = 1 << 18  # maps + arrays in one frame

    def __post_init__(self) -> None:
        if not 0 < self.max_frame < 1 << 32:
            raise ValueError("max_frame must fit the 4-byte length prefix")
        if min(self.max_depth, self.max_array_len, self.max_map_len, self.max_containers) < 1:
            raise ValueError("frame limits must be positive")


DEFAULT_LIMITS = FrameLimits()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_ERROR_DETAIL else text[:_MAX_ERROR_DETAIL] + "…"


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def check_value(value: Any, limits: FrameLimits) -> None:
    """Raise ValueError unless `value` stays within the depth/type rules of a frame.

    Iterative, so a hostile structure cannot exhaust the Python stack; stops at the first
    container past `max_depth`.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    containers = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, dict):
            children: list[Any] = []
            for key, child in item.items():
                if not isinstance(key, str | bytes):
                    raise ValueError(f"map key of type {type(key).__name__}; use str or bytes")
                children.append(child)
            if len(item) > limits.max_map_len:
                raise ValueError(f"map of {len(item)} entries exceeds {limits.max_map_len}")
        elif isinstance(item, list | tuple):
            children = list(item)
            if len(item) > limits.max_array_len:
                raise ValueError(f"array of {len(item)} items exceeds {limits.max_array_len}")
        else:
            raise ValueError(f"type {type(item).__name__} cannot travel on the wire")
        if depth > limits.max_depth:
            raise ValueError(f"nesting deeper than {limits.max_depth}")
        containers += 1
        if containers > limits.max_containers:
            raise ValueError(f"more than {limits.max_containers} maps/arrays")
        stack.extend((child, depth + 1) for child in children)


def encode_payload(message: dict[str, Any], limits: FrameLimits = DEFAULT_LIMITS) -> bytes:
    """msgpack-encode one message map, checking it is something the peer will accept."""
    if not isinstance(message, dict):
        raise FrameError(ErrorCode.INTERNAL_ERROR, "a frame must be a map")
    try:
        check_value(message, limits)
        payload: bytes = msgpack.packb(message, use_bin_type=True, datetime=False)
    except (ValueError, TypeError, OverflowError) as exc:
        raise FrameError(ErrorCode.INTERNAL_ERROR, f"not encodable: {_short(exc)}") from exc
    if len(payload) > limits.max_frame:
        raise FrameError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {len(payload)} bytes exceeds the {limits.max_frame}-byte limit",
        )
    return payload


def encode_frame(message: dict[str, Any], limits: FrameLimits = DEFAULT_LIMITS) -> bytes:
    """The wire bytes of one message: length prefix plus msgpack map."""
    payload = encode_payload(message, limits)
    return HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes, limits: FrameLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode one frame's payload into a map, or raise FrameError with the code to report."""
    containers = 0

    def count(container: Any) -> Any:
        nonlocal containers
        containers += 1
        if containers > limits.max_containers:
            raise ValueError(f"more than {limits.max_containers} maps/arrays")
        return container

    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
            list_hook=count,
            object_hook=count,
            ext_hook=_reject_ext,
            max_str_len=limits.max_frame,
            max_bin_len=limits.max_frame,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
        check_value(value, limits)
    except Exception as exc:  # untrusted input: any decoder failure is the peer's fault
        raise FrameError(ErrorCode.PARSE_ERROR, f"malformed frame: {_short(exc)}") from exc
    if not isinstance(value, dict):
        raise FrameError(
            ErrorCode.INVALID_REQUEST, f"a frame must be a map, got {type(value).__name__}"
        )
    return value


class FrameReader:
    """Reads whole frames from a byte stream, keeping any bytes past the current frame.

    Waiting for a frame to *start* has no deadline (idle connections are fine); once its
    first byte has arrived the rest must follow within `frame_timeout`, so a peer cannot pin
    a connection with a half-sent frame. A length prefix over the limit is rejected before
    any of the payload is read.
    """

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        limits: FrameLimits = DEFAULT_LIMITS,
        frame_timeout: float = 30.0,
    ) -> None:
        self._stream = stream
        self._limits = limits
        self._frame_timeout = frame_timeout
        self._buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise FrameError(
                    ErrorCode.PARSE_ERROR, "connection closed in the middle of a frame"
                )
            self._buffer += chunk

    async def read(self) -> dict[str, Any] | None:
        """The next message, or None at a clean end of stream (between frames)."""
        if not self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                return None
            self._buffer += chunk
        try:
            with trio.fail_after(self._frame_timeout):
                await self._fill(HEADER.size)
                (length,) = HEADER.unpack_from(self._buffer)
                if length > self._limits.max_frame:
                    raise FrameError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"frame of {length} bytes exceeds the {self._limits.max_frame}-byte limit",
                    )
                end = HEADER.size + length
                await self._fill(end)
        except trio.TooSlowError:
            raise FrameError(
                ErrorCode.PARSE_ERROR, f"frame incomplete after {self._frame_timeout:g} s"
            ) from None
        payload = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return decode_payload(payload, self._limits)
