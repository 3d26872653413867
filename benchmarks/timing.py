"""The one timing rule of the roofline measurements: warm up, then the best of a few blocks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds_per_call(
    call: Callable[[], object], calls_per_block: int, blocks: int = 5, warmup: int = 3
) -> float:
    """Seconds per ``call()``: the fastest of ``blocks`` blocks of ``calls_per_block`` calls,
    after ``warmup`` untimed calls (the machine's attainable rate, not its average)."""
    for _ in range(warmup):
        call()
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls_per_block):
            call()
        best = min(best, (time.perf_counter() - start) / calls_per_block)
    return best
