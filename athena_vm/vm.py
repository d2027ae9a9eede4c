"""Running a program: `execute` is the VM's one entry point.

The reference interpreter lives here: fetch the predecoded instruction at pc, run its
handler, charge 4 gas, check the limit. `step` is the specification; the translator
(`athena_vm.translator`, the default engine) must leave every machine exactly as a loop of
`step` would, and falls back to `step` for anything unusual. Every `Fault` is caught in
`execute` and becomes the result's status and reason.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from athena_vm.errors import Fault, failure
from athena_vm.host import ExecutionContext, Host
from athena_vm.machine import GAS_PER_INSTRUCTION as GAS_PER_INSTRUCTION
from athena_vm.machine import SINK, Instr, Machine
from athena_vm.memory import DEFAULT_MEMORY_CAP, FAST_VIEWS_SUPPORTED, Memory
from athena_vm.payload import decode_execution_payload
from athena_vm.program import Program
from athena_vm.scale import ScaleError
from athena_vm.status import StatusCode
from athena_vm.syscalls import flush_logs
from athena_vm.translator import Reference, run_translated

ECALL_WORD = 0x00000073
DEFAULT_GAS_LIMIT = 2**32 - 1

#: Called after each instruction with (pc, instruction, changed register or None, machine).
Tracer = Callable[[int, Instr, tuple[int, int] | None, Machine], None]
#: "translator": compiled superblocks (the default); "reference": the `step` loop.
Engine = Literal["translator", "reference"]
ENGINES: tuple[Engine, ...] = ("translator", "reference")
_ENGINE: ContextVar[Engine] = ContextVar("athena_vm_engine", default="translator")


@contextmanager
def default_engine(engine: Engine) -> Iterator[None]:
    """Within the block, `execute` calls that name no engine use `engine`.

    Nested calls made through a host (HOST_CALL) pick it up too, which is how differential
    tests run a whole call tree in one engine.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    token = _ENGINE.set(engine)
    try:
        yield
    finally:
        _ENGINE.reset(token)


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


def step(m: Machine, code: dict[int, Instr]) -> bool:
    """The reference step: run the instruction at m.pc, charge its gas, move pc.

    Returns False once the run has halted: the next pc is 0 (an export returned to
    ra = 0, or HALT) or holds no instruction. Gas is checked after the instruction, so a
    program may spend exactly its limit, and running out wins over halting.
    """
    ins = code.get(m.pc)
    if ins is None:
        return False
    pc = ins.op(m, ins, m.pc)
    m.pc = pc
    m.instructions += 1
    m.gas_used += GAS_PER_INSTRUCTION
    if m.gas_used > m.gas_limit:
        raise Fault(StatusCode.OUT_OF_GAS, f"out of gas after {m.instructions} instructions")
    return pc != 0


def run_reference(m: Machine, code: dict[int, Instr]) -> None:
    """Exactly `while step(m, code): pass`, with the machine's counters kept in locals.

    Syscalls read and add to `m.gas_used` (ED25519_VERIFY, HOST_CALL), so the counters are
    written back before each ecall and read again after it.
    """
    pc, used, count, limit = m.pc, m.gas_used, m.instructions, m.gas_limit
    get = code.get
    ins = get(pc)
    try:
        while ins is not None:
            if ins.word == ECALL_WORD:
                m.pc, m.gas_used = pc, used
                try:
                    pc = ins.op(m, ins, pc)
                finally:
                    # Kept even when the syscall faults (a failed HOST_CALL has charged
                    # its callee's gas), as `step` keeps it.
                    used = m.gas_used
            else:
                pc = ins.op(m, ins, pc)
            count += 1
            used += GAS_PER_INSTRUCTION
            if used > limit:
                raise Fault(StatusCode.OUT_OF_GAS, f"out of gas after {count} instructions")
            if not pc:
                break
            ins = get(pc)
    finally:
        m.pc, m.gas_used, m.instructions = pc, used, count


def run_counted(m: Machine, code: dict[int, Instr], limit: int) -> bool:
    """`run_reference` for at most `limit` instructions: the translator's warm-up runs a
    program's first instructions so. Returns False once the program has halted.

    A copy of `run_reference`'s loop with the count check added, which that loop, the
    reference engine's, is spared.
    """
    pc, used, count, gas_limit = m.pc, m.gas_used, m.instructions, m.gas_limit
    stop = count + limit
    get = code.get
    ins = get(pc)
    try:
        while ins is not None:
            if ins.word == ECALL_WORD:
                m.pc, m.gas_used = pc, used
                try:
                    pc = ins.op(m, ins, pc)
                finally:
                    used = m.gas_used
            else:
                pc = ins.op(m, ins, pc)
            count += 1
            used += GAS_PER_INSTRUCTION
            if used > gas_limit:
                raise Fault(StatusCode.OUT_OF_GAS, f"out of gas after {count} instructions")
            if not pc:
                return False
            if count == stop:
                return True
            ins = get(pc)
        return False
    finally:
        m.pc, m.gas_used, m.instructions = pc, used, count


def run_stretch(m: Machine, code: dict[int, Instr]) -> bool:
    """`run_reference` up to and including the first instruction that does not fall through
    (a taken branch, a jump): the translator runs cold code so, counting where stretches
    start. Returns False once the program has halted.

    A copy of `run_reference`'s loop with the jump check added.
    """
    pc, used, count, limit = m.pc, m.gas_used, m.instructions, m.gas_limit
    get = code.get
    ins = get(pc)
    try:
        while ins is not None:
            here = pc
            if ins.word == ECALL_WORD:
                m.pc, m.gas_used = pc, used
                try:
                    pc = ins.op(m, ins, pc)
                finally:
                    used = m.gas_used
            else:
                pc = ins.op(m, ins, pc)
            count += 1
            used += GAS_PER_INSTRUCTION
            if used > limit:
                raise Fault(StatusCode.OUT_OF_GAS, f"out of gas after {count} instructions")
            if not pc:
                return False
            if pc != here + 4:
                return True
            ins = get(pc)
        return False
    finally:
        m.pc, m.gas_used, m.instructions = pc, used, count


#: What the translator falls back to.
_REFERENCE = Reference(step, run_counted, run_stretch)


def run(
    m: Machine, program: Program, tracer: Tracer | None = None, engine: Engine = "translator"
) -> None:
    """Run until the program halts, reporting each instruction to `tracer` if given.

    A tracer always gets the reference stepper, which sees every instruction.
    """
    code = program.code
    if tracer is None:
        if engine == "translator" and FAST_VIEWS_SUPPORTED:
            run_translated(m, program, _REFERENCE)
        else:
            run_reference(m, code)
        return
    going = True
    while going:
        pc, before = m.pc, list(m.regs)
        ins = code.get(pc)
        try:
            going = step(m, code)
        finally:
            if ins is not None:
                changed = next(
                    ((r, m.regs[r]) for r in range(1, SINK) if m.regs[r] != before[r]), None
                )
                tracer(pc, ins, changed, m)


def execute(
    program: Program,
    host: Host,
    context: ExecutionContext,
    payload: bytes,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    *,
    memory_cap: int = DEFAULT_MEMORY_CAP,
    tracer: Tracer | None = None,
    engine: Engine | None = None,
) -> ExecutionResult:
    """Run `program` on a SCALE ExecutionPayload and report what happened.

    Never raises for anything the guest or the payload does: every fault becomes a result.
    `engine` picks the translator or the reference interpreter (default: the translator, or
    what `default_engine` set); both give identical results.
    """
    return execute_machine(
        program,
        host,
        context,
        payload,
        gas_limit,
        memory_cap=memory_cap,
        tracer=tracer,
        engine=engine,
    )[0]


def execute_machine(
    program: Program,
    host: Host,
    context: ExecutionContext,
    payload: bytes,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    *,
    memory_cap: int = DEFAULT_MEMORY_CAP,
    tracer: Tracer | None = None,
    engine: Engine | None = None,
) -> tuple[ExecutionResult, Machine | None]:
    """`execute`, also returning the machine as it stopped (None if it never started).

    For differential tests and debugging: the machine holds the final memory, which the
    result does not carry.
    """
    chosen_engine = _ENGINE.get() if engine is None else engine
    if chosen_engine not in ENGINES:
        raise ValueError(f"unknown engine {chosen_engine!r}; expected one of {ENGINES}")
    machine: Machine | None = None
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
        run(machine, program, tracer, chosen_engine)
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
            instructions=machine.instructions if machine else 0,
        ), machine
    return ExecutionResult(
        status=StatusCode.SUCCESS,
        gas_used=machine.gas_used,
        gas_left=gas_limit - machine.gas_used,
        output=bytes(machine.output),
        logs=tuple(machine.logs),
        registers=machine.registers(),
        instructions=machine.instructions,
    ), machine
