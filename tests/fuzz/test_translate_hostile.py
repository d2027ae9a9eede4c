"""The hostile and fuzzed programs again, each execution run in both engines and compared.

The tests of `test_hostile` are collected a second time here, with every top-level `execute`
running in the reference interpreter and in the translator (every block compiled on its
first visit); the two outcomes must be identical (`tests.differential`). Slow: `make soak`.
"""

from collections.abc import Iterator

import pytest

from tests.differential import collect_tests, differential_execute, eager_translation
from tests.fuzz import test_hostile

pytestmark = pytest.mark.slow

collect_tests(globals(), test_hostile)


@pytest.fixture(autouse=True)
def _both_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    eager_translation(monkeypatch)
    with differential_execute(monkeypatch):
        yield
