"""The devnet's exception hierarchy, rooted at `DevnetError`.

Every daemon catches `DevnetError` at its boundary (an RPC handler, a block follower) and
turns it into an error reply or a rejected item; anything else escaping is a bug. Codec
errors from `athena_vm.scale` are wrapped here so callers outside the VM never see VM types.
"""


class DevnetError(Exception):
    """Root of every error the shared devnet code raises on bad input."""


class AddressError(DevnetError):
    """A text or byte address is not a valid address of this network."""


class KeyFileError(DevnetError):
    """Key material (a seed, a public key, a key file) is malformed or inconsistent."""


class TransactionError(DevnetError):
    """Bytes are not a valid Athena transaction, or a transaction's fields are invalid."""


class TransactionTooLargeError(TransactionError):
    """The encoded transaction exceeds the size limit; rejected before it is parsed."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"transaction of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit
