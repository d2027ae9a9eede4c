"""SCALE codec: the encoding of Athena payloads, transactions and template state.

Two layers. The low layer (`encode_compact`, `encode_bytes`, `encode_option`, `Decoder`) is
what the VM's hot paths use directly. The codec layer (`Codec` and its subclasses) composes
those primitives into typed descriptions of whole values, so a struct, a Vec of structs or an
Option of a fixed array is declared once and both encoded and decoded from that declaration.

Decoding is strict because encodings are hashed (transaction ids, state): every value has
exactly one accepted encoding (canonical compact integers, Option and bool tags 0/1 only), so
`decode(b)` succeeding implies `encode(decode(b)) == b`. Decoding hostile bytes raises
`ScaleError` and nothing else, and never allocates more than the input's size justifies: a
length prefix is checked against the bytes actually remaining before anything is built.
Encoding a value that does not fit its type (an out-of-range integer, a wrong-length array)
raises `ScaleError` too, instead of silently producing bytes that decode to something else.
"""

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from athena_vm.errors import VmError

T = TypeVar("T")
S = TypeVar("S")

COMPACT_MAX_BYTES = 67
"""The big-integer mode stores (length - 4) in six bits: at most 63 + 4 = 67 bytes."""
COMPACT_MAX = (1 << (8 * COMPACT_MAX_BYTES)) - 1
"""2^536 - 1, the largest integer a SCALE compact can hold."""
U64_MAX = (1 << 64) - 1


class ScaleError(VmError):
    """The bytes are not a valid SCALE encoding of the expected type (or a value has no
    encoding in the type it is being encoded as)."""


def _check_int(value: object, low: int, high: int, what: str) -> int:
    # bool is an int subclass; accepting True as 1 would hide caller bugs.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ScaleError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ScaleError(f"{what} out of range [{low}, {high}]: {value}")
    return value


def _check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ScaleError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


_SMALL_COMPACTS = tuple(bytes([n << 2]) for n in range(1 << 6))


def encode_compact(n: int) -> bytes:
    """SCALE compact integer: 1, 2 or 4 bytes for small values, else a length byte and LE bytes."""
    if type(n) is int and 0 <= n < 1 << 14:  # lengths and nonces: the hot cases
        return _SMALL_COMPACTS[n] if n < 1 << 6 else ((n << 2) | 1).to_bytes(2, "little")
    _check_int(n, 0, COMPACT_MAX, "compact integer")
    if n < 1 << 6:
        return _SMALL_COMPACTS[n]
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    length = (n.bit_length() + 7) // 8  # >= 4 because n >= 2^30
    return bytes([((length - 4) << 2) | 3]) + n.to_bytes(length, "little")


def encode_uint(n: int, size: int) -> bytes:
    """A fixed-width unsigned integer of `size` bytes, little-endian."""
    _check_int(n, 0, (1 << (8 * size)) - 1, f"u{8 * size}")
    return n.to_bytes(size, "little")


def encode_bool(value: bool) -> bytes:
    if not isinstance(value, bool):
        raise ScaleError(f"bool expected, got {type(value).__name__}")
    return b"\x01" if value else b"\x00"


def encode_bytes(data: bytes) -> bytes:
    """Vec<u8>: compact length then the bytes."""
    return encode_compact(len(data)) + data


def encode_option(data: bytes | None) -> bytes:
    """Option<T> given T's encoding."""
    return b"\x00" if data is None else b"\x01" + data


def compact_at(data: bytes, position: int) -> tuple[int, int]:
    """(value, next position) of a canonical compact below 2^30 at `position`.

    For hot decoders' usual case: anything else (the big-integer form, a non-canonical
    form, running past the end) gives (-1, position), and the caller then decodes with a
    `Decoder`, which accepts or refuses exactly as always, with its precise error.
    """
    if position >= len(data):
        return -1, position
    first = data[position]
    mode = first & 3
    if mode == 0:
        return first >> 2, position + 1
    if mode == 1:
        if position + 2 <= len(data):
            value = (first | data[position + 1] << 8) >> 2
            if value >= 1 << 6:
                return value, position + 2
    elif mode == 2 and position + 4 <= len(data):
        value = int.from_bytes(data[position : position + 4], "little") >> 2
        if value >= 1 << 14:
            return value, position + 4
    return -1, position


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
        pos = self.pos
        end = pos + n
        if n < 0 or end > len(self.data):
            raise ScaleError(f"need {n} bytes at offset {pos}, have {len(self.data) - pos}")
        self.pos = end
        return self.data[pos:end]

    def u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise ScaleError(f"need 1 bytes at offset {pos}, have {len(self.data) - pos}")
        self.pos = pos + 1
        return self.data[pos]

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

    def boolean(self) -> bool:
        flag = self.u8()
        if flag > 1:
            raise ScaleError(f"invalid bool byte {flag}")
        return flag == 1

    def finish(self) -> None:
        if self.remaining:
            raise ScaleError(f"{self.remaining} trailing bytes at offset {self.pos}")


class Codec(ABC, Generic[T]):
    """How one type is encoded: `encode` a value, `read` one from a `Decoder`.

    `min_size` is the fewest bytes any value's encoding takes; `Vec` uses it to reject a
    hostile element count before building anything.
    """

    min_size: int = 1

    @abstractmethod
    def encode(self, value: T) -> bytes:
        """The value's encoding; `ScaleError` if it does not fit the type."""

    @abstractmethod
    def read(self, decoder: Decoder) -> T:
        """Read one value at the decoder's position."""

    def decode(self, data: bytes) -> T:
        """Decode exactly one value from `data`; trailing bytes are an error."""
        decoder = Decoder(data)
        value = self.read(decoder)
        decoder.finish()
        return value


class UInt(Codec[int]):
    """A fixed-width unsigned integer, little-endian (u8, u16, u32, u64, u128...)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"integer size must be positive, got {size}")
        self.size = size
        self.min_size = size

    def encode(self, value: int) -> bytes:
        return encode_uint(value, self.size)

    def read(self, decoder: Decoder) -> int:
        return decoder.uint(self.size)

    def __repr__(self) -> str:
        return f"UInt(u{8 * self.size})"


class Compact(Codec[int]):
    """A compact integer, optionally bounded like Rust's `Compact<u64>` (`max_value`)."""

    def __init__(self, max_value: int = COMPACT_MAX) -> None:
        if not 0 < max_value <= COMPACT_MAX:
            raise ValueError(f"max_value must be in (0, 2^536 - 1], got {max_value}")
        self.max_value = max_value

    def encode(self, value: int) -> bytes:
        _check_int(value, 0, self.max_value, "compact integer")
        return encode_compact(value)

    def read(self, decoder: Decoder) -> int:
        value = decoder.compact()
        if value > self.max_value:
            raise ScaleError(f"compact integer {value} exceeds {self.max_value}")
        return value

    def __repr__(self) -> str:
        return f"Compact(max_value={self.max_value})"


class Bool(Codec[bool]):
    """One byte, 0 or 1; anything else is rejected."""

    def encode(self, value: bool) -> bytes:
        return encode_bool(value)

    def read(self, decoder: Decoder) -> bool:
        return decoder.boolean()

    def __repr__(self) -> str:
        return "Bool()"


class Bytes(Codec[bytes]):
    """Vec<u8>: a compact length then the bytes (the length is checked against the input)."""

    def encode(self, value: bytes) -> bytes:
        return encode_bytes(_check_bytes(value, "Vec<u8>"))

    def read(self, decoder: Decoder) -> bytes:
        return decoder.bytes_vec()

    def __repr__(self) -> str:
        return "Bytes()"


class FixedBytes(Codec[bytes]):
    """[u8; n]: exactly n raw bytes, no length prefix."""

    def __init__(self, length: int) -> None:
        if length < 0:
            raise ValueError(f"array length must not be negative, got {length}")
        self.length = length
        self.min_size = length

    def encode(self, value: bytes) -> bytes:
        data = _check_bytes(value, f"[u8; {self.length}]")
        if len(data) != self.length:
            raise ScaleError(f"[u8; {self.length}] given {len(data)} bytes")
        return data

    def read(self, decoder: Decoder) -> bytes:
        return decoder.take(self.length)

    def __repr__(self) -> str:
        return f"FixedBytes({self.length})"


class Vec(Codec[tuple[T, ...]]):
    """Vec<T>: a compact count then the elements. Decodes to a tuple (immutable, hashable).

    A count whose elements could not fit in the remaining input (count * element min_size >
    remaining) is rejected up front, so a hostile count never drives a long loop or a big
    allocation. Zero-sized elements are refused at declaration since no such bound exists.
    """

    def __init__(self, element: Codec[T]) -> None:
        if element.min_size < 1:
            raise ValueError(f"Vec of zero-sized elements ({element!r}) is not supported")
        self.element = element

    def encode(self, value: tuple[T, ...]) -> bytes:
        if not isinstance(value, tuple | list):
            raise ScaleError(f"Vec expects a tuple or list, got {type(value).__name__}")
        return encode_compact(len(value)) + b"".join(self.element.encode(v) for v in value)

    def read(self, decoder: Decoder) -> tuple[T, ...]:
        count = decoder.compact()
        if count * self.element.min_size > decoder.remaining:
            raise ScaleError(
                f"Vec of {count} elements cannot fit in {decoder.remaining} remaining bytes"
            )
        return tuple(self.element.read(decoder) for _ in range(count))

    def __repr__(self) -> str:
        return f"Vec({self.element!r})"


class Option(Codec[T | None]):
    """Option<T>: tag 0 for None, tag 1 then T. Any other tag is rejected.

    This is the generic Option encoding, also used for Option<bool> (Rust's parity codec
    keeps the one-byte form for its separate `OptionBool` type only). Option<Option<T>> is
    refused: in Python `Some(None)` and `None` would be the same value.
    """

    def __init__(self, element: Codec[T]) -> None:
        if isinstance(element, Option):
            raise ValueError("Option<Option<T>> cannot be represented with None")
        self.element = element

    def encode(self, value: T | None) -> bytes:
        return encode_option(None if value is None else self.element.encode(value))

    def read(self, decoder: Decoder) -> T | None:
        return self.element.read(decoder) if decoder.option_flag() else None

    def __repr__(self) -> str:
        return f"Option({self.element!r})"


class Struct(Codec[S]):
    """Fields encoded one after another, in declaration order, with no framing.

    `factory` builds the value from the fields as keyword arguments (normally a frozen
    dataclass) and encoding reads each field by attribute name:

        Owner = Struct(WalletState, (("owner", FixedBytes(32)),))

    When `factory` is a dataclass its init fields must be exactly the declared names, so a
    renamed or added field is caught where the codec is declared. A `ValueError` raised by the
    factory while decoding (a `__post_init__` check) becomes a `ScaleError`.
    """

    def __init__(self, factory: Callable[..., S], fields: Sequence[tuple[str, Codec[Any]]]) -> None:
        names = [name for name, _ in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            expected = {f.name for f in dataclasses.fields(factory) if f.init}
            if expected != set(names):
                raise ValueError(f"{factory.__name__} has fields {sorted(expected)}, not {names}")
        self.factory = factory
        self.fields = tuple(fields)
        self.min_size = sum(codec.min_size for _, codec in self.fields)

    def encode(self, value: S) -> bytes:
        return b"".join(codec.encode(getattr(value, name)) for name, codec in self.fields)

    def read(self, decoder: Decoder) -> S:
        values = {name: codec.read(decoder) for name, codec in self.fields}
        try:
            return self.factory(**values)
        except ValueError as exc:
            raise ScaleError(f"invalid {self!r}: {exc}") from exc

    def __repr__(self) -> str:
        name = getattr(self.factory, "__name__", repr(self.factory))
        return f"Struct({name})"


U8 = UInt(1)
U16 = UInt(2)
U32 = UInt(4)
U64 = UInt(8)
BOOL = Bool()
BYTES = Bytes()
COMPACT = Compact()
COMPACT_U64 = Compact(U64_MAX)
