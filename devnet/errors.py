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


class WireError(DevnetError):
    """A wire-protocol failure: framing, transport, a timeout, or an RPC error reply."""


class FrameError(WireError):
    """A frame could not be encoded or decoded; `code` is the wire error code to report.

    On the receiving side the peer broke the framing contract, so the connection is closed
    after an error frame: nothing after a bad frame can be trusted to be aligned.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message


class RpcError(WireError):
    """An RPC error reply `{code, message}`.

    Handlers raise it to send an application error (positive codes are the daemons' own);
    clients raise it when a reply or a subscription ends with an error.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{int(code)}] {message}")
        self.code = int(code)
        self.message = message


class RequestTimeout(WireError):
    """No reply arrived within the request's timeout (or no connection could be made)."""

    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(f"{method}: no reply within {timeout:g} s")
        self.method = method
        self.timeout = timeout


class ConnectionClosed(WireError):
    """The connection ended (or could not be opened) before the reply or event arrived."""


class AgreementError(DevnetError):
    """The layer agreement was misused (e.g. started twice) or given an invalid setup."""


class AgreementMessageError(AgreementError):
    """Bytes are not a well-formed agreement message (signatures are checked separately)."""


class CertificateError(AgreementError):
    """A certificate, validator set or value is malformed (before any signature check)."""


class StateTreeError(DevnetError):
    """State tree misuse or bad input: a wrong-sized key, a malformed proof, a missing node."""


class TransactionRejected(TransactionError):
    """A transaction fails a check made before it is charged; nothing changed.

    `reason` is what a receipt, or a relay's refusal, reports. The state transition raises
    it from its pre-charge checks (`devnet.state_transition.precheck`) and the relay from
    its mempool rules, so a user sees the same words whichever refused the transaction.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
