"""Work spread over a job's CPUs: independent tasks in forked processes, results in task order.

A step that makes many independent things (a synthetic dataset's cases) runs them in ``workers`` processes;
each task draws from its own seeded generator, so the results, and the bytes written, do not depend on how many
workers there are. Forking keeps the parent's imports; the step must not have started threads (a warm-start
child has not, medrepro.pipeline.warm).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

from medrepro.pipeline.progress import progress_bar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(function: Callable[[T], R], tasks: Sequence[T], workers: int = 1, desc: str | None = None) -> list[R]:
    """``function`` over ``tasks``, in that order, in ``workers`` forked processes (in this one when 1), with a
    progress bar named ``desc``. ``function`` must be importable (a module-level function)."""
    results: list[R] = []
    with progress_bar(total=len(tasks), desc=desc) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                results.append(function(task))
                bar.update()
            return results
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
            for result in pool.map(function, tasks):
                results.append(result)
                bar.update()
    return results
