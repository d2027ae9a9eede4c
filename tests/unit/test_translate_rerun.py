"""The VM's unit tests again, each execution run in both engines and compared.

The tests of `test_instructions`, `test_gas`, `test_syscalls` and `test_templates` are
collected a second time in this module: here every top-level `execute` runs in the reference
interpreter and in the translator (with every block compiled on its first visit), and the
two outcomes must be identical (`tests.differential`) before the test's own assertions look
at the result.
"""

from collections.abc import Iterator

import pytest

from tests.differential import collect_tests, differential_execute, eager_translation
from tests.unit import test_gas, test_instructions, test_syscalls, test_templates


@pytest.mark.slow
def test_out_of_gas_inside_proxied_call_rolls_back() -> None:
    """Two thousand transactions on a growing host: copying it each time is for `make soak`."""
    test_templates.test_out_of_gas_inside_proxied_call_rolls_back()


collect_tests(globals(), test_gas, test_instructions, test_syscalls, test_templates)


@pytest.fixture(autouse=True)
def _both_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    eager_translation(monkeypatch)
    with differential_execute(monkeypatch):
        yield
