"""Training and inference of the registration network (RegNet, CE-, AE-, AC-RegNet).

Training (paper section 3): each step draws ``batch_size`` (moving, fixed)
pairs of distinct training subjects with the run's seeded generator, predicts
the displacement with :class:`~medrepro.studies.chest.networks.VectorCNN`, warps the
moving image (and, for the segmentation-aware methods, its one-hot mask) and
minimises :class:`~medrepro.nn.losses.RegistrationLoss` with Adam. Masks are
only needed for training; inference uses the two images alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrepro.errors import DataError
from medrepro.studies.chest.losses import RegistrationLoss, check_method, uses_ae
from medrepro.studies.chest.networks import VectorCNN
from medrepro.spatial.warp import to_onehot, warp, warp_onehot
from medrepro.studies.chest.autoencoder import check_label_stack, load_autoencoder
from medrepro.provenance.hashing import sha256_file
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import array_fingerprint

__all__ = ["train_registration", "sample_pairs", "validation_pairs", "image_tensor", "REGISTRATION_KIND"]

REGISTRATION_KIND = "VectorCNN"
LOG_COLUMNS = ["step", "epoch", "split", "total", "ncc", "tv", "ce", "ae"]
VAL_PAIR_STREAM = 2  # the validation pairs use their own seeded stream
DEFAULT_STEPS_PER_EPOCH = 100  # as in the authors' scripts; only labels the log


def sample_pairs(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (moving, fixed) index pairs, uniform over ordered pairs of distinct subjects."""
    moving = rng.integers(0, n, size=count)
    fixed = (moving + rng.integers(1, n, size=count)) % n
    return moving, fixed


def validation_pairs(n: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of distinct validation subjects, or a fixed random subset of ``max_pairs``."""
    moving, fixed = np.nonzero(~np.eye(n, dtype=bool))
    if len(moving) > max_pairs:
        rng = np.random.default_rng([seed, VAL_PAIR_STREAM])
        chosen = np.sort(rng.choice(len(moving), max_pairs, replace=False))
        moving, fixed = moving[chosen], fixed[chosen]
    return moving, fixed


def _check_images(images: np.ndarray, labels: np.ndarray, n_classes: int, source, what: str) -> None:
    check_label_stack(labels, n_classes, source, f"{what} labels")
    if not isinstance(images, np.ndarray) or images.shape != labels.shape:
        shape = getattr(images, "shape", None)
        raise DataError(source, f"{what} images {shape} and labels {labels.shape} differ in shape")
    if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all():
        raise DataError(source, f"{what} images must be finite floating-point values, got dtype {images.dtype}")


def _check_sets(images: np.ndarray, labels: np.ndarray, val_images: np.ndarray | None, val_labels: np.ndarray | None,
                n_classes: int, source) -> bool:
    """Raise unless the training set (and the validation set, when given) can be trained on; whether one is."""
    _check_images(images, labels, n_classes, source, "training")
    if len(images) < 2:
        raise DataError(source, "registration training needs at least two subjects")
    if val_images is None and val_labels is None:
        return False
    if val_images is None or val_labels is None:
        raise ValueError("give both val_images and val_labels, or neither")
    _check_images(val_images, val_labels, n_classes, source, "validation")
    if val_images.shape[1:] != images.shape[1:] or len(val_images) < 2:
        raise DataError(source, f"validation set {val_images.shape} must hold >= 2 subjects of size {images.shape[1:]}")
    return True


class _Subjects:
    """Images and labels on the device; a batch is the (moving, fixed) images, and their labels where the loss
    needs masks, of index pairs."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device, with_labels: bool):
        self.images = image_tensor(images, device)
        self.labels = _label_tensor(labels, device) if with_labels else None

    def batch(self, moving_idx: np.ndarray, fixed_idx: np.ndarray) -> tuple:
        moving_idx, fixed_idx = torch.from_numpy(moving_idx), torch.from_numpy(fixed_idx)
        labels = (None, None) if self.labels is None else (self.labels[moving_idx], self.labels[fixed_idx])
        return self.images[moving_idx], self.images[fixed_idx], *labels


def _pair_loss(loss_fn: RegistrationLoss, n_classes: int):
    """Warp a batch of moving images (and masks) and evaluate the method's loss."""

    def loss(model: VectorCNN, batch: tuple) -> dict[str, torch.Tensor]:
        moving, fixed, moving_labels, fixed_labels = batch
        displacement = model(moving, fixed)
        warped = warp(moving, displacement)
        warped_onehot = fixed_onehot = None
        if loss_fn.needs_masks:
            warped_onehot = warp_onehot(to_onehot(moving_labels, n_classes), displacement)
            fixed_onehot = to_onehot(fixed_labels, n_classes)
        total, terms = loss_fn(warped, fixed, displacement, warped_onehot, fixed_onehot)
        return {"total": total, **terms}

    return loss


def _validation(subjects: _Subjects, moving: np.ndarray, fixed: np.ndarray, batch_size: int) -> ValidationSet:
    """The fixed validation pairs, ``batch_size`` pairs at a time."""
    return ValidationSet(len(moving), lambda chunk: subjects.batch(moving[chunk], fixed[chunk]), batch_size)


def train_registration(
    images: np.ndarray,
    labels: np.ndarray,
    settings: TrainingSettings,
    *,
    method: str,
    n_classes: int,
    autoencoder_path: str | Path | None = None,
    lambda_r: float = 5e-5,
    lambda_ce: float = 1.0,
    lambda_ae: float = 0.1,
    ce_epsilon: float = 1e-7,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    val_pairs: int = 64,
    source: str | Path | None = None,
) -> dict:
    """Train VectorCNN with the loss of ``method`` and write it to ``settings.out_path``; returns a summary dict.

    ``images`` (N, S, S) float32 and ``labels`` (N, S, S) integer are the
    training subjects (``source`` names their file for error messages);
    ``autoencoder_path`` is the trained autoencoder, required for AE-RegNet and
    AC-RegNet. ``settings.steps_per_epoch`` (default 100, as in the authors'
    scripts) only labels the log. With validation data, a ``val`` row with the
    loss terms over a fixed set of at most ``val_pairs`` validation pairs is
    logged every ``settings.val_every`` steps (default: once per epoch) and at
    the end. See :func:`medrepro.nn.training.run_resumable_training` for the
    checkpoint, resume and log semantics.
    """
    check_method(method)
    has_val = _check_sets(images, labels, val_images, val_labels, n_classes, source)
    if uses_ae(method) and autoencoder_path is None:
        raise ValueError(f"{method} needs autoencoder_path (the trained anatomy autoencoder)")
    trainer = SupervisedTrainer(settings, steps_per_epoch=DEFAULT_STEPS_PER_EPOCH)
    run, device, size = trainer.settings, trainer.device, images.shape[1]
    encoder = _encoder(autoencoder_path, device, n_classes, size) if uses_ae(method) else None
    config = {
        "kind": REGISTRATION_KIND, "method": method, "n_classes": int(n_classes), "size": int(size),
        "batch_size": int(run.batch_size), "lr": float(run.lr), "lambda_r": float(lambda_r),
        "lambda_ce": float(lambda_ce), "lambda_ae": float(lambda_ae), "ce_epsilon": float(ce_epsilon),
        "seed": int(run.seed),
        "steps_per_epoch": int(run.steps_per_epoch), "log_every": int(run.log_every),
        "val_every": int(run.val_every) if has_val else None,
        "data_sha256": array_fingerprint(images, labels),
        "val_sha256": array_fingerprint(val_images, val_labels) if has_val else None,
        "val_pairs": int(val_pairs) if has_val else None,
        "autoencoder_sha256": sha256_file(autoencoder_path) if encoder is not None else None,
    }
    trainer.build(VectorCNN)
    loss_fn = RegistrationLoss(method, lambda_r, lambda_ce, lambda_ae, encoder=encoder, ce_epsilon=ce_epsilon)
    subjects = _Subjects(images, labels, device, loss_fn.needs_masks)

    def prepare_batch(rng: np.random.Generator) -> tuple:
        return subjects.batch(*sample_pairs(rng, len(images), run.batch_size))

    validation = None
    if has_val:
        val_subjects = _Subjects(val_images, val_labels, device, loss_fn.needs_masks)
        validation = _validation(val_subjects, *validation_pairs(len(val_images), val_pairs, run.seed),
                                 run.batch_size)
    return trainer.run(prepare_batch=prepare_batch, loss=_pair_loss(loss_fn, n_classes), validation=validation,
                       config=config, generator="pairs", kind=REGISTRATION_KIND, log_columns=LOG_COLUMNS,
                       desc=method)


def _encoder(autoencoder_path: str | Path, device: torch.device, n_classes: int, size: int):
    """The trained autoencoder of the anatomy term, checked against the registration's classes and size."""
    encoder = load_autoencoder(autoencoder_path, device)
    if (encoder.config["n_classes"], encoder.config["size"]) != (n_classes, size):
        raise DataError(
            autoencoder_path,
            f"autoencoder was trained for {encoder.config['n_classes']} classes at "
            f"{encoder.config['size']}px, but registration uses {n_classes} classes at {size}px",
        )
    return encoder


def image_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)


def _label_tensor(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64)).to(device)
