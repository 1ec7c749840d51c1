"""Training and inference of the registration network (RegNet, CE-, AE-, AC-RegNet).

Training (paper section 3): each step draws ``batch_size`` (moving, fixed)
pairs of distinct training subjects with the run's seeded generator, predicts
the displacement with :class:`~medrepro.studies.chest.networks.VectorCNN`, warps the
moving image (and, for the segmentation-aware methods, its one-hot mask) and
minimises :class:`~medrepro.losses.RegistrationLoss` with Adam. Masks are
only needed for training; inference uses the two images alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from medrepro.errors import DataError
from medrepro.studies.chest.losses import RegistrationLoss, check_method, uses_ae
from medrepro.modules import count_parameters
from medrepro.studies.chest.networks import VectorCNN
from medrepro.warp import to_onehot, warp, warp_onehot
from medrepro.studies.chest.autoencoder import check_label_stack, load_autoencoder
from medrepro.hashing import sha256_file
from medrepro.training import TrainingSettings, run_resumable_training
from medrepro.training.checkpoint import array_fingerprint
from medrepro.device import place, resolve_device, seed_everything

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


class _PairLoss:
    """Warp a batch of moving images (and masks) and evaluate the method's loss."""

    def __init__(self, model: VectorCNN, loss_fn: RegistrationLoss, images: torch.Tensor, labels: torch.Tensor,
                 n_classes: int):
        self.model, self.loss_fn = model, loss_fn
        self.images, self.labels, self.n_classes = images, labels, n_classes

    def __call__(self, moving_idx: np.ndarray, fixed_idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        moving_idx, fixed_idx = torch.from_numpy(moving_idx), torch.from_numpy(fixed_idx)
        moving, fixed = self.images[moving_idx], self.images[fixed_idx]
        displacement = self.model(moving, fixed)
        warped = warp(moving, displacement)
        warped_onehot = fixed_onehot = None
        if self.loss_fn.needs_masks:
            warped_onehot = warp_onehot(to_onehot(self.labels[moving_idx], self.n_classes), displacement)
            fixed_onehot = to_onehot(self.labels[fixed_idx], self.n_classes)
        return self.loss_fn(warped, fixed, displacement, warped_onehot, fixed_onehot)


def _as_floats(total: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {"total": float(total.detach()), **{name: float(value) for name, value in terms.items()}}


def _validator(val_loss: _PairLoss, moving: np.ndarray, fixed: np.ndarray,
               batch_size: int) -> Callable[[], dict[str, float]]:
    """Loss terms averaged over the fixed validation pairs, ``batch_size`` pairs at a time."""

    def validate() -> dict[str, float]:
        sums: dict[str, float] = {}
        for start in range(0, len(moving), batch_size):
            chunk = slice(start, start + batch_size)
            count = len(moving[chunk])
            for name, value in _as_floats(*val_loss(moving[chunk], fixed[chunk])).items():
                sums[name] = sums.get(name, 0.0) + value * count
        return {name: value / len(moving) for name, value in sums.items()}

    return validate


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
    the end. See :func:`medrepro.training.run_resumable_training` for the
    checkpoint, resume and log semantics.
    """
    batch_size, lr, seed = settings.batch_size, settings.lr, settings.seed
    steps_per_epoch = settings.steps_per_epoch or DEFAULT_STEPS_PER_EPOCH
    log_every, val_every = settings.log_every, settings.val_every
    check_method(method)
    _check_images(images, labels, n_classes, source, "training")
    if len(images) < 2:
        raise DataError(source, "registration training needs at least two subjects")
    has_val = val_images is not None or val_labels is not None
    if has_val:
        if val_images is None or val_labels is None:
            raise ValueError("give both val_images and val_labels, or neither")
        _check_images(val_images, val_labels, n_classes, source, "validation")
        if val_images.shape[1:] != images.shape[1:] or len(val_images) < 2:
            raise DataError(
                source, f"validation set {val_images.shape} must hold >= 2 subjects of size {images.shape[1:]}"
            )
    if uses_ae(method) and autoencoder_path is None:
        raise ValueError(f"{method} needs autoencoder_path (the trained anatomy autoencoder)")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    size = images.shape[1]

    encoder = None
    if uses_ae(method):
        encoder = load_autoencoder(autoencoder_path, device)
        if (encoder.config["n_classes"], encoder.config["size"]) != (n_classes, size):
            raise DataError(
                autoencoder_path,
                f"autoencoder was trained for {encoder.config['n_classes']} classes at "
                f"{encoder.config['size']}px, but registration uses {n_classes} classes at {size}px",
            )
    config = {
        "kind": REGISTRATION_KIND, "method": method, "n_classes": int(n_classes), "size": int(size),
        "batch_size": int(batch_size), "lr": float(lr), "lambda_r": float(lambda_r),
        "lambda_ce": float(lambda_ce), "lambda_ae": float(lambda_ae), "ce_epsilon": float(ce_epsilon),
        "seed": int(seed),
        "steps_per_epoch": int(steps_per_epoch), "log_every": int(log_every),
        "val_every": int(val_every or steps_per_epoch) if has_val else None,
        "data_sha256": array_fingerprint(images, labels),
        "val_sha256": array_fingerprint(val_images, val_labels) if has_val else None,
        "val_pairs": int(val_pairs) if has_val else None,
        "autoencoder_sha256": sha256_file(autoencoder_path) if encoder is not None else None,
    }

    seed_everything(seed)
    model = place(VectorCNN(), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    loss_fn = RegistrationLoss(method, lambda_r, lambda_ce, lambda_ae, encoder=encoder, ce_epsilon=ce_epsilon)
    train_loss = _PairLoss(model, loss_fn, image_tensor(images, device), _label_tensor(labels, device), n_classes)

    def train_step(step: int) -> dict[str, float]:
        total, terms = train_loss(*sample_pairs(rng, len(images), batch_size))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return _as_floats(total, terms)

    validate = None
    if has_val:
        val_loss = _PairLoss(model, loss_fn, image_tensor(val_images, device), _label_tensor(val_labels, device),
                             n_classes)
        validate = _validator(val_loss, *validation_pairs(len(val_images), val_pairs, seed), batch_size)

    summary = run_resumable_training(
        settings, model=model, optimizer=optimizer, config=config, generators={"pairs": rng},
        train_step=train_step, validate=validate, steps_per_epoch=steps_per_epoch,
        val_every=config["val_every"] or steps_per_epoch, log_columns=LOG_COLUMNS,
        kind=REGISTRATION_KIND, desc=method,
    )
    summary.update(device=str(device), n_parameters=count_parameters(model), config=config)
    return summary


def image_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)


def _label_tensor(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64)).to(device)
