"""The resumable training loop every trainer shares, driven by :class:`TrainingSettings`.

:func:`run_resumable_training` owns the step loop: logging (train rows average
the terms since the last row, validation rows), checkpointing, resuming and
the final atomic writes. Its caller (trainers go through
:class:`medrepro.nn.training.supervised.SupervisedTrainer`) supplies the network,
the optimiser, the configuration (which a checkpoint must match to be
resumed), the named random generators and one function per training step.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from medrepro.data.atomic import atomic_path, remove_temporaries
from medrepro.errors import ConfigError, DataError
from medrepro.data.io.csv_files import read_csv_file
from medrepro.pipeline.progress import progress_bar
from medrepro.report.tables import require_columns
from medrepro.nn.training.checkpoint import (
    config_differences, load_latest_checkpoint, previous_checkpoint_path, restore_checkpoint, save_checkpoint,
    torch_bytes,
)


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """What every training run needs, whatever the network: schedule, optimiser, seed, device and files.

    ``checkpoint_path`` holds the resumable state while the run goes on (with
    the one before it, ``<checkpoint>.prev``, and the loss log so far,
    ``<checkpoint>.losses.csv``); ``log_csv`` and ``out_path`` receive the
    final loss log and model file when the run has finished, and not before.
    ``steps_per_epoch`` and ``val_every`` only label and pace the log; None
    leaves them to the trainer (one epoch by default). ``callback(step,
    terms)`` runs after each step's bookkeeping; raising from it aborts the
    run as a kill would (tests use it).
    """

    steps: int
    checkpoint_path: Path
    log_csv: Path
    out_path: Path
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str | torch.device = "auto"
    checkpoint_every: int = 100
    log_every: int = 1
    steps_per_epoch: int | None = None
    val_every: int | None = None
    threads: int | None = None
    progress: bool = True
    callback: Callable[[int, Mapping[str, float]], None] | None = None

    def __post_init__(self):
        for name in ("checkpoint_path", "log_csv", "out_path"):
            object.__setattr__(self, name, Path(getattr(self, name)))

    def replace(self, **changes) -> "TrainingSettings":
        return dataclasses.replace(self, **changes)

    def with_default_epoch(self, steps_per_epoch: int) -> "TrainingSettings":
        """These settings with the trainer's ``steps_per_epoch`` where they give none, and ``val_every`` once per
        epoch where they give none."""
        steps_per_epoch = self.steps_per_epoch or steps_per_epoch
        return self.replace(steps_per_epoch=steps_per_epoch, val_every=self.val_every or steps_per_epoch)

    @classmethod
    def from_section(cls, section: Mapping, *, method_keys: Iterable[str] = (), **run) -> "TrainingSettings":
        """Settings from a config section of training: its keys in :data:`SECTION_KEYS`, plus ``run`` (files,
        seed, device, threads, ...).

        ``method_keys`` are the section's keys that the trainer reads itself
        (a loss weight, a noise level). Any other key is a ConfigError naming
        it and the keys allowed, so that no setting in the section is ignored.
        """
        method_keys = list(method_keys)
        unknown = [key for key in section if key not in SECTION_KEYS and key not in method_keys]
        if unknown:
            raise ConfigError(f"unknown training setting {', '.join(map(str, unknown))}; this training section "
                              f"takes {', '.join([*SECTION_KEYS, *method_keys])}")
        if "steps" not in section:
            raise ConfigError("the training section has no steps")
        return cls(**{SECTION_KEYS[key]: value for key, value in section.items() if key in SECTION_KEYS}, **run)


# The schedule keys of a config section and the setting each fills (the config spells out learning_rate).
SECTION_KEYS = {"steps": "steps", "batch_size": "batch_size", "learning_rate": "lr",
                "steps_per_epoch": "steps_per_epoch", "val_every": "val_every", "log_every": "log_every",
                "checkpoint_every": "checkpoint_every"}


def write_loss_log(rows: Iterable[dict], path: str | Path, columns: list[str]) -> None:
    """Rewrite the whole loss log CSV atomically (missing values are left empty)."""
    with atomic_path(path) as tmp:
        _loss_table(rows, columns).to_csv(tmp, index=False)


def _loss_table(rows: Iterable[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=columns)


LOSS_LOG_KEYS = ("step", "epoch", "split")  # every loss log's first columns; the loss terms follow


def read_loss_log(path: str | Path) -> pd.DataFrame:
    """A log written by :func:`write_loss_log`: integer step and epoch, the split, every term as float.

    An empty cell (a term a row does not log) reads as NaN; a missing,
    unreadable or malformed file is a ``DataError`` naming it.
    """
    frame = read_csv_file(path, "loss log not found; run the training step first", dtype={"split": str})
    require_columns(frame, LOSS_LOG_KEYS, path)
    try:
        terms = {column: pd.to_numeric(frame[column]).astype(float) for column in frame.columns
                 if column not in LOSS_LOG_KEYS}
        return frame.astype({"step": int, "epoch": int}).assign(**terms)
    except (ValueError, TypeError) as error:
        raise DataError(path, f"a step, epoch or loss term is not a number ({error})") from error


def in_progress_log_path(checkpoint_path: str | Path) -> Path:
    """The loss log of a run still going on, beside its checkpoint (never at the final log's path)."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.name + ".losses.csv")


def _publish_results(history: list[dict], log_columns: list[str], log_csv: Path, model: dict,
                     out_path: Path) -> None:
    """Write the final loss log and model file: both completely, then renamed into place, log first."""
    model_bytes = torch_bytes(model)
    with atomic_path(out_path) as model_tmp, atomic_path(log_csv) as log_tmp:
        model_tmp.write_bytes(model_bytes)
        _loss_table(history, log_columns).to_csv(log_tmp, index=False)


def _remove_run_files(checkpoint_path: Path) -> None:
    """The checkpoints and the in-progress log, once the final files are in place, with what a killed run left
    half-written beside them."""
    for path in [checkpoint_path, previous_checkpoint_path(checkpoint_path), in_progress_log_path(checkpoint_path)]:
        path.unlink(missing_ok=True)
        remove_temporaries(path)


def epoch_of(step: int, steps_per_epoch: int) -> int:
    """1-based epoch that the 1-based ``step`` belongs to."""
    return (step - 1) // steps_per_epoch + 1


def _resume_state(checkpoint_path: Path, config: dict, steps: int) -> dict | None:
    """The checkpoint to resume from, or None (absent, other configuration, or past ``steps``).

    An unreadable latest checkpoint falls back to the previous one (one
    warning); when none can be read, a DataError names the files to delete.
    """
    latest = load_latest_checkpoint(checkpoint_path)
    if latest is None:
        return None
    checkpoint, checkpoint_path = latest
    differences = config_differences(checkpoint["config"], config)
    if differences:
        warnings.warn(
            f"{checkpoint_path}: ignoring checkpoint written for another configuration "
            f"({'; '.join(differences)}); training starts from scratch",
            stacklevel=3,
        )
        return None
    if checkpoint["step"] > steps:
        warnings.warn(
            f"{checkpoint_path}: ignoring checkpoint at step {checkpoint['step']}, beyond the "
            f"{steps} steps requested; training starts from scratch",
            stacklevel=3,
        )
        return None
    return checkpoint


class _WindowMean:
    """Running means of the logged terms since the last log row."""

    def __init__(self, sums: dict | None = None, count: int = 0):
        self.sums = dict(sums or {})
        self.count = count

    def add(self, terms: Mapping[str, float]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {name: total / self.count for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


def run_resumable_training(
    settings: TrainingSettings,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict,
    generators: Mapping[str, np.random.Generator],
    train_step: Callable[[int], Mapping[str, float]],
    validate: Callable[[], Mapping[str, float]] | None,
    steps_per_epoch: int,
    val_every: int,
    log_columns: list[str],
    kind: str,
    desc: str = "train",
) -> dict:
    """Run ``train_step`` for steps 1..``settings.steps`` with logging, checkpoints and resume.

    ``steps_per_epoch`` and ``val_every`` are the trainer's resolved values
    (``settings`` may leave them to the trainer's default).

    On start an existing checkpoint whose ``config`` equals ``config`` is
    resumed (the previous one when the latest cannot be read); one for another
    configuration is ignored with a warning. Every ``checkpoint_every`` steps
    the full state is written atomically (the one before kept as
    ``<checkpoint>.prev``) and the loss log so far beside it
    (``<checkpoint>.losses.csv``). At the end the final log and model file
    (``kind``, the configuration with ``steps``, and the weights) are written
    completely, renamed into place (log, then model) and only then are the
    checkpoints and the in-progress log removed: an interruption at any
    moment loses at most ``checkpoint_every`` steps, and nothing at
    ``log_csv`` or ``out_path`` exists before the run has finished.
    Train rows average the terms over the ``log_every`` steps they cover;
    ``validate`` (run in eval mode without gradients) adds a ``val`` row every
    ``val_every`` steps and at the last step. ``callback(step, terms)`` runs
    after each step's bookkeeping; raising from it aborts the run as a kill would.
    """
    steps, log_every, checkpoint_every = settings.steps, settings.log_every, settings.checkpoint_every
    for name, value in (("steps", steps), ("steps_per_epoch", steps_per_epoch), ("log_every", log_every),
                        ("val_every", val_every), ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    checkpoint_path, log_csv, out_path = settings.checkpoint_path, settings.log_csv, settings.out_path
    callback = settings.callback
    history: list[dict] = []
    window = _WindowMean()
    start_step = 0
    checkpoint = _resume_state(checkpoint_path, config, steps)
    if checkpoint is not None:
        restore_checkpoint(checkpoint, model=model, optimizer=optimizer, generators=generators)
        start_step = checkpoint["step"]
        history = list(checkpoint["history"])
        window = _WindowMean(checkpoint["extra"].get("window_sums"), checkpoint["extra"].get("window_count", 0))

    model.train()
    started = time.perf_counter()
    bar = progress_bar(total=steps, initial=start_step, desc=desc, enabled=settings.progress)
    try:
        for step in range(start_step + 1, steps + 1):
            epoch = epoch_of(step, steps_per_epoch)
            terms = train_step(step)
            window.add(terms)
            if step % log_every == 0 or step == steps:
                row = {"step": step, "epoch": epoch, "split": "train", **window.pop()}
                history.append(row)
                bar.set_postfix(total=f"{row['total']:.4f}")
            if validate is not None and (step % val_every == 0 or step == steps):
                history.append({"step": step, "epoch": epoch, "split": "val", **_evaluate(model, validate)})
            if step % checkpoint_every == 0 and step < steps:
                save_checkpoint(
                    checkpoint_path, model=model, optimizer=optimizer, step=step, epoch=epoch, config=config,
                    history=history, generators=generators,
                    extra={"window_sums": window.sums, "window_count": window.count},
                )
                write_loss_log(history, in_progress_log_path(checkpoint_path), log_columns)
            bar.update(1)
            if callback is not None:
                callback(step, terms)
    finally:
        bar.close()
    seconds = time.perf_counter() - started

    _publish_results(history, log_columns, log_csv,
                     {"kind": kind, "config": {**config, "steps": int(steps)}, "state_dict": model.state_dict()},
                     out_path)
    _remove_run_files(checkpoint_path)
    steps_run = steps - start_step
    return {
        "steps": steps,
        "resumed_from_step": start_step,
        "steps_run": steps_run,
        "seconds": seconds,
        "seconds_per_step": seconds / steps_run if steps_run else float("nan"),
        "final_train": next((r for r in reversed(history) if r["split"] == "train"), None),
        "final_val": next((r for r in reversed(history) if r["split"] == "val"), None),
        "out_path": str(out_path),
        "log_csv": str(log_csv),
        "history": history,
    }


def _evaluate(model: nn.Module, validate: Callable[[], Mapping[str, float]]) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            return {name: float(value) for name, value in validate().items()}
    finally:
        model.train()
