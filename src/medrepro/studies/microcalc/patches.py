"""Patches of the breast and their four classes (the paper's Sec. 2.3), candidate centres, splits by image.

* **Patch**: the ``N`` x ``N`` square centred on a pixel (``N`` odd, so that the patch has a central pixel; the
  paper tried 29, 39 and 49 and kept 49). A patch never leaves the image: its centre lies at least ``N // 2``
  pixels from every edge, so no padding convention has to be invented or matched at test time.
* **Breast**: pixels above Otsu's threshold of the image (the study's images are intensities, the breast brighter
  than the background), the largest such region with its holes filled; labels and markers outside it are left
  out. An image with no breast after thresholding (a constant one) is a :class:`DataError` naming it.
* **Classes**, from the distance ``d`` between the centre and the nearest calcification pixel (in ``metric``):
  C1 ``d == 0`` (the centre is calcification); C2 a calcification in the patch and ``band[0] <= d <= band[1]``;
  C3 a calcification in the patch but none of the above; C4 no calcification in the patch. The paper names the
  band "2 to 3 pixels from the center" and leaves open the metric and a calcification at distance 1. The
  defaults are the Chebyshev metric (the band is the square ring the patch itself is cut in, and a diagonal
  neighbour is as close as a side one) and ``band = (1, 3)``: a calcification touching the centre is the
  partial-volume border the paper calls C2's difficulty, and calling it peripheral (C3) would contradict C3's
  definition. ``band = (2, 3)`` gives the literal reading, in which distance 1 falls to C3; ``metric =
  "euclidean"`` makes the band a disc (a pixel at (3, 3) from the centre, 4.24 away, is then C3). The class
  depends on ``d`` alone, so it is the same for a patch turned by 90 degrees or mirrored.
* **Labels**: the Detector's is positive for C1-C3 (a calcification anywhere in the patch), the Segmentator's for
  C1 (the central pixel).
* **Training candidates** of an image (:class:`CandidateSampling`): every C1, C2 and C3 centre up to
  ``positive_cap`` per class (a seeded random subset above it), and C4 centres on a grid of ``background_stride``
  pixels, up to ``background_cap`` (a seeded random subset of the grid). Each image's draw is seeded by the run's
  seed and the image's name, so it does not depend on the order the images are read in. The defaults keep at
  most 2500 patches an image, 580 000 for the paper's 231 training images (5.5 GB of 49 x 49 float32 pixels).
* **Splits** by image, never by patch: the paper's 231 / 25 / 27 of 283 images, in the same proportions for any
  number of images, seeded.
* **Held-out sets**: validation and test patches are drawn once, uniformly without replacement from every
  candidate centre of the split's images (all breast pixels whose patch fits), with a fixed class mix: by default
  half C1 and one sixth each of C2, C3 and C4, the weights under which the paper's overall accuracies equal
  0.5 acc(C1) + (acc(C2) + acc(C3) + acc(C4)) / 6. The draw runs one image at a time (:class:`HeldOutDraw`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage as ndi

from medrepro.errors import ConfigError, DataError, name_list
from medrepro.spatial.threshold import otsu_threshold

C1, C2, C3, C4 = 1, 2, 3, 4
CLASSES = (C1, C2, C3, C4)
PATCH_SIZES = (29, 39, 49)  # the paper's trials
DEFAULT_PATCH_SIZE = 49
METRICS = ("chebyshev", "euclidean")
SPLITS = ("train", "val", "test")
PAPER_SPLIT = {"train": 231, "val": 25, "test": 27}  # of the paper's 283 images
HELD_OUT_MIX = {C1: 1 / 2, C2: 1 / 6, C3: 1 / 6, C4: 1 / 6}


def check_patch_size(size: int) -> int:
    """``size`` if it is an odd integer of at least 3, else a ConfigError saying why."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ConfigError(f"patch size {size!r} is not an integer; the paper uses 29, 39 or 49")
    if size < 3:
        raise ConfigError(f"patch size {size} is below 3: a patch needs a centre and a ring around it; "
                          "the paper uses 29, 39 or 49")
    if size % 2 == 0:
        raise ConfigError(f"patch size {size} is even: a patch must have a central pixel (odd N, e.g. 29, 39, 49)")
    return int(size)


@dataclass(frozen=True)
class Labelling:
    """How a patch's class is read from the distance between its centre and the nearest calcification (see the
    module docstring): ``metric`` "chebyshev" or "euclidean", C2 for ``band[0] <= d <= band[1]``."""

    metric: str = "chebyshev"
    band: tuple[float, float] = (1.0, 3.0)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ConfigError(f"distance metric {self.metric!r} is not one of {name_list(METRICS)}")
        near, far = self.band
        if not 0 < near <= far:
            raise ConfigError(f"C2 band {self.band} must satisfy 0 < near <= far (pixels from the centre)")

    @classmethod
    def from_section(cls, section: Mapping) -> "Labelling":
        section = dict(section)
        if "band" in section:
            section["band"] = tuple(float(v) for v in section["band"])
        return cls(**section)


def detector_label(classes: np.ndarray) -> np.ndarray:
    """1 where a patch holds a calcification anywhere (C1-C3), else 0."""
    return (np.asarray(classes) != C4).astype(np.int64)


def segmentator_label(classes: np.ndarray) -> np.ndarray:
    """1 where a patch's central pixel is calcification (C1), else 0."""
    return (np.asarray(classes) == C1).astype(np.int64)


def distance_to_calcification(mask: np.ndarray, metric: str) -> np.ndarray:
    """Each pixel's distance to the nearest calcification pixel of ``mask`` (inf where the mask is empty)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    if metric == "chebyshev":
        return ndi.distance_transform_cdt(~mask, metric="chessboard").astype(np.float64)
    return ndi.distance_transform_edt(~mask)


def calcification_in_window(mask: np.ndarray, size: int) -> np.ndarray:
    """Whether the ``size`` x ``size`` patch centred on each pixel holds a calcification pixel (none outside
    the image)."""
    return ndi.maximum_filter(np.asarray(mask, dtype=np.uint8), size=size, mode="constant", cval=0).astype(bool)


def class_map(mask: np.ndarray, size: int, labelling: Labelling = Labelling()) -> np.ndarray:
    """The class (1-4, uint8) of the patch centred on every pixel of a calcification ``mask``, all at once from a
    distance transform and a maximum filter."""
    size = check_patch_size(size)
    mask = np.asarray(mask, dtype=bool)
    distance = distance_to_calcification(mask, labelling.metric)
    in_patch = calcification_in_window(mask, size)
    near, far = labelling.band
    classes = np.full(mask.shape, C4, dtype=np.uint8)
    classes[in_patch] = C3
    classes[in_patch & (distance >= near) & (distance <= far)] = C2
    classes[mask] = C1
    return classes


def patch_class(mask_patch: np.ndarray, labelling: Labelling = Labelling()) -> int:
    """The class of one ``N`` x ``N`` patch of a calcification mask."""
    mask_patch = np.asarray(mask_patch, dtype=bool)
    size = mask_patch.shape[0]
    if mask_patch.shape != (size, size):
        raise ConfigError(f"a patch must be square; got shape {mask_patch.shape}")
    half = check_patch_size(size) // 2
    return int(class_map(mask_patch, size, labelling)[half, half])


def breast_mask(image: np.ndarray, name: str) -> np.ndarray:
    """The breast: the largest region above Otsu's threshold of ``image``, holes filled; a DataError naming
    the image (``name``: its file or name) when there is none, or when it holds pixels that are not finite."""
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise DataError(name, f"expected a non-empty 2-D image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise DataError(name, "the image holds NaN or infinite pixels; the breast cannot be thresholded")
    if not np.ptp(image) > 0:  # Otsu's split of one grey level would call every pixel breast
        raise DataError(name, "no breast found: the image is constant, so no pixel lies above Otsu's threshold")
    labels, count = ndi.label(image > otsu_threshold(image))
    if count == 0:
        raise DataError(name, "no breast found: no pixel lies above Otsu's threshold")
    sizes = np.bincount(labels.ravel())[1:]
    return ndi.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def candidate_centres(breast: np.ndarray, size: int) -> np.ndarray:
    """Where a patch may be centred: in the breast, with the whole ``size`` x ``size`` patch inside the image."""
    half = check_patch_size(size) // 2
    valid = np.zeros(breast.shape, dtype=bool)
    if breast.shape[0] > 2 * half and breast.shape[1] > 2 * half:
        valid[half:breast.shape[0] - half, half:breast.shape[1] - half] = True
    return valid & np.asarray(breast, dtype=bool)


def cut_patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Patches (n, size, size) float32 of ``image`` centred on (rows, cols); every patch must fit in the image."""
    half = check_patch_size(size) // 2
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    height, width = image.shape
    if rows.size and (rows.min() < half or rows.max() >= height - half or cols.min() < half
                      or cols.max() >= width - half):
        raise ValueError(f"a {size} x {size} patch centre lies within {half} pixels of the image's edge")
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
    return np.ascontiguousarray(windows[rows - half, cols - half], dtype=np.float32)


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one image's draws: the run's seed and the image's name, not its position in a list."""
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode("utf-8"))])


@dataclass(frozen=True)
class CandidateSampling:
    """Which centres of a training image become stored patches (see the module docstring)."""

    positive_cap: int = 500
    background_stride: int = 24
    background_cap: int = 1000

    def __post_init__(self):
        for key in ("positive_cap", "background_stride", "background_cap"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"candidate sampling: {key} must be a positive integer, got {getattr(self, key)}")

    @classmethod
    def from_section(cls, section: Mapping) -> "CandidateSampling":
        return cls(**section)


@dataclass(frozen=True)
class Centres:
    """Patch centres of one image: (row, col) and class, in row-major order."""

    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def at_most(indices: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """``indices`` if there are at most ``cap``, else a random ``cap`` of them; sorted either way."""
    if len(indices) <= cap:
        return indices
    return np.sort(rng.choice(indices, cap, replace=False))


def on_grid(shape: tuple[int, int], stride: int) -> np.ndarray:
    """Pixels whose row and column are ``stride // 2`` modulo ``stride``."""
    offset = stride // 2
    rows = (np.arange(shape[0]) % stride) == offset
    cols = (np.arange(shape[1]) % stride) == offset
    return rows[:, None] & cols[None, :]


def training_centres(classes: np.ndarray, valid: np.ndarray, sampling: CandidateSampling,
                     rng: np.random.Generator) -> Centres:
    """The training candidates of one image (its :func:`class_map` and :func:`candidate_centres`): every C1-C3
    centre up to ``positive_cap`` per class, C4 centres on the ``background_stride`` grid up to
    ``background_cap``."""
    flat_classes = classes.ravel()
    flat_valid = valid.ravel()
    chosen = [at_most(np.flatnonzero(flat_valid & (flat_classes == c)), sampling.positive_cap, rng)
              for c in (C1, C2, C3)]
    grid = on_grid(classes.shape, sampling.background_stride).ravel()
    chosen.append(at_most(np.flatnonzero(flat_valid & grid & (flat_classes == C4)), sampling.background_cap, rng))
    flat = np.sort(np.concatenate(chosen))
    rows, cols = np.unravel_index(flat, classes.shape)
    return Centres(rows.astype(np.int64), cols.astype(np.int64), flat_classes[flat].astype(np.int64))


def split_sizes(n_images: int, shares: Mapping[str, float] = PAPER_SPLIT) -> dict[str, int]:
    """How many of ``n_images`` each split gets, in the proportions of ``shares`` (the paper's 231 / 25 / 27):
    validation and test rounded, each at least one image; training the rest, at least one."""
    total = sum(shares.values())
    if n_images < 3:
        raise ConfigError(f"{n_images} image(s) cannot be split by image into training, validation and test sets; "
                          "at least 3 are needed")
    held_out = {name: max(1, int(round(n_images * shares[name] / total))) for name in ("val", "test")}
    while sum(held_out.values()) > n_images - 1:  # only for a handful of images: training keeps at least one
        largest = max(held_out, key=held_out.get)
        held_out[largest] -= 1
    return {"train": n_images - held_out["val"] - held_out["test"], **held_out}


def split_images(names, seed: int, shares: Mapping[str, float] = PAPER_SPLIT) -> dict[str, str]:
    """image name -> "train", "val" or "test": a seeded shuffle of the sorted names cut in the proportions of
    ``shares``; every patch of an image then lies in its image's split."""
    names = sorted(set(str(n) for n in names))
    sizes = split_sizes(len(names), shares)
    order = np.random.default_rng(seed).permutation(len(names))
    split, start = {}, 0
    for name in SPLITS:
        for index in order[start:start + sizes[name]]:
            split[names[index]] = name
        start += sizes[name]
    return split


def check_mix(mix: Mapping[int, float]) -> dict[int, float]:
    """A class mix normalised to sum 1; a ConfigError for an unknown class or a negative or all-zero weight."""
    mix = {int(k): float(v) for k, v in mix.items()}
    unknown = sorted(set(mix) - set(CLASSES))
    if unknown:
        raise ConfigError(f"held-out class mix names unknown class(es) {name_list(unknown)}; classes are 1-4")
    if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ConfigError(f"held-out class mix {mix} needs non-negative weights with a positive sum")
    total = sum(mix.values())
    return {c: mix.get(c, 0.0) / total for c in CLASSES}


def class_counts(total: int, mix: Mapping[int, float] = HELD_OUT_MIX) -> dict[int, int]:
    """``total`` patches shared among the classes in the proportions of ``mix`` (largest remainders get the
    patches the rounding leaves over): 6000 -> 3000, 1000, 1000, 1000 by default."""
    shares = check_mix(mix)
    exact = {c: total * shares[c] for c in CLASSES}
    counts = {c: int(np.floor(exact[c])) for c in CLASSES}
    left = total - sum(counts.values())
    for c in sorted(CLASSES, key=lambda c: (counts[c] - exact[c], c))[:left]:
        counts[c] += 1
    return counts


class _Reservoir:
    """The ``wanted`` candidates of one class with the smallest random keys offered so far, with their pixels."""

    def __init__(self, wanted: int, size: int):
        self.wanted, self.size, self.seen = wanted, size, 0
        self.keys = np.zeros(0)
        self.images = self.rows = self.cols = np.zeros(0, dtype=np.int64)
        self.pixels = np.zeros((0, size, size), dtype=np.float32)

    def offer(self, image_id: int, image: np.ndarray, flat: np.ndarray, shape: tuple[int, int],
              rng: np.random.Generator) -> None:
        """Offer an image's candidates (flat indices into ``shape``); only the ``wanted`` smallest keys are cut."""
        keys = rng.random(len(flat))
        self.seen += len(flat)
        if len(flat) > self.wanted:
            keep = np.argpartition(keys, self.wanted - 1)[:self.wanted] if self.wanted else np.zeros(0, dtype=int)
            flat, keys = flat[keep], keys[keep]
        rows, cols = np.unravel_index(flat, shape)
        order = np.argsort(np.concatenate([self.keys, keys]), kind="stable")[:self.wanted]
        self.keys = np.concatenate([self.keys, keys])[order]
        self.images = np.concatenate([self.images, np.full(len(flat), image_id, dtype=np.int64)])[order]
        self.rows = np.concatenate([self.rows, rows])[order]
        self.cols = np.concatenate([self.cols, cols])[order]
        self.pixels = np.concatenate([self.pixels, cut_patches(image, rows, cols, self.size)])[order]


@dataclass(frozen=True)
class HeldOutPatches:
    """A drawn validation or test set: image ids, centres, classes and pixels (n, N, N), by image and position."""

    images: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


class HeldOutDraw:
    """A uniform draw without replacement of ``total`` patches in the class ``mix`` from every candidate centre of
    one split's images, offered one image at a time (each image's random keys from its own generator, so that
    the draw does not depend on the order of the images): the candidates with the smallest keys are kept, with
    their pixels, so memory stays at ``total`` patches."""

    def __init__(self, total: int, size: int, mix: Mapping[int, float] = HELD_OUT_MIX):
        self.size = check_patch_size(size)
        self.mix = check_mix(mix)
        self.wanted = class_counts(int(total), self.mix)
        self._reservoirs = {c: _Reservoir(self.wanted[c], self.size) for c in CLASSES}

    def offer(self, image_id: int, image: np.ndarray, classes: np.ndarray, valid: np.ndarray,
              rng: np.random.Generator) -> None:
        """Add one image's candidates (its :func:`class_map` and :func:`candidate_centres`) to the draw."""
        flat_classes, flat_valid = classes.ravel(), valid.ravel()
        for c in CLASSES:
            flat = np.flatnonzero(flat_valid & (flat_classes == c))
            self._reservoirs[c].offer(image_id, image, flat, classes.shape, rng)

    def available(self) -> dict[int, int]:
        """Candidates seen per class."""
        return {c: self._reservoirs[c].seen for c in CLASSES}

    def achievable_counts(self) -> dict[int, int]:
        """The counts per class that keep the mix exactly: the wanted ones, or the whole set shrunk until the
        scarcest class (relative to its share) suffices."""
        seen = self.available()
        scale = min([1.0] + [seen[c] / self.wanted[c] for c in CLASSES if self.wanted[c]])
        total = int(np.floor(sum(self.wanted.values()) * scale + 1e-9))
        counts = class_counts(total, self.mix)
        while any(counts[c] > seen[c] for c in CLASSES):  # rounding may ask one more than a class holds
            total -= 1
            counts = class_counts(total, self.mix)
        return counts

    def result(self, name: str = "held-out", path=None) -> HeldOutPatches:
        """The drawn patches, in the mix (shrunk as :meth:`achievable_counts` says when a class is scarce); a
        DataError when a class with a share has no candidate at all."""
        seen = self.available()
        empty = [f"C{c}" for c in CLASSES if self.wanted[c] and not seen[c]]
        if empty:
            raise DataError(path, f"the {name} images hold no patch centre of class {name_list(empty)}: the {name} "
                                  "set cannot have its class mix; use more images or another mix")
        counts = self.achievable_counts()
        parts = []
        for c in CLASSES:
            r = self._reservoirs[c]
            n = counts[c]  # the smallest keys of a uniform draw are a uniform draw of any smaller size
            parts.append((r.images[:n], r.rows[:n], r.cols[:n], np.full(n, c, dtype=np.int64), r.pixels[:n]))
        images, rows, cols, classes, pixels = (np.concatenate(p) for p in zip(*parts))
        order = np.lexsort((cols, rows, images))
        return HeldOutPatches(images[order].astype(np.int64), rows[order].astype(np.int64),
                              cols[order].astype(np.int64), classes[order], pixels[order])
