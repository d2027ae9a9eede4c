"""Addresses: GenerateAddress, bech32 text per network, and every rejection path."""

import bech32
import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from athena_vm import in_memory_host
from devnet.address import (
    ADDRESS_LENGTH,
    DEFAULT_HRP,
    KNOWN_HRPS,
    check_address,
    decode_address,
    encode_address,
    generate_address,
    spawn_address,
    template_address,
)
from devnet.errors import AddressError, DevnetError

# 00000000 ‖ 01 02 … 14: the bech32 strings below were derived independently from BIP-173
# (5-bit regrouping, polymod generator, constant 1 for bech32, 0x2bc830a3 for bech32m).
VECTOR = bytes(4) + bytes(range(1, 21))
VECTOR_ATEST = "atest1qqqqqqqpqgpsgpgxquyqjzstpsxsurcszyfpx9qc7t9lk"
VECTOR_SM = "sm1qqqqqqqpqgpsgpgxquyqjzstpsxsurcszyfpx9qtkr9er"
VECTOR_ATEST_BECH32M = "atest1qqqqqqqpqgpsgpgxquyqjzstpsxsurcszyfpx9qdzmf65"

addresses = st.binary(min_size=20, max_size=20).map(lambda b: bytes(4) + b)


def test_generate_address_layout() -> None:
    digest = bytes(range(32))
    assert generate_address(digest) == bytes(4) + bytes(range(12, 32))
    assert template_address(b"code") == generate_address(blake3.blake3(b"code").digest())
    tmpl = template_address(b"code")
    assert spawn_address(tmpl, b"state") == generate_address(
        blake3.blake3(tmpl + b"state").digest()
    )
    with pytest.raises(ValueError):
        generate_address(bytes(31))


def test_one_implementation() -> None:
    assert in_memory_host.template_address is template_address
    assert in_memory_host.spawn_address is spawn_address


def test_known_vector() -> None:
    assert encode_address(VECTOR) == VECTOR_ATEST
    assert encode_address(VECTOR, "sm") == VECTOR_SM
    assert decode_address(VECTOR_ATEST) == VECTOR
    assert decode_address(VECTOR_SM, "sm") == VECTOR
    assert decode_address(VECTOR_ATEST.upper()) == VECTOR


def test_default_network() -> None:
    assert DEFAULT_HRP == "atest"
    assert {"sm", "stest", "standalone", "atest"} == KNOWN_HRPS


@given(address=addresses, hrp=st.sampled_from(sorted(KNOWN_HRPS)))
def test_round_trip(address: bytes, hrp: str) -> None:
    text = encode_address(address, hrp)
    assert text.startswith(hrp + "1")
    assert decode_address(text, hrp) == address


@pytest.mark.parametrize(
    ("text", "hrp", "message"),
    [
        (VECTOR_SM, "atest", "for network 'sm'"),
        (VECTOR_ATEST, "standalone", "for network 'atest'"),
        (VECTOR_ATEST[:-1] + "q", "atest", "checksum is invalid"),
        (VECTOR_ATEST[:10] + "z" + VECTOR_ATEST[11:], "atest", "checksum is invalid"),
        (VECTOR_ATEST_BECH32M, "atest", "bech32m"),
        ("a1lqfn3a", "a", "bech32m"),  # BIP-350's empty-data bech32m vector
        ("a12uel5l", "a", "24 bytes"),  # BIP-173's empty-data bech32 vector: valid, too short
        (VECTOR_ATEST[:6] + "B" + VECTOR_ATEST[7:].upper(), "atest", "mixes"),
        ("atest1qqqqqqqpqgpsgpgxquyqjzstpsxsurcszyfpx9qc7t9lb", "atest", "bech32 set"),
        ("qqqqqqqpqgpsgpgxquyqjzstpsxsurcszyfpx9qc7t9lk", "atest", "human-readable"),
        ("atest1" + "q" * 100, "atest", "at most 90"),
        ("atest1qqqqq", "atest", "too short"),
    ],
)
def test_rejections(text: str, hrp: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        decode_address(text, hrp)


def _bech32_of(payload: bytes, hrp: str = "atest") -> str:
    groups = bech32.convertbits(payload, 8, 5, True)
    assert groups is not None
    return str(bech32.bech32_encode(hrp, groups))


def test_payload_rejections() -> None:
    with pytest.raises(AddressError, match="24 bytes"):
        decode_address(_bech32_of(bytes(25)))
    with pytest.raises(AddressError, match="24 bytes"):
        decode_address(_bech32_of(bytes(23)))
    with pytest.raises(AddressError, match="4 zero bytes"):
        decode_address(_bech32_of(b"\x00\x00\x00\x01" + bytes(20)))


def test_check_address() -> None:
    assert check_address(VECTOR) == VECTOR
    for bad in (bytes(ADDRESS_LENGTH - 1), b"\x01" + bytes(ADDRESS_LENGTH - 1)):
        with pytest.raises(AddressError):
            encode_address(bad)
    with pytest.raises(AddressError, match="prefix"):
        encode_address(VECTOR, "ATEST")
    assert issubclass(AddressError, DevnetError)


@given(text=st.text(max_size=120))
def test_random_text_raises_only_address_error(text: str) -> None:
    try:
        address = decode_address(text)
    except AddressError:
        return
    assert encode_address(address) == text.lower()


@given(address=addresses, position=st.integers(6, 48), char=st.sampled_from("qpzry9x8gf2t"))
def test_single_substitution_detected(address: bytes, position: int, char: str) -> None:
    text = encode_address(address)
    mutated = text[:position] + char + text[position + 1 :]
    if mutated != text:
        with pytest.raises(AddressError):
            decode_address(mutated)
