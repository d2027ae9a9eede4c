"""Running a program: `execute` is the VM's one entry point.

The reference interpreter lives here: fetch the predecoded instruction at pc, run its
handler, charge 4 gas, check the limit. Every `Fault` is caught in `execute` and becomes the
result's status and reason.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from athena_vm.errors import Fault, failure
from athena_vm.host import ExecutionContext, Host
from athena_vm.machine import SINK, Instr, Machine
from athena_vm.memory import DEFAULT_MEMORY_CAP, Memory
from athena_vm.payload import decode_execution_payload
from athena_vm.program import Program
from athena_vm.scale import ScaleError
from athena_vm.status import StatusCode
from athena_vm.syscalls import flush_logs

GAS_PER_INSTRUCTION = 4
DEFAULT_GAS_LIMIT = 2**32 - 1

#: Called after each instruction with (pc, instruction, changed register or None, machine).
Tracer = Callable[[int, Instr, tuple[int, int] | None, Machine], None]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    status: StatusCode
    gas_used: int
    gas_left: int
    output: bytes = b""
    logs: tuple[str, ...] = ()
    reason: str | None = None
    registers: tuple[int, ...] = field(default=(), compare=False)
    instructions: int = field(default=0, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == StatusCode.SUCCESS


def run(m: Machine, program: Program) -> int:
    """The reference interpreter. Runs from m.pc until a halt; returns instructions run.

    Halts when the next pc is 0 (an export returned to ra = 0, or HALT) or has no
    instruction. Gas is checked after each instruction, so a program may spend exactly
    its limit.
    """
    code = program.code
    limit = m.gas_limit
    pc = m.pc
    count = 0
    ins = code.get(pc)
    while ins is not None:
        m.pc = pc
        pc = ins.op(m, ins, pc)
        count += 1
        m.gas_used += GAS_PER_INSTRUCTION
        if m.gas_used > limit:
            m.pc = pc
            raise Fault(StatusCode.OUT_OF_GAS, f"out of gas after {count} instructions")
        if not pc:
            break
        ins = code.get(pc)
    m.pc = pc
    return count


def run_traced(m: Machine, program: Program, tracer: Tracer) -> int:
    """`run`, reporting every instruction and the register it changed."""
    code = program.code
    pc = m.pc
    count = 0
    ins = code.get(pc)
    while ins is not None:
        m.pc = pc
        before = list(m.regs)
        try:
            pc = ins.op(m, ins, pc)
        finally:
            changed = next(((r, m.regs[r]) for r in range(1, SINK) if m.regs[r] != before[r]), None)
            tracer(m.pc, ins, changed, m)
        count += 1
        m.gas_used += GAS_PER_INSTRUCTION
        if m.gas_used > m.gas_limit:
            m.pc = pc
            raise Fault(StatusCode.OUT_OF_GAS, f"out of gas after {count} instructions")
        if not pc:
            break
        ins = code.get(pc)
    m.pc = pc
    return count


def execute(
    program: Program,
    host: Host,
    context: ExecutionContext,
    payload: bytes,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    *,
    memory_cap: int = DEFAULT_MEMORY_CAP,
    tracer: Tracer | None = None,
) -> ExecutionResult:
    """Run `program` on a SCALE ExecutionPayload and report what happened.

    Never raises for anything the guest or the payload does: every fault becomes a result.
    """
    machine: Machine | None = None
    count = 0
    try:
        try:
            decoded = decode_execution_payload(payload)
        except ScaleError as exc:
            raise failure(f"undecodable execution payload: {exc}") from None
        entry = program.entry
        chosen = decoded.payload.selector
        if chosen is not None:
            address = program.export_address(chosen)
            if address is None:
                raise failure(f"unknown selector {chosen.hex()}")
            entry = address
        machine = Machine(Memory(program.image, memory_cap), gas_limit, context, host)
        machine.pc = entry
        machine.input = decoded.state + decoded.payload.input
        count = run_traced(machine, program, tracer) if tracer else run(machine, program)
        flush_logs(machine)
    except Fault as fault:
        if machine is not None:
            flush_logs(machine)
        return ExecutionResult(
            status=fault.status,
            gas_used=gas_limit,
            gas_left=0,
            logs=tuple(machine.logs) if machine else (),
            reason=fault.reason,
            registers=machine.registers() if machine else (),
            instructions=count,
        )
    return ExecutionResult(
        status=StatusCode.SUCCESS,
        gas_used=machine.gas_used,
        gas_left=gas_limit - machine.gas_used,
        output=bytes(machine.output),
        logs=tuple(machine.logs),
        registers=machine.registers(),
        instructions=count,
    )
