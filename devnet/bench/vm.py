"""placeholder"""

from collections.abc import Iterator


def run(seconds: float) -> Iterator[str]:
    yield "not yet"
