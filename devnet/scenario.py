"""Scenarios: Python files that script a devnet step by step, with faults.

A scenario file defines `scenario(s)`; its docstring says what it shows:

    \"\"\"Alice pays Bob, even with a smesher down.\"\"\"

    def scenario(s: Scenario) -> None:
        alice, bob = s.net.wallets[0], s.net.wallets[1]
        s.kill("smesher-3")
        with s.step("alice pays bob", within_layers=5):
            alice.spend(bob, 1_000)
        s.restart("smesher-3")
        s.wait_until("smesher-3 catches up", lambda: caught_up(s.net), within_layers=10)

Each step prints ✔ or ✘ with its time and the layers it took. The first failing step ends
its scenario (later steps build on it); a fault it left in place (a node killed, paused,
cut off, or restarted with overrides) is then undone, each undo a step of its own, and the
run goes on with the next scenario file.
"""

import importlib.util
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from devnet.client import Devnet
from devnet.errors import DevnetError

T = TypeVar("T")
#: How often `wait_until` polls, in layers.
POLLS_PER_LAYER = 4


class ScenarioError(DevnetError):
    """A scenario file cannot be loaded (missing, does not define `scenario(s)`)."""


class _StepFailed(Exception):
    """Ends a scenario at its first failing step (already reported)."""


@dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    seconds: float
    layers: int
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "layers": self.layers,
            "error": self.error,
        }


@dataclass
class ScenarioResult:
    name: str
    description: str
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(step.ok for step in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "description": self.description,
            "ok": self.ok,
            "error": self.error,
            "steps": [step.as_json() for step in self.steps],
        }


Reporter = Callable[[StepResult], None]


class Scenario:
    """What a scenario function gets: the connected devnet and the step vocabulary."""

    def __init__(self, net: Devnet, result: ScenarioResult, report: Reporter) -> None:
        self.net = net
        self.result = result
        self._report = report
        #: Nodes with a fault in place, and how to undo it (see `undo_faults`).
        self._faults: dict[str, str] = {}

    @contextmanager
    def step(self, name: str, within_layers: int | None = None) -> Iterator[None]:
        """One step: fails on any exception inside, or if it took more than
        `within_layers` layers."""
        started, first_layer = time.monotonic(), self.net.layer_now()
        error: str | None = None
        try:
            yield
        except Exception as exc:  # a step's failure is reported, whatever it is
            error = _describe(exc)
        layers = self.net.layer_now() - first_layer
        if error is None and within_layers is not None and layers > within_layers:
            error = f"took {layers} layers, more than {within_layers}"
        outcome = StepResult(name, error is None, time.monotonic() - started, layers, error)
        self.result.steps.append(outcome)
        self._report(outcome)
        if error is not None:
            raise _StepFailed(name)

    def check(self, name: str, condition: Callable[[], object]) -> None:
        """A step that passes when `condition()` is true."""
        with self.step(name):
            value = condition()
            if not value:
                raise AssertionError(f"{name}: got {value!r}")

    def wait_until(self, name: str, predicate: Callable[[], T], within_layers: int) -> T:
        """A step that polls `predicate` until it returns something true (returned), failing
        after `within_layers` layers. Exceptions while polling count as not yet."""
        interval = self.net.info.layer_duration_ms / 1000 / POLLS_PER_LAYER
        with self.step(name, within_layers=within_layers + 1):
            deadline = self.net.layer_now() + within_layers
            last: str = "never checked"
            while self.net.layer_now() <= deadline:
                try:
                    value = predicate()
                except Exception as exc:  # e.g. the node being waited for is still down
                    last = _describe(exc)
                else:
                    if value:
                        return value
                    last = f"last value {value!r}"
                time.sleep(interval)
            raise AssertionError(f"not within {within_layers} layers ({last})")
        raise AssertionError("unreachable")  # pragma: no cover

    # --- faults --------------------------------------------------------------------------

    def kill(self, node: str, graceful: bool = False) -> None:
        with self.step(f"kill {node}"):
            self.net.node(node).kill(graceful)
            self._faults[node] = "start"

    def start(self, node: str) -> None:
        with self.step(f"start {node}"):
            self.net.node(node).start()
            self._faults.pop(node, None)

    def restart(self, node: str, overrides: list[str] | None = None) -> None:
        label = f"restart {node}" + (f" with {', '.join(overrides)}" if overrides else "")
        with self.step(label):
            self.net.node(node).restart(overrides)
            if overrides:
                self._faults[node] = "restart"
            else:
                self._faults.pop(node, None)

    def pause(self, node: str) -> None:
        with self.step(f"pause {node}"):
            self.net.node(node).pause()
            self._faults[node] = "resume"

    def resume(self, node: str) -> None:
        with self.step(f"resume {node}"):
            self.net.node(node).resume()
            self._faults.pop(node, None)

    def partition(self, smesher: str) -> None:
        with self.step(f"cut {smesher} off from its peers"):
            self.net.node(smesher).partition()
            self._faults[smesher] = "heal"

    def heal(self, smesher: str) -> None:
        with self.step(f"heal {smesher}"):
            self.net.node(smesher).heal()
            self._faults.pop(smesher, None)

    def undo_faults(self) -> None:
        """Undo the faults the scenario left in place (it failed before undoing them): a
        devnet shared by several scenarios must not leave the next one a node down, paused,
        cut off or restarted with test-only overrides. Each undo is reported as a step."""
        for node, undo in list(self._faults.items()):
            try:
                {
                    "start": self.start,
                    "resume": self.resume,
                    "heal": self.heal,
                    "restart": self.restart,
                }[undo](node)
            except _StepFailed:
                pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AssertionError) and not str(exc):
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return f"assertion failed: {frame.line} (line {frame.lineno})"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class ScenarioFile:
    path: Path
    description: str
    function: Callable[[Scenario], None]

    @property
    def name(self) -> str:
        return self.path.stem


def load(path: Path) -> ScenarioFile:
    """Import a scenario file and find its `scenario(s)` function."""
    if not path.is_file():
        raise ScenarioError(f"no scenario file {path}")
    spec = importlib.util.spec_from_file_location(f"devnet_scenario_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ScenarioError(f"{path} failed to import: {_describe(exc)}") from None
    function = getattr(module, "scenario", None)
    if not callable(function):
        raise ScenarioError(f"{path} defines no scenario(s) function")
    description = (module.__doc__ or "").strip().splitlines()
    return ScenarioFile(path, description[0] if description else "", function)


def run_scenario(
    scenario: ScenarioFile, net: Devnet, report: Reporter = lambda _: None
) -> ScenarioResult:
    """Run one scenario to its end or its first failing step."""
    result = ScenarioResult(scenario.name, scenario.description)
    s = Scenario(net, result, report)
    try:
        scenario.function(s)
    except _StepFailed:
        pass
    except Exception as exc:  # outside any step: the scenario's own bug or setup
        result.error = _describe(exc)
    s.undo_faults()
    return result
