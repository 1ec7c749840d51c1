"""Getting the chest X-ray datasets onto disk, and proving they are what we think.

Three ways in (:func:`obtain`):

* ``synthetic``: the raw directory was written by
  :func:`medrepro.data.synthetic_chest.generate_dataset`; its layout is
  checked and every file is verified against the generator's manifest.
* ``verify``: the user placed a copy of the real data (see
  :data:`DATASET_SOURCES` for what goes where); the layout is checked, then
  the files are verified against a manifest if one exists, otherwise the
  digests are recorded (and the message says how to pin them so that later
  runs detect any change).
* ``download``: the NLM sets are fetched and unpacked (JSRT, SCR and the
  Shenzhen lung masks need a registration and cannot be downloaded here).

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

from medrepro.atomic import atomic_path
from medrepro.errors import ConfigError, DataError, name_list
from medrepro.hashing import sha256_file
from medrepro.io import cxr14, jsrt, montgomery, shenzhen

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


DATASET_SOURCES: dict[str, tuple[Source, ...]] = {
    "JSRT": (
        Source(
            what="JSRT digital image database (247 chest radiographs, 2048 x 2048 .IMG files)",
            urls=("http://db.jsrt.or.jp/eng.php",),
            access="free registration with the Japanese Society of Radiological Technology; no automatic download",
            automatic=False,
            put_under="images",
            expect="JPCLN001.IMG .. JPCLN154.IMG, JPCNN001.IMG .. JPCNN093.IMG, and CLNDAT_EN.txt, CNNDAT_EN.TXT",
        ),
        Source(
            what="SCR database (Segmentation in Chest Radiographs): lung, heart and clavicle masks for JSRT",
            urls=("https://www.isi.uu.nl/Research/Databases/SCR/",),
            access="registration on the SCR site (Image Sciences Institute, UMC Utrecht); no automatic download",
            automatic=False,
            put_under="scr",
            expect="scratch/fold1/masks/<organ>/<NAME>.gif and scratch/fold2/masks/<organ>/<NAME>.gif, organ "
            "folders 'right lung', 'left lung', 'heart' (1024 x 1024 GIFs)",
        ),
    ),
    "Montgomery": (
        Source(
            what="Montgomery County chest X-ray set (138 PNGs, lung masks, clinical readings)",
            urls=(
                "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
                "Montgomery-County-CXR-Set/MontgomerySet/index.html",
                "http://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",
            ),
            access="public, no login: the NLM open directory or the legacy zip",
            automatic=True,
            put_under=".",
            expect="MontgomerySet/CXR_png/*.png, MontgomerySet/ManualMask/leftMask/*.png, "
            "MontgomerySet/ManualMask/rightMask/*.png, MontgomerySet/ClinicalReadings/*.txt",
        ),
    ),
    "Shenzhen": (
        Source(
            what="Shenzhen Hospital chest X-ray set (662 PNGs and clinical readings)",
            urls=(
                "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
                "Shenzhen-Hospital-CXR-Set/index.html",
                "http://openi.nlm.nih.gov/imgs/collections/ChinaSet_AllFiles.zip",
            ),
            access="public, no login: the NLM open directory or the legacy zip",
            automatic=True,
            put_under=".",
            expect="ChinaSet_AllFiles/CXR_png/*.png, ChinaSet_AllFiles/ClinicalReadings/*.txt",
        ),
        Source(
            what="Shenzhen lung masks (shcxr-lung-mask, 566 binary masks for both lungs)",
            urls=("https://www.kaggle.com/datasets/yoctoman/shcxr-lung-mask",),
            access="Kaggle account required; no automatic download",
            automatic=False,
            put_under="shcxr-lung-mask",
            expect="mask/CHNCXR_0001_0_mask.png ... (one mask per image, image-sized)",
        ),
    ),
}

#: Archives the ``download`` mode tries, in order. No checksums are published
#: for them; the manifest written after unpacking pins what was received.
NLM_ARCHIVES: dict[str, tuple[str, ...]] = {
    "Montgomery": (
        "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
        "Montgomery-County-CXR-Set/MontgomerySet/NLM-MontgomeryCXRSet.zip",
        "http://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",
    ),
    "Shenzhen": (
        "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
        "Shenzhen-Hospital-CXR-Set/ChinaSet_AllFiles.zip",
        "http://openi.nlm.nih.gov/imgs/collections/ChinaSet_AllFiles.zip",
    ),
}


def instructions(dataset: str, raw_root: str | Path, parts: tuple[int, ...] | None = None) -> str:
    """Human-readable: what to download, from where, and where to put it."""
    if dataset not in DATASET_SOURCES:
        raise ConfigError(f"unknown chest dataset {dataset!r}; expected one of {', '.join(DATASET_SOURCES)}")
    raw_root = Path(raw_root)
    sources = DATASET_SOURCES[dataset]
    chosen = sources if parts is None else tuple(sources[i] for i in parts)
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


def _check_jsrt(raw_root: Path) -> dict:
    images_dir, scr_root = raw_root / "images", raw_root / "scr"
    images = jsrt.list_jsrt_images(images_dir)
    if not images:
        raise DataError(images_dir, "no JSRT images (*.IMG). " + instructions("JSRT", raw_root, (0,)))
    strangers = [p.name for p in images if not jsrt.is_jsrt_name(p.stem)]
    if strangers:
        raise DataError(images_dir, f"not JSRT image names (JPCLNnnn.IMG, JPCNNnnn.IMG): {name_list(strangers)}")
    wrong = [f"{p.name} ({p.stat().st_size} bytes)" for p in images if p.stat().st_size != jsrt.JSRT_BYTES]
    if wrong:
        raise DataError(
            images_dir,
            f"JSRT images must be exactly {jsrt.JSRT_BYTES} bytes; wrong size: {name_list(wrong)}. "
            "Re-download them: " + instructions("JSRT", raw_root, (0,)),
        )
    missing = []
    for path in images:
        name = path.stem.upper()
        for organ in jsrt.SCR_ORGANS:
            try:
                jsrt.find_scr_mask(scr_root, name, organ)
            except DataError as exc:
                missing.append(f"{name} ({organ}: expected {exc.path})")
    if missing:
        raise DataError(
            scr_root,
            f"SCR masks missing for {len(missing)} image/organ pairs: {name_list(missing, 3)}. "
            + instructions("JSRT", raw_root, (1,)),
        )
    return {"images": len(images), "masks": len(images)}


def _check_montgomery(raw_root: Path) -> dict:
    images = montgomery.list_montgomery_images(raw_root)
    folder = montgomery.montgomery_dir(raw_root)
    if not images:
        raise DataError(folder / "CXR_png", "no Montgomery images (*.png). " + instructions("Montgomery", raw_root))
    missing = [
        f"{p.stem} ({mask_folder})"
        for p in images
        for mask_folder in montgomery.MASK_FOLDERS
        if not montgomery.montgomery_mask_path(raw_root, p.stem, mask_folder).is_file()
    ]
    if missing:
        raise DataError(
            folder / "ManualMask",
            f"lung masks missing for {len(missing)} image/mask pairs: {name_list(missing)}. "
            + instructions("Montgomery", raw_root),
        )
    return {"images": len(images), "masks": len(images)}


def _check_shenzhen(raw_root: Path) -> dict:
    images = shenzhen.list_shenzhen_images(raw_root)
    if not images:
        raise DataError(
            shenzhen.shenzhen_dir(raw_root) / "CXR_png",
            "no Shenzhen images (*.png). " + instructions("Shenzhen", raw_root, (0,)),
        )
    mask_root = raw_root / "shcxr-lung-mask"
    with_mask, without_mask = shenzhen.shenzhen_mask_coverage(raw_root, mask_root)
    if not with_mask:
        raise DataError(
            shenzhen.shenzhen_mask_dir(mask_root),
            f"no lung masks for any of the {len(images)} Shenzhen images. " + instructions("Shenzhen", raw_root, (1,)),
        )
    if without_mask:
        log.info("Shenzhen: %d of %d images have a lung mask; %d without one will be skipped",
                 len(with_mask), len(images), len(without_mask))
    return {"images": len(images), "masks": len(with_mask), "without_mask": len(without_mask)}


def check_layout(dataset: str, raw_root: str | Path) -> dict:
    """Check the files a converter needs are in place; DataError says what to fetch and where.

    Returns counts (``images``, ``masks`` and, for Shenzhen, ``without_mask``).
    """
    checks = {"JSRT": _check_jsrt, "Montgomery": _check_montgomery, "Shenzhen": _check_shenzhen,
              "ChestX-ray14": cxr14.check_layout}
    if dataset not in checks:
        raise ConfigError(f"unknown chest dataset {dataset!r}; expected one of {', '.join(checks)}")
    return checks[dataset](Path(raw_root))


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


def _safe_extract(archive: Path, destination: Path) -> None:
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


def download_nlm(dataset: str, raw_root: str | Path) -> Path:
    """Fetch and unpack the NLM archive of Montgomery or Shenzhen into ``raw_root``.

    Tries each known URL in turn (no checksums are published for these
    archives). The Shenzhen lung masks are a separate, login-only release:
    they must still be placed by hand (the layout check says where).
    """
    if dataset not in NLM_ARCHIVES:
        raise DataError(None, f"{dataset} cannot be downloaded automatically. " + instructions(dataset, raw_root))
    raw_root = Path(raw_root)
    downloads = raw_root / ".downloads"
    errors = []
    for url in NLM_ARCHIVES[dataset]:
        archive = downloads / url.rsplit("/", 1)[-1]
        try:
            if not archive.is_file():
                download(url, archive)
            break
        except DataError as exc:
            errors.append(str(exc))
    else:
        raise DataError(
            raw_root, "all downloads failed (" + "; ".join(errors) + "). " + instructions(dataset, raw_root, (0,))
        )
    _safe_extract(archive, raw_root)
    archive.unlink()  # unpacked; the manifest written next pins what was received
    return raw_root


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


def obtain(dataset: str, raw_root: str | Path, manifest_path: str | Path | None = None, mode: str = "verify") -> dict:
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
    if mode == "download":
        download_nlm(dataset, raw_root)
    reference = _reference_manifest(raw_root, manifest_path, mode)
    counts = check_layout(dataset, raw_root)
    if reference is not None:
        n_files = verify_manifest(raw_root, reference)
        message = f"{dataset}: verified {n_files} files against {reference}"
        if reference.resolve() != manifest_path.resolve():
            text = reference.read_text(encoding="utf-8")
            with atomic_path(manifest_path) as tmp:
                tmp.write_text(text, encoding="utf-8")
    else:
        n_files = len(write_manifest(raw_root, manifest_path))
        message = (
            f"{dataset}: no manifest to verify against; recorded the digests of {n_files} files in "
            f"{manifest_path} (copy it to {raw_root / MANIFEST_FILE} to have later runs verify against it)"
        )
    log.info(message)
    summary = {"dataset": dataset, "mode": mode, "files": n_files, "manifest": str(manifest_path), "message": message}
    return {**summary, **counts}
