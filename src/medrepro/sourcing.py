"""Getting a dataset onto disk, and proving it is what we think.

Each study describes its datasets with a :class:`Dataset` (where each part
comes from, how to check a raw directory's layout, how to download it when
that is possible) and registers it with :func:`register`. Three ways in
(:func:`obtain`):

* ``synthetic``: the raw directory was written by the study's stand-in
  generator, which also wrote a manifest; the layout is checked and every
  file is verified against that manifest.
* ``verify``: the user placed a copy of the real data (the description says
  what goes where); the layout is checked, then the files are verified
  against a manifest if one exists, otherwise the digests are recorded (and
  the message says how to pin them so that later runs detect any change).
* ``download``: the dataset's own download function fetches and unpacks it
  (datasets behind a registration have none).

Manifests use the ``sha256sum`` text format (``<digest>  <relative path>``,
sorted by path), so ``sha256sum -c`` can check them from the raw directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from medrepro.atomic import atomic_path
from medrepro.errors import ConfigError, DataError
from medrepro.hashing import sha256_file

log = logging.getLogger(__name__)

MANIFEST_FILE = "MANIFEST.sha256"
MODES = ("synthetic", "verify", "download")
_CHUNK = 1 << 20


# ---------------------------------------------------------------- where the data comes from


@dataclasses.dataclass(frozen=True)
class Source:
    """One part of a dataset: where it comes from and where it goes in the raw directory."""

    what: str
    urls: tuple[str, ...]
    access: str
    automatic: bool
    put_under: str  # relative to the dataset's raw directory
    expect: str  # what the folder should contain afterwards


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What the kernel needs to know of a study's dataset to obtain and verify it.

    ``check_layout(raw_root)`` returns counts (``images``, ``masks``, ...) or
    raises a DataError that says what to fetch and where; ``download(raw_root)``
    fetches and unpacks the dataset into ``raw_root`` (None: no automatic
    download exists).
    """

    name: str
    sources: tuple[Source, ...]
    check_layout: Callable[[Path], dict]
    download: Callable[[Path], Path] | None = None


_REGISTRY: dict[str, Dataset] = {}


def register(description: Dataset) -> Dataset:
    """Make a dataset known by name (studies call this for each dataset they read)."""
    known = _REGISTRY.get(description.name)
    if known is not None and known.sources != description.sources:
        raise ValueError(f"dataset {description.name!r} is already registered with other sources")
    _REGISTRY[description.name] = description
    return description


def dataset(name: str | Dataset) -> Dataset:
    """The registered description of ``name`` (a description passes through)."""
    if isinstance(name, Dataset):
        return name
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none registered)"
        raise ConfigError(f"unknown dataset {name!r}; expected one of {known}")
    return _REGISTRY[name]


def instructions(name: str | Dataset, raw_root: str | Path, parts: tuple[int, ...] | None = None) -> str:
    """Human-readable: what to download, from where, and where to put it."""
    description = dataset(name)
    raw_root = Path(raw_root)
    chosen = description.sources if parts is None else tuple(description.sources[i] for i in parts)
    lines = []
    for source in chosen:
        target = raw_root if source.put_under == "." else raw_root / source.put_under
        lines.append(
            f"Download the {source.what} from {' or '.join(source.urls)} ({source.access}) "
            f"and put it under {target}/ so that it holds {source.expect}"
            + (", or run the obtain step in 'download' mode." if source.automatic else ".")
        )
    return " ".join(lines)


# ---------------------------------------------------------------- checksums and manifests


def _manifest_files(root: Path, manifest_path: Path) -> list[Path]:
    """Every regular file under ``root`` except the manifest and hidden (temporary) files."""
    skip = manifest_path.resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            path = Path(dirpath) / filename
            if filename.startswith(".") or path.resolve() == skip:
                continue
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def write_manifest(root: str | Path, manifest_path: str | Path) -> dict[str, str]:
    """Write ``<sha256>  <relative path>`` for every file under ``root``, sorted, atomically."""
    root, manifest_path = Path(root), Path(manifest_path)
    entries = {p.relative_to(root).as_posix(): sha256_file(p) for p in _manifest_files(root, manifest_path)}
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(entries.items()))
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
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


def verify_manifest(root: str | Path, manifest_path: str | Path) -> int:
    """Check every listed file's digest; raise DataError naming the first missing or changed file.

    Files under ``root`` that the manifest does not list are allowed (a
    user's copy may hold extras). Returns the number of files verified.
    """
    root = Path(root)
    entries = read_manifest(manifest_path)
    for rel, expected in entries.items():
        path = root / rel
        if not path.is_file():
            raise DataError(path, f"listed in {manifest_path} (sha256 {expected}) but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(path, f"sha256 mismatch: expected {expected}, got {actual} (manifest {manifest_path})")
    return len(entries)


# ---------------------------------------------------------------- layout checks


def check_layout(name: str | Dataset, raw_root: str | Path) -> dict:
    """Check the files a converter needs are in place; DataError says what to fetch and where.

    Returns the dataset's counts (``images``, ``masks``, ...).
    """
    return dataset(name).check_layout(Path(raw_root))


# ---------------------------------------------------------------- downloads


def download(
    url: str, target: str | Path, sha256: str | None = None, md5: str | None = None, timeout: float = 60
) -> Path:
    """Stream ``url`` to ``target`` through a temporary file, check digests, then rename.

    On a network failure or a digest mismatch a DataError is raised and no
    file (partial or complete) is left at ``target``.
    """
    target = Path(target)
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    with atomic_path(target) as tmp:  # removed again if anything below raises
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(url, f"download failed: {exc}") from exc
        for kind, expected in (("sha256", sha256), ("md5", md5)):
            actual = hashes[kind].hexdigest()
            if expected is not None and actual != expected.lower():
                raise DataError(url, f"{kind} mismatch for {target.name}: expected {expected}, got {actual}")
    log.info("downloaded %s -> %s (sha256 %s)", url, target, hashes["sha256"].hexdigest())
    return target


def safe_extract(archive: Path, destination: Path) -> None:
    """Unpack a zip, refusing members that would land outside ``destination``."""
    destination = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if member.filename.startswith("__MACOSX/") or member.is_dir():
                    continue
                out = (destination / member.filename).resolve()
                if destination not in out.parents:
                    raise DataError(
                        archive, f"archive member {member.filename!r} would be written outside {destination}"
                    )
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, atomic_path(out) as tmp, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile as exc:
        raise DataError(archive, f"not a valid zip archive: {exc}") from exc


def fetch(name: str | Dataset, raw_root: str | Path) -> Path:
    """Download ``name`` into ``raw_root`` with its own download function, if it has one."""
    description = dataset(name)
    if description.download is None:
        raise DataError(None, f"{description.name} cannot be downloaded automatically. "
                        + instructions(description, raw_root))
    return description.download(Path(raw_root))


# ---------------------------------------------------------------- the obtain step


def _reference_manifest(raw_root: Path, manifest_path: Path, mode: str) -> Path | None:
    """The manifest to verify against: the generator's for synthetic data, else any pinned one."""
    pinned = raw_root / MANIFEST_FILE
    if mode == "synthetic":
        if not pinned.is_file():
            raise DataError(pinned, "no generator manifest: generate the synthetic dataset first")
        return pinned
    for candidate in (manifest_path, pinned):
        if candidate.is_file():
            return candidate
    return None


def obtain(name: str | Dataset, raw_root: str | Path, manifest_path: str | Path | None = None, mode: str = "verify") -> dict:
    """Make sure a dataset's raw directory is complete and unchanged; returns a summary.

    Verifies ``raw_root`` against a reference manifest: the generator's
    ``<raw_root>/MANIFEST.sha256`` in ``synthetic`` mode; otherwise
    ``manifest_path`` if it already exists, else a manifest pinned at
    ``<raw_root>/MANIFEST.sha256``. Without any reference (a first look at a
    user's copy) the digests are computed and recorded, and the message says
    so. Either way ``manifest_path`` (default ``<raw_root>/MANIFEST.sha256``)
    ends up holding the verified digests, for the steps downstream.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown obtain mode {mode!r}; expected one of {', '.join(MODES)}")
    raw_root = Path(raw_root)
    manifest_path = Path(manifest_path) if manifest_path is not None else raw_root / MANIFEST_FILE
    description = dataset(name)
    if mode == "download":
        fetch(description, raw_root)
    reference = _reference_manifest(raw_root, manifest_path, mode)
    counts = description.check_layout(raw_root)
    if reference is not None:
        n_files = verify_manifest(raw_root, reference)
        message = f"{description.name}: verified {n_files} files against {reference}"
        if reference.resolve() != manifest_path.resolve():
            text = reference.read_text(encoding="utf-8")
            with atomic_path(manifest_path) as tmp:
                tmp.write_text(text, encoding="utf-8")
    else:
        n_files = len(write_manifest(raw_root, manifest_path))
        message = (
            f"{description.name}: no manifest to verify against; recorded the digests of {n_files} files in "
            f"{manifest_path} (copy it to {raw_root / MANIFEST_FILE} to have later runs verify against it)"
        )
    log.info(message)
    summary = {"dataset": description.name, "mode": mode, "files": n_files, "manifest": str(manifest_path), "message": message}
    return {**summary, **counts}
