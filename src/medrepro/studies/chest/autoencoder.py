"""Training of the denoising mask autoencoder (the anatomy prior, paper section 3.3).

Each step draws a batch of training masks, corrupts them with the border-swap
noise (:func:`medrepro.studies.chest.noise.corrupt_borders`) and trains the network to
reconstruct the clean one-hot masks under categorical cross-entropy, computed
from the logits with ``log_softmax`` (the same value as
:func:`medrepro.losses.onehot_cross_entropy` on softmax probabilities,
without needing clipping). Optimiser: Adam.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medrepro.errors import DataError
from medrepro.modules import freeze
from medrepro.modules import count_parameters
from medrepro.studies.chest.networks import DOWNSAMPLING, MaskAutoencoder
from medrepro.studies.chest.noise import corrupt_borders
from medrepro.warp import to_onehot
from medrepro.training import TrainingSettings, run_resumable_training
from medrepro.training.checkpoint import array_fingerprint, load_torch
from medrepro.device import place, resolve_device, seed_everything

AUTOENCODER_KIND = "MaskAutoencoder"
LOG_COLUMNS = ["step", "epoch", "split", "total", "ce"]
VAL_NOISE_STREAM = 1  # the validation corruption uses its own seeded stream


def check_label_stack(labels: np.ndarray, n_classes: int, source: str | Path | None, what: str = "labels") -> None:
    """Raise DataError unless ``labels`` is an (N, S, S) integer stack with S divisible by 8 and values < n_classes."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 3 or labels.shape[1] != labels.shape[2]:
        shape = getattr(labels, "shape", None)
        raise DataError(source, f"{what} must be an (N, S, S) array of square masks, got shape {shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(source, f"{what} must hold integer labels, got dtype {labels.dtype}")
    if len(labels) == 0:
        raise DataError(source, f"{what} is empty")
    if labels.shape[1] % DOWNSAMPLING:
        raise DataError(source, f"{what} size {labels.shape[1]} is not divisible by {DOWNSAMPLING}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        raise DataError(source, f"{what} hold values {low}..{high}, outside 0..{n_classes - 1} for {n_classes} classes")


def sample_indices(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    """A batch of distinct indices when the set is large enough, else drawn with replacement."""
    return rng.choice(n, size=batch_size, replace=batch_size > n)


def _onehot(labels: np.ndarray, n_classes: int, device: torch.device) -> torch.Tensor:
    return to_onehot(torch.from_numpy(labels.astype(np.int64)).to(device), n_classes)


def reconstruction_loss(
    model: MaskAutoencoder, noisy: np.ndarray, clean: np.ndarray, device: torch.device
) -> torch.Tensor:
    """Categorical cross-entropy of the reconstruction of ``noisy`` against ``clean`` masks."""
    logits = model(_onehot(noisy, model.n_classes, device))
    target = torch.from_numpy(clean.astype(np.int64)).to(device)
    return F.cross_entropy(logits, target)


def _chunked_mean_loss(model: MaskAutoencoder, noisy: np.ndarray, clean: np.ndarray, batch_size: int,
                       device: torch.device) -> float:
    total = 0.0
    for start in range(0, len(clean), batch_size):
        chunk = slice(start, start + batch_size)
        total += float(reconstruction_loss(model, noisy[chunk], clean[chunk], device)) * len(clean[chunk])
    return total / len(clean)


def _validator(model: MaskAutoencoder, val_labels: np.ndarray, noise_p: float, seed: int, batch_size: int,
               device: torch.device) -> Callable[[], dict[str, float]]:
    """The training objective on the validation masks under one fixed corruption."""
    val_noisy = corrupt_borders(val_labels, noise_p, np.random.default_rng([seed, VAL_NOISE_STREAM]))

    def validate() -> dict[str, float]:
        value = _chunked_mean_loss(model, val_noisy, val_labels, batch_size, device)
        return {"total": value, "ce": value}

    return validate


def train_autoencoder(
    labels: np.ndarray,
    n_classes: int,
    settings: TrainingSettings,
    *,
    noise_p: float = 0.1,
    code_dim: int = 32,
    val_labels: np.ndarray | None = None,
    source: str | Path | None = None,
) -> dict:
    """Train the denoising autoencoder and write it to ``settings.out_path``; returns a summary dict.

    ``labels`` is the (N, S, S) stack of training masks (``source`` names the
    file they came from, for error messages). ``settings.steps_per_epoch``
    defaults to one pass over the training masks and only labels the log;
    validation on ``val_labels`` (the same objective with a fixed corruption)
    runs once per epoch unless ``settings.val_every`` says otherwise. See
    :func:`medrepro.training.run_resumable_training` for the checkpoint,
    resume and log semantics.
    """
    batch_size, lr, seed = settings.batch_size, settings.lr, settings.seed
    log_every, val_every = settings.log_every, settings.val_every
    check_label_stack(labels, n_classes, source)
    if val_labels is not None:
        check_label_stack(val_labels, n_classes, source, "val_labels")
        if val_labels.shape[1:] != labels.shape[1:]:
            raise DataError(source, f"val_labels size {val_labels.shape[1:]} differs from labels {labels.shape[1:]}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    size = labels.shape[1]
    steps_per_epoch = settings.steps_per_epoch or -(-len(labels) // batch_size)
    config = {
        "kind": AUTOENCODER_KIND, "n_classes": int(n_classes), "size": int(size), "code_dim": int(code_dim),
        "batch_size": int(batch_size), "lr": float(lr), "noise_p": float(noise_p), "seed": int(seed),
        "steps_per_epoch": int(steps_per_epoch), "log_every": int(log_every),
        "val_every": int(val_every or steps_per_epoch) if val_labels is not None else None,
        "data_sha256": array_fingerprint(labels),
        "val_sha256": None if val_labels is None else array_fingerprint(val_labels),
    }

    seed_everything(seed)
    model = place(MaskAutoencoder(n_classes, size, code_dim), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)

    def train_step(step: int) -> dict[str, float]:
        clean = labels[sample_indices(rng, len(labels), batch_size)]
        loss = reconstruction_loss(model, corrupt_borders(clean, noise_p, rng), clean, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        return {"total": value, "ce": value}

    validate = None if val_labels is None else _validator(model, val_labels, noise_p, seed, batch_size, device)

    summary = run_resumable_training(
        settings, model=model, optimizer=optimizer, config=config, generators={"batches": rng},
        train_step=train_step, validate=validate, steps_per_epoch=steps_per_epoch,
        val_every=config["val_every"] or steps_per_epoch, log_columns=LOG_COLUMNS,
        kind=AUTOENCODER_KIND, desc="autoencoder",
    )
    summary.update(device=str(device), n_parameters=count_parameters(model), config=config)
    return summary


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> MaskAutoencoder:
    """Rebuild a trained autoencoder from its model file, frozen (eval mode, no gradients).

    The training configuration is attached as ``model.config``.
    """
    payload = load_torch(path, "autoencoder model file")
    if payload.get("kind") != AUTOENCODER_KIND or "config" not in payload or "state_dict" not in payload:
        raise DataError(path, f"not an autoencoder model file (kind {payload.get('kind')!r})")
    config = payload["config"]
    model = MaskAutoencoder(config["n_classes"], config["size"], config["code_dim"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit the recorded architecture: {exc}") from exc
    model.config = dict(config)
    return freeze(place(model, resolve_device(device)))
