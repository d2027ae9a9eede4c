"""One function per Athena syscall, dispatched on t0 (x5) by `ecall`.

Arguments come in a0-a5 (x10-x15); a value returned by a syscall function goes to t0. A
syscall error raises `Fault` with the syscall's own status, which aborts the execution.
"""

from collections.abc import Callable

from athena_vm.ed25519 import verify as verify_ed25519
from athena_vm.errors import Fault, failure
from athena_vm.host import ADDRESS_LENGTH, BYTES32_LENGTH, Message
from athena_vm.machine import MAX_STREAM_BYTES, Machine
from athena_vm.status import StatusCode

T0, A0, A1, A2, A3, A4, A5 = 5, 10, 11, 12, 13, 14, 15
#: Largest buffer one syscall may read from or write to guest memory.
MAX_SYSCALL_BUFFER = 1024 * 1024
#: Largest template HOST_DEPLOY accepts: loading code costs host time that gas doesn't price.
MAX_TEMPLATE_BYTES = 256 * 1024
ED25519_VERIFY_GAS = 100
CONTEXT_SIZE = 80

HALT = 0x00
WRITE = 0x02
HOST_READ = 0xA0
HOST_WRITE = 0xA1
HOST_CALL = 0xA2
HOST_GETBALANCE = 0xA3
HOST_SPAWN = 0xA4
HOST_DEPLOY = 0xA5
HOST_CONTEXT = 0xA6
ED25519_VERIFY = 0x00640020
HINT_LEN = 0xF0
HINT_READ = 0xF1

FD_STDOUT, FD_STDERR, FD_OUTPUT, FD_INPUT = 1, 2, 3, 4


def _bad_argument(reason: str) -> Fault:
    return Fault(StatusCode.INVALID_SYSCALL_ARGUMENT, reason)


def _length(m: Machine, reg: int, what: str) -> int:
    length = m.regs[reg]
    if length > MAX_SYSCALL_BUFFER:
        raise _bad_argument(f"{what} length {length} exceeds {MAX_SYSCALL_BUFFER} bytes")
    return length


def _read(m: Machine, ptr_reg: int, length: int) -> bytes:
    return m.memory.read(m.regs[ptr_reg], length)


def sys_halt(m: Machine) -> int | None:
    code = m.regs[A0]
    if code != 0:
        raise failure(f"guest halted with exit code {code}")
    return None


def sys_write(m: Machine) -> int | None:
    fd = m.regs[A0]
    data = _read(m, A1, _length(m, A2, "write"))
    if fd == FD_OUTPUT:
        if len(m.output) + len(data) > MAX_STREAM_BYTES:
            raise _bad_argument(f"return data exceeds {MAX_STREAM_BYTES} bytes")
        m.output += data
    elif fd == FD_INPUT:
        if len(m.input) + len(data) > MAX_STREAM_BYTES:
            raise _bad_argument(f"input stream exceeds {MAX_STREAM_BYTES} bytes")
        m.input += data
    elif fd in (FD_STDOUT, FD_STDERR):
        _log(m, fd, data)
    else:
        raise _bad_argument(f"write to unknown file descriptor {fd}")
    return None


def _log(m: Machine, fd: int, data: bytes) -> None:
    m.log_bytes += len(data)
    if m.log_bytes > MAX_STREAM_BYTES:
        raise _bad_argument(f"logs exceed {MAX_STREAM_BYTES} bytes")
    buffer = m.partial_lines.setdefault(fd, bytearray())
    buffer += data
    *lines, rest = bytes(buffer).split(b"\n")
    m.logs.extend(line.decode("utf-8", "replace") for line in lines)
    m.partial_lines[fd] = bytearray(rest)


def flush_logs(m: Machine) -> None:
    """Keep what was written without a final newline as a last log line."""
    for fd in sorted(m.partial_lines):
        rest = m.partial_lines[fd]
        if rest:
            m.logs.append(bytes(rest).decode("utf-8", "replace"))
    m.partial_lines.clear()


def sys_host_read(m: Machine) -> int | None:
    key = _read(m, A0, BYTES32_LENGTH)
    value = m.host.get_storage(m.context.callee, key)
    m.memory.write(m.regs[A0], value)
    return None


def sys_host_write(m: Machine) -> int | None:
    key = _read(m, A0, BYTES32_LENGTH)
    value = _read(m, A1, BYTES32_LENGTH)
    return int(m.host.set_storage(m.context.callee, key, value))


def sys_host_call(m: Machine) -> int | None:
    recipient = _read(m, A0, ADDRESS_LENGTH)
    call_input = _read(m, A1, _length(m, A2, "call input"))
    out_ptr, out_capacity = m.regs[A3], m.regs[A4]
    value = int.from_bytes(_read(m, A5, 8), "little")
    # The callee gets what is left before this ecall's own cost, as in Athena.
    gas = max(m.gas_left, 0)
    ctx = m.context
    message = Message(
        depth=ctx.depth + 1,
        gas=gas,
        recipient=recipient,
        sender=ctx.callee,
        sender_template=ctx.callee_template,
        input=call_input,
        value=value,
    )
    result = m.host.call(message)
    m.gas_used += gas - min(max(result.gas_left, 0), gas)
    if result.status != StatusCode.SUCCESS:
        why = f": {result.reason}" if result.reason else ""
        raise Fault(result.status, f"call to 0x{recipient.hex()} failed{why}")
    copied = result.output[: min(out_capacity, MAX_SYSCALL_BUFFER)]
    m.memory.write(out_ptr, copied)
    return len(copied)


def sys_host_getbalance(m: Machine) -> int | None:
    balance = m.host.get_balance(m.context.callee)
    m.memory.write(m.regs[A0], balance.to_bytes(8, "little"))
    return None


def sys_host_spawn(m: Machine) -> int | None:
    blob = _read(m, A0, _length(m, A1, "spawn blob"))
    address = m.host.spawn(m.context.callee_template, blob)
    m.memory.write(m.regs[A2], address)
    return None


def sys_host_deploy(m: Machine) -> int | None:
    length = _length(m, A1, "deploy code")
    if length > MAX_TEMPLATE_BYTES:
        raise _bad_argument(f"template of {length} bytes exceeds {MAX_TEMPLATE_BYTES}")
    code = _read(m, A0, length)
    address = m.host.deploy(code)
    m.memory.write(m.regs[A2], address)
    return None


def sys_host_context(m: Machine) -> int | None:
    ptr = m.regs[A0]
    if ptr & 3:
        raise _bad_argument(f"context pointer 0x{ptr:08x} is not 4-byte aligned")
    ctx = m.context
    record = ctx.received.to_bytes(8, "little") + ctx.caller + ctx.caller_template + ctx.callee
    m.memory.write(ptr, record)
    return None


def sys_ed25519_verify(m: Machine) -> int | None:
    message = _read(m, A0, _length(m, A1, "message"))
    public_key = _read(m, A2, 32)
    signature = _read(m, A3, 64)
    m.gas_used += ED25519_VERIFY_GAS
    return 1 if verify_ed25519(public_key, message, signature) else 0


def sys_hint_len(m: Machine) -> int | None:
    return len(m.input) - m.input_pos


def sys_hint_read(m: Machine) -> int | None:
    length = _length(m, A1, "hint read")
    remaining = len(m.input) - m.input_pos
    if length > remaining:
        raise Fault(
            StatusCode.INSUFFICIENT_INPUT,
            f"read of {length} input bytes with {remaining} remaining",
        )
    m.memory.write(m.regs[A0], m.input[m.input_pos : m.input_pos + length])
    m.input_pos += length
    return None


Syscall = Callable[[Machine], "int | None"]

SYSCALLS: dict[int, Syscall] = {
    WRITE: sys_write,
    HOST_READ: sys_host_read,
    HOST_WRITE: sys_host_write,
    HOST_CALL: sys_host_call,
    HOST_GETBALANCE: sys_host_getbalance,
    HOST_SPAWN: sys_host_spawn,
    HOST_DEPLOY: sys_host_deploy,
    HOST_CONTEXT: sys_host_context,
    ED25519_VERIFY: sys_ed25519_verify,
    HINT_LEN: sys_hint_len,
    HINT_READ: sys_hint_read,
}

SYSCALL_NAMES = {
    HALT: "HALT",
    WRITE: "WRITE",
    HOST_READ: "HOST_READ",
    HOST_WRITE: "HOST_WRITE",
    HOST_CALL: "HOST_CALL",
    HOST_GETBALANCE: "HOST_GETBALANCE",
    HOST_SPAWN: "HOST_SPAWN",
    HOST_DEPLOY: "HOST_DEPLOY",
    HOST_CONTEXT: "HOST_CONTEXT",
    ED25519_VERIFY: "ED25519_VERIFY",
    HINT_LEN: "HINT_LEN",
    HINT_READ: "HINT_READ",
}


def dispatch(m: Machine, pc: int) -> int:
    """Run the syscall named by t0 and return the next pc (0 after HALT, which halts)."""
    number = m.regs[T0]
    if number == HALT:
        sys_halt(m)
        return 0
    syscall = SYSCALLS.get(number)
    if syscall is None:
        raise failure(f"unknown syscall 0x{number:x} at pc 0x{pc:08x}")
    value = syscall(m)
    if value is not None:
        m.regs[T0] = value & 0xFFFFFFFF
    return pc + 4
