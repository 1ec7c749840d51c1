"""JSRT radiographs with the SCR lung and heart masks.

Native formats (see the dataset-formats reference):

* ``JPCLN001.IMG`` .. ``JPCLN154.IMG`` (nodule) and ``JPCNN001.IMG`` ..
  ``JPCNN093.IMG`` (no nodule): no header, big-endian uint16, 2048 x 2048,
  12-bit values, 0.175 mm pixels, exactly 8,388,608 bytes; a high raw value
  is dark (little attenuation).
* SCR masks: ``<scr_root>/scratch/fold1|fold2/masks/<organ>/<NAME>.gif``,
  1024 x 1024, values 0/255, organ folders ``right lung``, ``left lung``,
  ``heart`` (clavicles are ignored); fold 1 holds the odd-numbered images,
  fold 2 the even-numbered ones. Right/left is the patient's side.
* Clinical tables beside the images (tab-separated, no header):
  ``CLNDAT_EN.txt`` (filename, subtlety, size mm, age, sex, x, y, malignancy,
  location, diagnosis; x/y in pixels of the 2048 grid, top-left origin) and
  ``CNNDAT_EN.TXT`` (filename, age, sex, finding).

Conversion works at the masks' resolution: the image is averaged over 2 x 2
blocks (1024 x 1024, 0.35 mm), inverted so dense tissue is bright and divided
by 4095. Labels: 0 background, 1 right lung, 2 left lung, 3 heart; the heart
wins where it overlaps a lung, as the SCR outlines overlap at the heart border.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError
from medrepro.studies.chest.subjects import HEART, LEFT_LUNG, RIGHT_LUNG, Subject
from medrepro.data.io.png import read_binary_mask, write_mask_gif

log = logging.getLogger(__name__)

JSRT_SHAPE = (2048, 2048)
JSRT_BYTES = JSRT_SHAPE[0] * JSRT_SHAPE[1] * 2  # 8,388,608
JSRT_MAX = 4095  # 12-bit values
JSRT_SPACING_MM = 0.175
SCR_SHAPE = (1024, 1024)
CONVERTED_SPACING_MM = JSRT_SPACING_MM * JSRT_SHAPE[0] / SCR_SHAPE[0]  # 0.35
#: SCR organ folder -> label; the order is the painting order (heart last wins).
SCR_ORGANS: dict[str, int] = {"right lung": RIGHT_LUNG, "left lung": LEFT_LUNG, "heart": HEART}
JSRT_LABELS = (0, RIGHT_LUNG, LEFT_LUNG, HEART)
NODULE_TABLE = "CLNDAT_EN.txt"
NON_NODULE_TABLE = "CNNDAT_EN.TXT"
_NAME_RE = re.compile(r"^JPC(LN|NN)(\d+)$", re.IGNORECASE)


# ---------------------------------------------------------------- raw images


def read_jsrt_image(path: str | Path) -> np.ndarray:
    """Read one JSRT ``.IMG`` file as a (2048, 2048) uint16 array of raw 12-bit values."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(path, "file not found") from exc
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc}") from exc
    if len(data) != JSRT_BYTES:
        raise DataError(path, f"expected {JSRT_BYTES} bytes (2048x2048 big-endian uint16), got {len(data)}")
    raw = np.frombuffer(data, dtype=">u2").reshape(JSRT_SHAPE).astype(np.uint16)
    top = int(raw.max())
    if top > JSRT_MAX:
        count = int((raw > JSRT_MAX).sum())
        raise DataError(
            path,
            f"{count} pixels exceed the 12-bit maximum {JSRT_MAX} (largest {top}); "
            "not a JSRT image or read with the wrong byte order",
        )
    return raw


def write_jsrt_image(path: str | Path, array: np.ndarray) -> None:
    """Write a (2048, 2048) array of 0..4095 values as a JSRT ``.IMG`` file, atomically."""
    path = Path(path)
    array = np.asarray(array)
    if array.shape != JSRT_SHAPE:
        raise DataError(path, f"JSRT images are {JSRT_SHAPE[1]} x {JSRT_SHAPE[0]}, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(path, f"JSRT images hold integers, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > JSRT_MAX):
        raise DataError(path, f"values {array.min()}..{array.max()} outside the 12-bit range 0..{JSRT_MAX}")
    with atomic_path(path) as tmp:
        array.astype(">u2").tofile(tmp)


def raw_to_display(raw: np.ndarray) -> np.ndarray:
    """2 x 2 block mean to the SCR grid, inverted (bright = dense) and scaled to 0..1."""
    h, w = raw.shape
    blocks = raw.astype(np.float32).reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return (np.float32(1.0) - blocks / np.float32(JSRT_MAX)).astype(np.float32)


def list_jsrt_images(images_dir: str | Path) -> list[Path]:
    """The ``.IMG`` files (any letter case) directly under ``images_dir``, sorted by name."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        return []
    return sorted((p for p in images_dir.iterdir() if p.suffix.lower() == ".img" and p.is_file()), key=lambda p: p.stem)


def is_jsrt_name(name: str) -> bool:
    """True for ``JPCLNnnn`` / ``JPCNNnnn`` (any letter case, no extension)."""
    return _NAME_RE.match(name) is not None


def is_nodule_case(name: str) -> bool:
    """True for ``JPCLN*`` (nodule) names, False for ``JPCNN*``."""
    match = _NAME_RE.match(name)
    if not match:
        raise DataError(None, f"{name!r} is not a JSRT image name (JPCLNnnn or JPCNNnnn)")
    return match.group(1).upper() == "LN"


# ---------------------------------------------------------------- SCR masks


def scr_fold(name: str) -> str:
    """``fold1`` for odd-numbered images, ``fold2`` for even-numbered ones."""
    match = _NAME_RE.match(name)
    if not match:
        raise DataError(None, f"{name!r} is not a JSRT image name (JPCLNnnn or JPCNNnnn)")
    return "fold1" if int(match.group(2)) % 2 == 1 else "fold2"


def scr_mask_path(scr_root: str | Path, name: str, organ: str) -> Path:
    """Where the SCR mask of ``organ`` for image ``name`` lives."""
    return Path(scr_root) / "scratch" / scr_fold(name) / "masks" / organ / f"{name}.gif"


def find_scr_mask(scr_root: str | Path, name: str, organ: str) -> Path:
    """The mask file, looking in the expected fold first and then the other one."""
    expected = scr_mask_path(scr_root, name, organ)
    if expected.is_file():
        return expected
    other = "fold2" if expected.parts[-4] == "fold1" else "fold1"
    alternative = Path(scr_root) / "scratch" / other / "masks" / organ / f"{name}.gif"
    if alternative.is_file():
        return alternative
    raise DataError(expected, f"SCR {organ} mask for {name} not found")


def read_scr_mask(path: str | Path) -> np.ndarray:
    """Read one SCR GIF as a (1024, 1024) bool mask, checking size and 0/255 values."""
    return read_binary_mask(path, expected_shape=SCR_SHAPE)


def write_scr_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a (1024, 1024) mask as an SCR-style GIF (values 0/255), atomically."""
    path = Path(path)
    if np.asarray(mask).shape != SCR_SHAPE:
        raise DataError(path, f"SCR masks are {SCR_SHAPE[1]} x {SCR_SHAPE[0]}, got shape {np.asarray(mask).shape}")
    write_mask_gif(path, mask)


def read_scr_labels(scr_root: str | Path, name: str) -> np.ndarray:
    """Combine the right lung, left lung and heart masks of one image into a label map."""
    labels = np.zeros(SCR_SHAPE, dtype=np.uint8)
    for organ, label in SCR_ORGANS.items():
        labels[read_scr_mask(find_scr_mask(scr_root, name, organ))] = label
    return labels


# ---------------------------------------------------------------- clinical tables


def _find_case_insensitive(directory: Path, filename: str) -> Path | None:
    if not directory.is_dir():
        return None
    for candidate in directory.iterdir():
        if candidate.name.lower() == filename.lower():
            return candidate
    return None


def _number(text: str) -> float | int | None:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def _sex(text: str) -> str | None:
    low = text.strip().lower()
    if low.startswith("f") or low.startswith("w"):
        return "F"
    if low.startswith("m"):
        return "M"
    return None


def _split_row(line: str) -> list[str]:
    """Tab-separated fields; fall back to runs of 2+ spaces for space-aligned copies."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) == 1:
        fields = re.split(r"\s{2,}", line.strip())
    return [f.strip() for f in fields]


def _field(fields: list[str], index: int) -> str:
    """The column at ``index``, or "" where a row is shorter (the tables are ragged)."""
    return fields[index] if index < len(fields) else ""


def _parse_nodule_row(fields: list[str]) -> dict:
    get = lambda i: _field(fields, i)  # noqa: E731
    return {
        "subtlety": _number(get(1)),
        "nodule_size_mm": _number(get(2)),
        "age": _number(get(3)),
        "sex": _sex(get(4)),
        "nodule_x": _number(get(5)),
        "nodule_y": _number(get(6)),
        "malignancy": get(7) or None,
        "location": get(8) or None,
        "diagnosis": " ".join(f for f in fields[9:] if f) or None,
    }


def _parse_non_nodule_row(fields: list[str]) -> dict:
    return {
        "age": _number(_field(fields, 1)),
        "sex": _sex(_field(fields, 2)),
        "diagnosis": " ".join(f for f in fields[3:] if f) or None,
    }


def read_clinical_tables(images_dir: str | Path) -> dict[str, dict]:
    """Per-image clinical fields from ``CLNDAT_EN.txt`` / ``CNNDAT_EN.TXT`` if present.

    Keys are image names without extension. Trailing or missing columns are
    tolerated; unparseable numbers become None. ``nodule_x``/``nodule_y`` are
    pixels on the 2048 grid (top-left origin), as in the table.
    """
    images_dir = Path(images_dir)
    table: dict[str, dict] = {}
    for filename, parse in ((NODULE_TABLE, _parse_nodule_row), (NON_NODULE_TABLE, _parse_non_nodule_row)):
        path = _find_case_insensitive(images_dir, filename)
        if path is None:
            continue
        text = path.read_text(encoding="latin-1")
        for line in text.splitlines():
            if not line.strip():
                continue
            fields = _split_row(line)
            name = Path(fields[0]).stem.upper()
            if not _NAME_RE.match(name):
                log.debug("%s: skipping line that names no JSRT image: %r", path, line)
                continue
            table[name] = parse(fields)
    return table


def write_clinical_tables(images_dir: str | Path, rows: Iterable[dict]) -> None:
    """Write the two clinical tables (the generator's counterpart of :func:`read_clinical_tables`).

    Each row needs ``name``, ``age``, ``sex`` (``M``/``F``) and, for nodule
    cases, ``subtlety``, ``nodule_size_mm``, ``nodule_x``, ``nodule_y``,
    ``malignancy``, ``location``, ``diagnosis``.
    """
    images_dir = Path(images_dir)
    nodule_lines, other_lines = [], []
    for row in sorted(rows, key=lambda r: r["name"]):
        sex = {"M": "male", "F": "female"}[row["sex"]]
        if is_nodule_case(row["name"]):
            fields = [
                f"{row['name']}.IMG", row["subtlety"], row["nodule_size_mm"], row["age"], sex,
                row["nodule_x"], row["nodule_y"], row["malignancy"], row["location"], row["diagnosis"],
            ]
            nodule_lines.append("\t".join(str(f) for f in fields))
        else:
            fields = [f"{row['name']}.IMG", row["age"], sex, row.get("diagnosis") or "non-nodule"]
            other_lines.append("\t".join(str(f) for f in fields))
    for filename, lines in ((NODULE_TABLE, nodule_lines), (NON_NODULE_TABLE, other_lines)):
        if lines:
            with atomic_path(images_dir / filename) as tmp:
                tmp.write_text("\n".join(lines) + "\n", encoding="latin-1")


# ---------------------------------------------------------------- conversion


def _select(images: list[Path], names: Iterable[str] | None, images_dir: Path) -> list[Path]:
    if names is None:
        return images
    by_name = {p.stem.upper(): p for p in images}
    wanted = [Path(n).stem.upper() for n in names]
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise DataError(images_dir, f"no .IMG file for {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    return [by_name[n] for n in wanted]


def read_jsrt_subject(image_path: str | Path, scr_root: str | Path, clinical: dict | None = None) -> Subject:
    """Convert one JSRT image and its SCR masks to the common form."""
    image_path = Path(image_path)
    name = image_path.stem.upper()
    if not is_jsrt_name(name):
        raise DataError(image_path, "not a JSRT image name (JPCLNnnn.IMG or JPCNNnnn.IMG)")
    image = raw_to_display(read_jsrt_image(image_path))
    labels = read_scr_labels(scr_root, name)
    meta = {"nodule": is_nodule_case(name)}
    meta.update(clinical or {})
    subject = Subject(name, image, labels, (CONVERTED_SPACING_MM, CONVERTED_SPACING_MM), meta)
    subject.validate(JSRT_LABELS, source=image_path)
    return subject


def iter_jsrt(images_dir: str | Path, scr_root: str | Path, names: Iterable[str] | None = None) -> Iterator[Subject]:
    """Yield converted JSRT subjects one at a time (keeps memory flat for the full set)."""
    images_dir = Path(images_dir)
    images = list_jsrt_images(images_dir)
    if not images:
        raise DataError(images_dir, "no JSRT images (*.IMG) found")
    clinical = read_clinical_tables(images_dir)
    for path in _select(images, names, images_dir):
        yield read_jsrt_subject(path, scr_root, clinical.get(path.stem.upper()))


def convert_jsrt(images_dir: str | Path, scr_root: str | Path, names: Iterable[str] | None = None) -> list[Subject]:
    """All (or the named) JSRT images with SCR labels, at 1024 x 1024 and 0.35 mm."""
    return list(iter_jsrt(images_dir, scr_root, names))
