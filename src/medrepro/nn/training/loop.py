"""The resumable training loop every trainer shares, driven by :class:`TrainingSettings`.

:func:`run_resumable_training` owns the step loop: logging (train rows average
the terms since the last row, validation rows), checkpointing, resuming and
the final atomic writes. Its caller (trainers go through
:class:`medrepro.nn.training.supervised.SupervisedTrainer`) supplies the network,
the optimiser, the configuration (which a checkpoint must match to be
resumed), the named random generators and one function per training step.

Two uses of the validation loss are optional and off unless the settings
ask for them (:class:`ValidationWatch`): halving the learning rate when it
has reached a plateau, and early stopping. A run with both off writes the
same files as before they existed.
"""

from __future__ import annotations

import dataclasses
import math
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

    ``plateau_patience`` (validations) turns on the plateau schedule, which
    multiplies the learning rate by ``plateau_factor``; ``early_stopping_patience``
    (validations) turns on early stopping; both follow the validation loss
    (:class:`ValidationWatch`) and are off when None. ``lr_step_every`` turns
    on a step schedule instead (torch's ``StepLR``): the rate at step ``s``
    is ``lr * lr_step_factor ** ((s - 1) // lr_step_every)``, set from the
    step number alone, so a resumed run follows it without extra state.
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
    plateau_patience: int | None = None
    plateau_factor: float = 0.5
    early_stopping_patience: int | None = None
    lr_step_every: int | None = None
    lr_step_factor: float = 0.5
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
                "checkpoint_every": "checkpoint_every", "plateau_patience": "plateau_patience",
                "plateau_factor": "plateau_factor", "early_stopping_patience": "early_stopping_patience",
                "lr_step_every": "lr_step_every", "lr_step_factor": "lr_step_factor"}


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


MONITORED_TERM = "total"  # the validation term the schedule and early stopping follow: the loss


def learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimiser's first parameter group (the schedule scales every group alike)."""
    return float(optimizer.param_groups[0]["lr"])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _step_schedule(settings: TrainingSettings) -> Callable[[int], float] | None:
    """The step schedule's rate at a step, or None when the settings give none."""
    if settings.lr_step_every is None:
        return None
    if int(settings.lr_step_every) < 1 or not 0 < settings.lr_step_factor <= 1:
        raise ValueError(f"lr_step_every must be >= 1 and lr_step_factor in (0, 1], got "
                         f"{settings.lr_step_every} and {settings.lr_step_factor}")
    return lambda step: settings.lr * settings.lr_step_factor ** ((step - 1) // int(settings.lr_step_every))


def scale_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply the learning rate of every parameter group by ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor


def copy_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (weights and buffers) that later steps leave alone."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


class ValidationWatch:
    """The validation loss followed over a run: the learning rate halved on a plateau, and early stopping.

    A validation improves on the best so far when its loss is strictly lower
    (no threshold; NaN never improves). With ``plateau_patience``, the
    ``plateau_patience``-th validation in a row without improvement (counted
    from the best or from the last change of rate) multiplies the rate of
    every parameter group by ``plateau_factor``: torch's
    ``ReduceLROnPlateau(factor=plateau_factor, patience=plateau_patience - 1,
    threshold=0, eps=0)``. With ``stopping_patience``, the ``stopping_patience``-th
    validation in a row without improvement ends the run, and the weights of
    the best validation are kept (copied at each improvement) to be published
    in place of the last ones: the paper's "last model before any evidence of
    overfitting". Either may be None (off).

    The state (best loss and its step, both counters, the best weights) goes
    into every checkpoint, so a resumed run decides as an uninterrupted one;
    the rate itself lies in the optimiser's state.
    """

    def __init__(self, plateau_patience: int | None, plateau_factor: float, stopping_patience: int | None):
        self.plateau_patience, self.plateau_factor = plateau_patience, plateau_factor
        self.stopping_patience = stopping_patience
        self.best, self.best_step = math.inf, 0
        self.since_best = self.since_change = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_settings(cls, settings: TrainingSettings) -> "ValidationWatch | None":
        """The watch the settings ask for; None when the schedule and early stopping are both off."""
        if settings.plateau_patience is None and settings.early_stopping_patience is None:
            return None
        for name in ("plateau_patience", "early_stopping_patience"):
            value = getattr(settings, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 validation, got {value}")
        if not 0 < settings.plateau_factor < 1:
            raise ValueError(f"plateau_factor must lie between 0 and 1, got {settings.plateau_factor}")
        return cls(settings.plateau_patience, settings.plateau_factor, settings.early_stopping_patience)

    def config(self, val_every: int) -> dict:
        """The settings that shape the run, for its configuration: a checkpoint under others is not resumed."""
        config: dict = {"val_every": int(val_every)}
        if self.plateau_patience is not None:
            config.update(plateau_patience=int(self.plateau_patience), plateau_factor=float(self.plateau_factor))
        if self.stopping_patience is not None:
            config["early_stopping_patience"] = int(self.stopping_patience)
        return config

    def observe(self, step: int, loss: float, model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
        """Take the validation loss after ``step``; scale the rate on a plateau; True when the run must stop."""
        if loss < self.best:
            self.best, self.best_step = loss, step
            self.since_best = self.since_change = 0
            if self.stopping_patience is not None:
                self.best_weights = copy_weights(model)
            return False
        self.since_best += 1
        self.since_change += 1
        if self.plateau_patience is not None and self.since_change >= self.plateau_patience:
            scale_learning_rate(optimizer, self.plateau_factor)
            self.since_change = 0
        return self.stopping_patience is not None and self.since_best >= self.stopping_patience

    def published_weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The weights to publish: the best validation's under early stopping (the last ones when no
        validation loss was below infinity), else the last."""
        if self.stopping_patience is None or self.best_weights is None:
            return model.state_dict()
        return self.best_weights

    def state(self) -> dict:
        return {"best": float(self.best), "best_step": int(self.best_step), "since_best": int(self.since_best),
                "since_change": int(self.since_change), "best_weights": self.best_weights}

    def restore(self, state: Mapping, model: nn.Module) -> None:
        """The state of :meth:`state`, the best weights moved to the devices of the model's own."""
        self.best, self.best_step = float(state["best"]), int(state["best_step"])
        self.since_best, self.since_change = int(state["since_best"]), int(state["since_change"])
        weights = state["best_weights"]
        if weights is not None:
            current = model.state_dict()
            weights = {name: value.to(current[name].device) for name, value in weights.items()}
        self.best_weights = weights

    def summary(self, stopped_at: int | None, optimizer: torch.optim.Optimizer) -> dict:
        """What the run's summary reports of the watch."""
        return {"best_val": self.best, "best_step": self.best_step, "stopped_at_step": stopped_at,
                "final_lr": learning_rate(optimizer)}


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

    With the plateau schedule or early stopping on (:class:`ValidationWatch`;
    both need ``validate`` and its ``total``), their settings and
    ``val_every`` join the configuration (so the model file records them),
    their state joins the checkpoints, and the summary gives ``best_val``,
    ``best_step``, ``stopped_at_step`` (None when the run took all its steps)
    and ``final_lr``. The schedule adds an ``lr`` column to the log: the rate
    of each train row's last step. Early stopping ends the run at the
    validation that exhausts its patience, after a train row for the steps
    since the last one; the model file then holds the best validation's
    weights and ``early_stopping`` (``best_step``, ``best_val``,
    ``stopped_at_step``).
    """
    steps, log_every, checkpoint_every = settings.steps, settings.log_every, settings.checkpoint_every
    for name, value in (("steps", steps), ("steps_per_epoch", steps_per_epoch), ("log_every", log_every),
                        ("val_every", val_every), ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    watch = ValidationWatch.from_settings(settings)
    if watch is not None:
        if validate is None:
            raise ValueError("the plateau schedule and early stopping follow the validation loss: give a "
                             "validation set")
        config = {**config, **watch.config(val_every)}
        if watch.plateau_patience is not None and "lr" not in log_columns:
            log_columns = [*log_columns, "lr"]
    stepped = _step_schedule(settings)
    if stepped is not None:
        if watch is not None and watch.plateau_patience is not None:
            raise ValueError("give either the plateau schedule or the step schedule, not both")
        config = {**config, "lr_step_every": int(settings.lr_step_every),
                  "lr_step_factor": float(settings.lr_step_factor)}
        if "lr" not in log_columns:
            log_columns = [*log_columns, "lr"]
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
        if watch is not None:
            watch.restore(checkpoint["extra"]["validation_watch"], model)

    model.train()
    started = time.perf_counter()
    last_step, stopped_at = start_step, None
    bar = progress_bar(total=steps, initial=start_step, desc=desc, enabled=settings.progress)
    try:
        for step in range(start_step + 1, steps + 1):
            epoch = epoch_of(step, steps_per_epoch)
            if stepped is not None:
                set_learning_rate(optimizer, stepped(step))
            terms = train_step(step)
            step_lr = learning_rate(optimizer)  # before a plateau at this step's validation changes it
            window.add(terms)
            val_row, stop = None, False
            if validate is not None and (step % val_every == 0 or step == steps):
                val_row = {"step": step, "epoch": epoch, "split": "val", **_evaluate(model, validate)}
                if watch is not None:
                    stop = watch.observe(step, _monitored(val_row), model, optimizer)
            if step % log_every == 0 or step == steps or stop:
                row = {"step": step, "epoch": epoch, "split": "train", **window.pop()}
                if stepped is not None or (watch is not None and watch.plateau_patience is not None):
                    row["lr"] = step_lr
                history.append(row)
                bar.set_postfix(total=f"{row['total']:.4f}")
            if val_row is not None:
                history.append(val_row)
            if step % checkpoint_every == 0 and step < steps and not stop:
                extra = {"window_sums": window.sums, "window_count": window.count}
                if watch is not None:
                    extra["validation_watch"] = watch.state()
                save_checkpoint(
                    checkpoint_path, model=model, optimizer=optimizer, step=step, epoch=epoch, config=config,
                    history=history, generators=generators, extra=extra,
                )
                write_loss_log(history, in_progress_log_path(checkpoint_path), log_columns)
            bar.update(1)
            last_step = step
            if callback is not None:
                callback(step, terms)
            if stop:
                stopped_at = step
                break
    finally:
        bar.close()
    seconds = time.perf_counter() - started

    _publish_results(history, log_columns, log_csv, _model_file(kind, config, steps, model, watch, stopped_at),
                     out_path)
    _remove_run_files(checkpoint_path)
    steps_run = last_step - start_step
    summary = {
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
    if watch is not None:
        summary.update(watch.summary(stopped_at, optimizer))
    return summary


def _monitored(val_row: Mapping[str, float]) -> float:
    if MONITORED_TERM not in val_row:
        raise ValueError(f"the validation gives no {MONITORED_TERM!r} for the plateau schedule and early stopping "
                         f"to follow (it gives {', '.join(k for k in val_row if k not in LOSS_LOG_KEYS)})")
    return float(val_row[MONITORED_TERM])


def _model_file(kind: str, config: dict, steps: int, model: nn.Module, watch: ValidationWatch | None,
                stopped_at: int | None) -> dict:
    """The model file's content: kind, configuration with the steps asked for, weights; under early stopping
    the best validation's weights, and which step they come from."""
    if watch is None or watch.stopping_patience is None:
        return {"kind": kind, "config": {**config, "steps": int(steps)}, "state_dict": model.state_dict()}
    return {"kind": kind, "config": {**config, "steps": int(steps)}, "state_dict": watch.published_weights(model),
            "early_stopping": {"best_step": int(watch.best_step), "best_val": float(watch.best),
                               "stopped_at_step": stopped_at}}


def _evaluate(model: nn.Module, validate: Callable[[], Mapping[str, float]]) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            return {name: float(value) for name, value in validate().items()}
    finally:
        model.train()
