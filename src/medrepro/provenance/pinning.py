"""Pins: the sha256 of every raw file of a dataset, checked before every run and changed only on purpose.

A pin is a manifest in the ``sha256sum`` format (``<digest>  <relative path>``,
sorted by path), so ``sha256sum -c`` can check it from the raw directory.
Where a dataset's pin lives (:func:`pin_path`):

* synthetic stand-ins: the generator's ``<raw>/MANIFEST.sha256``; regenerating
  the data brings a new directory and with it a new pin.
* a user's copy (``source: verify``) or a download: ``<provenance
  dir>/pins/<dataset>.sha256`` (``results/provenance/pins/`` by default). The
  first obtain step writes it and logs "first use: pinned N files in ...". It is
  no rule's output, so forcing the obtain step never deletes it: a forced step
  verifies against it and fails on any change. A copy that arrives with its own
  ``<raw>/MANIFEST.sha256`` is verified against that before it is pinned.

Each pin has a stat cache in the user's cache directory (:func:`stat_cache_path`):
the size and mtime (ns) each file had when its digest was last computed, so
that a check re-hashes only the files whose size or mtime changed (a ``touch``
costs one hash, not a failure). Beside the pin lies ``<name>.log``, its
history: its first use and every re-pinning with time, user, reason and each
file that changed.

The files of a dataset are every regular file under its raw directory except
hidden ones (names starting with '.'), the directory's own ``MANIFEST.sha256``,
and the pin and its log when they live inside it. A file changed, missing or
added since pinning is caught by :func:`check_before_run` when the workflow
starts (stat cache: cheap for 100,000 files) and by :func:`verify` in the
obtain step (every file hashed: a file rewritten with its old size and mtime
escapes only the cheap check). Only :func:`repin` (``medrepro data repin``)
changes a pin, after listing every difference with both digests.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError
from medrepro.provenance.hashing import sha256_file

MANIFEST_FILE = "MANIFEST.sha256"
PINS_SUBDIR = "pins"
_STAT_HEADER = "# size\tmtime_ns\tsha256\tpath: digests as of these file states, to skip re-hashing\n"


# ---------------------------------------------------------------- where pins live


def pins_dir(provenance_dir: str | Path) -> Path:
    """Where the pins of user copies and downloads live: beside the provenance records."""
    return Path(provenance_dir) / PINS_SUBDIR


def pin_path(dataset: str, raw_root: str | Path | None, source: str, pins_directory: str | Path) -> Path:
    """The pin of ``dataset``: the generator's manifest for synthetic data, else ``<pins>/<dataset>.sha256``."""
    if source == "synthetic":
        return Path(raw_root) / MANIFEST_FILE
    return Path(pins_directory) / f"{dataset}.sha256"


def log_path(pin: str | Path) -> Path:
    return Path(pin).with_suffix(".log")


def stat_cache_dir() -> Path:
    """Where stat caches live: ``$MEDREPRO_STAT_CACHE``, else ``$XDG_CACHE_HOME/medrepro/stat`` (``~/.cache``)."""
    if os.environ.get("MEDREPRO_STAT_CACHE"):
        return Path(os.environ["MEDREPRO_STAT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medrepro" / "stat"


def stat_cache_path(pin: str | Path) -> Path:
    """The stat cache of ``pin``, named by the pin's absolute path.

    It is only a cache, so it lives in the user's cache directory: never in a
    raw directory (a rule's output, whose bytes must not change after the
    rule) nor among the results (two runs must give the same files).
    """
    key = hashlib.sha256(os.path.abspath(pin).encode()).hexdigest()[:24]
    return stat_cache_dir() / f"{Path(pin).stem}-{key}.tsv"


# ---------------------------------------------------------------- manifests


def _skipped(root: str | Path, exclude: Iterable[str | Path]) -> set[str]:
    """Relative paths that are not data: the directory's manifest, and ``exclude`` where it lies inside."""
    real_root = os.path.realpath(root)
    skipped = {MANIFEST_FILE}
    for path in exclude:  # one realpath per excluded file, not one per data file
        relative = os.path.relpath(os.path.realpath(path), real_root)
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            skipped.add(Path(relative).as_posix())
    return skipped


def _scan(root: str | Path, exclude: Iterable[str | Path] = ()) -> dict[str, os.DirEntry]:
    """Every file of the dataset under ``root`` by relative path; plain strings and one stat each, for 100,000 files."""
    skipped = _skipped(root, exclude)
    found: dict[str, os.DirEntry] = {}
    pending = [("", os.fspath(root))]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                relative = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((relative + "/", entry.path))
                elif entry.is_file() and relative not in skipped:
                    found[relative] = entry
    return found


def list_files(root: str | Path, exclude: Iterable[str | Path] = ()) -> dict[str, Path]:
    """Every file of the dataset under ``root`` by relative path, sorted (the module text says what is left out)."""
    return {relative: Path(entry.path) for relative, entry in sorted(_scan(root, exclude).items())}


def write_entries(manifest_path: str | Path, entries: dict[str, str]) -> None:
    """``<sha256>  <relative path>`` per entry, sorted by path, written atomically."""
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(entries.items()))
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_manifest(root: str | Path, manifest_path: str | Path) -> dict[str, str]:
    """Hash every file under ``root`` (the manifest itself left out) and write the manifest; returns the entries."""
    entries = {rel: sha256_file(p) for rel, p in list_files(root, exclude=(manifest_path,)).items()}
    write_entries(manifest_path, entries)
    return entries


def read_manifest(manifest_path: str | Path) -> dict[str, str]:
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise DataError(manifest_path, "manifest not found")
    entries = {}
    for number, line in enumerate(manifest_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise DataError(manifest_path, f"line {number} is not '<sha256>  <path>': {line!r}")
        entries[rel] = digest.lower()
    return entries


# ---------------------------------------------------------------- the stat cache


def _read_stat_cache(pin: Path) -> dict[str, tuple[int, int, str]]:
    try:
        lines = stat_cache_path(pin).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    cache = {}
    try:
        for line in lines:
            if line and not line.startswith("#"):
                size, mtime_ns, digest, rel = line.split("\t", 3)
                cache[rel] = (int(size), int(mtime_ns), digest)
    except ValueError:  # a damaged cache is only a cache: hash everything again
        return {}
    return cache


def _write_stat_cache(pin: Path, cache: dict[str, tuple[int, int, str]]) -> None:
    text = _STAT_HEADER + "".join(f"{s}\t{m}\t{d}\t{rel}\n" for rel, (s, m, d) in sorted(cache.items()))
    try:
        with atomic_path(stat_cache_path(pin)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError:  # a read-only place: later checks hash again, nothing else is lost
        pass


def current_digests(raw_root: str | Path, pin: str | Path, trust_stat_cache: bool = True) -> dict[str, str]:
    """sha256 of every file of the dataset; files whose size and mtime match the pin's stat cache are not re-read.

    The stat cache is rewritten with what was found either way.
    """
    raw_root, pin = Path(raw_root), Path(pin)
    cached = _read_stat_cache(pin)
    digests, seen = {}, {}
    for rel, entry in _scan(raw_root, exclude=(pin, log_path(pin))).items():
        stat = entry.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        known = cached.get(rel)
        digest = known[2] if trust_stat_cache and known is not None and known[:2] == stamp else sha256_file(entry.path)
        digests[rel] = digest
        seen[rel] = (*stamp, digest)
    if seen != cached:
        _write_stat_cache(pin, seen)
    return digests


# ---------------------------------------------------------------- differences


@dataclass(frozen=True)
class Difference:
    """One file whose content is not what the pin says: ``changed``, ``missing`` or ``added``."""

    kind: str
    path: str  # relative to the raw directory
    pinned: str | None
    current: str | None

    def problem(self) -> str:
        if self.kind == "changed":
            return f"sha256 mismatch: expected {self.pinned}, actual {self.current}"
        if self.kind == "missing":
            return f"missing: expected sha256 {self.pinned}, actual none (no such file)"
        return f"added since pinning: expected no file, actual sha256 {self.current}"


def differences(pinned: dict[str, str], current: dict[str, str]) -> list[Difference]:
    """Every file that is changed, missing or added, sorted by path."""
    if pinned == current:
        return []
    found = []
    for rel in sorted(set(pinned) | set(current)):
        before, now = pinned.get(rel), current.get(rel)
        if before == now:
            continue
        kind = "added" if before is None else "missing" if now is None else "changed"
        found.append(Difference(kind, rel, before, now))
    return found


def repin_command(dataset: str, raw_root: str | Path, pin: str | Path,
                  verified_copy: str | Path | None = None) -> str:
    """The command that accepts the current files as the new pin (printed by every failed check)."""
    words = ["medrepro", "data", "repin", dataset, "--raw-dir", str(raw_root), "--pin", str(pin)]
    if verified_copy is not None:
        words += ["--verified-copy", str(verified_copy)]
    return shlex.join(words) + " --reason '<what changed and why>'"


def remedy(dataset: str, raw_root: str | Path, pin: str | Path, verified_copy: str | Path | None = None,
           made_by_rule: bool = False) -> str:
    """What to do about a changed dataset, in one sentence."""
    text = f"If the change is intended, re-pin: {repin_command(dataset, raw_root, pin, verified_copy)}"
    if made_by_rule:
        text += f"; to undo it, delete {raw_root} and the workflow makes it again"
    return text


def _failure(raw_root: Path, manifest: Path, found: list[Difference], remedy_text: str,
             listed: str = "pinned in") -> DataError:
    """One line: the first difference with both digests, how many more, and what to do."""
    first = found[0]
    more = len(found) - 1
    count = f"; {more} more file{'s differ' if more > 1 else ' differs'}" if more else ""
    advice = f". {remedy_text}" if remedy_text else ""
    return DataError(raw_root / first.path, f"{first.problem()} ({listed} {manifest}{count}){advice}")


# ---------------------------------------------------------------- checks


def verify(raw_root: str | Path, pin: str | Path, thorough: bool = False, remedy_text: str = "") -> int:
    """Check every file against the pin; DataError names the first difference. Returns the number of files.

    ``thorough`` reads every file (once per process: :mod:`medrepro.provenance.hashing`
    memoises by file state); otherwise files whose size and mtime are
    unchanged since their last hashing are taken from the stat cache.
    """
    raw_root, pin = Path(raw_root), Path(pin)
    pinned = read_manifest(pin)
    found = differences(pinned, current_digests(raw_root, pin, trust_stat_cache=not thorough))
    if found:
        raise _failure(raw_root, pin, found, remedy_text)
    return len(pinned)


def check_before_run(dataset: str, raw_root: str | Path | None, pin: str | Path, made_by_rule: bool,
                     verified_copy: str | Path | None = None) -> int | None:
    """The workflow's startup check of one dataset; the number of files checked, or None when nothing is pinned.

    ``made_by_rule``: the raw directory is a rule's output (synthetic or
    downloaded), so a missing one is simply made again. A user's copy that
    was pinned and is gone is an error.
    """
    if raw_root is None:  # no copy configured: the config check says so
        return None
    raw_root, pin = Path(raw_root), Path(pin)
    if not raw_root.exists():
        if made_by_rule or not pin.is_file():
            return None
        raise DataError(raw_root, f"the copy of {dataset} pinned in {pin} is missing: put it back, or set its "
                                  "raw_dir to where it is now")
    if not pin.is_file():
        if pin.parent == raw_root:  # the generator's manifest, gone from its directory
            raise DataError(pin, f"missing, so {raw_root} cannot be checked: delete {raw_root} and the workflow "
                                 "makes it again")
        return None  # a copy not yet pinned: the obtain step pins it
    return verify(raw_root, pin, remedy_text=remedy(dataset, raw_root, pin, verified_copy, made_by_rule))


# ---------------------------------------------------------------- pinning


def _append_log(pin: Path, lines: list[str]) -> None:
    log = log_path(pin)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return f"uid {os.getuid()}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def pin_first_use(dataset: str, raw_root: str | Path, pin: str | Path, reference: str | Path | None = None) -> int:
    """Record every file's digest as the pin of a copy seen for the first time; returns the number of files.

    With ``reference`` (a manifest that came with the copy) the files are
    first checked against it, every file hashed.
    """
    raw_root, pin = Path(raw_root), Path(pin)
    digests = current_digests(raw_root, pin, trust_stat_cache=False)
    if reference is not None:
        found = differences(read_manifest(reference), digests)
        if found:
            raise _failure(raw_root, Path(reference), found, "Fix the copy, or delete the manifest it came with "
                           "to pin its files as they are", listed="listed in")
    write_entries(pin, digests)
    origin = f", checked against {reference}" if reference is not None else ""
    _append_log(pin, [f"{_now()}  first use: pinned {len(digests)} files of {dataset} in {raw_root}{origin}  "
                      f"user {_who()}"])
    return len(digests)


def repin(dataset: str, raw_root: str | Path, pin: str | Path, reason: str | None = None,
          verified_copies: Iterable[str | Path] = (), echo: Callable[[str], None] = print) -> list[Difference]:
    """Make the files now under ``raw_root`` the pin, on purpose; returns the differences from the old pin.

    Every added, removed and changed file is shown with its old and new
    digest, and appended to the pin's log with the time, user and reason;
    then the pin is rewritten. ``verified_copies`` (the obtain step's copy of
    the old pin) are removed, so that the workflow verifies the data again and
    remakes everything made from them.
    """
    raw_root, pin = Path(raw_root), Path(pin)
    if not raw_root.is_dir():
        raise DataError(raw_root, "no such directory: nothing to pin")
    pinned = read_manifest(pin) if pin.is_file() else {}
    digests = current_digests(raw_root, pin)
    found = differences(pinned, digests)
    if pin.is_file() and not found:
        echo(f"{dataset}: the {len(digests)} files under {raw_root} match {pin}; nothing to re-pin")
        return found
    label = {"changed": "changed", "missing": "removed", "added": "added"}
    details = [f"  {label[d.kind]} {d.path}: {d.pinned or '-'} -> {d.current or '-'}" for d in found]
    counts = ", ".join(f"{sum(d.kind == k for d in found)} {label[k]}" for k in ("changed", "missing", "added"))
    summary = (f"{_now()}  re-pinned {len(digests)} files of {dataset} in {raw_root} ({counts})  user {_who()}  "
               f"reason {reason or '(none given)'}")
    for line in details:
        echo(line)
    _append_log(pin, [summary, *details])
    write_entries(pin, digests)
    echo(f"{dataset}: re-pinned {len(digests)} files in {pin} ({counts}); logged in {log_path(pin)}")
    for copy in map(Path, verified_copies):
        if copy.exists():
            copy.unlink()
            echo(f"removed {copy} (verified against the old pin): the next run verifies the data again")
    return found
