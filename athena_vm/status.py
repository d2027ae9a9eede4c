"""Result status codes, numbered as athcon numbers them."""

from enum import IntEnum


class StatusCode(IntEnum):
    SUCCESS = 0
    FAILURE = 1
    REVERT = 2
    OUT_OF_GAS = 3
    INVALID_INSTRUCTION = 4
    UNDEFINED_INSTRUCTION = 5
    INVALID_MEMORY_ACCESS = 9
    CALL_DEPTH_EXCEEDED = 10
    PRECOMPILE_FAILURE = 12
    INSUFFICIENT_BALANCE = 17
    INSUFFICIENT_INPUT = 18
    INVALID_SYSCALL_ARGUMENT = 19
    INTERNAL_ERROR = -1
    REJECTED = -2
    OUT_OF_MEMORY = -3
