"""The input of a method call: SCALE `ExecutionPayload{state, Payload{selector, input}}`."""

from typing import NamedTuple

import blake3

from athena_vm.scale import Decoder, compact_at, encode_bytes, encode_option

SELECTOR_LENGTH = 4
EXPORT_PREFIX = "athexp_"


def selector(name: str) -> bytes:
    """blake3 of the export's full symbol name (`athexp_spend`), first four bytes."""
    full = name if name.startswith(EXPORT_PREFIX) else EXPORT_PREFIX + name
    return blake3.blake3(full.encode()).digest()[:SELECTOR_LENGTH]


class Payload(NamedTuple):
    """A method call: the export's selector (None: the entry point) and its input.

    Immutable. Named tuples rather than frozen dataclasses (here and `ExecutionPayload`):
    every execution decodes one of each, and a frozen dataclass sets each field through
    `object.__setattr__`, several times slower to build.
    """

    selector: bytes | None
    input: bytes = b""

    def encode(self) -> bytes:
        return encode_option(self.selector) + encode_bytes(self.input)


class ExecutionPayload(NamedTuple):
    """What a method runs on: the account's state, then the call."""

    state: bytes
    payload: Payload

    def encode(self) -> bytes:
        return encode_bytes(self.state) + self.payload.encode()


def decode_payload(decoder: Decoder) -> Payload:
    chosen = decoder.take(SELECTOR_LENGTH) if decoder.option_flag() else None
    return Payload(chosen, decoder.bytes_vec())


def decode_execution_payload(data: bytes) -> ExecutionPayload:
    """Decode exactly one ExecutionPayload; `ScaleError` if `data` is not one.

    Every execution starts here, so the usual shape (lengths below 2^30 in their canonical
    form) is read by `_decode_usual` without a `Decoder`; anything else, valid or not,
    goes through the `Decoder`, which gives the precise error.
    """
    data = bytes(data)
    usual = _decode_usual(data)
    if usual is not None:
        return usual
    decoder = Decoder(data)
    state = decoder.bytes_vec()
    payload = decode_payload(decoder)
    decoder.finish()
    return ExecutionPayload(state, payload)


def _decode_usual(data: bytes) -> ExecutionPayload | None:
    """The payload if both lengths are canonical compacts below 2^30 and everything fits
    exactly; None otherwise (then the `Decoder` decides, so errors stay the same)."""
    state_length, start = compact_at(data, 0)
    end = start + state_length
    if state_length < 0 or end > len(data):
        return None
    payload = usual_payload(data, end, len(data))
    return None if payload is None else ExecutionPayload(data[start:end], payload)


def usual_payload(data: bytes, start: int, end: int) -> Payload | None:
    """The Payload filling data[start:end] exactly, if its input length is a canonical
    compact below 2^30; None for anything else, valid or not.

    The fast path of hot decoders (execution payloads, transactions): on None they decode
    with a `Decoder`, which accepts or refuses exactly as always.
    """
    if start >= end:
        return None
    tag = data[start]
    if tag == 0:
        chosen, position = None, start + 1
    elif tag == 1 and start + 1 + SELECTOR_LENGTH <= end:
        position = start + 1 + SELECTOR_LENGTH
        chosen = data[start + 1 : position]
    else:
        return None
    input_length, position = compact_at(data, position)
    if input_length < 0 or position + input_length != end:
        return None
    return Payload(chosen, data[position:end])


def wrap_call(state: bytes, payload: bytes) -> bytes:
    """An ExecutionPayload from a state and an already encoded Payload.

    What the host runs for a HOST_CALL (the callee's state around the caller's Payload),
    and what a transaction's method runs: a transaction carries its Payload encoded.
    """
    return encode_bytes(state) + payload


def encode_method_call(state: bytes, chosen: bytes, args: bytes) -> bytes:
    """`ExecutionPayload(state, Payload(chosen, args)).encode()` without building either."""
    return encode_bytes(state) + b"\x01" + chosen + encode_bytes(args)
