"""Retry delays: exponential backoff with jitter, as a pure function."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    retry_count: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.25,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number `retry_count + 1`: min(base * 2**n, cap) ± jitter.

    `rand` returns a float in [0, 1); tests pass a fixed one instead of sleeping.
    """
    if retry_count < 0:
        raise ValueError("retry_count must be >= 0")
    # Clamp the exponent so huge retry counts cannot overflow the float.
    raw = min(base * (2 ** min(retry_count, 62)), cap)
    return max(0.0, raw * (1 - jitter + 2 * jitter * rand()))
