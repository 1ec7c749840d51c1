"""Training and inference of the registration network (RegNet, CE-, AE-, AC-RegNet).

Training (paper section 3): each step draws ``batch_size`` (moving, fixed)
pairs of distinct training subjects with the run's seeded generator, predicts
the displacement with :class:`~medrepro.nn.networks.VectorCNN`, warps the
moving image (and, for the segmentation-aware methods, its one-hot mask) and
minimises :class:`~medrepro.nn.losses.RegistrationLoss` with Adam. Masks are
only needed for training; inference uses the two images alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from medrepro.errors import DataError
from medrepro.nn.losses import RegistrationLoss, check_method, uses_ae
from medrepro.nn.networks import VectorCNN, count_parameters
from medrepro.nn.warp import to_onehot, warp, warp_labels, warp_onehot
from medrepro.train.autoencoder import check_label_stack, load_autoencoder, resolve_device
from medrepro.hashing import sha256_file
from medrepro.train.checkpoint import array_fingerprint, load_torch, run_resumable_training
from medrepro.train.device import place, seed_everything

__all__ = [
    "train_registration", "load_registration_model", "load_autoencoder",
    "register_batch", "warp_label_maps", "warp_images", "sample_pairs",
]

REGISTRATION_KIND = "VectorCNN"
LOG_COLUMNS = ["step", "epoch", "split", "total", "ncc", "tv", "ce", "ae"]
VAL_PAIR_STREAM = 2  # the validation pairs use their own seeded stream


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
    *,
    method: str,
    n_classes: int,
    autoencoder_path: str | Path | None = None,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    lambda_r: float = 5e-5,
    lambda_ce: float = 1.0,
    lambda_ae: float = 0.1,
    ce_epsilon: float = 1e-7,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_path: str | Path,
    log_csv: str | Path,
    out_path: str | Path,
    checkpoint_every: int = 100,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    progress: bool = True,
    threads: int | None = None,
    log_every: int = 1,
    steps_per_epoch: int = 100,
    val_every: int | None = None,
    val_pairs: int = 64,
    callback: Callable[[int, Mapping[str, float]], None] | None = None,
    source: str | Path | None = None,
) -> dict:
    """Train VectorCNN with the loss of ``method`` and write it to ``out_path``; returns a summary dict.

    ``images`` (N, S, S) float32 and ``labels`` (N, S, S) integer are the
    training subjects (``source`` names their file for error messages);
    ``autoencoder_path`` is the trained autoencoder, required for AE-RegNet and
    AC-RegNet. ``steps_per_epoch`` (100 in the authors' scripts) only labels the
    log. With validation data, a ``val`` row with the loss terms over a fixed
    set of at most ``val_pairs`` validation pairs is logged every ``val_every``
    steps (default: once per epoch) and at the end. See
    :func:`medrepro.train.checkpoint.run_resumable_training` for the
    checkpoint, resume and log semantics.
    """
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
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
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
    train_loss = _PairLoss(model, loss_fn, _image_tensor(images, device), _label_tensor(labels, device), n_classes)

    def train_step(step: int) -> dict[str, float]:
        total, terms = train_loss(*sample_pairs(rng, len(images), batch_size))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return _as_floats(total, terms)

    validate = None
    if has_val:
        val_loss = _PairLoss(model, loss_fn, _image_tensor(val_images, device), _label_tensor(val_labels, device),
                             n_classes)
        validate = _validator(val_loss, *validation_pairs(len(val_images), val_pairs, seed), batch_size)

    def final_payload() -> dict:
        return {"kind": REGISTRATION_KIND, "config": {**config, "steps": int(steps)},
                "state_dict": model.state_dict()}

    summary = run_resumable_training(
        model=model, optimizer=optimizer, config=config, generators={"pairs": rng},
        train_step=train_step, validate=validate, steps=steps, steps_per_epoch=steps_per_epoch,
        log_every=log_every, val_every=config["val_every"] or steps_per_epoch, checkpoint_every=checkpoint_every,
        checkpoint_path=checkpoint_path, log_csv=log_csv, log_columns=LOG_COLUMNS, out_path=out_path,
        final_payload=final_payload, progress=progress, desc=method, callback=callback,
    )
    summary.update(device=str(device), n_parameters=count_parameters(model), config=config)
    return summary


def _image_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)


def _label_tensor(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64)).to(device)


def load_registration_model(path: str | Path, device: str | torch.device = "cpu") -> VectorCNN:
    """Rebuild a trained VectorCNN in eval mode; its training configuration is ``model.config``."""
    payload = load_torch(path, "registration model file")
    if payload.get("kind") != REGISTRATION_KIND or "config" not in payload or "state_dict" not in payload:
        raise DataError(path, f"not a registration model file (kind {payload.get('kind')!r})")
    model = VectorCNN()
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit VectorCNN: {exc}") from exc
    model.config = dict(payload["config"])
    return place(model, resolve_device(device)).eval()


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def register_batch(
    model: VectorCNN,
    moving: np.ndarray,
    fixed: np.ndarray,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Displacements (P, 2, S, S) float32, in pixels, for (P, S, S) moving/fixed image stacks.

    Runs the model in eval mode (no dropout) without gradients, ``batch_size``
    pairs at a time, on ``device`` (default: where the model's weights are).
    Channel 0 is the displacement along x (columns), channel 1 along y (rows).
    """
    if moving.shape != fixed.shape or moving.ndim != 3:
        raise ValueError(f"moving {moving.shape} and fixed {fixed.shape} must be equal (P, S, S) stacks")
    device = _model_device(model) if device is None else resolve_device(device)
    model = place(model, device).eval()
    out = np.empty((len(moving), 2, *moving.shape[1:]), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(moving), batch_size):
            chunk = slice(start, start + batch_size)
            displacement = model(_image_tensor(moving[chunk], device), _image_tensor(fixed[chunk], device))
            out[chunk] = displacement.cpu().numpy()
    return out


def warp_label_maps(labels: np.ndarray, displacement: np.ndarray, n_classes: int, batch_size: int = 64) -> np.ndarray:
    """Warp (P, S, S) label maps by (P, 2, S, S) displacements; returns uint8 (P, S, S).

    One-hot channels are warped bilinearly and each pixel takes the most
    probable class (ties go to the lower label), see ``medrepro.nn.warp``.
    """
    _check_displacement(labels, displacement)
    out = np.empty(labels.shape, dtype=np.uint8)
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            chunk = slice(start, start + batch_size)
            chunk_labels = torch.from_numpy(labels[chunk].astype(np.int64))
            chunk_field = torch.from_numpy(np.ascontiguousarray(displacement[chunk], dtype=np.float32))
            warped = warp_labels(chunk_labels, chunk_field, n_classes)
            out[chunk] = warped.numpy().astype(np.uint8)
    return out


def warp_images(images: np.ndarray, displacement: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Warp (P, S, S) images bilinearly by (P, 2, S, S) displacements (0 outside); float32 (P, S, S)."""
    _check_displacement(images, displacement)
    out = np.empty(images.shape, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            warped = warp(_image_tensor(images[chunk], torch.device("cpu")),
                          torch.from_numpy(np.ascontiguousarray(displacement[chunk], dtype=np.float32)))
            out[chunk] = warped[:, 0].numpy()
    return out


def _check_displacement(stack: np.ndarray, displacement: np.ndarray) -> None:
    if stack.ndim != 3 or displacement.shape != (len(stack), 2, *stack.shape[1:]):
        raise ValueError(f"displacement {displacement.shape} does not fit a (P, S, S) stack {stack.shape}")
