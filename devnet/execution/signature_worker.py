"""The process that checks signatures ahead of execution (see `signature_ahead`).

It reads frames from stdin — a 4-byte big-endian length, then a msgpack list of
`athena_vm.ed25519.memo_key`s — verifies each with libsodium, and writes back, as soon as
every `CHUNK` keys are checked, a frame listing those of them that are valid. It imports
only what verification needs, and exits when its stdin closes (its node stopped or died).
"""

import signal
import struct
import sys
from typing import IO

import msgpack

from athena_vm.ed25519 import split_key, verify_in_place

#: Keys checked between two answers: small, so the executing process finds its first
#: transactions' answers early, and big enough that answers cost it little.
CHUNK = 32
LENGTH = struct.Struct(">I")
#: A request larger than this is refused (a layer of wallet spends is about 250 KB).
MAX_FRAME_BYTES = 64 * 1024 * 1024


class FrameError(Exception):
    """The stream ended or carried a frame that is not a list of keys."""


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's payload, or None at a clean end of the stream."""
    head = stream.read(LENGTH.size)
    if not head:
        return None
    if len(head) < LENGTH.size:
        raise FrameError("stream ended inside a frame's length")
    (length,) = LENGTH.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    payload = stream.read(length)
    if len(payload) < length:
        raise FrameError("stream ended inside a frame")
    return payload


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(LENGTH.pack(len(payload)) + payload)
    stream.flush()


def decode_keys(payload: bytes) -> list[bytes]:
    keys = msgpack.unpackb(payload)
    if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
        raise FrameError("a frame must be a msgpack list of byte strings")
    return keys


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    while (payload := read_frame(requests)) is not None:
        keys = decode_keys(payload)
        for start in range(0, len(keys), CHUNK):
            valid = [key for key in keys[start : start + CHUNK] if verify_in_place(*split_key(key))]
            if valid:
                write_frame(answers, msgpack.packb(valid))


def main() -> int:
    # Ctrl-C reaches the whole process group; this process stops when its node closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except FrameError as exc:
        print(f"signature worker: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
