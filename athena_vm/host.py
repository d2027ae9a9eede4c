"""The host interface the VM calls through, mirroring athcon's.

Storage and balance are always the callee's: the VM passes the callee's address. The in-memory
host (`athena_vm.in_memory_host`) implements this for tests and the CLI; the executor puts
LevelDB behind the same protocol.
"""

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from athena_vm.status import StatusCode

ADDRESS_LENGTH = 24
BYTES32_LENGTH = 32
#: A call at a depth above this fails with CALL_DEPTH_EXCEEDED. The transaction's own
#: execution runs at depth 0.
MAX_CALL_DEPTH = 10
ZERO_ADDRESS = bytes(ADDRESS_LENGTH)


class StorageStatus(IntEnum):
    """What a storage write did, as athcon's evmc-style storage status."""

    ASSIGNED = 0
    ADDED = 1
    DELETED = 2
    MODIFIED = 3
    DELETED_ADDED = 4
    MODIFIED_DELETED = 5
    DELETED_RESTORED = 6
    ADDED_DELETED = 7
    MODIFIED_RESTORED = 8


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Who runs what: the frame an execution belongs to."""

    callee: bytes
    callee_template: bytes = ZERO_ADDRESS
    caller: bytes = ZERO_ADDRESS
    caller_template: bytes = ZERO_ADDRESS
    received: int = 0
    depth: int = 0


@dataclass(frozen=True, slots=True)
class TxContext:
    """Facts about the transaction and block being executed."""

    gas_price: int = 0
    origin: bytes = ZERO_ADDRESS
    block_height: int = 0
    block_timestamp: int = 0
    block_gas_limit: int = 0
    chain_id: bytes = bytes(32)


@dataclass(frozen=True, slots=True)
class Message:
    """A HOST_CALL from `sender` to `recipient` carrying `value` and a SCALE `Payload`."""

    depth: int
    gas: int
    recipient: bytes
    sender: bytes
    sender_template: bytes
    input: bytes
    value: int


@dataclass(frozen=True, slots=True)
class CallResult:
    status: StatusCode
    output: bytes = b""
    gas_left: int = 0
    reason: str | None = None


class Host(Protocol):
    def account_exists(self, address: bytes) -> bool: ...

    def get_storage(self, address: bytes, key: bytes) -> bytes: ...

    def set_storage(self, address: bytes, key: bytes, value: bytes) -> StorageStatus: ...

    def get_balance(self, address: bytes) -> int: ...

    def call(self, message: Message) -> CallResult: ...

    def spawn(self, template: bytes, blob: bytes) -> bytes:
        """Create an account of `template` with state `blob`; return its address."""
        ...

    def deploy(self, code: bytes) -> bytes:
        """Store `code` as a template; return the template's address."""
        ...

    def get_tx_context(self) -> TxContext: ...

    def get_block_hash(self, block_height: int) -> bytes: ...
