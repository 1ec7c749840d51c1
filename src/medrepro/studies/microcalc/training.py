"""Training the Detector and the Segmentator from the patch database on the kernel's training entry (Sec. 2.3-2.4).

:func:`train_network` trains one network, ``label`` "detector" or "segmentator" (which patches count positive:
:data:`.patchdb.LABELS`), in the *same* or *valid* variant (:mod:`.networks`), as the paper does:

* minibatches drawn on the fly from the training candidates (:class:`.patchdb.BalancedSampler`): half positive,
  half negative, each half spread over its classes, every patch turned by a multiple of 90 degrees and mirrored at
  random; the run's seeded generator draws them, so a resumed run draws the batches an uninterrupted one would;
* softmax and the categorical cross-entropy of the two logits (``torch.nn.functional.cross_entropy``), Adam at
  1e-3 with batches of 256 (the settings' ``lr`` and ``batch_size``);
* validation on the stored validation set: the mean cross-entropy (``total``), the accuracy, and the accuracy on
  each class C1-C4 (``accuracy_C1`` ... ``accuracy_C4``: one minus the paper's per-class error rates of Table 1,
  empty where the set has no patch of a class); training rows give ``total`` and ``accuracy``;
* the paper's "halved the learning rate when the loss plateaued" and early stopping "before any evidence of
  overfitting" are the kernel's plateau schedule and early stopping on the validation loss, set by the settings
  (:func:`with_paper_schedule` fills in the study's patience where they give none). Under early stopping the model
  file holds the weights of the best validation.

The configuration records what defines the run (label, variant, patch size, widths, hidden units, dropout, batch
size, learning rate, seed, class spread, augmentation, a fingerprint of the database; the kernel adds the schedule
and early stopping when on), so a checkpoint of another run is not resumed. The summary is the kernel's with the
sampler's share of a training step (:class:`StepClock`).

:func:`load_network` rebuilds a trained network from its file, :func:`predict` gives P(positive) of patches.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medrepro.errors import ConfigError, DataError
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import load_model
from medrepro.studies.microcalc import networks
from medrepro.studies.microcalc.patchdb import Batch, BalancedSampler, PatchDatabase, PatchSet, check_label
from medrepro.studies.microcalc.patches import CLASSES

KINDS = {"detector": "microcalc_detector", "segmentator": "microcalc_segmentator"}
NETWORKS = {"detector": networks.Detector, "segmentator": networks.Segmentator}
CLASS_ACCURACIES = [f"accuracy_C{c}" for c in CLASSES]
LOG_COLUMNS = ["step", "epoch", "split", "total", "accuracy", *CLASS_ACCURACIES]
STEPS_PER_EPOCH = 100  # batches between validations unless the settings say otherwise: batches are drawn, not read
VALIDATION_BATCH = 256
PREDICTION_BATCH = 512
# The paper halved the rate "when the loss plateaued" and stopped early without saying after how long: five
# validations without improvement halve the rate, fifteen stop the run, so two halvings get their chance first.
PLATEAU_PATIENCE, EARLY_STOPPING_PATIENCE = 5, 15


def with_paper_schedule(settings: TrainingSettings) -> TrainingSettings:
    """``settings`` with the study's plateau and early-stopping patience where they give none."""
    return settings.replace(
        plateau_patience=settings.plateau_patience or PLATEAU_PATIENCE,
        early_stopping_patience=settings.early_stopping_patience or EARLY_STOPPING_PATIENCE)


def database_fingerprint(database: PatchDatabase) -> str:
    """SHA-256 over what the database's patches follow from: its meta table (extraction settings, counts) and each
    image's name, split and file digests. Cheap for a database of any size, unlike hashing its file."""
    images = database.images()[["name", "split", "sha256", "mask_sha256"]]
    content = {"meta": database.meta, "images": images.astype(object).where(images.notna(), None).values.tolist()}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def class_spread(spread: Mapping[int | str, float] | None) -> dict[str, float]:
    """The sampler's class weights as the configuration records them ("C1" ... "C4"); equal by default."""
    if spread is None:
        return {f"C{c}": 1.0 for c in CLASSES}
    return {f"C{int(str(c).upper().lstrip('C'))}": float(w) for c, w in sorted(spread.items(), key=str)}


def _checked_architecture(label: str, variant: str, patch: int, source: Path) -> None:
    check_label(label)
    if variant not in networks.VARIANTS:
        raise ConfigError(f"convolution variant {variant!r} is neither 'same' nor 'valid'")
    try:
        networks.check_patch(patch, variant)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error


def build_network(config: Mapping) -> networks.MicrocalcNet:
    """The Detector or the Segmentator a configuration describes, freshly initialised."""
    return NETWORKS[config["label"]](int(config["patch"]), config["variant"], widths=tuple(config["widths"]),
                                     hidden=int(config["hidden"]), dropout=float(config["dropout"]))


def classification_loss(model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
    """Cross-entropy and accuracy of a batch (pixels, labels, class weights); with class weights (validation),
    the accuracy of each class too.

    The class weights are (4, B): ``n / n_c`` where an item belongs to class ``c`` of a set of ``n`` items with
    ``n_c`` in that class, 0 elsewhere (NaN for a class the set lacks), so that the kernel's validation means (batch
    values weighted by batch size) are the exact per-class accuracies over the set.
    """
    pixels, labels, class_weights = batch
    logits = model(pixels)
    correct = logits.argmax(dim=1) == labels
    terms = {"total": F.cross_entropy(logits, labels), "accuracy": correct.float().mean()}
    if class_weights is not None:
        for name, weights in zip(CLASS_ACCURACIES, class_weights):
            terms[name] = (correct.double() * weights).mean()
    return terms


def class_weights(classes: np.ndarray) -> np.ndarray:
    """(4, n) float64 weights of :func:`classification_loss` for a set of items of ``classes``."""
    classes = np.asarray(classes)
    weights = np.zeros((len(CLASSES), len(classes)))
    for row, c in enumerate(CLASSES):
        members = classes == c
        weights[row] = np.where(members, len(classes) / members.sum(), 0.0) if members.any() else np.nan
    return weights


def validation_set(patch_set: PatchSet, label: str, device: torch.device,
                   batch_size: int = VALIDATION_BATCH) -> ValidationSet:
    """The stored validation patches, labelled for ``label``, held on ``device`` and scored ``batch_size`` at a
    time, with the class weights of the per-class accuracies."""
    pixels = torch.from_numpy(patch_set.pixels).to(device)
    labels = torch.from_numpy(patch_set.labels(label).astype(np.int64)).to(device)
    weights = torch.from_numpy(class_weights(patch_set.classes)).to(device)
    return ValidationSet(size=len(patch_set), batch_size=batch_size,
                         batch=lambda chunk: (pixels[chunk], labels[chunk], weights[:, chunk]))


def training_batch(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, None]:
    """A sampler's minibatch as the loss takes it: pixels and labels on ``device``, no class weights."""
    return torch.as_tensor(batch.pixels).to(device), torch.from_numpy(batch.labels).to(device), None


def synchronise(device: torch.device) -> None:
    """Wait for a CUDA device's queued work, so that a clock read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """The seconds each training step spends in the sampler (drawing its batch and gathering its pixels) and in
    all, from the sampler's call to the end of the optimiser's step (on a GPU, once its queued work is done).

    :meth:`sample` draws a batch; :meth:`step_done` is the optimiser's step post-hook. The first ``warm_up`` steps
    (the first allocations, caches still cold) are left out of :meth:`report`.
    """

    def __init__(self, device: torch.device, warm_up: int = 1):
        self.device, self.warm_up = device, warm_up
        self.sampling: list[float] = []
        self.steps: list[float] = []
        self._started: float | None = None
        self._sampled = 0.0

    def sample(self, sampler: BalancedSampler, rng: np.random.Generator) -> Batch:
        started = time.perf_counter()
        batch = sampler(rng)
        synchronise(self.device)
        self._started, self._sampled = started, time.perf_counter() - started
        return batch

    def step_done(self, *_) -> None:
        if self._started is None:
            return
        synchronise(self.device)
        self.steps.append(time.perf_counter() - self._started)
        self.sampling.append(self._sampled)
        self._started = None

    def report(self) -> dict[str, float]:
        """The sampler's share of a step's time, and the mean seconds of both, over the steps timed."""
        sampling, steps = self.sampling[self.warm_up:], self.steps[self.warm_up:]
        if not steps:
            return {"sampling_share": float("nan"), "sampling_seconds_per_step": float("nan"),
                    "timed_step_seconds": float("nan"), "timed_steps": 0}
        return {"sampling_share": sum(sampling) / sum(steps), "sampling_seconds_per_step": sum(sampling) / len(steps),
                "timed_step_seconds": sum(steps) / len(steps), "timed_steps": len(steps)}


def train_network(database_path: str | Path, label: str, variant: str, settings: TrainingSettings, *,
                  widths: Sequence[int] = networks.DEFAULT_WIDTHS, hidden: int = networks.HIDDEN,
                  dropout: float = networks.DROPOUT, spread: Mapping[int | str, float] | None = None,
                  augment: bool = True, in_memory: bool | None = None) -> dict:
    """Train the Detector or the Segmentator (``label``) of ``variant`` on the patch database; the kernel's summary
    with the sampler's share of a step (:meth:`StepClock.report`).

    ``spread`` weights the classes within each half of a batch (equal by default); ``in_memory`` is the sampler's
    (None: the training patches are held in memory when they fit its limit). On a CUDA device the sampler holds the
    training patches there. The schedule, early stopping and files are the settings'.
    """
    database_path = Path(database_path)
    with PatchDatabase(database_path) as database:
        _checked_architecture(label, variant, database.patch_size, database_path)
        held_out = database.patch_set("val")
        if not len(held_out):
            raise DataError(database_path, "the patch database has no validation patches: the schedule and early "
                                           "stopping follow the validation loss; rerun the patch extraction")
        trainer = SupervisedTrainer(settings, steps_per_epoch=STEPS_PER_EPOCH)
        run, device = trainer.settings, trainer.device
        config = {"label": label, "variant": variant, "patch": int(database.patch_size),
                  "widths": [int(w) for w in widths], "hidden": int(hidden), "dropout": float(dropout),
                  "batch_size": int(run.batch_size), "lr": float(run.lr), "seed": int(run.seed),
                  "spread": class_spread(spread), "augment": bool(augment),
                  "database_sha256": database_fingerprint(database)}
        trainer.build(lambda: build_network(config))
        sampler = BalancedSampler(database, label, batch_size=run.batch_size,
                                  spread={int(k[1:]): w for k, w in config["spread"].items()}, augment=augment,
                                  in_memory=in_memory, device=device if device.type == "cuda" else None)
        clock = StepClock(device)
        hook = trainer.optimizer.register_step_post_hook(clock.step_done)
        try:
            summary = trainer.run(
                prepare_batch=lambda rng: training_batch(clock.sample(sampler, rng), device),
                loss=classification_loss, config=config, kind=KINDS[label], log_columns=LOG_COLUMNS,
                validation=validation_set(held_out, label, device), desc=f"{label} ({variant})")
        finally:
            hook.remove()
    summary.update(clock.report())
    return summary


def load_network(path: str | Path, label: str | None = None,
                 device: torch.device | str = "cpu") -> tuple[networks.MicrocalcNet, dict]:
    """A trained Detector or Segmentator in evaluation mode, and its configuration; a DataError for a file that
    is no such network (or not the ``label`` asked for)."""
    kinds = KINDS.values() if label is None else [KINDS[check_label(label)]]
    return load_model(path, kinds=kinds, build=build_network, what="microcalcification network",
                      wanted=None if label is None else f"a {label}", device=device)


@torch.no_grad()
def in_batches(model: networks.MicrocalcNet, patches: np.ndarray | torch.Tensor, forward, batch_size: int
               ) -> list[torch.Tensor]:
    """``forward(model, batch)`` over the patches, (n, N, N) or (n, 1, N, N), in batches on the model's device, each
    result on the CPU; the model must be in eval mode (a patch's output then does not depend on its batch)."""
    if model.training:
        raise ValueError("the model must be in eval mode for prediction (call model.eval())")
    patches = torch.as_tensor(patches, dtype=torch.float32)
    if patches.dim() == 3:
        patches = patches[:, None]
    device = next(model.parameters()).device
    return [forward(model, patches[start:start + batch_size].to(device)).cpu()
            for start in range(0, len(patches), batch_size)]


def predict(model: networks.MicrocalcNet, patches: np.ndarray | torch.Tensor,
            batch_size: int = PREDICTION_BATCH) -> np.ndarray:
    """P(positive) of each patch (:func:`in_batches`)."""
    out = in_batches(model, patches, lambda m, x: networks.positive_probability(m(x)), batch_size)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
