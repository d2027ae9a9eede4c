"""`devnet bench vm`: instructions per second of the VM on real compiled guests.

Each guest is compiled from C with the SDK, run on the in-memory host with growing work
until one run lasts long enough to be stable, and its result is checked against a Python
computation of the same thing, so a fast-but-wrong VM cannot post a number.
"""

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from athena_vm import ExecutionContext, ExecutionPayload, Payload, execute, load_program
from athena_vm.build import build
from athena_vm.in_memory_host import InMemoryHost

GUESTS = Path(__file__).parent / "guests"


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    expected: Callable[[int], bytes]


def _expected_hash(rounds: int) -> bytes:
    digest = bytes(32)
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest


def _expected_compute(rounds: int) -> bytes:
    n, mask = 256, 0xFFFFFFFF
    table = [0] * n
    seed, acc = 12345, 0
    for _ in range(rounds):
        for i in range(n):
            seed = (seed * 1103515245 + 12345) & mask
            table[i] = seed ^ (seed >> 16)
        for i in range(1, n):
            d = (table[i - 1] & 0xFFFF) | 1
            acc = (acc + table[i] // d + table[i] % d) & mask
            acc ^= table[(acc >> 3) & (n - 1)]
    return acc.to_bytes(4, "little")


WORKLOADS = (
    Workload("compute", "loops, mul/div/rem, memory", _expected_compute),
    Workload("hash", "SHA-256 chain", _expected_hash),
)


@dataclass(frozen=True)
class Measurement:
    name: str
    instructions: int
    seconds: float

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6


def measure(code: bytes, workload: Workload, min_seconds: float) -> Measurement:
    program = load_program(code)
    rounds = 1
    while True:
        payload = ExecutionPayload(b"", Payload(None, rounds.to_bytes(8, "little"))).encode()
        started = time.perf_counter()
        result = execute(program, InMemoryHost(), ExecutionContext(callee=bytes(24)), payload)
        elapsed = time.perf_counter() - started
        if not result.ok:
            raise RuntimeError(
                f"{workload.name} guest failed: {result.status.name} {result.reason}"
            )
        if result.output != workload.expected(rounds):
            raise RuntimeError(f"{workload.name} guest computed a wrong result")
        if elapsed >= min_seconds:
            return Measurement(workload.name, result.instructions, elapsed)
        rounds *= max(2, min(16, int(min_seconds / max(elapsed, 1e-3)) + 1))


def run(min_seconds: float) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="athena-bench-") as scratch:
        yield f"{'guest':<10} {'workload':<28} {'instructions':>14} {'seconds':>8} {'MIPS':>7}"
        for workload in WORKLOADS:
            code = build(GUESTS / f"{workload.name}.c", Path(scratch) / f"{workload.name}.elf")
            m = measure(code, workload, min_seconds)
            yield (
                f"{m.name:<10} {workload.description:<28} {m.instructions:>14,} "
                f"{m.seconds:>8.2f} {m.mips:>7.2f}"
            )
