"""Hostile programs: guests that misbehave on purpose, then random and mutated programs.

Whatever the bytes, loading raises `ProgramError` or returns a program, and `execute`
returns an `ExecutionResult`: nothing else may escape. The random cases are drawn from seeded
`random.Random` generators, so every run (and every failure report) is reproducible.
"""

import random
import struct
import time
from collections.abc import Callable, Iterator

import blake3
import pytest

from athena_vm import (
    ExecutionContext,
    ExecutionPayload,
    ExecutionResult,
    Payload,
    Program,
    ProgramError,
    StatusCode,
    execute,
    load_program,
    selector,
)
from athena_vm.in_memory_host import InMemoryHost, template_address
from athena_vm.memory import DEFAULT_MEMORY_CAP
from athena_vm.syscalls import (
    ED25519_VERIFY,
    HALT,
    HINT_LEN,
    HINT_READ,
    HOST_CALL,
    HOST_CONTEXT,
    HOST_DEPLOY,
    HOST_GETBALANCE,
    HOST_READ,
    HOST_SPAWN,
    HOST_WRITE,
    MAX_SYSCALL_BUFFER,
    WRITE,
)
from tests.vmrun import run_code

Guest = Callable[[str], bytes]

SYSCALL_NUMBERS = (
    HALT,
    WRITE,
    HOST_READ,
    HOST_WRITE,
    HOST_CALL,
    HOST_GETBALANCE,
    HOST_SPAWN,
    HOST_DEPLOY,
    HOST_CONTEXT,
    ED25519_VERIFY,
    HINT_LEN,
    HINT_READ,
)
CODE_BASE = 0x00200800


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def assert_consistent(result: ExecutionResult, gas: int) -> None:
    """What every result must satisfy, whatever the program did."""
    assert isinstance(result, ExecutionResult)
    assert isinstance(result.status, StatusCode)
    if result.ok:
        assert 0 <= result.gas_used <= gas
        assert result.gas_left == gas - result.gas_used
    else:
        assert (result.gas_used, result.gas_left, result.output) == (gas, 0, b"")
        assert isinstance(result.reason, str) and result.reason


# --- infinite loops, wild jumps, wild stores -----------------------------------------------


@pytest.mark.parametrize("gas", [0, 4, 1000, 100_000])
def test_infinite_loop_stops_at_gas(guest: Guest, gas: int) -> None:
    result, _, _ = run_code(guest("hostile"), method="spin", gas=gas)
    assert result.status == StatusCode.OUT_OF_GAS
    assert_consistent(result, gas)


@pytest.mark.parametrize("n", [1, 2, 100])
def test_one_instruction_loop_spends_exactly_its_limit(n: int) -> None:
    # A jump back to pc 0 would halt, so the loop sits at pc 4: nop; jal x0, 0.
    loop = b"\x7fATH" + u32(0x00000013, 0x0000006F)
    result, _, _ = run_code(loop, gas=4 * n)
    assert result.status == StatusCode.OUT_OF_GAS
    assert result.reason == f"out of gas after {n + 1} instructions"


def test_jump_outside_the_code_halts(guest: Guest) -> None:
    code = guest("hostile")
    program = load_program(code)
    address, _, _ = run_code(code, method="data_address")
    data = struct.unpack("<I", address.output)[0]
    jump_export = program.exports[selector("jump")]
    # Nothing was decoded at these addresses: the pc leaves the code and execution halts.
    targets = [0x12345678, 0xFFFFFFFC, 0x80000000, data, data + 4, jump_export + 2, 0]
    assert all(target not in program.code for target in targets)
    for target in targets:
        result, _, _ = run_code(code, method="jump", input=u32(target))
        assert result.ok, (hex(target), result.reason)
        assert result.output == b"before"


def test_data_is_never_executed(guest: Guest) -> None:
    """The data holds `li t0, 0x123; ecall` (an unknown syscall); jumping there halts."""
    code = guest("hostile")
    address, _, _ = run_code(code, method="data_address")
    data = struct.unpack("<I", address.output)[0]
    program = load_program(code)
    assert program.image[data >> 12][data & 0xFFF :][:8] == u32(0x12300293, 0x00000073)
    result, _, _ = run_code(code, method="jump", input=address.output)
    assert result.ok, result.reason


def test_writing_over_code_does_not_change_what_runs(guest: Guest) -> None:
    result, _, _ = run_code(guest("hostile"), method="selfmod")
    assert result.ok, result.reason
    # The stored zeros read back as data, and the function still returns 42.
    assert result.output == u32(0, 42)


def scribble_checksum(seed: int, count: int) -> int:
    memory: dict[int, int] = {}
    x = seed
    addresses = []
    for _ in range(count):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        memory[x & 0xFFFEFFFC] = x
        addresses.append(x & 0xFFFEFFFC)
    return sum(memory[a] for a in addresses) & 0xFFFFFFFF


@pytest.mark.parametrize("seed", [1, 2, 0xDEADBEEF, 0xFFFFFFFF])
def test_stores_everywhere(guest: Guest, seed: int) -> None:
    count = 3000
    result, _, _ = run_code(guest("hostile"), method="scribble", input=u32(seed, count))
    assert result.ok, result.reason
    assert result.output == u32(scribble_checksum(seed, count))


# --- memory and stack ----------------------------------------------------------------------


def test_touching_more_than_the_memory_cap_fails_quickly(guest: Guest) -> None:
    started = time.monotonic()
    result, _, _ = run_code(guest("hostile"), method="hog", input=u32(4096), gas=10**9)
    assert time.monotonic() - started < 10
    assert result.status == StatusCode.FAILURE
    assert result.reason is not None
    assert f"memory cap of {DEFAULT_MEMORY_CAP} bytes exceeded" in result.reason
    assert_consistent(result, 10**9)


def test_sparse_stores_under_the_cap_run_until_out_of_gas(guest: Guest) -> None:
    # A 1 MiB stride wraps around after 4096 pages, well under the cap.
    result, _, _ = run_code(guest("hostile"), method="hog", input=u32(1 << 20), gas=500_000)
    assert result.status == StatusCode.OUT_OF_GAS, result.reason


def test_memory_cap_is_configurable(guest: Guest) -> None:
    code = guest("hostile")
    program = load_program(code)
    host = InMemoryHost()
    context = ExecutionContext(callee=bytes(24), callee_template=host.add_template(code))
    payload = ExecutionPayload(b"", Payload(selector("hog"), u32(4096))).encode()
    result = execute(program, host, context, payload, 10**8, memory_cap=1 << 20)
    assert result.status == StatusCode.FAILURE
    assert result.reason is not None and "memory cap of 1048576 bytes" in result.reason
    # A cap smaller than the program image itself fails before anything runs.
    result = execute(program, host, context, payload, 10**8, memory_cap=0)
    assert result.status == StatusCode.FAILURE
    assert result.reason is not None and "exceeded by the program image" in result.reason


@pytest.mark.parametrize("n", [0, 1, 1000, 20_000])
def test_deep_c_recursion(guest: Guest, n: int) -> None:
    result, _, _ = run_code(guest("hostile"), method="deep", input=u32(n))
    assert result.ok, result.reason
    assert result.output == u32(n * (n + 1) // 2 & 0xFFFFFFFF)


def test_unbounded_c_recursion_runs_out_of_gas(guest: Guest) -> None:
    result, _, _ = run_code(guest("hostile"), method="deep", input=u32(10**9), gas=1_000_000)
    assert result.status == StatusCode.OUT_OF_GAS


def test_unbounded_c_recursion_hits_the_memory_cap(guest: Guest) -> None:
    started = time.monotonic()
    result, _, _ = run_code(guest("hostile"), method="deep_fat", gas=10**9)
    assert time.monotonic() - started < 10
    assert result.status == StatusCode.FAILURE
    assert result.reason is not None and "memory cap" in result.reason


# --- syscalls with hostile numbers and arguments -------------------------------------------


@pytest.mark.parametrize("number", [0x01, 0x03, 0x9F, 0xA7, 0xEF, 0xF2, 0x00640021, 0xFFFFFFFF])
def test_unknown_syscall_fails(guest: Guest, number: int) -> None:
    result, _, _ = run_code(guest("hostile"), method="syscall", input=u32(number))
    assert result.status == StatusCode.FAILURE
    assert result.reason is not None
    assert result.reason.startswith(f"unknown syscall 0x{number:x} at pc 0x")


def test_known_syscall_through_the_same_path(guest: Guest) -> None:
    result, _, _ = run_code(guest("hostile"), method="syscall", input=u32(HINT_LEN))
    assert result.ok, result.reason
    assert result.output == u32(0)


def raw_syscalls(*calls: tuple[int, ...] | bytes) -> bytes:
    """Input of sys_raw: a count, then per call {t0, a0..a5} (bytes items are data)."""
    count = sum(1 for call in calls if isinstance(call, tuple))
    out = u32(count)
    for call in calls:
        out += call if isinstance(call, bytes) else u32(*call, *([0] * (7 - len(call))))
    return out


HUGE = 0xFFFFFFFF
TOO_LONG = {
    "write": (WRITE, 3, CODE_BASE, HUGE),
    "write-1MiB+1": (WRITE, 1, CODE_BASE, MAX_SYSCALL_BUFFER + 1),
    "hint-read": (HINT_READ, CODE_BASE, HUGE),
    "call-input": (HOST_CALL, CODE_BASE, CODE_BASE, HUGE, 0, 0, CODE_BASE),
    "spawn": (HOST_SPAWN, CODE_BASE, HUGE, CODE_BASE),
    "deploy": (HOST_DEPLOY, CODE_BASE, HUGE, CODE_BASE),
    "ed25519-message": (ED25519_VERIFY, CODE_BASE, HUGE, CODE_BASE, CODE_BASE),
}


@pytest.mark.parametrize("call", TOO_LONG.values(), ids=TOO_LONG.keys())
def test_huge_lengths_are_invalid_arguments(guest: Guest, call: tuple[int, ...]) -> None:
    result, _, _ = run_code(guest("sys_raw"), input=raw_syscalls(call), gas=10**6)
    assert result.status == StatusCode.INVALID_SYSCALL_ARGUMENT, result.reason
    assert result.reason is not None and "exceeds" in result.reason
    assert_consistent(result, 10**6)


def test_largest_write_is_allowed(guest: Guest) -> None:
    result, _, _ = run_code(
        guest("sys_raw"), input=raw_syscalls((WRITE, 3, 0x40000000, MAX_SYSCALL_BUFFER))
    )
    assert result.ok, result.reason
    assert result.output == bytes(MAX_SYSCALL_BUFFER) + u32(WRITE)


def test_buffers_wrap_around_the_address_space(guest: Guest) -> None:
    """A buffer running past 0xFFFFFFFF continues at 0, as the guest's own addresses do."""
    calls = raw_syscalls(
        (HINT_READ, 0xFFFFFFFE, 4),
        b"WXYZ",
        (WRITE, 3, 0xFFFFFFFE, 4),
        (WRITE, 3, 0, 2),
        (HOST_CONTEXT, 0xFFFFFFF0),
        (WRITE, 3, 0xFFFFFFF0, 80),
        (HOST_GETBALANCE, 0xFFFFFFFC),
        (HOST_READ, 0xFFFFFFF0),
        (HOST_CALL, 0xFFFFFFF8, 0, 0, 0xFFFFFFFE, 64, 0xFFFFFFFC),
    )
    result, _, account = run_code(guest("sys_raw"), input=calls, balance=0)
    assert result.ok, result.reason
    out = result.output
    assert out[:4] == u32(HINT_READ)
    assert out[4:8] == b"WXYZ"
    assert out[12:14] == b"YZ"
    context = out[22:102]
    assert context == bytes(56) + account
    # A transfer of 0 to the address read across the wrap; nothing runs, nothing is copied.
    assert out[-4:] == u32(0)


INTERESTING = (
    0,
    1,
    2,
    3,
    4,
    24,
    32,
    80,
    0x7F,
    0xFFF,
    0x1000,
    CODE_BASE,
    CODE_BASE + 2,
    0x00200400,
    0x001FFFF0,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFF000,
    0xFFFFFFF0,
    0xFFFFFFFC,
    0xFFFFFFFF,
    MAX_SYSCALL_BUFFER,
    MAX_SYSCALL_BUFFER + 1,
)


def random_word(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(INTERESTING)
    if roll < 0.8:
        return rng.randrange(0, 4096)
    return rng.getrandbits(32)


def random_syscall_input(rng: random.Random) -> bytes:
    calls: list[tuple[int, ...] | bytes] = []
    for _ in range(rng.randint(1, 4)):
        number = rng.choice(SYSCALL_NUMBERS) if rng.random() < 0.95 else rng.getrandbits(32)
        args = [random_word(rng) for _ in range(6)]
        if (
            number in (WRITE, HOST_SPAWN, HOST_DEPLOY, ED25519_VERIFY, HINT_READ)
            and rng.random() < 0.5
        ):
            args[1] = rng.randrange(0, 512)  # a plausible length, so the call goes through
        if number == WRITE and rng.random() < 0.7:
            args[0] = rng.randint(0, 5)
        calls.append((number, *args))
        if rng.random() < 0.3:
            calls.append(rng.randbytes(rng.randrange(0, 64)))
    return raw_syscalls(*calls)


SYSCALL_FUZZ_STATUSES = {
    StatusCode.SUCCESS,
    StatusCode.FAILURE,
    StatusCode.OUT_OF_GAS,
    StatusCode.CALL_DEPTH_EXCEEDED,
    StatusCode.INSUFFICIENT_BALANCE,
    StatusCode.INSUFFICIENT_INPUT,
    StatusCode.INVALID_SYSCALL_ARGUMENT,
}


def test_random_syscall_arguments(guest: Guest) -> None:
    code = guest("sys_raw")
    rng = random.Random(0xA7E7A)
    seen: set[StatusCode] = set()
    for case in range(1500):
        data = random_syscall_input(rng)
        try:
            result, _, _ = run_code(code, input=data, gas=200_000, balance=1000)
        except Exception as exc:
            raise AssertionError(f"case {case}: input {data.hex()} raised {exc!r}") from exc
        assert_consistent(result, 200_000)
        assert result.status in SYSCALL_FUZZ_STATUSES, (case, result.status, result.reason)
        seen.add(result.status)
    assert {StatusCode.SUCCESS, StatusCode.INVALID_SYSCALL_ARGUMENT} <= seen


# --- random and mutated programs -----------------------------------------------------------

ELF_CASES = 10_000
RAW_CASES = 10_000
FUZZ_GAS = 2_000
#: Accepted statuses of a fuzzed program; anything else is a bug in the status mapping.
FUZZ_STATUSES = SYSCALL_FUZZ_STATUSES


def run_fuzzed(blob: bytes, rng: random.Random) -> ExecutionResult | None:
    """Load `blob`; if it loads, run it under a small gas limit. None when refused."""
    try:
        program = load_program(blob)
    except ProgramError:
        return None
    host = InMemoryHost()
    template = template_address(blob)
    host.templates[template] = blob
    account = host.spawn(template, b"")
    host.set_balance(account, 1000)
    context = ExecutionContext(callee=account, callee_template=template)
    result = execute(program, host, context, fuzz_payload(program, rng), FUZZ_GAS)
    assert_consistent(result, FUZZ_GAS)
    assert result.status in FUZZ_STATUSES, (result.status, result.reason)
    return result


def fuzz_payload(program: Program, rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randrange(0, 16))  # often not a valid ExecutionPayload
    if roll < 0.2:
        chosen: bytes | None = rng.randbytes(4)  # almost surely an unknown selector
    else:
        chosen = rng.choice([None, *program.exports])
    return ExecutionPayload(
        rng.randbytes(rng.randrange(0, 8)), Payload(chosen, rng.randbytes(rng.randrange(0, 64)))
    ).encode()


def check_many(cases: Iterator[bytes], rng: random.Random) -> tuple[int, int]:
    """Run every case; returns (refused, executed). Failures name the case to replay it."""
    refused = executed = 0
    for index, blob in enumerate(cases):
        try:
            result = run_fuzzed(blob, rng)
        except Exception as exc:
            raise AssertionError(f"case {index} ({blob[:512].hex()}): {exc!r}") from exc
        if result is None:
            refused += 1
        else:
            executed += 1
    return refused, executed


def mutate(rng: random.Random, blob: bytes) -> bytes:
    out = bytearray(blob)
    kind = rng.random()
    if kind < 0.35:
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(out))
            out[at] ^= 1 << rng.randrange(8)
    elif kind < 0.6:
        # Overwrite a 16- or 32-bit field in the headers (ELF, program or section).
        shoff = int.from_bytes(blob[32:36], "little")
        regions = [(0, 52), (52, 116), (shoff, len(blob))]
        start, end = rng.choice(regions)
        width = rng.choice([2, 4])
        at = rng.randrange(start, max(start + 1, end - width))
        value = rng.choice([0, 1, 2, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(blob)])
        value = value if rng.random() < 0.7 else rng.getrandbits(32)
        out[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    elif kind < 0.8:
        for _ in range(rng.randint(1, 32)):
            out[rng.randrange(len(out))] = rng.getrandbits(8)
    else:
        del out[rng.randrange(len(out)) :]
    if rng.random() < 0.1:
        del out[rng.randrange(len(out) + 1) :]
    return bytes(out)


def elf_cases(rng: random.Random, count: int, bases: list[bytes]) -> Iterator[bytes]:
    for _ in range(count):
        roll = rng.random()
        if roll < 0.15:
            prefix = rng.choice([b"", b"\x7fELF", b"\x7fELF\x01\x01\x01"])
            yield prefix + rng.randbytes(rng.randrange(0, 256))
        elif roll < 0.25:
            # A plausible ELF header, random program headers and beyond.
            base = rng.choice(bases)
            yield base[:52] + rng.randbytes(rng.randrange(0, 512))
        else:
            yield mutate(rng, rng.choice(bases))


# Instruction formats for the raw-code generator: mostly valid RV32EM, some not.
def _r(rng: random.Random) -> int:
    funct3 = rng.randrange(8)
    funct7 = rng.choice([0, 1, 0x20] if funct3 in (0, 5) else [0, 1])
    if rng.random() < 0.02:
        funct7 = rng.getrandbits(7)
    rd, rs1, rs2 = (_reg(rng) for _ in range(3))
    opcode = 0x33
    return funct7 << 25 | rs2 << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | opcode


def _reg(rng: random.Random) -> int:
    return rng.randrange(16) if rng.random() < 0.995 else rng.randrange(32)


def _i(rng: random.Random, opcode: int, funct3: int, imm: int | None = None) -> int:
    value = rng.randrange(-2048, 2048) if imm is None else imm
    return (value & 0xFFF) << 20 | _reg(rng) << 15 | funct3 << 12 | _reg(rng) << 7 | opcode


def _store(rng: random.Random) -> int:
    imm = rng.randrange(-2048, 2048) & 0xFFF
    funct3 = rng.choice([0, 0, 1, 2])
    return (
        (imm >> 5) << 25
        | _reg(rng) << 20
        | _reg(rng) << 15
        | funct3 << 12
        | (imm & 0x1F) << 7
        | 0x23
    )


def _branch_or_jump(rng: random.Random, length: int) -> int:
    offset = 4 * rng.randrange(-length, length + 1)
    if rng.random() < 0.5:
        imm = offset & 0x1FFF
        return (
            (imm >> 12 & 1) << 31
            | (imm >> 5 & 0x3F) << 25
            | _reg(rng) << 20
            | _reg(rng) << 15
            | rng.choice([0, 1, 4, 5, 6, 7]) << 12
            | (imm >> 1 & 0xF) << 8
            | (imm >> 11 & 1) << 7
            | 0x63
        )
    imm = offset & 0x1FFFFF
    return (
        (imm >> 20 & 1) << 31
        | (imm >> 1 & 0x3FF) << 21
        | (imm >> 11 & 1) << 20
        | (imm >> 12 & 0xFF) << 12
        | _reg(rng) << 7
        | 0x6F
    )


def _syscall(rng: random.Random) -> list[int]:
    number = rng.choice(SYSCALL_NUMBERS)
    upper, lower = (number + 0x800) >> 12, number & 0xFFF
    lui_t0 = (upper & 0xFFFFF) << 12 | 5 << 7 | 0x37
    addi_t0 = (lower << 20) | 5 << 15 | 5 << 7 | 0x13
    return [lui_t0, addi_t0, 0x00000073]


def raw_instructions(rng: random.Random) -> list[int]:
    length = rng.randint(1, 48)
    if rng.random() < 0.1:
        return [rng.getrandbits(32) for _ in range(length)]
    words: list[int] = []
    while len(words) < length:
        roll = rng.random()
        if roll < 0.25:
            words.append(_i(rng, 0x13, rng.choice([0, 2, 3, 4, 6, 7])))
        elif roll < 0.4:
            words.append(_r(rng))
        elif roll < 0.5:
            words.append(_i(rng, 0x03, rng.choice([0, 0, 4, 4, 1, 2, 5])))
        elif roll < 0.6:
            words.append(_store(rng))
        elif roll < 0.7:
            words.append(_branch_or_jump(rng, length))
        elif roll < 0.75:
            words.append(_i(rng, 0x67, 0))  # jalr
        elif roll < 0.85:
            words.append(rng.getrandbits(20) << 12 | _reg(rng) << 7 | rng.choice([0x37, 0x17]))
        elif roll < 0.95:
            words.extend(_syscall(rng))
        elif roll < 0.98:
            words.append(0x00000073)  # ecall with whatever t0 holds
        else:
            words.append(rng.getrandbits(32))
    return words


def raw_cases(rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        words = raw_instructions(rng)
        yield b"\x7fATH" + struct.pack(f"<{len(words)}I", *words)


@pytest.fixture(scope="module")
def fuzz_bases(guest: Guest) -> list[bytes]:
    return [guest("elf_exports"), guest("sys_raw"), guest("sys_verify")]


def _elf_fuzz(bases: list[bytes], seed: int, count: int) -> None:
    rng = random.Random(seed)
    refused, executed = check_many(elf_cases(rng, count, bases), rng)
    assert refused + executed == count
    # The mix must exercise both sides: refusals and executions of what still loads.
    assert refused > count // 10 and executed > count // 10, (refused, executed)


def _raw_fuzz(seed: int, count: int) -> None:
    rng = random.Random(seed)
    refused, executed = check_many(raw_cases(rng, count), rng)
    assert (refused, executed) == (0, count)


@pytest.mark.parametrize("seed", range(4))
def test_random_and_mutated_elf_files(fuzz_bases: list[bytes], seed: int) -> None:
    _elf_fuzz(fuzz_bases, seed, ELF_CASES // 4)


@pytest.mark.parametrize("seed", range(4))
def test_random_raw_code(seed: int) -> None:
    _raw_fuzz(seed, RAW_CASES // 4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1010))
def test_random_and_mutated_elf_files_soak(fuzz_bases: list[bytes], seed: int) -> None:
    _elf_fuzz(fuzz_bases, seed, ELF_CASES)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1010))
def test_random_raw_code_soak(seed: int) -> None:
    _raw_fuzz(seed, RAW_CASES)


def test_fuzz_is_deterministic(fuzz_bases: list[bytes]) -> None:
    """The same seed gives the same cases and the same results."""

    def digest(seed: int) -> bytes:
        rng = random.Random(seed)
        h = blake3.blake3()
        for blob in [*elf_cases(rng, 200, fuzz_bases), *raw_cases(rng, 200)]:
            result = run_fuzzed(blob, rng)
            h.update(blob)
            h.update(repr(None if result is None else (result.status, result.output)).encode())
        return h.digest()

    assert digest(7) == digest(7)
