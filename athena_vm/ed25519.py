"""ed25519 verification for the VM (and every other check of the node), with a memo of
signatures already found valid by a helper process.

Verification is a pure function of (public key, message, signature). A node that knows
which signatures its next layer will check — a wallet's `verify` checks its owner's key
over the transaction's signing bytes — has them checked in another process while it
executes (`devnet.execution.signature_ahead`), and that process's answers land here.
Finding a triple here gives exactly the answer libsodium would give, so the memo changes
how long a check takes, never its result: execution stays deterministic with or without
it, and a triple never checked ahead is simply verified in place.

Only valid triples are kept, keyed by their exact bytes, and each is forgotten once used;
the set is bounded and emptied when full. Set membership, `update`, `discard` and `clear`
are single operations under the GIL, so the helper's receiving thread may add while the
executing thread reads.
"""

from collections.abc import Iterable

import nacl.exceptions
from nacl.bindings import crypto_sign_open

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
#: Valid triples kept at most (about 250 bytes each for a wallet spend).
MAX_KNOWN_VALID = 1 << 16

_known_valid: set[bytes] = set()


def memo_key(public_key: bytes, message: bytes, signature: bytes) -> bytes:
    """The triple as one key: unambiguous because the key and signature lengths are fixed."""
    return signature + public_key + message


def split_key(key: bytes) -> tuple[bytes, bytes, bytes]:
    """(public key, message, signature) of a `memo_key`."""
    end = SIGNATURE_BYTES + PUBLIC_KEY_BYTES
    return key[SIGNATURE_BYTES:end], key[end:], key[:SIGNATURE_BYTES]


def remember_valid(keys: Iterable[bytes]) -> None:
    """Keep these `memo_key`s, each already verified valid by `verify`."""
    if len(_known_valid) >= MAX_KNOWN_VALID:
        _known_valid.clear()
    _known_valid.update(keys)


def known_valid() -> int:
    """How many valid triples wait in the memo (for tests and figures)."""
    return len(_known_valid)


def forget_all() -> None:
    _known_valid.clear()


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True for a valid signature; an invalid key or signature is False, never an error.

    libsodium's `crypto_sign_open` directly, which is what `VerifyKey.verify` calls after
    building a key object and checking both lengths; checked here, that object cost a
    third of the verification.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    key = memo_key(public_key, message, signature)
    if key in _known_valid:
        _known_valid.discard(key)
        return True
    return verify_in_place(public_key, message, signature)


def verify_in_place(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """`verify` without the memo: what the helper process runs."""
    try:
        crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True
