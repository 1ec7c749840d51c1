"""Atomic output writing: a killed job never leaves a file that looks finished.

Every writer goes through :func:`atomic_path`: the payload is written to a
temporary sibling and renamed into place only after it was written completely.
``os.replace`` is atomic on POSIX file systems when source and target share a
directory, which is why the temporary file lives next to the target. A process
killed while writing (``kill -9``, a cancelled cluster job) leaves that hidden
sibling behind; :func:`remove_temporaries` clears a target's leftovers once the
target has been written anew.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_prefix(target: Path) -> str:
    """The name every temporary sibling of ``target`` starts with (:func:`atomic_path`, :func:`atomic_dir`)."""
    return f".{target.name}."


def remove_temporaries(target: str | Path) -> list[Path]:
    """Remove what killed writers of ``target`` left beside it (hidden temporary files or folders); the removed.

    A temporary is named ``.<name>.<8 random characters>[<suffix>]`` (``tempfile``'s names), so the
    temporaries of ``a.csv.gz``, another job's output, are never taken for those of ``a.csv``."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(_temporary_prefix(target)) + r"[a-z0-9_]{8}(\..*)?")
    leftovers = sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name))
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


def _publish_mode(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give results the usual umask-based mode."""
    base = 0o777 if is_dir else 0o666
    os.chmod(path, base & ~_current_umask())


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``target``.

    ``suffix`` defaults to the target's own suffixes so that libraries that
    pick a format from the extension (SimpleITK, matplotlib, numpy) still do.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(target), suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publish_mode(tmp_path, is_dir=False)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=target.parent))
    try:
        yield tmp
        _publish_mode(tmp, is_dir=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, obj, indent: int = 2) -> None:
    write_text(target, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


def write_csv(target: str | Path, frame, float_format: str | None = None) -> None:
    """A pandas DataFrame as CSV without its index, atomically: every CSV of the workflow is written here.

    ``float_format`` (``"%.6g"``) is the study's number format; None writes
    each float in full (the shortest text that reads back to the same value).
    """
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)
