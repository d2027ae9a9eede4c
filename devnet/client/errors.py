"""What the client raises: each error says what happened and what to do about it."""

from typing import TYPE_CHECKING

from devnet.errors import DevnetError

if TYPE_CHECKING:
    from devnet.client.records import Receipt


class ClientError(DevnetError):
    """The devnet cannot be found or reached, or refused a request."""


class TransactionRejected(ClientError):
    """The relay refused a transaction before it reached a block; `kind` is its rule."""

    def __init__(self, tx_id: bytes, message: str) -> None:
        super().__init__(f"transaction {tx_id.hex()} rejected by the relay: {message}")
        self.tx_id = tx_id
        self.kind = message.split(":", 1)[0]


class TransactionDropped(ClientError):
    """The relay gave up on a transaction (never included, or invalid on a newer state)."""

    def __init__(self, tx_id: bytes, reason: str) -> None:
        super().__init__(f"transaction {tx_id.hex()} was dropped: {reason}")
        self.tx_id = tx_id
        self.reason = reason


class TransactionFailed(ClientError):
    """A transaction was executed and did not succeed; its receipt says why."""

    def __init__(self, receipt: "Receipt") -> None:
        super().__init__(
            f"transaction {receipt.tx_id.hex()} {receipt.status} in layer {receipt.layer}: "
            f"{receipt.reason or 'no reason given'}"
        )
        self.receipt = receipt


class NotWithin(ClientError):
    """Something awaited did not happen within the layers allowed."""
