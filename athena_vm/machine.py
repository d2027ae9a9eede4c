"""The state of one execution: registers, memory, gas, input and output streams."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from athena_vm.memory import Memory

if TYPE_CHECKING:
    from athena_vm.host import ExecutionContext, Host

NUM_REGISTERS = 16
#: Writes to x0 are decoded as writes to this extra slot, so handlers never test for x0.
SINK = NUM_REGISTERS
#: Bound on the return data, the input stream and the logs of one execution.
MAX_STREAM_BYTES = 4 * 1024 * 1024
#: Gas charged for every executed instruction, ecall included.
GAS_PER_INSTRUCTION = 4


@dataclass(slots=True, eq=False)
class Machine:
    memory: Memory
    gas_limit: int
    context: "ExecutionContext"
    host: "Host"
    regs: list[int] = field(default_factory=lambda: [0] * (NUM_REGISTERS + 1))
    pc: int = 0
    gas_used: int = 0
    instructions: int = 0
    input: bytes = b""
    input_pos: int = 0
    output: bytearray = field(default_factory=bytearray)
    logs: list[str] = field(default_factory=list)
    log_bytes: int = 0
    partial_lines: dict[int, bytearray] = field(default_factory=dict)

    @property
    def gas_left(self) -> int:
        return self.gas_limit - self.gas_used

    def registers(self) -> tuple[int, ...]:
        """x0..x15 as the guest sees them."""
        return tuple(self.regs[:NUM_REGISTERS])


#: An instruction handler: executes `ins` at `pc` and returns the next pc.
Handler = Callable[[Machine, "Instr", int], int]


@dataclass(frozen=True, slots=True)
class Instr:
    """One predecoded instruction. `rd` is SINK when the instruction writes x0."""

    name: str
    op: Handler
    rd: int = 0
    rs1: int = 0
    rs2: int = 0
    imm: int = 0
    word: int = 0
    note: str = ""

    def mnemonic(self) -> str:
        return self.name if not self.note else f"{self.name} ({self.note})"
