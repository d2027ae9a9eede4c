"""A token bucket, for an optional per-connection request rate limit.

A bucket (rather than a fixed window) lets a client send short bursts, e.g. a wallet
submitting a batch, while bounding its sustained rate. Over-limit requests are answered
with RATE_LIMITED instead of being delayed, so a client learns it is throttled.
"""

from collections.abc import Callable

import trio


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; each request takes one."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = trio.current_time
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token if one is available."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
