"""Reconnect delays: exponential, bounded, jittered from the client's own random source.

Jitter keeps many clients of a restarted node from reconnecting in lockstep. It draws from
a `random.Random` instance owned by the client (seedable), never the global `random`
module, so reconnect timing cannot perturb anything else a test or node makes deterministic.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.05  # seconds before the first retry
    factor: float = 2.0
    maximum: float = 2.0  # the bound: delays never exceed this
    jitter: float = 0.5  # a delay is drawn from [base × (1 − jitter), base]

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction in [0, 1]")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number `attempt` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1 - self.jitter * rng.random())
