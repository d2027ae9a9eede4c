"""Athena account and template addresses (Athena's GenerateAddress).

An address is 24 bytes whose first 4 are zero, derived from a blake3 digest. It lives here,
not in a host, because every host (in-memory, LevelDB) and every tool that predicts an
address before sending a transaction must derive it the same way.
"""

import blake3

ADDRESS_LENGTH = 24
ADDRESS_PREFIX = bytes(4)
DIGEST_LENGTH = 32


def generate_address(digest: bytes) -> bytes:
    """GenerateAddress(h) = 4 zero bytes ‖ h[12:32] for a 32-byte digest h."""
    if len(digest) != DIGEST_LENGTH:
        raise ValueError(f"address digest must be {DIGEST_LENGTH} bytes, got {len(digest)}")
    return ADDRESS_PREFIX + digest[12:32]


def template_address(code: bytes) -> bytes:
    """Where deployed code lives: GenerateAddress(blake3(code))."""
    return generate_address(blake3.blake3(code).digest())


def spawn_address(template: bytes, blob: bytes) -> bytes:
    """Where a spawned account lives: GenerateAddress(blake3(template ‖ blob)).

    `blob` is the new account's initial state, so e.g. a wallet's address is fixed by its
    template and owner key before it exists, which is what lets it be funded, then self-spawn.
    """
    return generate_address(blake3.blake3(template + blob).digest())
