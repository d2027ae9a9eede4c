"""The translator agrees with the reference interpreter on every program we have.

Every test compares both engines through `tests.differential`: result, machine state
(registers, pc, counters, every memory page) and host. Blocks are compiled on their first
visit (`eager`) unless a test is about when compilation happens.
"""

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from athena_vm import ExecutionContext, ExecutionPayload, Payload, load_program, memory, selector
from athena_vm import translator as tr
from athena_vm.codegen import generate
from athena_vm.in_memory_host import InMemoryHost, template_address
from athena_vm.program import Program
from athena_vm.status import StatusCode
from athena_vm.superblock import form
from athena_vm.vm import ExecutionResult, execute
from devnet.bench.vm import GUESTS as BENCH_GUESTS
from tests import asm
from tests.asm import A0, A1, A2, S0, S1, T0, T1, ZERO, li
from tests.differential import both, eager_translation
from tests.fuzz.test_hostile import raw_instructions
from tests.vmrun import compiler

Guest = Callable[[str], bytes]
TEMPLATES = Path(__file__).parents[2] / "templates"
TEST_GUESTS = Path(__file__).parents[1] / "guests"
HINT_LEN, HINT_READ, WRITE = 0xF0, 0xF1, 0x02
DATA = 0x10000


@pytest.fixture(autouse=True)
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    eager_translation(monkeypatch)


def call(
    code: bytes,
    *,
    method: str | None = None,
    input: bytes = b"",
    gas: int = 2**32 - 1,
    host: InMemoryHost | None = None,
    state: bytes = b"",
    program: Program | None = None,
) -> ExecutionResult:
    """Run `code` as a fresh account's template in both engines; the results must agree."""
    host = host or InMemoryHost()
    template = host.add_template(code)
    account = template_address(template + state)
    host.account(account).template = template
    host.account(account).state = state
    payload = ExecutionPayload(state, Payload(selector(method) if method else None, input))
    context = ExecutionContext(callee=account, callee_template=template)
    return both(program or load_program(code), host, context, payload.encode(), gas)


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


# --- compiled guests --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_guest(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    return compiler(BENCH_GUESTS, tmp_path_factory.mktemp("bench-guests"))


@pytest.mark.parametrize("name", ["compute", "hash"])
@pytest.mark.parametrize("rounds", [0, 1, 3])
def test_bench_guests_agree(bench_guest: Callable[[str], bytes], name: str, rounds: int) -> None:
    result = call(bench_guest(name), input=rounds.to_bytes(8, "little"))
    assert result.ok and result.instructions > 50


@pytest.mark.parametrize("name", ["compute", "hash"])
def test_bench_guests_agree_at_sampled_gas_limits(
    bench_guest: Callable[[str], bytes], name: str
) -> None:
    code = bench_guest(name)
    program = load_program(code)
    rounds = (1).to_bytes(8, "little")
    full = call(code, input=rounds, program=program)
    rng = random.Random(name)
    limits = {0, 3, 4, full.gas_used - 1, full.gas_used, full.gas_used + 1}
    limits |= {rng.randrange(full.gas_used) for _ in range(40)}
    for gas in sorted(limits):
        call(code, input=rounds, gas=gas, program=program)


def _inputs(seed: str) -> Iterator[bytes]:
    """A few inputs for an export whose arguments we do not know: some decode, most not."""
    rng = random.Random(seed)
    yield b""
    yield u32(3, 5, 7, 11)
    yield u32(0xFFFFFFFF, 0x80000000)
    yield rng.randbytes(40)
    yield rng.randbytes(300)


def _exports(program: Program) -> list[str | None]:
    """The program's methods, or its entry point (None) when it exports none."""
    names = sorted(name.removeprefix("athexp_") for name in program.export_names.values())
    return list(names) if names else [None]


@pytest.mark.parametrize("source", sorted(p.stem for p in TEST_GUESTS.glob("*.c")))
def test_test_guests_agree(guest: Guest, source: str) -> None:
    code = guest(source)
    program = load_program(code)
    for method in _exports(program):
        for data in _inputs(f"{source}.{method}"):
            call(code, method=method, input=data, gas=60_000, program=program)


@pytest.mark.parametrize("source", sorted(p.stem for p in TEMPLATES.glob("*.elf")))
def test_templates_agree(source: str) -> None:
    code = (TEMPLATES / f"{source}.elf").read_bytes()
    program = load_program(code)
    for method in _exports(program):
        for data in _inputs(f"{source}.{method}"):
            for state in (b"", bytes(range(33))):
                call(code, method=method, input=data, state=state, gas=200_000, program=program)


# --- hand-assembled programs ------------------------------------------------------------


def _loop_program() -> bytes:
    """A small program with everything a block can meet: loops, loads, stores, syscalls."""
    return asm.raw(
        li(S0, DATA),
        li(S1, 5),
        asm.addi(T0, ZERO, HINT_LEN),
        asm.ecall(),  # t0 = input length
        asm.sw(T0, S0, 0),
        # loop: words and bytes, a byte store into a cached word, a misaligned-free walk
        asm.lw(T1, S0, 0),
        asm.add(T1, T1, S1),
        asm.sw(T1, S0, 4),
        asm.sb(S1, S0, 5),
        asm.lw(A1, S0, 4),
        asm.lhu(A2, S0, 4),
        asm.lb(A0, S0, 5),
        asm.mul(A0, A0, T1),
        asm.addi(S0, S0, 8),
        asm.addi(S1, S1, -1),
        asm.bne(S1, ZERO, -44),
        # read 4 input bytes over a word already cached, then load it back
        li(A0, DATA),
        asm.addi(A1, ZERO, 4),
        asm.addi(T0, ZERO, HINT_READ),
        asm.ecall(),
        asm.lw(A2, A0, 0),
        asm.addi(A0, ZERO, 3),
        li(A1, DATA),
        asm.addi(A2, ZERO, 8),
        asm.addi(T0, ZERO, WRITE),
        asm.ecall(),
    )


def test_every_gas_limit_agrees_on_a_hand_assembled_loop() -> None:
    code = _loop_program()
    program = load_program(code)
    full = call(code, input=b"abcdefgh", program=program)
    assert full.ok and full.instructions > 60 and len(full.output) == 8
    for gas in range(full.gas_used + 2):
        call(code, input=b"abcdefgh", gas=gas, program=program)


def test_every_gas_limit_agrees_on_a_compiled_guest(guest: Guest) -> None:
    code = guest("sys_io")
    program = load_program(code)
    full = call(code, method="hint", input=u32(3) + b"abcdef", program=program)
    assert full.ok
    for gas in range(full.gas_used + 2):
        call(code, method="hint", input=u32(3) + b"abcdef", gas=gas, program=program)


def _run_words(
    *items: int | tuple[int, ...] | list[int], gas: int = 100_000, input: bytes = b""
) -> ExecutionResult:
    return call(asm.raw(*items), gas=gas, input=input)


def test_misaligned_access_on_a_late_loop_iteration_faults_exactly() -> None:
    # s0 walks by 3: aligned at first (0x10000), misaligned on the second iteration.
    result = _run_words(
        li(S0, DATA),
        li(S1, 4),
        asm.sw(S1, S0, 0),
        asm.lw(A0, S0, 0),
        asm.addi(S0, S0, 3),
        asm.addi(S1, S1, -1),
        asm.bne(S1, ZERO, -16),
    )
    assert result.status == StatusCode.FAILURE
    assert "misaligned" in (result.reason or "")


def test_memory_cap_inside_a_loop_faults_exactly(guest: Guest) -> None:
    code = guest("hostile")
    program = load_program(code)
    host = InMemoryHost()
    template = host.add_template(code)
    payload = ExecutionPayload(b"", Payload(selector("hog"), u32(4096))).encode()
    context = ExecutionContext(callee=template_address(template), callee_template=template)
    result = both(program, host, context, payload, 10**7, memory_cap=1 << 20)
    assert result.status == StatusCode.FAILURE and "memory cap" in (result.reason or "")


@pytest.mark.parametrize(
    "words",
    [
        [asm.jal(ZERO, 0)],  # a jump to pc 0 halts: the block at 0 is no loop
        [asm.beq(ZERO, ZERO, 0)],
        [asm.addi(A0, A0, 1), asm.bne(A0, ZERO, -4)],
        [asm.nop(), asm.jal(ZERO, 0)],  # a one-instruction loop with no code at all
        [asm.nop(), asm.beq(ZERO, ZERO, 0)],
        [*li(A0, 7), asm.addi(A0, A0, -1), asm.bne(A0, ZERO, -4)],
        # counters that wrap around: their loops stop short of it and the reference steps
        [*li(S0, 0xFFFFFFF0), asm.addi(S0, S0, 4), asm.bne(S0, ZERO, -4)],
        [*li(S0, 5), asm.lw(A1, S0, -5), asm.addi(S0, S0, -2), asm.bne(S0, A0, -8)],
        [*li(A0, 0xFFFFFFFF), asm.mul(A0, A0, A0), asm.mul(A0, A0, A0), asm.jal(ZERO, -8)],
        [*li(A0, 1), asm.slli(A0, A0, 31), asm.add(A0, A0, A0), asm.bne(A0, ZERO, -4)],
        [*li(A0, -8), asm.srai(A0, A0, 1), asm.srli(A1, A0, 3), asm.bne(A0, A1, -8)],
        [asm.lw(ZERO, ZERO, 1)],  # a faulting load into x0 still faults
        [asm.addi(ZERO, ZERO, 5), asm.lw(A0, ZERO, 4), asm.sw(A0, ZERO, -4)],
        [*li(A0, 0x12345678), asm.slli(A1, A0, 24), asm.srai(A1, A1, 24)],
        [*li(A0, 0x12345678), asm.slli(A0, A0, 16), asm.srli(A0, A0, 16)],
        [*li(A0, 0x12348678), asm.slli(A0, A0, 16), asm.srai(A0, A0, 16)],
        [*li(A0, -5), *li(A1, 2), asm.div(A2, A0, A1), asm.rem(A0, A0, A1)],
        [*li(A0, 0x80000000), *li(A1, -1), asm.div(A2, A0, A1), asm.divu(A0, A0, ZERO)],
        [*li(A0, 9), asm.remu(A1, A0, ZERO), asm.mulh(A2, A0, A0), asm.mulhsu(A0, A1, A0)],
        [*li(A0, 0x10004), asm.jalr(A1, A0, 0)],  # a jump out of the code halts
        [*li(A0, 12), asm.jalr(A1, A0, 1), asm.nop(), asm.nop()],  # bit 0 cleared
    ],
)
def test_edge_programs_agree(words: list[int]) -> None:
    for gas in (0, 7, 8, 40, 4000):
        _run_words(words, gas=gas)


def test_word_cache_stays_exact() -> None:
    """Every way to touch a cached word: word and byte stores, byte loads, syscall reads
    (WRITE) and writes (HINT_READ), in a loop so the blocks are compiled."""
    result = _run_words(
        li(S0, DATA),
        li(S1, 3),
        asm.lw(A0, S0, 0),  # loop: cache the word
        asm.addi(A0, A0, 0x123),
        asm.sw(A0, S0, 0),  # a store into the cache only
        asm.sb(S1, S0, 1),  # a byte into the cached word
        asm.lbu(A1, S0, 2),  # a byte of the cached word
        asm.lh(A2, S0, 0),
        asm.lw(T1, S0, 0),
        asm.add(T1, T1, A1),
        asm.add(T1, T1, A2),
        asm.sw(T1, S0, 4),
        asm.addi(S1, S1, -1),
        asm.bne(S1, ZERO, -44),
        li(A0, DATA + 2),  # HINT_READ over half the cached word
        asm.addi(A1, ZERO, 3),
        asm.addi(T0, ZERO, HINT_READ),
        asm.ecall(),
        asm.lw(A2, S0, 0),
        asm.sw(A2, S0, 8),
        asm.addi(A0, ZERO, 3),  # WRITE the words back as the output
        li(A1, DATA),
        asm.addi(A2, ZERO, 12),
        asm.addi(T0, ZERO, WRITE),
        asm.ecall(),
        input=b"xyz",
    )
    assert result.ok and len(result.output) == 12


def test_word_cache_overflow_and_zero_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full cache is flushed and emptied; untouched pages read as zero past the cap of
    shared zero views."""
    monkeypatch.setattr(memory, "MAX_CACHED_WORDS", 5)
    monkeypatch.setattr(memory, "MAX_ZERO_VIEWS", 2)
    result = _run_words(
        li(S0, DATA),
        li(S1, 40),
        asm.sw(S1, S0, 0),  # loop: store, load back, load a word of an untouched page
        asm.lw(A0, S0, 0),
        asm.lw(A1, S0, 0x7FC),
        li(T1, 0x1000),
        asm.add(A2, S0, T1),
        asm.lbu(A2, A2, 1),
        asm.add(S0, S0, T1),
        asm.addi(S1, S1, -1),
        asm.bne(S1, ZERO, -36),
    )
    assert result.ok


def test_memory_reads_and_writes_through_the_word_cache() -> None:
    """The cache is authoritative for its words; reads and writes wrap at 2**32."""
    mem = memory.Memory({}, 1 << 20).cached()
    words = mem.views.words
    mem.store_u32(0xFFFFFFFC, 0x11223344)
    mem.store_u32(0, 0x55667788)
    assert mem.cached_load_u32(0xFFFFFFFC) == 0x11223344
    assert mem.cached_load_u32(0) == 0x55667788
    assert mem.cached_load_u32(0x10000) == 0 and 0x10000 not in words  # untouched page
    words[0xFFFFFFFC] = 0xAABBCCDD  # as translated code stores: into the cache only
    assert mem.load_u8(0xFFFFFFFD) == 0xCC and mem.load_u16(0xFFFFFFFE) == 0xAABB
    assert mem.read(0xFFFFFFFE, 4) == bytes([0xBB, 0xAA, 0x88, 0x77])
    mem.store_u8(0xFFFFFFFF, 0x01)
    assert words[0xFFFFFFFC] == 0x01BBCCDD
    mem.write(0xFFFFFFFF, b"\x02\x03")
    assert 0xFFFFFFFC not in words and 0 not in words
    assert mem.read(0xFFFFFFFC, 8) == bytes([0xDD, 0xCC, 0xBB, 0x02, 0x03, 0x77, 0x66, 0x55])
    mem.store_u32(8, 9)
    assert mem.cached_load_u32(8) == 9
    words[8] = 10
    mem.flush_words()
    assert bytes(mem.pages[0][8:12]) == (10).to_bytes(4, "little")


# --- random programs --------------------------------------------------------------------

REG = st.integers(0, 15)
IMM = st.integers(-2048, 2047)
SHAMT = st.integers(0, 31)
_R_OPS = [
    asm.add,
    asm.sub,
    asm.sll,
    asm.slt,
    asm.sltu,
    asm.xor,
    asm.srl,
    asm.sra,
    asm.or_,
    asm.and_,
    asm.mul,
    asm.mulh,
    asm.mulhsu,
    asm.mulhu,
    asm.div,
    asm.divu,
    asm.rem,
    asm.remu,
]
_I_OPS = [asm.addi, asm.slti, asm.sltiu, asm.xori, asm.ori, asm.andi]
_SHIFTS = [asm.slli, asm.srli, asm.srai]
_LOADS = [asm.lw, asm.lw, asm.lb, asm.lbu, asm.lh, asm.lhu]
_STORES = [asm.sw, asm.sw, asm.sb, asm.sh]
_BRANCHES = [asm.beq, asm.bne, asm.blt, asm.bge, asm.bltu, asm.bgeu]
#: Values that exercise carries, signs and the address space's edges.
_VALUES = [0, 1, 2, 3, -1, -2, 0x7FFFFFFF, 0x80000000, DATA, DATA + 2, DATA + 3, 0xFFFFFFFC]


def _instruction() -> st.SearchStrategy[list[int]]:
    pointer = st.sampled_from([S0, S1, A0, ZERO])
    offset = st.integers(-16, 16)
    step = st.integers(-12, 12).map(lambda k: 4 * k)
    return st.one_of(
        st.builds(lambda f, d, a, b: [f(d, a, b)], st.sampled_from(_R_OPS), REG, REG, REG),
        st.builds(lambda f, d, a, i: [f(d, a, i)], st.sampled_from(_I_OPS), REG, REG, IMM),
        st.builds(lambda f, d, a, k: [f(d, a, k)], st.sampled_from(_SHIFTS), REG, REG, SHAMT),
        st.builds(lambda f, d, p, o: [f(d, p, o)], st.sampled_from(_LOADS), REG, pointer, offset),
        st.builds(lambda f, s, p, o: [f(s, p, o)], st.sampled_from(_STORES), REG, pointer, offset),
        st.builds(lambda f, a, b, o: [f(a, b, o)], st.sampled_from(_BRANCHES), REG, REG, step),
        st.builds(lambda d, o: [asm.jal(d, o)], REG, step),
        st.builds(lambda r, v: list(li(r, v)), REG, st.sampled_from(_VALUES)),
        st.sampled_from([HINT_LEN, WRITE]).map(lambda n: [asm.addi(T0, ZERO, n), asm.ecall()]),
    )


@st.composite
def programs(draw: st.DrawFn) -> tuple[bytes, int]:
    prologue = [
        word for reg in (S0, S1, A0, A1, A2) for word in li(reg, draw(st.sampled_from(_VALUES)))
    ]
    body = draw(st.lists(_instruction(), min_size=1, max_size=30))
    words = prologue + [word for item in body for word in item]
    return asm.raw(words), draw(st.sampled_from([0, 37, 400, 4000, 40_000]))


@settings(max_examples=250)
@given(programs())
def test_random_programs_agree(case: tuple[bytes, int]) -> None:
    code, gas = case
    call(code, input=b"input", gas=gas)


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_generator_programs_agree(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(80):
        words = raw_instructions(rng)
        call(asm.raw(words), input=b"in", gas=rng.choice([0, 40, 400, 4000, 40_000]))


@pytest.mark.slow
@settings(max_examples=5000)
@given(programs())
def test_random_programs_agree_soak(case: tuple[bytes, int]) -> None:
    code, gas = case
    call(code, input=b"input", gas=gas)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compute", "hash"])
def test_bench_guests_agree_at_every_gas_limit(
    bench_guest: Callable[[str], bytes], name: str
) -> None:
    code = bench_guest(name)
    program = load_program(code)
    full = call(code, input=(0).to_bytes(8, "little"), program=program)
    for gas in range(full.gas_used + 2):
        call(code, input=(0).to_bytes(8, "little"), gas=gas, program=program)


# --- when and what the translator compiles -----------------------------------------------


def test_generated_source_is_deterministic_and_compiles() -> None:
    program = load_program(_loop_program())
    for pc in program.code:
        block = form(program.code, pc)
        if block is None:
            continue
        source = generate(block)
        assert source == generate(form(program.code, pc) or block)
        compile(source, "<test>", "exec")


def test_cold_code_is_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "HOT_INSTRUCTIONS", 10**9)
    code = _loop_program()
    call(code, input=b"abcdefgh")
    assert tr.translation_for(load_program(code)).functions == {}


def test_hot_code_is_compiled_once_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "HOT_INSTRUCTIONS", 16)
    code = asm.raw(li(A0, 500), asm.addi(A0, A0, -1), asm.bne(A0, ZERO, -4))
    tr.clear_cache()
    call(code)
    translation = tr.translation_for(load_program(code))
    compiled = dict(translation.functions)
    assert compiled, "the loop ran 500 times: it must have been compiled"
    call(code)
    assert translation.functions == compiled


def test_a_short_program_is_not_watched_until_its_warm_up_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tr, "WARMUP_INSTRUCTIONS", 1000)
    monkeypatch.setattr(tr, "HOT_INSTRUCTIONS", 100)
    code = asm.raw(li(A0, 40), asm.addi(A0, A0, -1), asm.bne(A0, ZERO, -4))
    tr.clear_cache()
    translation = tr.translation_for(load_program(code))
    runs, per_run = 0, 0
    while not translation.heat:
        per_run = call(code).instructions
        runs += 1
    # Runs are counted whole: the one that ends the warm-up still runs unwatched.
    assert runs == -(-1000 // per_run) + 1
    while not translation.functions:
        call(code)
    assert all(translation.functions.values())


def test_tracing_always_steps_the_reference() -> None:
    code = asm.raw(li(A0, 3), asm.addi(A0, A0, -1), asm.bne(A0, ZERO, -4))
    seen: list[int] = []
    program = load_program(code)
    payload = ExecutionPayload(b"", Payload(None, b"")).encode()
    context = ExecutionContext(callee=bytes(24))
    result = execute(
        program,
        InMemoryHost(),
        context,
        payload,
        tracer=lambda pc, ins, changed, m: seen.append(pc),
        engine="translator",
    )
    assert result.ok and len(seen) == result.instructions == 8


def test_engine_choice() -> None:
    code = asm.raw(li(A0, 3), asm.addi(A0, A0, 1))
    program = load_program(code)
    payload = ExecutionPayload(b"", Payload(None, b"")).encode()
    context = ExecutionContext(callee=bytes(24))
    results = [
        execute(program, InMemoryHost(), context, payload, engine=engine)
        for engine in ("reference", "translator")
    ]
    assert results[0] == results[1] and results[0].registers[A0] == 4
    with pytest.raises(ValueError, match="unknown engine"):
        execute(program, InMemoryHost(), context, payload, engine="fast")  # type: ignore[arg-type]
