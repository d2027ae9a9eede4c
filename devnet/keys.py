"""ed25519 keys: deterministic test keys, key files, signing and verification.

A private key is the 32-byte ed25519 seed (RFC 8032's secret key); the public key is derived
from it. Test keys are derived from a seed phrase and an index so that every process of a
devnet, and every test, names the same accounts without sharing files:

    seed = blake3(phrase ‖ ":" ‖ decimal index)

Key file format (JSON, UTF-8, written with mode 0600):

    {
      "version": 1,
      "private_key": "<64 hex chars: the 32-byte seed>",
      "public_key": "<64 hex chars>",
      "address": "atest1..." | null
    }

`public_key` is redundant and is checked against `private_key` on load, which catches a
truncated or hand-edited file. A `private_key` of 128 hex chars (seed ‖ public key, the Go
`ed25519.PrivateKey` layout used by Spacemesh tools) is accepted too. `address` is the
account the key controls; it depends on the wallet template, so it is optional and only
checked to be a valid address of the file's network.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import nacl.signing

from athena_vm.ed25519 import verify as verify_ed25519
from devnet.address import DEFAULT_HRP, decode_address, encode_address, spawn_address
from devnet.errors import AddressError, KeyFileError

SEED_LENGTH = 32
PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
KEY_FILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An ed25519 signing key. `seed` is the private key; keep it out of logs (see repr)."""

    seed: bytes
    public_key: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key.hex()})"

    @classmethod
    def from_seed(cls, seed: bytes) -> "KeyPair":
        if not isinstance(seed, bytes) or len(seed) != SEED_LENGTH:
            raise KeyFileError(f"an ed25519 seed is {SEED_LENGTH} bytes")
        public = bytes(nacl.signing.SigningKey(seed).verify_key)
        return cls(seed, public)

    @classmethod
    def generate(cls) -> "KeyPair":
        """A fresh random key (from the OS's CSPRNG)."""
        return cls.from_seed(os.urandom(SEED_LENGTH))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of `message`."""
        return nacl.signing.SigningKey(self.seed).sign(message).signature

    def wallet_address(self, wallet_template: bytes) -> bytes:
        """The address of this key's wallet under `wallet_template` (see `wallet_address`)."""
        return wallet_address(self.public_key, wallet_template)


def derive_test_key(phrase: str, index: int) -> KeyPair:
    """The `index`-th deterministic test key of `phrase`: seed = blake3(phrase:index)."""
    if index < 0:
        raise KeyFileError(f"key index must not be negative, got {index}")
    seed = blake3.blake3(phrase.encode() + b":" + str(index).encode()).digest()
    return KeyPair.from_seed(seed)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True for a valid signature. A malformed key or signature is False, never an error.

    Delegates to the VM's ED25519_VERIFY so an off-chain check (the relay's mempool) accepts
    exactly what a wallet's on-chain `verify` accepts.
    """
    return verify_ed25519(public_key, message, signature)


def wallet_address(public_key: bytes, wallet_template: bytes) -> bytes:
    """A wallet's address: its state `{owner [32]}` SCALE-encodes as the raw key, so it is
    spawn_address(template, public_key), known before the wallet is spawned."""
    if len(public_key) != PUBLIC_KEY_LENGTH:
        raise KeyFileError(f"a public key is {PUBLIC_KEY_LENGTH} bytes, got {len(public_key)}")
    return spawn_address(wallet_template, public_key)


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A key file's contents: the key and, optionally, the account it controls."""

    key: KeyPair
    address: bytes | None = None


def _hex_field(doc: dict[str, Any], name: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise KeyFileError(f"key file field {name!r} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"key file field {name!r} is not valid hex") from None


def dumps_key_file(key: KeyPair, address: bytes | None = None, hrp: str = DEFAULT_HRP) -> str:
    """The JSON text of a key file (format in the module docstring)."""
    doc = {
        "version": KEY_FILE_VERSION,
        "private_key": key.seed.hex(),
        "public_key": key.public_key.hex(),
        "address": None if address is None else encode_address(address, hrp),
    }
    return json.dumps(doc, indent=2) + "\n"


def loads_key_file(text: str, hrp: str = DEFAULT_HRP) -> KeyFile:
    """Parse and check key file JSON; any defect is a `KeyFileError` naming it."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested arrays
        raise KeyFileError(f"key file is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise KeyFileError("key file must hold a JSON object")
    if doc.get("version") != KEY_FILE_VERSION:
        raise KeyFileError(f"unsupported key file version {doc.get('version')!r}")
    private = _hex_field(doc, "private_key")
    if len(private) not in (SEED_LENGTH, SEED_LENGTH + PUBLIC_KEY_LENGTH):
        raise KeyFileError(f"private_key must be 32 or 64 bytes, got {len(private)}")
    key = KeyPair.from_seed(private[:SEED_LENGTH])
    if len(private) > SEED_LENGTH and private[SEED_LENGTH:] != key.public_key:
        raise KeyFileError("the 64-byte private_key does not end with its public key")
    if _hex_field(doc, "public_key") != key.public_key:
        raise KeyFileError("public_key does not match private_key")
    text_address = doc.get("address")
    if text_address is None:
        return KeyFile(key)
    if not isinstance(text_address, str):
        raise KeyFileError("key file field 'address' must be a string or null")
    try:
        return KeyFile(key, decode_address(text_address, hrp))
    except AddressError as exc:
        raise KeyFileError(f"key file address: {exc}") from exc


def save_key_file(
    path: Path, key: KeyPair, address: bytes | None = None, hrp: str = DEFAULT_HRP
) -> None:
    """Write a key file readable only by its owner (it holds a private key)."""
    text = dumps_key_file(key, address, hrp)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def load_key_file(path: Path, hrp: str = DEFAULT_HRP) -> KeyFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from exc
    return loads_key_file(text, hrp)
