"""Getting a dataset onto disk, and proving it is what we think.

Each study describes its datasets with a :class:`Dataset` (where each part
comes from, how to check a raw directory's layout, how to download it when
that is possible) and registers it with :func:`register`. Three ways in
(:func:`obtain`):

* ``synthetic``: the raw directory was written by the study's stand-in
  generator, whose manifest is the pin; the layout is checked and every file
  is verified against it.
* ``verify``: the user placed a copy of the real data (the description says
  what goes where); the layout is checked, then every file is verified against
  the copy's pin. At first use there is none: the digests are recorded as the
  pin (:mod:`medrepro.provenance.pinning` says where), and later runs stop on any change.
* ``download``: the dataset's own download function fetches and unpacks it
  (datasets behind a registration have none), then as ``verify``.

A pin changes only through :func:`medrepro.provenance.pinning.repin` (``medrepro data
repin``), never as a side effect of a run, forced or not. Manifests use the
``sha256sum`` text format (``<digest>  <relative path>``, sorted by path), so
``sha256sum -c`` can check them from the raw directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from medrepro.provenance import pinning
from medrepro.data.atomic import atomic_path
from medrepro.errors import ConfigError, DataError
from medrepro.provenance.hashing import sha256_file
from medrepro.provenance.pinning import MANIFEST_FILE, read_manifest, write_manifest  # noqa: F401  (part of this API)

log = logging.getLogger(__name__)

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


def verify_manifest(root: str | Path, manifest_path: str | Path) -> int:
    """Check every listed file's digest; raise DataError naming the first missing or changed file.

    Files under ``root`` that the manifest does not list are allowed (a
    manifest that lists part of a directory). Returns the number of files
    verified. A dataset's pin is checked strictly, extras included, by
    :func:`medrepro.provenance.pinning.verify`.
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


def obtain(name: str | Dataset, raw_root: str | Path, manifest_path: str | Path | None = None,
           mode: str = "verify", pins_dir: str | Path | None = None) -> dict:
    """Make sure a dataset's raw directory is complete and unchanged since it was pinned; returns a summary.

    Every file is hashed and compared with the pin (:func:`medrepro.provenance.pinning.pin_path`):
    the generator's ``<raw_root>/MANIFEST.sha256`` in ``synthetic`` mode, else
    ``<pins_dir>/<dataset>.sha256`` (``pins_dir`` defaults to the folder of
    ``manifest_path``). A changed, missing or added file raises a DataError
    with both digests and the re-pin command. Without a pin (a first look at a
    user's copy) the digests become the pin, and the message says so.
    ``manifest_path`` (default ``<raw_root>/MANIFEST.sha256``) then holds a
    verified copy of the pin, for the steps downstream.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown obtain mode {mode!r}; expected one of {', '.join(MODES)}")
    raw_root = Path(raw_root)
    manifest_path = Path(manifest_path) if manifest_path is not None else raw_root / MANIFEST_FILE
    description = dataset(name)
    if mode == "download":
        fetch(description, raw_root)
    pin = pinning.pin_path(description.name, raw_root, "synthetic" if mode == "synthetic" else "verify",
                           manifest_path.parent if pins_dir is None else pins_dir)
    if mode == "synthetic" and not pin.is_file():
        raise DataError(pin, "no generator manifest: generate the synthetic dataset first")
    counts = description.check_layout(raw_root)
    if pin.is_file():
        advice = pinning.remedy(description.name, raw_root, pin, manifest_path, made_by_rule=mode == "synthetic")
        n_files = pinning.verify(raw_root, pin, thorough=True, remedy_text=advice)
        message = f"{description.name}: verified {n_files} files against {pin}"
    else:
        shipped = raw_root / MANIFEST_FILE
        n_files = pinning.pin_first_use(description.name, raw_root, pin, shipped if shipped.is_file() else None)
        message = (f"{description.name}: first use: pinned {n_files} files in {pin} (recorded the digests; later "
                   "runs stop if any file changes, and only `medrepro data repin` changes the pin)")
    if pin.resolve() != manifest_path.resolve():
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(pin.read_text(encoding="utf-8"), encoding="utf-8")
    log.info(message)
    summary = {"dataset": description.name, "mode": mode, "files": n_files, "manifest": str(manifest_path),
               "pin": str(pin), "message": message}
    return {**summary, **counts}
