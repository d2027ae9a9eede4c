"""Shared fixtures: C guest programs compiled once per test session."""

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.vmrun import compiler

GUESTS = Path(__file__).parent / "guests"

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    """guest("name") compiles tests/guests/name.c with the SDK (once) and returns the ELF."""
    return compiler(GUESTS, tmp_path_factory.mktemp("guests"))
