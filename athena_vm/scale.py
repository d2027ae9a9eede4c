"""SCALE codec: the encoding of Athena payloads, transactions and template state.

Decoding hostile bytes raises `ScaleError` and nothing else.
"""

from athena_vm.errors import VmError


class ScaleError(VmError):
    """The bytes are not a valid SCALE encoding of the expected type."""


def encode_compact(n: int) -> bytes:
    if n < 0:
        raise ScaleError(f"compact integers are unsigned, got {n}")
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    length = (n.bit_length() + 7) // 8
    if length > 67:
        raise ScaleError(f"compact integer too large: {length} bytes")
    return bytes([((length - 4) << 2) | 3]) + n.to_bytes(length, "little")


def encode_bytes(data: bytes) -> bytes:
    """Vec<u8>: compact length then the bytes."""
    return encode_compact(len(data)) + data


def encode_option(data: bytes | None) -> bytes:
    """Option<T> given T's encoding."""
    return b"\x00" if data is None else b"\x01" + data


class Decoder:
    """Reads SCALE values from a byte string, front to back."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise ScaleError(f"need {n} bytes at offset {self.pos}, have {self.remaining}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def compact(self) -> int:
        first = self.u8()
        mode = first & 3
        if mode == 0:
            return first >> 2
        if mode == 1:
            value = (first | self.u8() << 8) >> 2
            if value < 1 << 6:
                raise ScaleError("non-canonical compact integer")
            return value
        if mode == 2:
            value = (first | int.from_bytes(self.take(3), "little") << 8) >> 2
            if value < 1 << 14:
                raise ScaleError("non-canonical compact integer")
            return value
        length = (first >> 2) + 4
        value = int.from_bytes(self.take(length), "little")
        if value < 1 << 30 or value >> ((length - 1) * 8) == 0:
            raise ScaleError("non-canonical compact integer")
        return value

    def bytes_vec(self) -> bytes:
        return self.take(self.compact())

    def option_flag(self) -> bool:
        flag = self.u8()
        if flag > 1:
            raise ScaleError(f"invalid Option tag {flag}")
        return flag == 1

    def finish(self) -> None:
        if self.remaining:
            raise ScaleError(f"{self.remaining} trailing bytes at offset {self.pos}")
