"""Training the tissue classifiers and the heatmap regression models on the kernel's training entry.

* :func:`train_classifier`: one classifier per magnification on training patches, each batch half positive
  (``positive_fraction``) to meet the imbalance (Table 1: about 1 positive patch in 100), augmented
  (:mod:`.patches`), cross-entropy; validation: the cross-entropy and accuracy on the balanced validation patches.
* :func:`train_heatmap`: the heatmap model on the training CC mammograms (downsampled) against their
  Gaussian-blurred annotations at 32 x 32, pixel-wise MSE; optionally with the x0.5 classifier's aggregated
  local results as a second input; validation: the MSE on the validation mammograms.

Checkpoints, resume and the final files are the kernel loop's.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from medrepro.errors import DataError
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import array_fingerprint, load_model
from medrepro.studies.mammo_tissue import networks, patches

CLASSIFIER_KIND = "tissue_classifier"
HEATMAP_KIND = "heatmap_regression"
CLASSIFIER_LOG = ["step", "epoch", "split", "total", "accuracy"]
HEATMAP_LOG = ["step", "epoch", "split", "total"]
STEPS_PER_EPOCH = 100


class PatchSet:
    """Samples of magnified base images: padded images on the device, sample positions and labels."""

    def __init__(self, images: np.ndarray, samples: Mapping[str, np.ndarray], factor: float, patch: int,
                 fill: float, device: torch.device):
        self.padded_np = patches.pad(images, patch, fill)
        self.padded = torch.from_numpy(self.padded_np)[:, None].to(device)
        self.index = np.asarray(samples["view_id"])
        self.rows = patches.magnified_position(samples["row"], factor)
        self.cols = patches.magnified_position(samples["col"], factor)
        self.labels = np.asarray(samples["label"], dtype=np.int64)
        self.patch, self.device = patch, device

    def __len__(self) -> int:
        return len(self.labels)

    def exact(self, chunk) -> tuple[torch.Tensor, torch.Tensor]:
        """The patches and labels of ``chunk`` (a slice or index array) as they are, unaugmented."""
        cut = patches.cut(self.padded_np, self.index[chunk], self.rows[chunk], self.cols[chunk], self.patch)
        return (torch.from_numpy(cut)[:, None].to(self.device),
                torch.as_tensor(self.labels[chunk], device=self.device))


def classifier_loss(model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
    images, labels = batch
    logits = model(images)
    return {"total": F.cross_entropy(logits, labels),
            "accuracy": (logits.argmax(dim=1) == labels).float().mean()}


def build_classifier(config: Mapping) -> networks.TissueClassifier:
    return networks.TissueClassifier(patch=int(config["patch"]), width=int(config["width"]),
                                     hidden=int(config["hidden"]), dropout=float(config["dropout"]))


def train_classifier(images: np.ndarray, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray],
                     settings: TrainingSettings, *, factor: float, patch: int, width: int, hidden: int,
                     dropout: float, augmentation: patches.Augmentation, positive_fraction: float, fill: float,
                     source=None) -> dict:
    """Train a tissue classifier on ``images`` magnified by 1/``factor``; the loop's summary."""
    positives = np.flatnonzero(np.asarray(train["label"]) == 1)
    negatives = np.flatnonzero(np.asarray(train["label"]) == 0)
    if not len(positives) or not len(negatives):
        raise DataError(source, f"training needs positive and negative patches; found {len(positives)} and "
                                f"{len(negatives)}: enlarge the dataset or lower the held-out sets")
    trainer = SupervisedTrainer(settings, steps_per_epoch=STEPS_PER_EPOCH)
    run, device = trainer.settings, trainer.device
    config = {"factor": float(factor), "patch": int(patch), "width": int(width),
              "hidden": int(hidden), "dropout": float(dropout), "batch_size": int(run.batch_size), "lr": float(run.lr),
              "seed": int(run.seed), "positive_fraction": float(positive_fraction),
              "augmentation": vars(augmentation), "data_sha256": array_fingerprint(
                  images, np.asarray(train["row"]), np.asarray(train["col"]), np.asarray(train["label"]))}
    trainer.build(lambda: build_classifier(config))
    train_set = PatchSet(images, train, factor, patch, fill, device)
    val_set = PatchSet(images, val, factor, patch, fill, device)
    n_positive = max(1, int(round(run.batch_size * positive_fraction)))

    def prepare_batch(rng: np.random.Generator):
        chosen = np.concatenate([rng.choice(positives, n_positive), rng.choice(negatives, run.batch_size - n_positive)])
        batch = patches.augmented(train_set.padded, train_set.index[chosen], train_set.rows[chosen],
                                  train_set.cols[chosen], patch, augmentation, rng)
        return batch, torch.as_tensor(train_set.labels[chosen], device=device)

    validation = ValidationSet(size=len(val_set), batch=val_set.exact, batch_size=256) if len(val_set) else None
    return trainer.run(prepare_batch=prepare_batch, loss=classifier_loss, config=config, kind=CLASSIFIER_KIND,
                       log_columns=CLASSIFIER_LOG, validation=validation, desc=f"classifier x1/{factor:g}")


def load_classifier(path, device: torch.device | str = "cpu") -> tuple[networks.TissueClassifier, dict]:
    """A trained classifier in evaluation mode, and its config."""
    return load_model(path, kinds=CLASSIFIER_KIND, build=build_classifier, what="tissue classifier", device=device)


@torch.no_grad()
def predict(model: torch.nn.Module, patch_set: PatchSet, batch_size: int = 512) -> np.ndarray:
    """P(findings present) of every sample of ``patch_set``, in batches."""
    out = []
    for start in range(0, len(patch_set), batch_size):
        images, _ = patch_set.exact(slice(start, start + batch_size))
        out.append(torch.softmax(model(images), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


# ---------------------------------------------------------------- heatmap regression
def heatmap_loss(model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
    images, local, targets = batch
    return {"total": F.mse_loss(model(images, local), targets)}


def build_heatmap(config: Mapping) -> networks.HeatmapNet:
    return networks.HeatmapNet(input_size=int(config["input_size"]), grid=int(config["grid"]),
                               width=int(config["width"]), local_results=bool(config["local_results"]))


def _as_batch(inputs, local, targets, index, device):
    pick = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a[index]))[:, None].to(device)  # noqa: E731
    return pick(inputs), pick(local), pick(targets)


def train_heatmap(inputs: np.ndarray, targets: np.ndarray, local: np.ndarray | None, val_inputs: np.ndarray,
                  val_targets: np.ndarray, val_local: np.ndarray | None, settings: TrainingSettings, *,
                  width: int, flip: bool, source=None) -> dict:
    """Train the heatmap model (with local results when ``local`` is given); the loop's summary."""
    if not len(inputs):
        raise DataError(source, "no training mammogram for the heatmap model")
    trainer = SupervisedTrainer(settings, steps_per_epoch=STEPS_PER_EPOCH)
    run, device = trainer.settings, trainer.device
    config = {"input_size": int(inputs.shape[-1]), "grid": int(targets.shape[-1]),
              "width": int(width), "local_results": local is not None, "flip": bool(flip),
              "batch_size": int(run.batch_size), "lr": float(run.lr), "seed": int(run.seed),
              "data_sha256": array_fingerprint(inputs, targets, *(() if local is None else (local,)))}
    trainer.build(lambda: build_heatmap(config))
    batch_size = min(int(run.batch_size), len(inputs))

    def prepare_batch(rng: np.random.Generator):
        index = rng.choice(len(inputs), batch_size, replace=False)
        batch = _as_batch(inputs, local, targets, index, device)
        if flip:  # up-down mirror of image, local results and target alike (the nipple stays on the right)
            mirrored = torch.as_tensor(rng.uniform(size=batch_size) < 0.5, device=device)[:, None, None, None]
            batch = tuple(None if t is None else torch.where(mirrored, t.flip(-2), t) for t in batch)
        return batch

    validation = None
    if len(val_inputs):
        validation = ValidationSet(size=len(val_inputs), batch_size=32, batch=lambda chunk: _as_batch(
            val_inputs, val_local, val_targets, np.arange(chunk.start, chunk.stop), device))
    return trainer.run(prepare_batch=prepare_batch, loss=heatmap_loss, config=config, kind=HEATMAP_KIND,
                       log_columns=HEATMAP_LOG, validation=validation,
                       desc="heatmap" + (" + local results" if local is not None else ""))


def load_heatmap(path, device: torch.device | str = "cpu") -> tuple[networks.HeatmapNet, dict]:
    return load_model(path, kinds=HEATMAP_KIND, build=build_heatmap, what="heatmap model", device=device)


@torch.no_grad()
def predict_heatmaps(model: networks.HeatmapNet, inputs: np.ndarray, local: np.ndarray | None,
                     device: torch.device | str = "cpu", batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(inputs), batch_size):
        index = np.arange(start, min(start + batch_size, len(inputs)))
        images, local_batch, _ = _as_batch(inputs, local, None, index, torch.device(device))
        out.append(model(images, local_batch)[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + inputs.shape[1:], dtype=np.float32)
