"""Addresses as people see them: bech32 text with the network's human-readable prefix.

An address is 24 bytes whose first 4 are zero (Athena's GenerateAddress, re-exported from
`athena_vm.address` so there is one implementation). Spacemesh writes addresses in bech32 —
the original BIP-173 checksum, not bech32m — with a per-network HRP. Decoding is strict and
says exactly what is wrong, because a mistyped or foreign-network address must never be
taken for another account: the HRP must be this network's, the checksum must be bech32's,
and the payload must be 24 bytes starting with 4 zero bytes.
"""

import bech32

from athena_vm.address import (
    ADDRESS_LENGTH,
    ADDRESS_PREFIX,
    generate_address,
    spawn_address,
    template_address,
)
from devnet.errors import AddressError

__all__ = [
    "ADDRESS_LENGTH",
    "DEFAULT_HRP",
    "DEVNET_HRP",
    "KNOWN_HRPS",
    "MAINNET_HRP",
    "STANDALONE_HRP",
    "TESTNET_HRP",
    "check_address",
    "decode_address",
    "encode_address",
    "generate_address",
    "spawn_address",
    "template_address",
]

MAINNET_HRP = "sm"
TESTNET_HRP = "stest"
STANDALONE_HRP = "standalone"
DEVNET_HRP = "atest"
DEFAULT_HRP = DEVNET_HRP
KNOWN_HRPS = frozenset({MAINNET_HRP, TESTNET_HRP, STANDALONE_HRP, DEVNET_HRP})

_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3  # BIP-350's constant: a valid bech32m string, which we refuse
_CHECKSUM_LENGTH = 6
_MAX_LENGTH = 90  # BIP-173's limit on the whole string


def check_address(address: bytes) -> bytes:
    """`address` as bytes if it is a well-formed address (24 bytes, first 4 zero)."""
    if not isinstance(address, bytes | bytearray):
        raise AddressError(f"address must be bytes, got {type(address).__name__}")
    if len(address) != ADDRESS_LENGTH:
        raise AddressError(f"address must be {ADDRESS_LENGTH} bytes, got {len(address)}")
    if address[:4] != ADDRESS_PREFIX:
        raise AddressError(f"address must start with 4 zero bytes, got {address[:4].hex()}")
    return bytes(address)


def _check_hrp(hrp: str) -> None:
    if not 1 <= len(hrp) <= 83 or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise AddressError(f"invalid human-readable prefix {hrp!r}")
    if hrp != hrp.lower():
        raise AddressError(f"human-readable prefix must be lowercase, got {hrp!r}")


def encode_address(address: bytes, hrp: str = DEFAULT_HRP) -> str:
    """bech32 text of `address` under the network prefix `hrp` (`atest1...` by default)."""
    _check_hrp(hrp)
    data = bech32.convertbits(check_address(address), 8, 5, True)
    assert data is not None  # padding on: any whole bytes convert
    text: str = bech32.bech32_encode(hrp, data)
    return text


def decode_address(text: str, hrp: str = DEFAULT_HRP) -> bytes:
    """The 24 address bytes of bech32 `text`, which must belong to the network `hrp`.

    All-uppercase text is accepted (bech32 allows it for QR codes); mixed case is not.
    """
    _check_hrp(hrp)
    if not isinstance(text, str):
        raise AddressError(f"address text must be a str, got {type(text).__name__}")
    if len(text) > _MAX_LENGTH:
        raise AddressError(f"address text is {len(text)} characters, at most {_MAX_LENGTH}")
    if text != text.lower() and text != text.upper():
        raise AddressError("address text mixes upper and lower case")
    lowered = text.lower()
    sep = lowered.rfind("1")
    if sep < 1:
        raise AddressError(f"address text {text!r} has no human-readable prefix")
    text_hrp, body = lowered[:sep], lowered[sep + 1 :]
    if any(not 33 <= ord(c) <= 126 for c in text_hrp):
        raise AddressError("address prefix has characters outside printable ASCII")
    if len(body) < _CHECKSUM_LENGTH:
        raise AddressError("address text is too short to carry a checksum")
    bad = sorted({c for c in body if c not in bech32.CHARSET})
    if bad:
        raise AddressError(f"address text has characters outside the bech32 set: {bad}")
    values = [bech32.CHARSET.index(c) for c in body]
    check = bech32.bech32_polymod(bech32.bech32_hrp_expand(text_hrp) + values)
    if check == _BECH32M_CONST:
        raise AddressError("address uses a bech32m checksum; Spacemesh addresses use bech32")
    if check != _BECH32_CONST:
        raise AddressError("address checksum is invalid (mistyped?)")
    if text_hrp != hrp:
        raise AddressError(f"address is for network {text_hrp!r}, this network is {hrp!r}")
    raw = bech32.convertbits(values[:-_CHECKSUM_LENGTH], 5, 8, False)
    if raw is None:
        raise AddressError("address payload has invalid padding")
    return check_address(bytes(raw))
