"""Errors that name the offending file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class MedreproError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class DataError(MedreproError):
    """A data file is missing, unreadable or not what its format promises."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(MedreproError):
    """A configuration value is invalid."""


def name_list(names: Iterable, limit: int = 5) -> str:
    """The first ``limit`` names, comma-separated, and how many more: enough for an error message."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
