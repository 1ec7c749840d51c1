"""Training of the denoising mask autoencoder (the anatomy prior, paper section 3.3).

Each step draws a batch of training masks, corrupts them with the border-swap
noise (:func:`medrepro.studies.chest.noise.corrupt_borders`) and trains the network to
reconstruct the clean one-hot masks under categorical cross-entropy, computed
from the logits with ``log_softmax`` (the same value as
:func:`medrepro.nn.losses.onehot_cross_entropy` on softmax probabilities,
without needing clipping). Optimiser: Adam.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medrepro.errors import DataError
from medrepro.nn.modules import freeze
from medrepro.studies.chest.networks import DOWNSAMPLING, MaskAutoencoder
from medrepro.studies.chest.noise import corrupt_borders
from medrepro.spatial.warp import to_onehot
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import array_fingerprint, load_model

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


def _validation(labels: np.ndarray, noise_p: float, seed: int, batch_size: int) -> ValidationSet:
    """The validation masks under one fixed corruption, as (noisy, clean) batches."""
    noisy = corrupt_borders(labels, noise_p, np.random.default_rng([seed, VAL_NOISE_STREAM]))
    return ValidationSet(len(labels), lambda chunk: (noisy[chunk], labels[chunk]), batch_size)


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
    :func:`medrepro.nn.training.run_resumable_training` for the checkpoint,
    resume and log semantics.
    """
    check_label_stack(labels, n_classes, source)
    if val_labels is not None:
        check_label_stack(val_labels, n_classes, source, "val_labels")
        if val_labels.shape[1:] != labels.shape[1:]:
            raise DataError(source, f"val_labels size {val_labels.shape[1:]} differs from labels {labels.shape[1:]}")
    trainer = SupervisedTrainer(settings, steps_per_epoch=-(-len(labels) // settings.batch_size))
    run, device, size = trainer.settings, trainer.device, labels.shape[1]
    config = {
        "kind": AUTOENCODER_KIND, "n_classes": int(n_classes), "size": int(size), "code_dim": int(code_dim),
        "batch_size": int(run.batch_size), "lr": float(run.lr), "noise_p": float(noise_p), "seed": int(run.seed),
        "steps_per_epoch": int(run.steps_per_epoch), "log_every": int(run.log_every),
        "val_every": int(run.val_every) if val_labels is not None else None,
        "data_sha256": array_fingerprint(labels),
        "val_sha256": None if val_labels is None else array_fingerprint(val_labels),
    }
    trainer.build(lambda: MaskAutoencoder(n_classes, size, code_dim))

    def prepare_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        clean = labels[sample_indices(rng, len(labels), run.batch_size)]
        return corrupt_borders(clean, noise_p, rng), clean

    def loss(model: MaskAutoencoder, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, torch.Tensor]:
        value = reconstruction_loss(model, *batch, device)
        return {"total": value, "ce": value}

    validation = None if val_labels is None else _validation(val_labels, noise_p, run.seed, run.batch_size)
    return trainer.run(prepare_batch=prepare_batch, loss=loss, validation=validation, config=config,
                       kind=AUTOENCODER_KIND, log_columns=LOG_COLUMNS, desc="autoencoder")


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> MaskAutoencoder:
    """Rebuild a trained autoencoder from its model file, frozen (eval mode, no gradients).

    The training configuration is attached as ``model.config``.
    """
    model, config = load_model(
        path, kinds=AUTOENCODER_KIND, what="autoencoder model file", remedy=None, device=device,
        build=lambda config: MaskAutoencoder(config["n_classes"], config["size"], config["code_dim"]))
    model.config = dict(config)
    return freeze(model)
