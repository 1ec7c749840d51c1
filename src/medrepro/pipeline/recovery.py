"""Recovery after a killed run: Snakemake's stale locks are cleared when no other run is alive.

Snakemake marks the files a run works on in ``.snakemake/locks``, but those
files name no process: after ``kill -9`` they stay, and the next run stops
with a LockException until someone runs ``--unlock``. So every run of the
workflow also holds a shared OS lock (``flock``) on one file of its own for as
long as its process lives; the kernel drops it when the process ends, however
it ends. A run that can take that lock exclusively knows that no other run is
alive in this working directory, so any Snakemake lock left there is stale and
is removed. When another run holds it, nothing is touched and Snakemake's own
lock check decides; its LockException then says that a live run holds the
files, instead of suggesting ``--unlock`` (:func:`explain_lock_conflicts`).

Incomplete outputs of a killed job are not handled here: the workflow profile
``profiles/default`` (read by every ``snakemake`` call) sets
``rerun-incomplete``, so they are deleted and their jobs rerun.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Callable, NamedTuple

RUN_LOCK_NAME = "medrepro-run.lock"

# Per .snakemake directory: the open lock file of this process, kept open (and so locked) until the
# process exits, and what was found when it was taken.
_held_run_locks: dict[Path, IO] = {}
_claims: dict[Path, "Claim"] = {}


def _take_run_lock(path: Path) -> tuple[IO, bool]:
    """Open ``path`` and lock it; True when the lock was exclusive (no other run alive).

    OSError when the file system offers no locks (some cluster file systems are mounted so).
    """
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return handle, True
    except BlockingIOError:
        return handle, False
    except OSError:
        handle.close()
        raise


def _share_run_lock(handle: IO) -> None:
    """Hold the lock shared from now on, so that runs started later see this one alive.

    flock may drop an exclusive lock before taking the shared one; a run that
    starts in that instant finds only the locks of dead runs, because this one
    writes its own Snakemake locks only after the workflow has been parsed.
    """
    fcntl.flock(handle, fcntl.LOCK_SH)


def stale_snakemake_locks(snakemake_dir: Path) -> list[Path]:
    """Snakemake's lock files (``locks/<n>.input.lock``, ``locks/<n>.output.lock``) in ``snakemake_dir``."""
    locks = snakemake_dir / "locks"
    if not locks.is_dir():
        return []
    return sorted(p for p in locks.iterdir() if p.name.endswith(".lock") and p.is_file())


class Claim(NamedTuple):
    """What :func:`claim_working_directory` found: another run alive here, and the stale locks it removed."""

    other_run_alive: bool
    removed: list[Path]


def claim_working_directory(snakemake_dir: str | Path = ".snakemake",
                            log: Callable[[str], None] = print) -> Claim:
    """Mark this process as a live run; when it is the only one, remove stale Snakemake locks.

    Call it once in the main Snakemake process, never in job processes that
    parse the workflow again. Logs one line when it removes locks, one when
    another run holds the directory, and one when the file system has no
    locks (then nothing is removed: Snakemake's own check decides).
    """
    snakemake_dir = Path(snakemake_dir)
    key = snakemake_dir.resolve()
    if key in _claims:  # the workflow is parsed more than once in one process
        return _claims[key]
    snakemake_dir.mkdir(parents=True, exist_ok=True)
    try:
        handle, alone = _take_run_lock(snakemake_dir / RUN_LOCK_NAME)
    except OSError as error:
        log(f"medrepro: cannot lock {snakemake_dir / RUN_LOCK_NAME} ({error.strerror or error}): locks left by a "
            "killed run are not cleared here; `snakemake --unlock` clears them once no run is alive")
        _claims[key] = Claim(other_run_alive=False, removed=[])
        return _claims[key]
    removed = []
    if alone:
        removed = stale_snakemake_locks(snakemake_dir)
        for lock in removed:
            lock.unlink(missing_ok=True)
        if removed:
            log(f"medrepro: no other run is alive in {os.getcwd()}: removed {len(removed)} stale Snakemake "
                f"lock file(s) left by a killed run ({snakemake_dir / 'locks'})")
    else:
        log(f"medrepro: another run of this workflow is alive in {os.getcwd()}: its Snakemake locks are kept")
    _share_run_lock(handle)
    _held_run_locks[key], _claims[key] = handle, Claim(other_run_alive=not alone, removed=removed)
    return _claims[key]


def explain_lock_conflicts(working_directory: str | Path | None = None) -> None:
    """Make Snakemake's LockException say that a live run holds the files, instead of suggesting ``--unlock``.

    Only for a run that found another one alive: there, ``--unlock`` would
    remove the live run's locks.
    """
    import snakemake.exceptions as snakemake_exceptions

    original = snakemake_exceptions.LockException
    message = (f"Error: another run of this workflow is alive in {working_directory or os.getcwd()} and works on "
               "some of the same files: wait for it to end (or stop it), then run again; do not use --unlock "
               "while it runs.")

    class LockException(original):
        def __init__(self):
            super(original, self).__init__(message)

    snakemake_exceptions.LockException = LockException


def release_working_directory() -> None:
    """Drop this process's run locks (tests; a real run holds its lock until it exits)."""
    for handle in _held_run_locks.values():
        handle.close()
    _held_run_locks.clear()
    _claims.clear()
