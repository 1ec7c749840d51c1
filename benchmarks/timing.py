"""What the benchmarks share: one timed call."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call of ``function``."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result
