"""The fast run loop and the reference `step` loop (taken when tracing) agree exactly."""

import random
import struct
from pathlib import Path

import pytest

from athena_vm import ExecutionContext, ExecutionPayload, Payload, execute, load_program
from athena_vm.build import build
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.machine import Instr, Machine
from athena_vm.vm import ExecutionResult
from devnet.bench.vm import GUESTS as BENCH_GUESTS
from tests.fuzz.test_hostile import raw_instructions

PAYLOAD = ExecutionPayload(b"state", Payload(None, b"input bytes")).encode()


def _noop(pc: int, ins: Instr, changed: tuple[int, int] | None, m: Machine) -> None:
    return None


def both(
    code: bytes, gas: int, payload: bytes = PAYLOAD
) -> tuple[ExecutionResult, ExecutionResult]:
    program = load_program(code)
    ctx = ExecutionContext(callee=bytes(24))
    fast = execute(program, InMemoryHost(), ctx, payload, gas)
    reference = execute(program, InMemoryHost(), ctx, payload, gas, tracer=_noop)
    return fast, reference


def assert_same(fast: ExecutionResult, reference: ExecutionResult) -> None:
    assert fast == reference
    assert fast.registers == reference.registers
    assert fast.instructions == reference.instructions


@pytest.mark.parametrize("seed", range(8))
def test_random_programs_agree(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(250):
        words = raw_instructions(rng)
        code = b"\x7fATH" + struct.pack(f"<{len(words)}I", *words)
        assert_same(*both(code, rng.choice([0, 3, 40, 400, 4000, 100_000])))


def test_every_gas_limit_agrees_on_a_compiled_guest(tmp_path: Path) -> None:
    code = build(BENCH_GUESTS / "hash.c", tmp_path / "hash.elf")
    rounds = ExecutionPayload(b"", Payload(None, (1).to_bytes(8, "little"))).encode()
    full, _ = both(code, 2**32 - 1, rounds)
    assert full.ok and full.instructions > 1000
    for gas in range(0, full.gas_used + 8, 97):
        assert_same(*both(code, gas, rounds))
    assert_same(*both(code, full.gas_used, rounds))
    assert_same(*both(code, full.gas_used - 1, rounds))
