"""The SCALE codec: known answers, round trips for every codec, strictness, hostile input."""

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from athena_vm.scale import (
    BOOL,
    BYTES,
    COMPACT,
    COMPACT_MAX,
    COMPACT_U64,
    U8,
    U16,
    U32,
    U64,
    Codec,
    Decoder,
    FixedBytes,
    Option,
    ScaleError,
    Struct,
    UInt,
    Vec,
    compact_at,
    encode_bytes,
    encode_compact,
    encode_option,
)

COMPACT_VECTORS = [
    (0, "00"),
    (1, "04"),
    (63, "fc"),
    (64, "0101"),
    (16383, "fdff"),
    (16384, "02000100"),
    (2**30 - 1, "feffffff"),
    (2**30, "0300000040"),
    (2**32 - 1, "03ffffffff"),
    (2**32, "070000000001"),
    (2**64 - 1, "13ffffffffffffffff"),
    (2**536 - 1, "ff" + "ff" * 67),
]


@pytest.mark.parametrize(("value", "hex_"), COMPACT_VECTORS)
def test_compact_known_answers(value: int, hex_: str) -> None:
    assert encode_compact(value).hex() == hex_
    assert COMPACT.encode(value).hex() == hex_
    assert COMPACT.decode(bytes.fromhex(hex_)) == value


@pytest.mark.parametrize(
    "hex_",
    [
        "0100",  # 0 in two-byte mode
        "fd00",  # 63 in two-byte mode
        "02000000",  # 0 in four-byte mode
        "feff0000",  # 16383 in four-byte mode
        "03ffffff3f",  # 2^30 - 1 in big mode
        "0700000040" + "00",  # 2^30 with a zero top byte (5 bytes where 4 suffice)
        "13ffffffffffffff00",  # 2^56 - 1 padded to 8 bytes
    ],
)
def test_non_canonical_compact_rejected(hex_: str) -> None:
    with pytest.raises(ScaleError, match="non-canonical"):
        COMPACT.decode(bytes.fromhex(hex_))


def test_compact_range_checks() -> None:
    for bad in (-1, COMPACT_MAX + 1):
        with pytest.raises(ScaleError):
            encode_compact(bad)
    with pytest.raises(ScaleError):
        COMPACT_U64.encode(2**64)
    with pytest.raises(ScaleError, match="exceeds"):
        COMPACT_U64.decode(encode_compact(2**64))
    assert COMPACT_U64.decode(encode_compact(2**64 - 1)) == 2**64 - 1


@pytest.mark.parametrize("codec", [U8, U16, U32, U64])
def test_uint_range(codec: UInt) -> None:
    top = 2 ** (8 * codec.size) - 1
    assert codec.decode(codec.encode(top)) == top
    assert codec.encode(1) == b"\x01" + bytes(codec.size - 1)  # little-endian
    for bad in (-1, top + 1):
        with pytest.raises(ScaleError, match="out of range"):
            codec.encode(bad)
    with pytest.raises(ScaleError):
        codec.encode(True)
    with pytest.raises(ScaleError):
        codec.decode(bytes(codec.size - 1))


def test_bool_strict() -> None:
    assert BOOL.encode(True) == b"\x01"
    assert BOOL.decode(b"\x00") is False
    with pytest.raises(ScaleError):
        BOOL.decode(b"\x02")
    with pytest.raises(ScaleError):
        BOOL.encode(1)  # type: ignore[arg-type]


def test_option_and_fixed_bytes() -> None:
    codec = Option(FixedBytes(4))
    assert codec.encode(None) == b"\x00"
    assert codec.encode(b"abcd") == b"\x01abcd"
    with pytest.raises(ScaleError, match="Option tag"):
        codec.decode(b"\x02abcd")
    with pytest.raises(ScaleError):
        codec.encode(b"abc")
    with pytest.raises(ValueError):
        Option(Option(U8))


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(ScaleError, match="trailing"):
        U8.decode(b"\x01\x02")


def test_low_level_helpers_agree_with_codecs() -> None:
    assert encode_bytes(b"xyz") == BYTES.encode(b"xyz") == b"\x0cxyz"
    assert encode_option(None) == b"\x00"
    decoder = Decoder(b"\x0cxyz\x01")
    assert decoder.bytes_vec() == b"xyz"
    assert decoder.option_flag() is True
    decoder.finish()


def test_vec_rejects_hostile_counts() -> None:
    # A count of 2^64 - 1 u32s with four bytes of input must fail before building anything.
    with pytest.raises(ScaleError, match="cannot fit"):
        Vec(U32).decode(encode_compact(2**64 - 1) + bytes(4))
    with pytest.raises(ScaleError):
        BYTES.decode(encode_compact(2**536 - 1))
    with pytest.raises(ValueError):
        Vec(FixedBytes(0))


@dataclass(frozen=True)
class Signature:
    id: int
    sig: bytes


@dataclass(frozen=True)
class Multisig:
    required: int
    keys: tuple[bytes, ...]
    note: bytes | None


SIGNATURE = Struct(Signature, (("id", U8), ("sig", FixedBytes(64))))
MULTISIG = Struct(
    Multisig,
    (("required", U8), ("keys", Vec(FixedBytes(32))), ("note", Option(BYTES))),
)


def test_struct_layout() -> None:
    value = Multisig(2, (bytes(32), b"\x01" * 32), None)
    encoded = MULTISIG.encode(value)
    assert encoded == b"\x02" + b"\x08" + bytes(32) + b"\x01" * 32 + b"\x00"
    assert MULTISIG.decode(encoded) == value
    assert MULTISIG.min_size == 3
    assert SIGNATURE.min_size == 65


def test_struct_declaration_checked() -> None:
    with pytest.raises(ValueError, match="fields"):
        Struct(Signature, (("id", U8),))
    with pytest.raises(ValueError, match="duplicate"):
        Struct(Signature, (("id", U8), ("id", U8)))


def test_struct_post_init_error_becomes_scale_error() -> None:
    @dataclass(frozen=True)
    class Positive:
        n: int

        def __post_init__(self) -> None:
            if self.n == 0:
                raise ValueError("zero")

    with pytest.raises(ScaleError, match="zero"):
        Struct(Positive, (("n", U8),)).decode(b"\x00")


u64s = st.integers(0, 2**64 - 1)
compacts = st.one_of(
    st.integers(0, 2**32), st.integers(0, COMPACT_MAX), st.sampled_from([2**k for k in range(536)])
)
signatures = st.builds(Signature, st.integers(0, 255), st.binary(min_size=64, max_size=64))
multisigs = st.builds(
    Multisig,
    st.integers(0, 255),
    st.lists(st.binary(min_size=32, max_size=32), max_size=5).map(tuple),
    st.none() | st.binary(max_size=80),
)

ROUND_TRIPS: list[tuple[Codec[Any], st.SearchStrategy[Any]]] = [
    (U8, st.integers(0, 2**8 - 1)),
    (U16, st.integers(0, 2**16 - 1)),
    (U32, st.integers(0, 2**32 - 1)),
    (U64, u64s),
    (COMPACT, compacts),
    (COMPACT_U64, u64s),
    (BOOL, st.booleans()),
    (BYTES, st.binary(max_size=300)),
    (FixedBytes(24), st.binary(min_size=24, max_size=24)),
    (Vec(U16), st.lists(st.integers(0, 2**16 - 1), max_size=80).map(tuple)),
    (Vec(BYTES), st.lists(st.binary(max_size=20), max_size=10).map(tuple)),
    (Option(U64), st.none() | u64s),
    (Option(Vec(BOOL)), st.none() | st.lists(st.booleans(), max_size=10).map(tuple)),
    (SIGNATURE, signatures),
    (Vec(SIGNATURE), st.lists(signatures, max_size=4).map(tuple)),
    (MULTISIG, multisigs),
]
IDS = [repr(codec) for codec, _ in ROUND_TRIPS]


@pytest.mark.parametrize(("codec", "values"), ROUND_TRIPS, ids=IDS)
@given(data=st.data())
def test_round_trip(codec: Codec[Any], values: st.SearchStrategy[Any], data: st.DataObject) -> None:
    value = data.draw(values)
    encoded = codec.encode(value)
    assert len(encoded) >= codec.min_size
    assert codec.decode(encoded) == value


@pytest.mark.parametrize(("codec", "values"), ROUND_TRIPS, ids=IDS)
@given(raw=st.binary(max_size=200))
def test_hostile_bytes_raise_only_scale_error(
    codec: Codec[Any], values: st.SearchStrategy[Any], raw: bytes
) -> None:
    # Canonical decoding: whatever decodes re-encodes to exactly the same bytes.
    try:
        value = codec.decode(raw)
    except ScaleError:
        return
    assert codec.encode(value) == raw


@given(value=multisigs, data=st.data())
def test_every_truncation_raises_scale_error(value: Multisig, data: st.DataObject) -> None:
    encoded = MULTISIG.encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(ScaleError):
        MULTISIG.decode(encoded[:cut])


@given(st.binary(max_size=6), st.integers(0, 6))
def test_compact_at_reads_what_the_decoder_reads_or_declines(raw: bytes, position: int) -> None:
    value, after = compact_at(raw, position)
    if value < 0:
        assert after == position
        return
    decoder = Decoder(raw)
    decoder.pos = position
    assert (decoder.compact(), decoder.pos) == (value, after)
    assert value < 1 << 30


@given(st.integers(0, (1 << 30) - 1))
def test_compact_at_reads_every_small_value(value: int) -> None:
    assert compact_at(b"x" + encode_compact(value), 1) == (value, 1 + len(encode_compact(value)))
    assert compact_at(encode_compact(1 << 30), 0) == (-1, 0)
