"""Exponential backoff with jitter: when to try again after consecutive failures.

Used for a host whose SSH session died (reconnect) and for a heal that did not succeed: the
first retry comes after ``base`` seconds, each further failure doubles the wait up to
``cap``, and a success starts again from nothing. The jitter (up to a tenth of the wait,
never below the unjittered wait) keeps 200 hosts lost at once from reconnecting in step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random  # 0 <= x < 1
    failures: int = 0
    next_try: float = field(default=0.0)

    def delay(self) -> float:
        """The wait after ``failures`` consecutive failures (without jitter)."""
        if self.failures <= 0:
            return 0.0
        return min(self.cap, self.base * 2 ** (self.failures - 1))

    def failed(self) -> float:
        """Count a failure; returns the seconds until the next attempt is due."""
        self.failures += 1
        wait = self.delay()
        wait += wait * 0.1 * self.jitter()
        self.next_try = self.clock() + wait
        return wait

    def succeeded(self) -> None:
        self.failures = 0
        self.next_try = 0.0

    def due(self) -> bool:
        return self.clock() >= self.next_try

    def remaining(self) -> float:
        return max(0.0, self.next_try - self.clock())
