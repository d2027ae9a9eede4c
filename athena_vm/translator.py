"""The block-translating engine: superblocks compiled to Python functions, run in a chain.

`run_translated` is a drop-in for the reference run loop: it leaves the machine in exactly
the state `step()` would (registers, memory, pc, instruction count, gas, and the same
`Fault`s). Generated code (`athena_vm.codegen`) never faults and never runs out of gas
itself; whenever anything unusual happens it hands one instruction to the reference
`step()`, which is the specification. Between blocks, a dict maps the next pc to its bound
block function (`run_blocks`); a pc without one runs in the reference interpreter.

Translation is lazy and shared:

- A `Translation` holds one program's compiled superblocks (code objects) and is cached by
  the program's code hash (an LRU of CACHE_PROGRAMS): every execution of a template reuses
  them.
- A program first runs WARMUP_INSTRUCTIONS instructions (over all its executions) in the
  reference interpreter with no bookkeeping at all; after that, cold code runs in short
  reference stretches that count the "heat" of the pc they start at, and a pc is compiled
  once HOT_INSTRUCTIONS instructions ran from it. A short call never waits for the
  compiler, and compiling, which is paid for by earlier interpretation, cannot cost a
  hostile program's host much more than interpreting it would.
- Per execution, a `Runner` binds the compiled code objects to that execution's registers
  and memory (a fresh globals dict): one function object per block it uses.
"""

import builtins
import threading
from collections import OrderedDict
from collections.abc import Callable
from itertools import repeat
from operator import length_hint
from types import CodeType, FunctionType
from typing import Any, NamedTuple, cast

from athena_vm.codegen import Bail, bail, generate
from athena_vm.instructions import _div_signed, _rem_signed
from athena_vm.machine import GAS_PER_INSTRUCTION, Instr, Machine
from athena_vm.program import Program
from athena_vm.superblock import STOPPERS, form, loop_heads

#: A compiled superblock: (gas left in instructions, execution) -> (next pc, executed or
#: ~executed), see `athena_vm.codegen`.
Block = Callable[[int, "ExecState"], tuple[int, int]]


class Reference(NamedTuple):
    """The reference interpreter (`athena_vm.vm`), passed in to keep imports acyclic."""

    #: Run the instruction at m.pc; False once halted.
    step: Callable[[Machine, dict[int, Instr]], bool]
    #: Run at most that many instructions from m.pc; False once halted.
    counted: Callable[[Machine, dict[int, Instr], int], bool]
    #: Run from m.pc up to the first taken branch or jump; False once halted.
    stretch: Callable[[Machine, dict[int, Instr]], bool]


#: Instructions a program runs in the reference interpreter, over all its executions,
#: before the translator starts watching where they run: a template called a few times,
#: or a short program run once, never pays for more than that counting.
WARMUP_INSTRUCTIONS = 16384
WARMUP_STRETCH = 4096
#: Instructions run by the reference interpreter from an entry pc before it is compiled.
HOT_INSTRUCTIONS = 512
#: Compiled superblocks per program (a few KiB each); past it, new entries stay in the
#: reference interpreter. With CACHE_PROGRAMS, this bounds the memory translations hold.
MAX_BLOCKS = 1024
CACHE_PROGRAMS = 16
#: Entry pcs whose heat a program keeps; past it the counts start over (code that is spread
#: that thin is not worth compiling, and the counts must not grow with the gas).
MAX_HEAT_ENTRIES = 1 << 16


class Translation:
    """One program's compiled superblocks and the heat of its entry pcs.

    The block functions hold no execution's state (they get it as `st`), so every
    execution, nested or on another thread, calls the same ones.
    """

    def __init__(self, code: dict[int, Instr]) -> None:
        self.code = code
        self.functions: dict[int, Block | None] = {}
        self.heat: dict[int, int] = {}
        #: Instructions run before any heat was counted (see WARMUP_INSTRUCTIONS).
        self.warmup = 0
        self._heads: frozenset[int] | None = None

    @property
    def heads(self) -> frozenset[int]:
        """The program's loop heads, found on the first compile (a scan of all its code)."""
        if self._heads is None:
            self._heads = loop_heads(self.code)
        return self._heads

    def function(self, pc: int) -> Block | None:
        """The compiled block entered at `pc` if it is (or has just become) hot."""
        if pc in self.functions:
            return self.functions[pc]
        if self.heat.get(pc, 0) < HOT_INSTRUCTIONS or len(self.functions) >= MAX_BLOCKS:
            return None
        return self.compile(pc)

    def source(self, pc: int) -> str | None:
        """The Python the block entered at `pc` compiles from (None: the reference runs it)."""
        block = form(self.code, pc, self.heads)
        return None if block is None else generate(block)

    def compile(self, pc: int) -> Block | None:
        source = self.source(pc)
        function: Block | None = None
        if source is not None:
            module = compile(source, f"<athena block 0x{pc:08x}>", "exec")
            code = next(c for c in module.co_consts if isinstance(c, CodeType))
            function = cast(Block, FunctionType(code, _GLOBALS))
        self.functions[pc] = function
        return function


_CACHE: OrderedDict[bytes, Translation] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def translation_for(program: Program) -> Translation:
    """The program's shared translation, found by code hash (uncached without a hash)."""
    key = program.code_hash
    if not key:
        return Translation(program.code)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is None:
            found = _CACHE[key] = Translation(program.code)
            while len(_CACHE) > CACHE_PROGRAMS:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
        return found


def clear_cache() -> None:
    """Forget every translation (tests and benchmarks measure cold starts with it)."""
    with _CACHE_LOCK:
        _CACHE.clear()


#: The globals of every block function: what they use that no execution owns.
_GLOBALS: dict[str, Any] = {
    "__builtins__": builtins,
    "Bail": Bail,
    "bail": bail,
    "repeat": repeat,
    "length_hint": length_hint,
    "div_s": _div_signed,
    "rem_s": _rem_signed,
}


class ExecState:
    """What one execution's blocks work on: its registers, its memory's fast views and word
    cache (see `athena_vm.memory.FastViews`), and the slow paths for when those miss."""

    __slots__ = (
        "load_u8",
        "load_u16",
        "memory",
        "r",
        "store_u8",
        "store_u16",
        "store_u32",
        "words",
    )

    def __init__(self, m: Machine) -> None:
        memory = m.memory.cached()
        views = memory.views
        self.r = m.regs
        self.memory = memory
        self.words = views.words
        self.load_u8 = views.load_u8
        self.load_u16 = views.load_u16
        self.store_u8 = views.store_u8
        self.store_u16 = views.store_u16
        self.store_u32 = views.store_u32

    def cached_load(self, addr: int, site: int) -> int:
        value = self.memory.cached_load_u32(addr)
        if value is None:
            raise Bail(site)
        return value

    def slow_load(self, addr: int, size: int, site: int) -> int:
        value = self.memory.slow_load(addr, size)
        if value is None:
            raise Bail(site)
        return value

    def slow_store(self, addr: int, size: int, value: int, site: int) -> None:
        if not self.memory.slow_store(addr, size, value):
            raise Bail(site)


class Runner:
    """One execution of a translated program: where no compiled block can go on, it runs
    the reference interpreter, counting heat and compiling what becomes hot."""

    def __init__(self, m: Machine, translation: Translation, reference: Reference) -> None:
        self.m = m
        self.translation = translation
        self.reference = reference
        self._state: ExecState | None = None

    @property
    def state(self) -> ExecState:
        """Made when the first block runs: a call that runs only cold code never creates
        its memory's page views."""
        if self._state is None:
            self._state = ExecState(self.m)
        return self._state

    def slow(self, forced: bool) -> bool:
        """Advance where no compiled block can; False once the program has halted."""
        m, code, reference = self.m, self.translation.code, self.reference
        if forced:
            return reference.step(m, code)
        pc = m.pc
        ins = code.get(pc)
        if ins is None:
            return False
        if ins.name in STOPPERS:
            return reference.step(m, code)
        if self.translation.function(pc) is not None:
            return True
        before = m.instructions
        going = reference.stretch(m, code)
        heat = self.translation.heat
        if len(heat) >= MAX_HEAT_ENTRIES:
            heat.clear()
        heat[pc] = heat.get(pc, 0) + m.instructions - before
        return going


def run_blocks(m: Machine, blocks: dict[int, Block | None], runner: Runner) -> tuple[bool, bool]:
    """Chain compiled blocks from m.pc; returns (halted, the reference must step m.pc).

    The gas left is tracked as a count of whole instructions; the machine's counters are
    brought up to date once, when the chain stops.
    """
    get = blocks.get
    pc = m.pc
    block = get(pc)
    if block is None:
        return False, False
    state = runner.state
    code = runner.translation.code
    start = left = (m.gas_limit - m.gas_used) // GAS_PER_INSTRUCTION
    halted = forced = False
    while True:
        pc, n = block(left, state)
        if n < 0:
            left += n + 1
            forced = True
            break
        left -= n
        if not pc:
            halted = True
            break
        block = get(pc)
        if block is None:
            ins = code.get(pc)
            if ins is None or ins.name != "ecall":
                break
            # A syscall between compiled blocks (a wallet call makes a dozen): the
            # reference step runs it on the machine brought up to date, and the chain
            # goes on from where it leaves the pc, without leaving this loop.
            executed = start - left
            m.pc = pc
            m.instructions += executed
            m.gas_used += GAS_PER_INSTRUCTION * executed
            if not runner.reference.step(m, code):
                return True, False
            pc = m.pc
            block = get(pc)
            start = left = (m.gas_limit - m.gas_used) // GAS_PER_INSTRUCTION
            if block is None:
                return False, False
    executed = start - left
    m.pc = pc
    m.instructions += executed
    m.gas_used += GAS_PER_INSTRUCTION * executed
    return halted, forced


def run_translated(m: Machine, program: Program, reference: Reference) -> None:
    """Run until the program halts, exactly as `while step(m, program.code): pass` would."""
    translation = translation_for(program)
    runner = Runner(m, translation, reference)
    try:
        while translation.warmup < WARMUP_INSTRUCTIONS:
            before = m.instructions
            going = reference.counted(m, program.code, WARMUP_STRETCH)
            translation.warmup += m.instructions - before
            if not going:
                return
        while True:
            halted, forced = run_blocks(m, translation.functions, runner)
            if halted or not runner.slow(forced):
                return
    finally:
        # The word cache is authoritative for its words: leave the pages complete.
        m.memory.flush_words()
