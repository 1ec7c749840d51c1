"""Progress bars for long steps, written to stderr (a rule's log, or a cluster job's output)."""

from __future__ import annotations

import sys
from typing import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr, drawn in plain ASCII unless stderr is a terminal.

    A job killed mid-line cuts its log at any byte; with ASCII bars the log
    stays valid text, so Snakemake can still show it with the failure.
    """
    stream = sys.stderr
    return tqdm(iterable, file=stream, disable=not enabled, ascii=not stream.isatty(), dynamic_ncols=True,
                **kwargs)
