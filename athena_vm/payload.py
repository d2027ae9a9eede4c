"""The input of a method call: SCALE `ExecutionPayload{state, Payload{selector, input}}`."""

from dataclasses import dataclass

import blake3

from athena_vm.scale import Decoder, encode_bytes, encode_option

SELECTOR_LENGTH = 4
EXPORT_PREFIX = "athexp_"


def selector(name: str) -> bytes:
    """blake3 of the export's full symbol name (`athexp_spend`), first four bytes."""
    full = name if name.startswith(EXPORT_PREFIX) else EXPORT_PREFIX + name
    return blake3.blake3(full.encode()).digest()[:SELECTOR_LENGTH]


@dataclass(frozen=True, slots=True)
class Payload:
    selector: bytes | None
    input: bytes = b""

    def encode(self) -> bytes:
        return encode_option(self.selector) + encode_bytes(self.input)


@dataclass(frozen=True, slots=True)
class ExecutionPayload:
    state: bytes
    payload: Payload

    def encode(self) -> bytes:
        return encode_bytes(self.state) + self.payload.encode()


def decode_payload(decoder: Decoder) -> Payload:
    chosen = decoder.take(SELECTOR_LENGTH) if decoder.option_flag() else None
    return Payload(chosen, decoder.bytes_vec())


def decode_execution_payload(data: bytes) -> ExecutionPayload:
    decoder = Decoder(data)
    state = decoder.bytes_vec()
    payload = decode_payload(decoder)
    decoder.finish()
    return ExecutionPayload(state, payload)


def wrap_call(state: bytes, payload: bytes) -> bytes:
    """What the host runs for a HOST_CALL: the callee's state around the caller's Payload."""
    return encode_bytes(state) + payload
