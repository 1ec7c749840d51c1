"""Atomic training checkpoints and model files.

A checkpoint holds everything needed to continue a run so that the resumed
run is bit-identical (on CPU) to one that was never interrupted: model and
optimizer state, step and epoch, the loss history, the run configuration, and
every random state in play (Python, NumPy's global generator, torch CPU and
CUDA, and the run's own named NumPy generators). Files are written through
``medrepro.data.atomic.atomic_path``, so a killed job leaves either the previous
checkpoint or the new one, never a partial file. The checkpoint before the
latest is kept beside it (``<name>.prev``), so that a latest one damaged
after it was written (a full disk, a crash of the file system) costs only the
steps since the one before. Only plain Python values and tensors are stored,
so files load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import numpy as np
import torch
from torch import nn

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError
from medrepro.nn.device import place, resolve_device

Model = TypeVar("Model", bound=nn.Module)

CHECKPOINT_KEYS = ("model", "optimizer", "step", "epoch", "config", "history", "rng", "extra")


def torch_bytes(obj: Any) -> bytes:
    """What ``torch.save`` writes for ``obj``, the same bytes for the same object.

    ``torch.save`` names the zip archive inside the file after the file it
    writes to, which for an atomic write is a random temporary name;
    serialising to memory gives the archive a fixed name instead, so equal
    objects give equal files (and equal recorded hashes) from run to run.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically, with the same bytes for the same object."""
    data = torch_bytes(obj)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_torch(path: str | Path, what: str = "file") -> dict:
    """Load a dict saved by this module on the CPU; DataError when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{what} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise DataError(path, f"cannot read {what} ({_first_line(exc)})") from exc
    if not isinstance(obj, dict):
        raise DataError(path, f"not a {what}: expected a dict, found {type(obj).__name__}")
    return obj


def load_model_file(path: str | Path, *, kinds: str | Iterable[str], what: str, wanted: str | None = None,
                    remedy: str | None = "re-run its training") -> dict:
    """A model file (``kind``, ``config``, ``state_dict``) of one of ``kinds``, loaded on the CPU.

    ``what`` names the file in :func:`load_torch`'s messages; any other file is
    a DataError "not <wanted> (kind ...); <remedy>", ``wanted`` being "a
    <what>" (or "an <what>") unless given.
    """
    saved = load_torch(path, what)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if saved.get("kind") not in kinds or not isinstance(saved.get("config"), dict) \
            or not isinstance(saved.get("state_dict"), dict):
        wanted = wanted or f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"
        raise DataError(path, f"not {wanted} (kind {saved.get('kind')!r})" + (f"; {remedy}" if remedy else ""))
    return saved


def load_model(path: str | Path, *, kinds: str | Iterable[str], build: Callable[[dict], Model], what: str,
               wanted: str | None = None, remedy: str | None = "re-run its training",
               fits: str = "the recorded architecture", device: str | torch.device = "cpu") -> tuple[Model, dict]:
    """The network of a model file, in eval mode on ``device``, and its training configuration.

    The file is checked as by :func:`load_model_file`; ``build(config)`` makes
    the untrained network, which must take the saved weights exactly (else a
    DataError "weights do not fit <fits>: ...").
    """
    saved = load_model_file(path, kinds=kinds, what=what, wanted=wanted, remedy=remedy)
    model = build(saved["config"])
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit {fits}: {exc}") from exc
    return place(model, resolve_device(device)).eval(), saved["config"]


def _first_line(exc: BaseException, limit: int = 120) -> str:
    """The first sentence of an exception's message, at most ``limit`` characters: torch's can run to pages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[0].split(". ")[0].rstrip(".") if lines else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
    """Write the complete training state atomically; the checkpoint it replaces becomes ``<path>.prev``.

    The new state is written completely before the rotation, and each rename
    is atomic, so at every moment ``path`` or ``<path>.prev`` (or both) hold a
    complete checkpoint.
    """
    path = Path(path)
    data = torch_bytes(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": int(step),
            "epoch": int(epoch),
            "config": dict(config),
            "history": list(history),
            "rng": capture_rng_states(generators),
            "extra": dict(extra or {}),
        }
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        if path.exists():
            os.replace(path, previous_checkpoint_path(path))


def previous_checkpoint_path(path: str | Path) -> Path:
    """Where the checkpoint before the latest one is kept."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def checkpoint_files(path: str | Path) -> list[Path]:
    """The latest and the previous checkpoint of ``path``, those that exist, newest first."""
    return [p for p in (Path(path), previous_checkpoint_path(path)) if p.exists()]


def load_latest_checkpoint(path: str | Path) -> tuple[dict, Path] | None:
    """The newest readable checkpoint of ``path`` and the file it came from; None when there is none.

    An unreadable latest checkpoint is reported in one warning and deleted
    (so that it never becomes the previous one), and the previous checkpoint
    is used. When no file can be read, one DataError line names every file to
    delete.
    """
    candidates = checkpoint_files(path)
    problems = []
    for candidate in candidates:
        try:
            checkpoint = load_checkpoint(candidate)
        except DataError as error:
            problems.append(error)
            continue
        for damaged in problems:
            warnings.warn(f"{damaged}; deleted it and resuming from {candidate} (step {checkpoint['step']})",
                          stacklevel=2)
            Path(damaged.path).unlink(missing_ok=True)
        return checkpoint, candidate
    if not problems:
        return None
    if len(problems) == 1:
        raise DataError(problems[0].path, f"{problems[0].problem}; delete it to train from scratch")
    latest, previous = problems
    raise DataError(None, f"cannot read the training checkpoint {latest.path} ({_reason(latest)}) nor the previous "
                          f"one {previous.path} ({_reason(previous)}): delete both to train from scratch")


def _reason(error: DataError) -> str:
    """Why a checkpoint could not be read, in a few words."""
    return _first_line(error.__cause__) if error.__cause__ is not None else error.problem


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
