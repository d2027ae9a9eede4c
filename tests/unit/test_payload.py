"""ExecutionPayload decoding: the shortcut for the usual shape agrees with the `Decoder`."""

from hypothesis import given
from hypothesis import strategies as st

from athena_vm.payload import (
    ExecutionPayload,
    Payload,
    decode_execution_payload,
    decode_payload,
    encode_method_call,
    wrap_call,
)
from athena_vm.scale import Decoder, ScaleError, encode_compact


def strict(data: bytes) -> ExecutionPayload | str:
    """The Decoder's reading of `data`: the payload, or the error's message."""
    try:
        decoder = Decoder(data)
        state = decoder.bytes_vec()
        payload = decode_payload(decoder)
        decoder.finish()
    except ScaleError as exc:
        return str(exc)
    return ExecutionPayload(state, payload)


def decoded(data: bytes) -> ExecutionPayload | str:
    try:
        return decode_execution_payload(data)
    except ScaleError as exc:
        return str(exc)


payloads = st.builds(
    ExecutionPayload,
    st.binary(max_size=20_000),
    st.builds(Payload, st.none() | st.binary(min_size=4, max_size=4), st.binary(max_size=20_000)),
)


@given(payloads)
def test_round_trip(value: ExecutionPayload) -> None:
    encoded = value.encode()
    assert decode_execution_payload(encoded) == value == strict(encoded)


@given(payloads, st.data())
def test_mutated_bytes_decode_as_the_decoder_says(
    value: ExecutionPayload, data: st.DataObject
) -> None:
    encoded = bytearray(value.encode())
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut]), bytes(encoded) + b"\x00"):
        assert decoded(candidate) == strict(candidate)


@given(st.binary(max_size=80))
def test_random_bytes_decode_as_the_decoder_says(raw: bytes) -> None:
    assert decoded(raw) == strict(raw)


def test_non_canonical_and_long_lengths_take_the_decoder() -> None:
    non_canonical = b"\x01\x00" + b"\x00" + b"\x00"  # state length 0 in two bytes
    assert decoded(non_canonical) == strict(non_canonical) == "non-canonical compact integer"
    long_state = bytes(1 << 14)  # a four-byte length
    encoded = encode_compact(len(long_state)) + long_state + b"\x00\x00"
    assert decode_execution_payload(encoded) == ExecutionPayload(long_state, Payload(None, b""))


def test_builders_match_the_encoding() -> None:
    state, chosen, args = b"s" * 40, b"abcd", b"a" * 100
    assert encode_method_call(state, chosen, args) == (
        ExecutionPayload(state, Payload(chosen, args)).encode()
    )
    assert wrap_call(state, Payload(None, args).encode()) == (
        ExecutionPayload(state, Payload(None, args)).encode()
    )
