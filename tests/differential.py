"""Run executions in both engines and require identical outcomes.

The reference engine (`step`) is the specification; the translator must agree on the
result (status, reason, gas, output, logs, registers, instruction count), on the machine
as it stopped (pc, counters, every memory page, the input stream position) and on the host
after the call tree (storage, balances, accounts, journal).
"""

import copy
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from athena_vm import translator, vm
from athena_vm.host import ExecutionContext, Host
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.machine import Machine
from athena_vm.program import Program
from athena_vm.vm import Engine, ExecutionResult, default_engine, execute_machine

MachineState = tuple[Any, ...]


def machine_state(m: Machine | None) -> MachineState | None:
    if m is None:
        return None
    pages = {number: bytes(page) for number, page in m.memory.pages.items()}
    return (m.pc, m.gas_used, m.instructions, m.registers(), m.input_pos, pages)


def result_fields(r: ExecutionResult) -> tuple[Any, ...]:
    return (
        r.status,
        r.reason,
        r.gas_used,
        r.gas_left,
        r.output,
        r.logs,
        r.registers,
        r.instructions,
    )


@dataclass
class Outcome:
    result: ExecutionResult
    machine: MachineState | None
    host: Host


def run_engine(
    engine: Engine,
    program: Program,
    host: Host,
    context: ExecutionContext,
    payload: bytes,
    gas: int,
    **options: Any,
) -> Outcome:
    """One execution in `engine`, nested calls included (they use the default engine)."""
    with default_engine(engine):
        result, machine = execute_machine(
            program, host, context, payload, gas, engine=engine, **options
        )
    return Outcome(result, machine_state(machine), host)


RESULT_FIELDS = ("status", "reason", "gas_used", "gas_left", "output", "logs", "registers")
MACHINE_FIELDS = ("pc", "gas_used", "instructions", "registers", "input_pos", "pages")


def _differences(names: tuple[str, ...], ref: tuple[Any, ...], got: tuple[Any, ...]) -> str:
    return "; ".join(
        f"{name}: reference {a!r:.300} != translator {b!r:.300}"
        for name, a, b in zip(names, ref, got, strict=False)
        if a != b
    )


def assert_same(reference: Outcome, translated: Outcome) -> None:
    ref, got = result_fields(reference.result), result_fields(translated.result)
    assert got == ref, _differences((*RESULT_FIELDS, "instructions"), ref, got)
    if reference.machine is not None and translated.machine is not None:
        assert translated.machine == reference.machine, _differences(
            MACHINE_FIELDS, reference.machine, translated.machine
        )
    assert translated.machine is None or reference.machine is not None
    assert translated.host == reference.host, "the hosts differ after the call"


def copy_host(host: InMemoryHost) -> InMemoryHost:
    """A deep copy sharing the host's loaded programs (immutable, and costly to copy)."""
    memo: dict[int, Any] = {}
    for _, program in host._programs.values():
        memo[id(program)] = program
    return copy.deepcopy(host, memo)


def both(
    program: Program,
    host: InMemoryHost,
    context: ExecutionContext,
    payload: bytes,
    gas: int,
    **options: Any,
) -> ExecutionResult:
    """Run in both engines (the reference on a copy of `host`), compare, keep the translator's.

    `host` ends up as the translator left it, as if only that execution had happened.
    """
    copied = copy_host(host)
    reference = run_engine("reference", program, copied, context, payload, gas, **options)
    translated = run_engine("translator", program, host, context, payload, gas, **options)
    assert_same(reference, translated)
    return translated.result


_INSIDE = ContextVar("inside_differential", default=False)


@contextmanager
def differential_execute(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every top-level `execute` run in both engines and compare (see module doc).

    Calls nested through a host stay in the engine of the execution that made them, so a
    call tree is compared as a whole. Executions on a host that is not an InMemoryHost, or
    with a tracer or an explicit engine, run once, unchanged.
    """
    original = vm.execute_machine

    def wrapper(
        program: Program,
        host: Host,
        context: ExecutionContext,
        payload: bytes,
        gas_limit: int = vm.DEFAULT_GAS_LIMIT,
        **options: Any,
    ) -> tuple[ExecutionResult, Machine | None]:
        plain = options.get("tracer") is not None or options.get("engine") is not None
        if _INSIDE.get() or plain or not isinstance(host, InMemoryHost):
            return original(program, host, context, payload, gas_limit, **options)
        token = _INSIDE.set(True)
        try:
            copied = copy_host(host)
            with default_engine("reference"):
                ref, ref_machine = original(program, copied, context, payload, gas_limit, **options)
            with default_engine("translator"):
                res, machine = original(program, host, context, payload, gas_limit, **options)
        finally:
            _INSIDE.reset(token)
        assert_same(
            Outcome(ref, machine_state(ref_machine), copied),
            Outcome(res, machine_state(machine), host),
        )
        return res, machine

    monkeypatch.setattr(vm, "execute_machine", wrapper)
    yield


def eager_translation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile every block on its first visit, so short programs are translated too."""
    monkeypatch.setattr(translator, "WARMUP_INSTRUCTIONS", 0)
    monkeypatch.setattr(translator, "HOT_INSTRUCTIONS", 0)


def collect_tests(namespace: MutableMapping[str, Any], *modules: ModuleType) -> None:
    """Make pytest collect the tests (and module fixtures) of `modules` in `namespace` too.

    Each test keeps its own module's globals; only the names are copied. A name `namespace`
    already defines stays (an override); a test name that two modules define would silently
    drop a test, so it is an error.
    """
    collected: dict[str, Any] = {}
    for module in modules:
        for name, value in vars(module).items():
            if name.startswith("_") or isinstance(value, ModuleType):
                continue
            if name.startswith("test_") and collected.get(name, value) is not value:
                raise ValueError(f"two collected modules define {name}")
            collected[name] = value
    for name, value in collected.items():
        namespace.setdefault(name, value)
