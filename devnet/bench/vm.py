"""`devnet bench vm`: instructions per second of both VM engines on real compiled guests.

Each guest is compiled from C with the SDK, run on the in-memory host with growing work
until one run lasts long enough to be stable, and its result is checked against a Python
computation of the same thing, so a fast-but-wrong VM cannot post a number. Both engines
run the same workloads: the reference interpreter and the translator (the default engine),
with their ratio.

A last line times one wallet `spend` call, the executor's typical transaction: the
translator must not make short calls slower, neither on its very first call (nothing
compiled yet) nor once the blocks such calls reach have become hot.
"""

import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from athena_vm import ExecutionContext, ExecutionPayload, Payload, load_program, selector
from athena_vm.build import build
from athena_vm.in_memory_host import InMemoryHost, template_address
from athena_vm.program import Program
from athena_vm.translator import clear_cache
from athena_vm.vm import ENGINES, Engine, execute

GUESTS = Path(__file__).parent / "guests"
WALLET = Path(__file__).parents[2] / "templates" / "wallet.elf"


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
    engine: Engine
    instructions: int
    seconds: float

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6


def _run(program: Program, workload: Workload, rounds: int, engine: Engine) -> tuple[int, float]:
    payload = ExecutionPayload(b"", Payload(None, rounds.to_bytes(8, "little"))).encode()
    context = ExecutionContext(callee=bytes(24))
    started = time.perf_counter()
    result = execute(program, InMemoryHost(), context, payload, engine=engine)
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"{workload.name} guest failed: {result.status.name} {result.reason}")
    if result.output != workload.expected(rounds):
        raise RuntimeError(f"{workload.name} guest computed a wrong result ({engine})")
    return result.instructions, elapsed


def measure(
    code: bytes, workload: Workload, min_seconds: float, engine: Engine, repeat: int = 1
) -> Measurement:
    """Grow the work until a run lasts `min_seconds`, then keep the fastest of `repeat` runs.

    The growing runs double as the translator's warm-up: by the measured runs, the hot
    blocks are compiled, as they are in a long-lived executor.
    """
    program = load_program(code)
    rounds = 1
    while True:
        instructions, elapsed = _run(program, workload, rounds, engine)
        if elapsed >= min_seconds:
            break
        rounds *= max(2, min(16, int(min_seconds / max(elapsed, 1e-3)) + 1))
    for _ in range(repeat - 1):
        elapsed = min(elapsed, _run(program, workload, rounds, engine)[1])
    return Measurement(workload.name, engine, instructions, elapsed)


def _spend_call(program: Program, code: bytes, engine: Engine) -> float:
    """Seconds of one wallet `spend` (a transfer to a fresh account), which must succeed."""
    host = InMemoryHost()
    template = host.add_template(code)
    state = bytes(range(32))  # the owner key: spend checks only that caller == callee
    account = template_address(template + state)
    host.account(account).template = template
    host.account(account).state = state
    host.set_balance(account, 10**9)
    recipient = bytes(4) + b"r" * 20
    call = Payload(selector("spend"), recipient + (5).to_bytes(8, "little"))
    payload = ExecutionPayload(state, call).encode()
    context = ExecutionContext(caller=account, callee=account, callee_template=template)
    started = time.perf_counter()
    result = execute(program, host, context, payload, 10**6, engine=engine)
    elapsed = time.perf_counter() - started
    if not result.ok or host.get_balance(recipient) != 5:
        raise RuntimeError(f"wallet spend failed: {result.status.name} {result.reason}")
    return elapsed


def spend_timings(calls: int) -> dict[str, float]:
    """Milliseconds of one spend (medians): the reference; the translator on its very first
    call (its cache emptied before each such call); the translator once `calls` calls have
    let it compile what they share. Measured calls alternate between the engines, so that
    the noise of a shared machine hits both alike."""
    code = WALLET.read_bytes()
    program = load_program(code)
    for engine in ENGINES:  # the Python side of both engines warms up first
        for _ in range(20):
            _spend_call(program, code, engine)
    reference, first, warm = [], [], []
    for _ in range(calls):
        reference.append(_spend_call(program, code, "reference"))
        clear_cache()
        first.append(_spend_call(program, code, "translator"))
    for _ in range(calls):
        _spend_call(program, code, "translator")
    for _ in range(calls):
        reference.append(_spend_call(program, code, "reference"))
        warm.append(_spend_call(program, code, "translator"))
    return {
        "reference": 1e3 * statistics.median(reference),
        "first": 1e3 * statistics.median(first),
        "warm": 1e3 * statistics.median(warm),
    }


def run(min_seconds: float, repeat: int = 1, spend_calls: int = 200) -> Iterator[str]:
    yield (
        f"{'guest':<9} {'workload':<27} {'instructions':>13} "
        f"{'reference MIPS':>15} {'translator MIPS':>16} {'ratio':>7}"
    )
    with tempfile.TemporaryDirectory(prefix="athena-bench-") as scratch:
        for workload in WORKLOADS:
            code = build(GUESTS / f"{workload.name}.c", Path(scratch) / f"{workload.name}.elf")
            by_engine = {
                engine: measure(code, workload, min_seconds, engine, repeat) for engine in ENGINES
            }
            ref, fast = by_engine["reference"], by_engine["translator"]
            yield (
                f"{workload.name:<9} {workload.description:<27} {fast.instructions:>13,} "
                f"{ref.mips:>15.2f} {fast.mips:>16.2f} {fast.mips / ref.mips:>6.1f}x"
            )
    spend = spend_timings(spend_calls)
    yield (
        f"wallet spend, one execute(): reference {spend['reference']:.3f} ms; translator "
        f"{spend['first']:.3f} ms on its first call (nothing compiled), "
        f"{spend['warm']:.3f} ms after {spend_calls} calls (medians)"
    )
