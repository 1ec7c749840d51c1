"""Lesion-detection pre-training of the registration trunk (substitute for the paper's Faster R-CNN, Sec. 4).

The paper fine-tunes its ImageNet ResNet50 as a Faster R-CNN lesion detector
on the development set's boxes (80 epochs) before moving the trunk into the
registration network. Here the detector is single-stage, in the manner of
CenterNet ("objects as points"): on the trunk's feature map (output stride
:data:`OUTPUT_STRIDE` = 16) one head predicts a lesion-centre heatmap (logits)
and another the box width and height as the log of their size in cells.
Only the trunk is transferred (:func:`trunk_state_from_detector`,
:func:`write_trunk_weights`); the heads are discarded. Training uses single
views: the caller passes the development pairs' CC and MLO images as separate
samples, each view once.

Conventions.

* Images are (N, H, W) float32 in 0..1; boxes are ``(x1, y1, x2, y2)`` in
  pixel-edge coordinates (x = column, far edge exclusive, as in
  :mod:`medrepro.spatial.boxes`).
* The feature map of an (H, W) image has ``ceil(H / 16) x ceil(W / 16)``
  cells; cell (row i, column j) covers pixels ``[16 j, 16 (j + 1)) x
  [16 i, 16 (i + 1))``. A box belongs to the cell holding its centre (clamped
  onto the map); decoded boxes are centred on their cell's centre (no
  sub-cell offset is predicted, so a decoded centre is off by at most 8 px).
* Heatmap targets: per box a Gaussian over cells, peak exactly 1 at its
  centre cell, standard deviation ``(2 r + 1) / 6`` cells, where ``r`` (see
  :func:`lesion_radius`) is the diagonal shift of the box, in cells, that
  leaves its IoU with itself at :data:`MIN_OVERLAP`; overlapping Gaussians are
  combined by their maximum. Size targets (channel 0 width, 1 height) are
  ``log(side / stride)`` at centre cells only; the centre mask marks them.
* Loss: CenterNet's penalty-reduced focal loss (alpha 2, beta 4) summed over
  cells and divided by the number of centres (at least 1), plus
  :data:`SIZE_WEIGHT` times the mean absolute error of the log sizes at the
  centres.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medrepro.spatial import boxes as box_ops
from medrepro.nn.losses import focal_terms
from medrepro.data.atomic import atomic_path
from medrepro.nn.device import resolve_device
from medrepro.errors import DataError
from medrepro.provenance.hashing import sha256_file
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import array_fingerprint, load_model, load_model_file, torch_bytes

from . import networks

__all__ = [
    "DETECTOR_KIND", "OUTPUT_STRIDE", "LesionDetector", "detection_targets", "detection_loss", "decode_boxes",
    "lesion_radius", "output_shape", "train_detector", "load_detector", "trunk_state_from_detector",
    "write_trunk_weights", "validation_hit_rate",
]

DETECTOR_KIND = "lesion_detector"
OUTPUT_STRIDE = 16  # conv1, max-pool, layer2 and layer3 each halve the grid
HEAD_CHANNELS = 128
PRIOR_PROBABILITY = 0.01  # the heatmap starts near "no lesion anywhere", so early negatives do not swamp the loss
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0
SIZE_WEIGHT = 0.1
MIN_OVERLAP = 0.7
LOG_COLUMNS = ["step", "epoch", "split", "total", "heatmap", "size"]
_TRUNK_PREFIX = "trunk."


# --- The network ------------------------------------------------------------------------------


def _head(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, HEAD_CHANNELS, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(HEAD_CHANNELS, out_channels, kernel_size=1),
    )  # fmt: skip


class LesionDetector(nn.Module):
    """Image (B, 1, H, W) in 0..1 -> {"heatmap": (B, 1, h, w) logits, "size": (B, 2, h, w) log sizes in cells}."""

    stride = OUTPUT_STRIDE

    def __init__(self, depth: int = 50):
        super().__init__()
        self.trunk = networks.Trunk(depth)
        self.depth = self.trunk.depth
        self.heatmap_head = _head(self.trunk.out_channels, 1)
        self.size_head = _head(self.trunk.out_channels, 2)
        nn.init.constant_(self.heatmap_head[-1].bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(networks.imagenet_input(image))
        return {"heatmap": self.heatmap_head(features), "size": self.size_head(features)}


def output_shape(image_shape: Sequence[int], stride: int = OUTPUT_STRIDE) -> tuple[int, int]:
    """The (h, w) feature map of an (H, W) image: each stride-2 layer rounds up."""
    height, width = image_shape
    return math.ceil(height / stride), math.ceil(width / stride)


# --- Targets, loss and decoding ---------------------------------------------------------------


def lesion_radius(width: float, height: float, min_overlap: float = MIN_OVERLAP) -> float:
    """The shift ``r`` (both axes, same units as the sides) of a box at which its IoU with itself is ``min_overlap``.

    A box shifted by (r, r) meets the original in ``(w - r)(h - r)``; setting
    that to ``2 t w h / (1 + t)`` (IoU = t) gives the smaller root of
    ``r^2 - (w + h) r + w h (1 - t) / (1 + t) = 0``.
    """
    total = width + height
    discriminant = total**2 - 4.0 * width * height * (1.0 - min_overlap) / (1.0 + min_overlap)
    return max(0.0, (total - math.sqrt(max(discriminant, 0.0))) / 2.0)


def _checked_boxes(image_boxes, path=None, what: str = "boxes") -> np.ndarray:
    """One image's boxes as a (K, 4) float64 array; DataError for a bad shape, non-finite or empty boxes."""
    array = np.asarray(image_boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise DataError(path, f"{what} must be (K, 4) arrays of x1, y1, x2, y2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(path, f"{what} hold non-finite coordinates; fix or drop those boxes")
    if not ((array[:, 2] > array[:, 0]) & (array[:, 3] > array[:, 1])).all():
        raise DataError(path, f"{what} need x2 > x1 and y2 > y1; drop empty boxes")
    return array


def detection_targets(boxes: list[np.ndarray], image_shape: tuple[int, int],
                      stride: int = OUTPUT_STRIDE) -> dict[str, torch.Tensor]:
    """Per-image (K, 4) pixel boxes -> {"heatmap": (B, 1, h, w), "size": (B, 2, h, w), "mask": (B, 1, h, w)}.

    See the module docstring for the Gaussian and size conventions; an
    image without boxes has an all-zero heatmap and mask. When two boxes
    share a centre cell, the later box's size is the target there.
    """
    h, w = output_shape(image_shape, stride)
    count = len(boxes)
    heatmap = np.zeros((count, 1, h, w), dtype=np.float64)
    size = np.zeros((count, 2, h, w), dtype=np.float64)
    mask = np.zeros((count, 1, h, w), dtype=np.float64)
    rows, cols = np.mgrid[:h, :w]
    for index, image_boxes in enumerate(boxes):
        for x1, y1, x2, y2 in _checked_boxes(image_boxes):
            width, height = (x2 - x1) / stride, (y2 - y1) / stride
            col = int(np.clip(math.floor((x1 + x2) / 2 / stride), 0, w - 1))
            row = int(np.clip(math.floor((y1 + y2) / 2 / stride), 0, h - 1))
            sigma = (2.0 * lesion_radius(width, height) + 1.0) / 6.0
            bump = np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2.0 * sigma**2))
            heatmap[index, 0] = np.maximum(heatmap[index, 0], bump)
            size[index, :, row, col] = math.log(width), math.log(height)
            mask[index, 0, row, col] = 1.0
    return {name: torch.from_numpy(value.astype(np.float32)) for name, value in
            (("heatmap", heatmap), ("size", size), ("mask", mask))}


def _focal_loss(logits: torch.Tensor, heatmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced focal loss summed over cells, per centre: the kernel's binary focal terms with the
    centres as positives and negatives down-weighted by ``(1 - heatmap)^beta`` near a centre."""
    positive, negative = focal_terms(logits, mask, FOCAL_ALPHA, negative_weight=(1 - heatmap) ** FOCAL_BETA)
    return (positive.sum() + negative.sum()) / mask.sum().clamp(min=1.0)


def _size_loss(size: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the two log sizes over the centres (0 without centres)."""
    error = (size - target).abs() * mask
    return error.sum() / (2.0 * mask.sum()).clamp(min=1.0)


def detection_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{"total", "heatmap", "size"}: focal loss + ``SIZE_WEIGHT`` x size L1 (module docstring)."""
    logits = outputs["heatmap"]
    if logits.shape != targets["heatmap"].shape:
        raise ValueError(f"heatmap {tuple(logits.shape)} and targets {tuple(targets['heatmap'].shape)} differ; "
                         "make the targets for the image shape the network sees")
    heatmap = _focal_loss(logits.float(), targets["heatmap"], targets["mask"])
    size = _size_loss(outputs["size"].float(), targets["size"], targets["mask"])
    return {"total": heatmap + SIZE_WEIGHT * size, "heatmap": heatmap, "size": size}


def decode_boxes(outputs: dict[str, torch.Tensor], stride: int = OUTPUT_STRIDE,
                 k: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The ``k`` strongest heatmap peaks per image as (boxes, scores): lists of (k, 4) and (k,) float32 arrays.

    A peak is a cell at least as high as its 8 neighbours; other cells score
    0 and only fill the list when an image has fewer than ``k`` peaks. Boxes
    are in pixels, centred on their cell's centre, best first, not clipped to
    the image; ``k`` beyond the number of cells gives one row per cell.
    """
    probability = torch.sigmoid(outputs["heatmap"].detach().float())
    is_peak = F.max_pool2d(probability, kernel_size=3, stride=1, padding=1) == probability
    batch, _, h, w = probability.shape
    scores, index = (probability * is_peak).flatten(1).topk(min(k, h * w), dim=1)
    log_size = outputs["size"].detach().float().flatten(2)
    width = torch.exp(log_size[:, 0].gather(1, index)) * stride
    height = torch.exp(log_size[:, 1].gather(1, index)) * stride
    centre_x = (index % w + 0.5) * stride
    centre_y = (torch.div(index, w, rounding_mode="floor") + 0.5) * stride
    found = torch.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2],
                        dim=-1)
    found, scores = found.cpu().numpy(), scores.cpu().numpy()
    return [found[i] for i in range(batch)], [scores[i] for i in range(batch)]


# --- Training ---------------------------------------------------------------------------------


def _check_set(images: np.ndarray, boxes: list[np.ndarray], source, what: str) -> list[np.ndarray]:
    if not isinstance(images, np.ndarray) or images.ndim != 3 or len(images) == 0:
        raise DataError(source, f"{what} images must be a non-empty (N, H, W) array, "
                                f"got shape {getattr(images, 'shape', None)}")
    if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all():
        raise DataError(source, f"{what} images must be finite floating-point values, got dtype {images.dtype}")
    if len(boxes) != len(images):
        raise DataError(source, f"{len(images)} {what} images but {len(boxes)} box arrays; give one per image")
    return [_checked_boxes(image_boxes, source, f"{what} boxes of image {i}") for i, image_boxes in enumerate(boxes)]


def _boxes_fingerprint(images: np.ndarray, boxes: list[np.ndarray]) -> str:
    counts = np.array([len(b) for b in boxes], dtype=np.int64)
    return array_fingerprint(images, counts, np.concatenate([b.reshape(-1, 4) for b in boxes]))


def _image_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)


def _on(targets: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: value.to(device) for name, value in targets.items()}


def _take(targets: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: value[index] for name, value in targets.items()}


def _views(images: np.ndarray, boxes: list[np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Images (N, 1, H, W) and their detection targets on ``device``: a batch is these indexed."""
    return {"image": _image_tensor(images, device), **_on(detection_targets(boxes, images.shape[1:], OUTPUT_STRIDE),
                                                          device)}


def _loss(model: LesionDetector, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return detection_loss(model(batch["image"]), batch)


def validation_hit_rate(model: LesionDetector, images: np.ndarray, boxes: list[np.ndarray],
                        batch_size: int = 8, device: str | torch.device | None = None) -> float:
    """Fraction of images whose top-1 decoded box shares a positive area with one of their true boxes."""
    device = next(model.parameters()).device if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    hits = 0
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                found, _ = decode_boxes(model(_image_tensor(images[start:start + batch_size], device)), model.stride)
                for best, truth in zip(found, boxes[start:start + batch_size]):
                    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
                    hits += bool(np.any(box_ops.boxes_overlap(best[:1].astype(np.float64), truth)))
    finally:
        model.train(was_training)
    return hits / len(images)


def train_detector(
    images: np.ndarray,
    boxes: list[np.ndarray],
    settings: TrainingSettings,
    *,
    depth: int,
    trunk_weights: str = "none",
    weights_dir: str | Path | None = None,
    val_images: np.ndarray | None = None,
    val_boxes: list[np.ndarray] | None = None,
    source: str | Path | None = None,
) -> dict:
    """Train a :class:`LesionDetector` and write it to ``settings.out_path`` (kind ``"lesion_detector"``).

    ``images`` (N, H, W) float32 in 0..1 with ``boxes[i]`` (K_i, 4) in pixels
    (``source`` names their file in errors). The trunk starts from
    ``trunk_weights`` (see :func:`networks.load_trunk_weights`); each step
    draws ``settings.batch_size`` images (distinct when there are enough) with
    the run's seeded generator and takes one Adam step. ``steps_per_epoch``
    defaults to one pass over the images and only labels the log. With
    validation data a ``val`` row of the loss terms is logged every
    ``val_every`` steps and at the end. Returns the loop's summary (see
    :func:`medrepro.nn.training.run_resumable_training`) plus ``trunk_weights``
    (the file used, or "none"), ``validation_hit_rate`` (None without
    validation data), ``device``, ``n_parameters`` and ``config``.
    """
    boxes = _check_set(images, boxes, source, "training")
    has_val = val_images is not None or val_boxes is not None
    if has_val:
        if val_images is None or val_boxes is None:
            raise ValueError("give both val_images and val_boxes, or neither")
        val_boxes = _check_set(val_images, val_boxes, source, "validation")
    trainer = SupervisedTrainer(settings, steps_per_epoch=math.ceil(len(images) / settings.batch_size))
    run, device = trainer.settings, trainer.device
    weights_file = "none"

    def network() -> LesionDetector:
        nonlocal weights_file
        model = LesionDetector(depth)
        weights_file = networks.load_trunk_weights(model.trunk, trunk_weights, weights_dir)
        return model

    model = trainer.build(network)
    config = {
        "kind": DETECTOR_KIND, "depth": int(depth), "trunk_weights": str(trunk_weights),
        "trunk_sha256": None if weights_file == "none" else sha256_file(weights_file),
        "stride": OUTPUT_STRIDE, "image_shape": [int(s) for s in images.shape[1:]],
        "batch_size": int(run.batch_size), "lr": float(run.lr), "seed": int(run.seed),
        "steps_per_epoch": int(run.steps_per_epoch), "log_every": int(run.log_every),
        "val_every": int(run.val_every) if has_val else None,
        "data_sha256": _boxes_fingerprint(images, boxes),
        "val_sha256": _boxes_fingerprint(val_images, val_boxes) if has_val else None,
    }
    train = _views(images, boxes, device)

    def prepare_batch(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        chosen = rng.choice(len(images), size=run.batch_size, replace=len(images) < run.batch_size)
        return _take(train, torch.from_numpy(chosen).to(device))

    validation = None
    if has_val:
        val = _views(val_images, val_boxes, device)
        validation = ValidationSet(len(val_images), lambda chunk: _take(val, chunk), run.batch_size)
    summary = trainer.run(prepare_batch=prepare_batch, loss=_loss, validation=validation, config=config,
                          kind=DETECTOR_KIND, log_columns=LOG_COLUMNS, desc="detector")
    hit_rate = validation_hit_rate(model, val_images, val_boxes, run.batch_size) if has_val else None
    summary.update(trunk_weights=weights_file, validation_hit_rate=hit_rate)
    return summary


# --- Model files and the trunk's transfer -----------------------------------------------------


# What load_model_file and load_model check a detector model file against.
_DETECTOR_FILE = {"kinds": DETECTOR_KIND, "what": "lesion detector model",
                  "remedy": "give the file train_detector wrote"}


def _detector_file(path: str | Path) -> dict:
    return load_model_file(path, **_DETECTOR_FILE)


def trunk_state_from_detector(path: str | Path) -> dict:
    """The :class:`networks.Trunk` state dict (keys ``conv1...``, ``layer3...``) of a detector model file."""
    state = _detector_file(path)["state_dict"]
    trunk = {key.removeprefix(_TRUNK_PREFIX): value for key, value in state.items() if key.startswith(_TRUNK_PREFIX)}
    if not trunk:
        raise DataError(path, "the detector model holds no trunk weights; retrain it")
    return trunk


def write_trunk_weights(detector_path: str | Path, out_path: str | Path) -> Path:
    """Write a detector's trunk as a plain state dict, which ``networks.load_trunk_weights`` accepts as a file."""
    data = torch_bytes(trunk_state_from_detector(detector_path))
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(data)
    return Path(out_path)


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> LesionDetector:
    """A trained detector from its model file, in eval mode on ``device``."""
    model, _ = load_model(path, build=lambda config: LesionDetector(int(config["depth"])), device=device,
                          **_DETECTOR_FILE)
    return model
