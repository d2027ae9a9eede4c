"""The Athena RV32EM virtual machine."""

from athena_vm.errors import Fault, ProgramError, VmError
from athena_vm.host import CallResult, ExecutionContext, Host, Message, StorageStatus, TxContext
from athena_vm.payload import ExecutionPayload, Payload, selector
from athena_vm.program import Program, load_program
from athena_vm.status import StatusCode
from athena_vm.vm import DEFAULT_GAS_LIMIT, ExecutionResult, execute

__all__ = [
    "DEFAULT_GAS_LIMIT",
    "CallResult",
    "ExecutionContext",
    "ExecutionPayload",
    "ExecutionResult",
    "Fault",
    "Host",
    "Message",
    "Payload",
    "Program",
    "ProgramError",
    "StatusCode",
    "StorageStatus",
    "TxContext",
    "VmError",
    "execute",
    "load_program",
    "selector",
]
