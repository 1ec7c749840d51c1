"""Atomic training checkpoints, model files, loss logs and the resumable loop.

A checkpoint holds everything needed to continue a run so that the resumed
run is bit-identical (on CPU) to one that was never interrupted: model and
optimizer state, step and epoch, the loss history, the run configuration, and
every random state in play (Python, NumPy's global generator, torch CPU and
CUDA, and the run's own named NumPy generators). Files are written through
``medrepro.atomic.atomic_path``, so a killed job leaves either the previous
checkpoint or the new one, never a partial file. Only plain Python values and
tensors are stored, so files load with ``torch.load(weights_only=True)``.

:func:`run_resumable_training` is the step loop both trainers share: it owns
logging, validation rows, checkpointing, resuming and the final atomic write.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from medrepro.atomic import atomic_path
from medrepro.errors import DataError
from medrepro.progress import progress_bar

CHECKPOINT_KEYS = ("model", "optimizer", "step", "epoch", "config", "history", "rng", "extra")


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path, what: str = "file") -> dict:
    """Load a dict saved by this module on the CPU; DataError when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{what} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise DataError(path, f"cannot read {what}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(path, f"not a {what}: expected a dict, found {type(obj).__name__}")
    return obj


def capture_rng_states(generators: Mapping[str, np.random.Generator] | None = None) -> dict:
    """Every random state a training step can consume, as plain values and tensors."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {"name": np_name, "keys": np_keys.tolist(), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: gen.bit_generator.state for name, gen in (generators or {}).items()},
    }
    return states


def restore_rng_states(states: dict, generators: Mapping[str, np.random.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng_states`; named generators are restored in place."""
    random.setstate(_as_python_random_state(states["python"]))
    np_state = states["numpy"]
    np.random.set_state((np_state["name"], np.asarray(np_state["keys"], dtype=np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, gen in (generators or {}).items():
        if name not in states["generators"]:
            raise KeyError(f"checkpoint has no state for generator {name!r}")
        gen.bit_generator.state = states["generators"][name]


def _as_python_random_state(state: Any) -> tuple:
    # Pickling may turn the inner tuple into a list; random.setstate needs tuples.
    version, internal, gauss = state
    return int(version), tuple(int(v) for v in internal), gauss


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    epoch: int,
    config: dict,
    history: list[dict],
    generators: Mapping[str, np.random.Generator] | None = None,
    extra: dict | None = None,
) -> None:
    """Write the complete training state atomically."""
    save_torch_atomic(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": int(step),
            "epoch": int(epoch),
            "config": dict(config),
            "history": list(history),
            "rng": capture_rng_states(generators),
            "extra": dict(extra or {}),
        },
        path,
    )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    checkpoint = load_torch(path, "training checkpoint")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise DataError(path, f"not a training checkpoint: missing {', '.join(missing)}")
    return checkpoint


def restore_checkpoint(
    checkpoint: dict,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: Mapping[str, np.random.Generator] | None = None,
) -> None:
    """Load weights, optimizer state and random states from a loaded checkpoint."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng_states(checkpoint["rng"], generators)


def config_differences(saved: Mapping, current: Mapping) -> list[str]:
    """Human-readable list of keys whose values differ (NaN equals NaN)."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        if a != b and not both_nan:
            differences.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    return differences


def array_fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 over shapes, dtypes and bytes: identifies the training data of a run."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_loss_log(rows: Iterable[dict], path: str | Path, columns: list[str]) -> None:
    """Rewrite the whole loss log CSV atomically (missing values are left empty)."""
    table = pd.DataFrame(list(rows), columns=columns)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def epoch_of(step: int, steps_per_epoch: int) -> int:
    """1-based epoch that the 1-based ``step`` belongs to."""
    return (step - 1) // steps_per_epoch + 1


def _resume_state(checkpoint_path: Path, config: dict, steps: int) -> dict | None:
    """The checkpoint to resume from, or None (absent, other configuration, or past ``steps``)."""
    if not checkpoint_path.exists():
        return None
    checkpoint = load_checkpoint(checkpoint_path)
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
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict,
    generators: Mapping[str, np.random.Generator],
    train_step: Callable[[int], Mapping[str, float]],
    validate: Callable[[], Mapping[str, float]] | None,
    steps: int,
    steps_per_epoch: int,
    log_every: int,
    val_every: int,
    checkpoint_every: int,
    checkpoint_path: str | Path,
    log_csv: str | Path,
    log_columns: list[str],
    out_path: str | Path,
    final_payload: Callable[[], dict],
    progress: bool = True,
    desc: str = "train",
    callback: Callable[[int, Mapping[str, float]], None] | None = None,
) -> dict:
    """Run ``train_step`` for steps 1..``steps`` with logging, checkpoints and resume.

    On start an existing checkpoint whose ``config`` equals ``config`` is
    resumed; one for another configuration is ignored with a warning. Every
    ``checkpoint_every`` steps the full state and the loss log are written
    atomically. At the end the log, then the final model (``final_payload()``)
    are written atomically and only then is the checkpoint removed, so an
    interruption at any moment loses at most ``checkpoint_every`` steps.
    Train rows average the terms over the ``log_every`` steps they cover;
    ``validate`` (run in eval mode without gradients) adds a ``val`` row every
    ``val_every`` steps and at the last step. ``callback(step, terms)`` runs
    after each step's bookkeeping; raising from it aborts the run as a kill would.
    """
    for name, value in (("steps", steps), ("steps_per_epoch", steps_per_epoch), ("log_every", log_every),
                        ("val_every", val_every), ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    checkpoint_path, log_csv, out_path = Path(checkpoint_path), Path(log_csv), Path(out_path)
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
    bar = progress_bar(total=steps, initial=start_step, desc=desc, enabled=progress)
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
                write_loss_log(history, log_csv, log_columns)
            bar.update(1)
            if callback is not None:
                callback(step, terms)
    finally:
        bar.close()
    seconds = time.perf_counter() - started

    write_loss_log(history, log_csv, log_columns)
    save_torch_atomic(final_payload(), out_path)
    checkpoint_path.unlink(missing_ok=True)
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
