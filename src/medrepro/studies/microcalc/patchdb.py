"""The run's patch database (SQLite, as the paper's): images, their training candidates and the stored validation
and test sets; the balanced, augmented minibatches drawn from it on the fly.

Schema (:data:`SCHEMA`):

* ``images``: ``id``, ``name`` (unique), ``split`` (train, val, test), ``source`` and ``sha256`` of the image file
  (``mask_source``, ``mask_sha256`` of its calcification mask where it is a file of its own; both paths relative to
  the dataset's folder), ``digital`` (1
  natively digital, 0 digitised film), ``pixel_size`` (mm), ``height``, ``width``.
* ``patches``: ``id``, ``image_id``, ``set`` (train: training candidates; val, test: the stored held-out sets;
  always the split of the patch's image), ``row``, ``col`` (the centre in the image), ``size`` (N), ``class``
  (1-4), ``detector`` and ``segmentator`` (the two labels), ``pixels`` (N x N little-endian float32, C order:
  the image's intensities as cut, not normalised).
* ``meta``: ``key``, ``value`` (JSON): the schema version, the extraction settings, the counts per set and
  class, and last of all ``complete``.
* Indexes: ``patches_by_set_class`` on (``set``, ``class``) (the sampler's ids per class, the held-out sets),
  ``patches_by_image`` on ``image_id``.

Writing (:func:`writing_database`, :func:`build_patch_database`) happens in one transaction in a temporary file
beside the target that is renamed into place only when complete (the kernel's ``atomic_path``): a killed
extraction leaves no file at the target. The ``complete`` row is written last; :class:`PatchDatabase` refuses a
database without it (a file copied while being written, or written by other means) and says to delete it and
rerun the extraction.

Training (:class:`BalancedSampler`) draws every minibatch on the fly: half positive, half negative for the
Detector's or the Segmentator's label, each half spread over its classes (equally unless told), every patch
turned by a random multiple of 90 degrees and mirrored at random (:func:`augment_dihedral`: the class is a
function of the distance to the centre, which these maps keep). The ids of each class are read once; a batch is
then an index into the training patches held in memory (when they fit in ``memory_limit`` bytes: about 1 ms for
256 patches of 49 x 49 on one CPU core), or held on a torch device (one gather there, for GPU training), or one
query by id (about 4 ms).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path
from medrepro.errors import ConfigError, DataError, name_list
from medrepro.studies.microcalc.patches import (
    C1,
    C2,
    C3,
    C4,
    CLASSES,
    DEFAULT_PATCH_SIZE,
    HELD_OUT_MIX,
    SPLITS,
    CandidateSampling,
    HeldOutDraw,
    Labelling,
    breast_mask,
    candidate_centres,
    check_mix,
    check_patch_size,
    class_map,
    cut_patches,
    detector_label,
    image_rng,
    segmentator_label,
    training_centres,
)

SCHEMA_VERSION = 1
COMPLETE = "complete"
LABELS = {"detector": ((C1, C2, C3), (C4,)), "segmentator": ((C1,), (C2, C3, C4))}  # (positive, negative) classes
PIXEL_DTYPE = np.dtype("<f4")
MAX_QUERY_IDS = 999  # SQLite's historical limit on bound parameters
DEFAULT_MEMORY_LIMIT = 4 * 2**30

SCHEMA = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    mask_source TEXT,
    mask_sha256 TEXT,
    digital INTEGER NOT NULL CHECK (digital IN (0, 1)),
    pixel_size REAL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL
);
CREATE TABLE patches (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images (id),
    "set" TEXT NOT NULL CHECK ("set" IN ('train', 'val', 'test')),
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    size INTEGER NOT NULL,
    class INTEGER NOT NULL CHECK (class BETWEEN 1 AND 4),
    detector INTEGER NOT NULL CHECK (detector IN (0, 1)),
    segmentator INTEGER NOT NULL CHECK (segmentator IN (0, 1)),
    pixels BLOB NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# Built after the bulk inserts, which they would slow down.
INDEXES = ('CREATE INDEX patches_by_set_class ON patches ("set", class)',
           "CREATE INDEX patches_by_image ON patches (image_id)")


@dataclass(frozen=True)
class Mammogram:
    """One image as extraction reads it: intensities (the breast brighter than the background), the
    calcification mask of the same shape, and what the ``images`` table records of it."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    source: str
    sha256: str
    digital: bool
    pixel_size: float | None = None
    mask_source: str | None = None
    mask_sha256: str | None = None
    # The dataset's folder: the images table stores the file paths relative to it, so that the database does not
    # depend on where a run keeps its raw data (messages still name the full path).
    root: str | None = None

    def stored_path(self, path: str | None) -> str | None:
        """``path`` as the images table stores it: relative to :attr:`root` when below it."""
        if path is None or self.root is None:
            return path
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction run does: patch size, labelling, training candidates, held-out set sizes (patches per
    split) and their class mix, and the seed of every draw."""

    patch_size: int = DEFAULT_PATCH_SIZE
    labelling: Labelling = Labelling()
    sampling: CandidateSampling = CandidateSampling()
    held_out: Mapping[str, int] = field(default_factory=lambda: {"val": 6000, "test": 6000})
    mix: Mapping[int, float] = field(default_factory=lambda: dict(HELD_OUT_MIX))
    seed: int = 0

    def __post_init__(self):
        check_patch_size(self.patch_size)
        check_mix(self.mix)
        if set(self.held_out) != {"val", "test"} or any(int(n) < 1 for n in self.held_out.values()):
            raise ConfigError(f"held_out must give a positive number of patches for 'val' and 'test', "
                              f"got {dict(self.held_out)}")

    @classmethod
    def from_section(cls, section: Mapping) -> "ExtractionSettings":
        """From a config section: ``labelling`` and ``sampling`` as sub-sections, ``mix`` keyed by class
        number (1-4, or "C1"-"C4")."""
        section = dict(section)
        if "labelling" in section:
            section["labelling"] = Labelling.from_section(section["labelling"])
        if "sampling" in section:
            section["sampling"] = CandidateSampling.from_section(section["sampling"])
        if "mix" in section:
            section["mix"] = {int(str(k).upper().lstrip("C")): float(v) for k, v in section["mix"].items()}
        return cls(**section)

    def as_meta(self) -> dict:
        """The settings as JSON-ready values (the ``meta`` table's ``settings``)."""
        return {"patch_size": self.patch_size, "labelling": asdict(self.labelling),
                "sampling": asdict(self.sampling), "held_out": dict(self.held_out),
                "mix": {str(k): v for k, v in self.mix.items()}, "seed": self.seed}


class PatchWriter:
    """Inserts images and patches into a database under construction (see :func:`writing_database`)."""

    def __init__(self, connection: sqlite3.Connection, size: int):
        self.connection = connection
        self.size = check_patch_size(size)

    def add_image(self, mammogram: Mammogram, split: str) -> int:
        """Record an image; its id."""
        height, width = np.shape(mammogram.image)
        cursor = self.connection.execute(
            "INSERT INTO images (name, split, source, sha256, mask_source, mask_sha256, digital, pixel_size, "
            "height, width) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(mammogram.name), split, mammogram.stored_path(str(mammogram.source)), str(mammogram.sha256),
             mammogram.stored_path(None if mammogram.mask_source is None else str(mammogram.mask_source)),
             mammogram.mask_sha256,
             int(bool(mammogram.digital)), None if mammogram.pixel_size is None else float(mammogram.pixel_size),
             int(height), int(width)))
        return int(cursor.lastrowid)

    def add_patches(self, image_ids: np.ndarray, set_name: str, rows: np.ndarray, cols: np.ndarray,
                    classes: np.ndarray, pixels: np.ndarray) -> None:
        """Store patches (``pixels`` (n, N, N)) with their labels, all in ``set_name``."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        n = len(rows)
        if pixels.shape != (n, self.size, self.size):
            raise ValueError(f"expected {n} patches of {self.size} x {self.size}, got pixels of shape {pixels.shape}")
        image_ids = np.broadcast_to(np.asarray(image_ids, dtype=np.int64), (n,))
        classes = np.asarray(classes, dtype=np.int64)
        detector, segmentator = detector_label(classes), segmentator_label(classes)
        self.connection.executemany(
            'INSERT INTO patches (image_id, "set", row, col, size, class, detector, segmentator, pixels) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((int(image_ids[i]), set_name, int(rows[i]), int(cols[i]), self.size, int(classes[i]), int(detector[i]),
              int(segmentator[i]), pixels[i].astype(PIXEL_DTYPE, copy=False).tobytes()) for i in range(n)))


def patch_counts(connection: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Patches per set and class: {"train": {"C1": n, ...}, ...}."""
    counts = {name: {f"C{c}": 0 for c in CLASSES} for name in SPLITS}
    for set_name, cls, n in connection.execute('SELECT "set", class, COUNT(*) FROM patches GROUP BY "set", class'):
        counts[set_name][f"C{cls}"] = int(n)
    return counts


def _write_meta(connection: sqlite3.Connection, meta: Mapping) -> None:
    connection.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           ((str(k), json.dumps(v, sort_keys=True)) for k, v in meta.items()))


def _flush_to_disk(path: Path) -> None:
    """The finished file on disk before it is renamed into place (the transaction itself ran unsynced)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def writing_database(target: str | Path, size: int, meta: Mapping | None = None) -> Iterator[PatchWriter]:
    """A new patch database at ``target``, written through the yielded :class:`PatchWriter` in one transaction in
    a temporary sibling; on a normal exit the indexes, ``meta`` (with the counts) and last the ``complete``
    marker are written, and the file is renamed into place. On an error nothing appears at ``target``."""
    with atomic_path(target) as temporary:
        # The rollback journal lives in memory and writes are not synced: the rename, not SQLite, makes the
        # result atomic, and a half-written temporary is thrown away.
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = MEMORY")
            connection.execute("PRAGMA synchronous = OFF")
            connection.executescript(SCHEMA)
            connection.execute("BEGIN")
            yield PatchWriter(connection, size)
            for index in INDEXES:  # one by one: executescript would commit the open transaction
                connection.execute(index)
            _write_meta(connection, {"schema_version": SCHEMA_VERSION, **(meta or {}),
                                     "counts": patch_counts(connection)})
            _write_meta(connection, {COMPLETE: True})
            connection.execute("COMMIT")
        finally:
            connection.close()
        _flush_to_disk(temporary)


def _checked_mammogram(mammogram: Mammogram, split: Mapping[str, str], seen: set[str]) -> str:
    """The image's split, after checking that it has one, that its name is new and its mask fits it."""
    name = str(mammogram.name)
    if name not in split:
        raise DataError(mammogram.source, f"image {name!r} has no split; assign splits to every image first")
    if split[name] not in SPLITS:
        raise ConfigError(f"image {name!r} is assigned to split {split[name]!r}, not one of {name_list(SPLITS)}")
    if name in seen:
        raise DataError(mammogram.source, f"image name {name!r} occurs twice")
    if np.shape(mammogram.image) != np.shape(mammogram.mask):
        raise DataError(mammogram.source, f"image {name!r} is {np.shape(mammogram.image)} but its calcification "
                                          f"mask is {np.shape(mammogram.mask)}")
    seen.add(name)
    return split[name]


def build_patch_database(target: str | Path, mammograms: Iterable[Mammogram], split: Mapping[str, str],
                         settings: ExtractionSettings = ExtractionSettings()) -> dict[str, dict[str, int]]:
    """Extract every image's patches into a new database at ``target`` (atomically): the training candidates of
    training images, the validation and test sets drawn from theirs. ``mammograms`` is read once, one image at a
    time (a generator keeps one in memory); ``split`` maps each image name to its split
    (:func:`.patches.split_images`). Returns the patches per set and class."""
    size = settings.patch_size
    draws = {name: HeldOutDraw(settings.held_out[name], size, settings.mix) for name in ("val", "test")}
    seen: set[str] = set()
    with writing_database(target, size, {"settings": settings.as_meta()}) as writer:
        for mammogram in mammograms:
            split_name = _checked_mammogram(mammogram, split, seen)
            image_id = writer.add_image(mammogram, split_name)
            image = np.asarray(mammogram.image, dtype=np.float32)
            classes = class_map(mammogram.mask, size, settings.labelling)
            valid = candidate_centres(breast_mask(image, mammogram.source), size)
            rng = image_rng(settings.seed, mammogram.name)
            if split_name == "train":
                centres = training_centres(classes, valid, settings.sampling, rng)
                writer.add_patches(image_id, "train", centres.rows, centres.cols, centres.classes,
                                   cut_patches(image, centres.rows, centres.cols, size))
            else:
                draws[split_name].offer(image_id, image, classes, valid, rng)
        for name, draw in draws.items():
            drawn = draw.result(name, target)
            writer.add_patches(drawn.images, name, drawn.rows, drawn.cols, drawn.classes, drawn.pixels)
        counts = patch_counts(writer.connection)
    return counts


@dataclass(frozen=True)
class PatchSet:
    """Patches with their labels: ``pixels`` (n, 1, N, N) float32, ``classes``, ``detector``, ``segmentator``,
    database ``ids``, and where each was cut: ``image_ids`` and the centre's ``rows`` and ``cols``, all (n,)."""

    pixels: np.ndarray
    classes: np.ndarray
    detector: np.ndarray
    segmentator: np.ndarray
    ids: np.ndarray
    image_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, label: str) -> np.ndarray:
        """The Detector's or the Segmentator's labels."""
        return {"detector": self.detector, "segmentator": self.segmentator}[check_label(label)]


def check_label(label: str) -> str:
    if label not in LABELS:
        raise ConfigError(f"label {label!r} is neither 'detector' nor 'segmentator'")
    return label


class PatchDatabase:
    """A finished patch database, opened read-only; a DataError for a missing, unreadable or unfinished one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "no patch database here; run the patch extraction first")
        self.connection = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            self.meta = self._read_meta()
        except BaseException:
            self.connection.close()
            raise
        self.patch_size = int(self.meta["settings"]["patch_size"])

    def _read_meta(self) -> dict:
        try:
            rows = dict(self.connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DataError(self.path, f"not a finished patch database ({exc}); delete it and rerun the patch "
                                       "extraction") from exc
        if COMPLETE not in rows:
            raise DataError(self.path, "the patch database is incomplete (no completion marker: its extraction was "
                                       "interrupted or it was copied while being written); delete it and rerun the "
                                       "patch extraction")
        meta = {key: json.loads(value) for key, value in rows.items()}
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise DataError(self.path, f"patch database schema version {meta.get('schema_version')} is not "
                                       f"{SCHEMA_VERSION}; delete it and rerun the patch extraction")
        return meta

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "PatchDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def images(self) -> pd.DataFrame:
        """The ``images`` table, by id."""
        return pd.read_sql_query("SELECT * FROM images ORDER BY id", self.connection)

    def counts(self) -> dict[str, dict[str, int]]:
        """Patches per set and class."""
        return patch_counts(self.connection)

    def class_ids(self, set_name: str = "train") -> dict[int, np.ndarray]:
        """class -> the sorted ids of its patches in ``set_name`` (read through the (set, class) index)."""
        rows = np.asarray(self.connection.execute('SELECT class, id FROM patches WHERE "set" = ? ORDER BY class, id',
                                                  (set_name,)).fetchall(), dtype=np.int64).reshape(-1, 2)
        return {c: rows[rows[:, 0] == c, 1] for c in CLASSES}

    def _decode(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=PIXEL_DTYPE).reshape(self.patch_size, self.patch_size)

    def pixels(self, ids: np.ndarray) -> np.ndarray:
        """The patches (n, N, N) float32 of ``ids``, in their order (repeats allowed): one query per
        :data:`MAX_QUERY_IDS` distinct ids."""
        ids = np.asarray(ids, dtype=np.int64)
        unique, back = np.unique(ids, return_inverse=True)
        found = np.empty((len(unique), self.patch_size, self.patch_size), dtype=np.float32)
        got = 0
        for start in range(0, len(unique), MAX_QUERY_IDS):
            chunk = unique[start:start + MAX_QUERY_IDS]
            marks = ",".join("?" * len(chunk))
            for patch_id, blob in self.connection.execute(
                    f"SELECT id, pixels FROM patches WHERE id IN ({marks}) ORDER BY id", chunk.tolist()):
                found[start + int(np.searchsorted(chunk, patch_id))] = self._decode(blob)
                got += 1
        if got != len(unique):
            raise DataError(self.path, f"{len(unique) - got} of the requested patch ids are not in the database")
        return found[back.reshape(ids.shape)]

    def patch_set(self, set_name: str) -> PatchSet:
        """Every patch of a set (the stored validation or test set, or the training candidates), by id."""
        # A scan in id order (NOT INDEXED): through the (set, class) index SQLite would sort the blobs first.
        query = 'SELECT {} FROM patches NOT INDEXED WHERE "set" = ? ORDER BY id'
        fields = "id, class, detector, segmentator, image_id, row, col"
        columns = np.asarray(self.connection.execute(query.format(fields), (set_name,)).fetchall(),
                             dtype=np.int64).reshape(-1, 7)
        pixels = np.empty((len(columns), 1, self.patch_size, self.patch_size), dtype=np.float32)
        flat = pixels.reshape(len(columns), -1)
        for i, (blob,) in enumerate(self.connection.execute(query.format("pixels"), (set_name,))):
            flat[i] = np.frombuffer(blob, dtype=PIXEL_DTYPE)  # streamed: holding every blob at once is slower
        return PatchSet(pixels, *(columns[:, i] for i in (1, 2, 3, 0, 4, 5, 6)))


DIHEDRAL = tuple((turns, mirror) for mirror in (False, True) for turns in range(4))  # code -> map; 0 identity


def dihedral(patches: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """Patches (..., N, N) mirrored left-right (if ``mirror``), then turned by ``turns`` x 90 degrees."""
    if mirror:
        patches = patches[..., ::-1]
    return np.rot90(patches, turns, axes=(-2, -1))


def apply_dihedral(patches: np.ndarray, codes: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``patches[rows]`` (all of them when ``rows`` is None), each mapped by its code in :data:`DIHEDRAL`; one
    gather per code, so the picked patches are copied once."""
    rows = np.arange(len(patches)) if rows is None else np.asarray(rows)
    out = np.empty((len(rows),) + patches.shape[1:], dtype=patches.dtype)
    for code, (turns, mirror) in enumerate(DIHEDRAL):
        chosen = np.flatnonzero(codes == code)
        if chosen.size:
            out[chosen] = dihedral(patches[rows[chosen]], turns, mirror)
    return out


def augment_dihedral(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each patch (n, ..., N, N) turned by a random multiple of 90 degrees and mirrored at random: one of the
    eight maps of the square onto itself, all of which keep the central pixel and every distance to it."""
    return apply_dihedral(patches, rng.integers(0, len(DIHEDRAL), len(patches)))


def dihedral_index(size: int) -> np.ndarray:
    """(8, size * size): for each map of :data:`DIHEDRAL`, the flat source pixel of every flat output pixel."""
    pixels = np.arange(size * size).reshape(size, size)
    return np.stack([np.ascontiguousarray(dihedral(pixels, turns, mirror)).ravel() for turns, mirror in DIHEDRAL])


def spread_counts(n: int, weights: Mapping[int, float], rng: np.random.Generator) -> dict[int, int]:
    """``n`` samples shared among classes in proportion to ``weights``: the whole parts, and one more to each
    class hit by a systematic draw over the fractional parts, which hits a class with the probability of its
    fractional part, so that every class's mean count is exact over many batches (one random number a call)."""
    classes = list(weights)
    share = np.asarray([weights[c] for c in classes], dtype=np.float64)
    exact = n * share / share.sum()
    counts = np.floor(exact).astype(np.int64)
    left = int(n - counts.sum())
    if left:
        points = rng.random() + np.arange(left)  # evenly spaced over [0, left), the fractional parts' total
        hit = np.searchsorted(np.cumsum(exact - counts), points, side="right")
        counts[np.minimum(hit, len(classes) - 1)] += 1  # each fractional part is below 1: no class is hit twice
    return dict(zip(classes, counts.tolist()))


@dataclass(frozen=True)
class Draw:
    """What a minibatch is made of, before any pixel is read: the patches' database ``ids``, their ``classes``,
    ``labels`` (1 positive) and ``codes`` (the map of :data:`DIHEDRAL` each gets; 0 without augmentation)."""

    ids: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    codes: np.ndarray


@dataclass(frozen=True)
class Batch:
    """A training minibatch: ``pixels`` (B, 1, N, N) float32 (a NumPy array, or a torch tensor on the sampler's
    device), ``labels`` (B,) int64 (1 positive), ``classes`` (B,) and the patches' database ``ids`` (B,)."""

    pixels: object
    labels: np.ndarray
    classes: np.ndarray
    ids: np.ndarray


class BalancedSampler:
    """Minibatches of the training candidates with as many positive as negative samples for ``label``
    ("detector" or "segmentator"), each half spread over its classes by ``spread`` (class -> weight; equal by
    default; a class with no patch is left out of its half), augmented by random 90-degree turns and mirrors.
    Patches are drawn without replacement within a batch where a class holds enough.

    Where the pixels come from: with ``device`` (a torch device: for GPU training, a CPU is faster with NumPy),
    every training patch is held there and a batch is one gather on it, returned as a tensor; else they are held in
    memory as a NumPy array when ``in_memory`` is True, or when it is None and they fit in ``memory_limit`` bytes;
    else each batch is fetched by id, one query. The draws (:meth:`draw`) are the same in every mode, so one
    generator gives the same batches."""

    def __init__(self, database: PatchDatabase, label: str, batch_size: int = 256,
                 spread: Mapping[int, float] | None = None, augment: bool = True, in_memory: bool | None = None,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT, device=None):
        if batch_size < 2:
            raise ConfigError(f"batch size {batch_size} cannot hold a positive and a negative sample")
        self.database, self.label = database, check_label(label)
        self.batch_size, self.augment = int(batch_size), augment
        self.ids = database.class_ids("train")
        weights = {c: 1.0 for c in CLASSES} if spread is None else {int(c): float(w) for c, w in spread.items()}
        positive, negative = LABELS[label]
        self.positive = self._side(positive, weights, "positive")
        self.negative = self._side(negative, weights, "negative")
        self._label_of_class = np.isin(np.arange(max(CLASSES) + 1), positive).astype(np.int64)
        self.training_ids = np.sort(np.concatenate([self.ids[c] for c in CLASSES]))
        if in_memory is None:
            in_memory = device is not None or len(self.training_ids) * database.patch_size**2 * 4 <= memory_limit
        self.in_memory, self.device = bool(in_memory) or device is not None, device
        self._pixels = self._tensor = self._index = None
        if self.device is not None:
            self._hold_on_device()
        elif self.in_memory:
            self._pixels = database.patch_set("train").pixels

    def _side(self, classes: tuple[int, ...], weights: Mapping[int, float], side: str) -> dict[int, float]:
        """The classes of one half with patches and a positive weight; a DataError when none is left."""
        kept = {c: weights.get(c, 0.0) for c in classes if len(self.ids[c]) and weights.get(c, 0.0) > 0}
        if not kept:
            names = name_list(f"C{c}" for c in classes)
            raise DataError(self.database.path, f"no training patch of class {names} (with a positive spread "
                                                f"weight): no {side} {self.label} samples can be drawn")
        return kept

    def _hold_on_device(self) -> None:
        import torch

        pixels = self.database.patch_set("train").pixels
        self._tensor = torch.from_numpy(pixels.reshape(len(pixels), -1)).to(self.device)
        self._index = torch.from_numpy(dihedral_index(self.database.patch_size)).to(self.device)

    def _pick(self, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        return pool[rng.choice(len(pool), n, replace=len(pool) < n)]

    def draw(self, rng: np.random.Generator) -> Draw:
        """The ids, classes, labels and maps of one minibatch, every draw from ``rng`` (no pixel read)."""
        half = self.batch_size // 2
        classes, ids = [], []
        for side, n in ((self.positive, half), (self.negative, self.batch_size - half)):
            for c, k in spread_counts(n, side, rng).items():
                ids.append(self._pick(self.ids[c], k, rng))
                classes.append(np.full(k, c, dtype=np.int64))
        order = rng.permutation(self.batch_size)
        ids, classes = np.concatenate(ids)[order], np.concatenate(classes)[order]
        codes = rng.integers(0, len(DIHEDRAL), self.batch_size) if self.augment else \
            np.zeros(self.batch_size, dtype=np.int64)
        return Draw(ids, classes, self._label_of_class[classes], codes)

    def pixels(self, draw: Draw):
        """The drawn patches (B, 1, N, N), each mapped by its code."""
        if self._tensor is not None:
            import torch

            rows = torch.from_numpy(np.searchsorted(self.training_ids, draw.ids)).to(self.device)
            codes = torch.from_numpy(draw.codes).to(self.device)
            size = self.database.patch_size
            picked = self._tensor.index_select(0, rows)
            return torch.gather(picked, 1, self._index[codes]).view(len(rows), 1, size, size)
        if self._pixels is not None:
            return apply_dihedral(self._pixels, draw.codes, np.searchsorted(self.training_ids, draw.ids))
        return apply_dihedral(self.database.pixels(draw.ids)[:, None], draw.codes)

    def __call__(self, rng: np.random.Generator) -> Batch:
        """One minibatch, every draw from ``rng``."""
        draw = self.draw(rng)
        return Batch(self.pixels(draw), draw.labels, draw.classes, draw.ids)


def sampler_cost(sampler: BalancedSampler, batches: int = 50, seed: int = 0) -> float:
    """Mean seconds per minibatch of ``sampler`` over ``batches`` draws after one warm-up draw (to compare with
    a training step's time; on a device, the time until the last batch is there)."""
    rng = np.random.default_rng(seed)
    sampler(rng)
    _synchronise(sampler.device)
    start = time.perf_counter()
    for _ in range(batches):
        sampler(rng)
    _synchronise(sampler.device)
    return (time.perf_counter() - start) / batches


def _synchronise(device) -> None:
    """Wait for a CUDA device's queued work (timings of asynchronous gathers)."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
