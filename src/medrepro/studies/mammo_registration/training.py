"""Training the dual-view spatial transformer, and applying it (Sec. 4, "Hyperparameter setup").

:func:`train_registration` trains one loss variant (:data:`.losses.VARIANTS`)
on the training pairs with Adam, batches of pairs drawn with a seeded
generator, and logs the loss terms (``total``, ``mse``, ``giou_loss``) on the
training batches and, every ``val_every`` steps, over the validation pairs;
checkpoints, resume and the final atomic writes are the kernel loop's
(:func:`medrepro.nn.training.run_resumable_training`). The trunk starts from a
given state dict (the lesion detector's, :mod:`.detection`) or from
:func:`.networks.load_trunk_weights` ("imagenet", "none" or a file).

:func:`load_registration_model` rebuilds a trained network from its file;
:func:`predict_matrices` applies it to pairs in batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from medrepro.errors import DataError
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import array_fingerprint, load_model, load_torch

from . import losses, networks

KIND = "dual_view_registration"
LOG_COLUMNS = ["step", "epoch", "split", "total", "mse", "giou_loss"]
DEFAULT_STEPS_PER_EPOCH = 500  # the paper's epoch: 500 batches


def views_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W) images -> a (N, 1, H, W) float32 tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)


class _Pairs:
    """The training or validation pairs as tensors; a batch is the tensors of a subset of them."""

    def __init__(self, pairs: Mapping[str, np.ndarray], device: torch.device):
        self.views = {name: views_tensor(pairs[name], device) for name in ("cc", "mlo", "cc_region", "mlo_region")}
        self.boxes = {name: torch.as_tensor(np.asarray(pairs[name], dtype=np.float32), device=device)
                      for name in ("cc_box", "mlo_box")}
        self.device = device

    def __len__(self) -> int:
        return len(self.views["cc"])

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in {**self.views, **self.boxes}.items()}

    def chunk(self, chunk: slice) -> dict[str, torch.Tensor]:
        return self.batch(torch.arange(chunk.start, chunk.stop, device=self.device))


def _pair_loss(variant: str, giou_weight: float):
    """The variant's loss terms of a batch of pairs under the network's affines."""

    def loss(model: networks.DualViewSpatialTransformer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cc, mlo = batch["cc"], batch["mlo"]
        return losses.registration_loss(cc, mlo, model(cc, mlo), batch["cc_box"], batch["mlo_box"],
                                        variant=variant, giou_weight=giou_weight, mlo_region=batch["mlo_region"],
                                        cc_region=batch["cc_region"])

    return loss


def _check_pairs(pairs: Mapping[str, np.ndarray], what: str, source) -> None:
    for name in ("cc", "mlo", "cc_region", "mlo_region", "cc_box", "mlo_box"):
        if name not in pairs:
            raise DataError(source, f"the {what} pairs lack {name!r}; re-run the prepare step")
    if len(pairs["cc"]) == 0:
        raise DataError(source, f"no {what} pair")
    if pairs["cc"].shape != pairs["mlo"].shape:
        raise DataError(source, f"{what} CC views {pairs['cc'].shape} and MLO views {pairs['mlo'].shape} differ")


def build_model(config: Mapping) -> networks.DualViewSpatialTransformer:
    """The network a registration config describes (untrained)."""
    return networks.DualViewSpatialTransformer(depth=int(config["depth"]),
                                               prior_angle_deg=float(config["prior_angle_deg"]),
                                               head_init=str(config["head_init"]))


def train_registration(
    train_pairs: Mapping[str, np.ndarray],
    settings: TrainingSettings,
    *,
    variant: str,
    depth: int,
    head_init: str = "glorot",
    prior_angle_deg: float = networks.PRIOR_ANGLE_DEG,
    giou_weight: float = losses.PAPER_GIOU_WEIGHT,
    trunk_state: Mapping[str, torch.Tensor] | None = None,
    trunk_source: str = "none",
    weights_dir: str | Path | None = None,
    val_pairs: Mapping[str, np.ndarray] | None = None,
    source=None,
) -> dict:
    """Train the network with the loss ``variant`` and write it to ``settings.out_path``; returns a summary.

    ``train_pairs`` / ``val_pairs`` hold the arrays of :func:`.preprocess.load_pairs`
    for one split. ``trunk_state`` (a :class:`.networks.Trunk` state dict, from
    the detector) is loaded when given, else ``trunk_source`` through
    :func:`.networks.load_trunk_weights`; either is recorded as
    ``trunk_source`` in the model's config. ``source`` names the pairs file in
    error messages.
    """
    if variant not in losses.VARIANTS:
        raise ValueError(f"variant must be one of {losses.VARIANTS}, got {variant!r}")
    _check_pairs(train_pairs, "training", source)
    if val_pairs is not None:
        _check_pairs(val_pairs, "validation", source)
    trainer = SupervisedTrainer(settings, steps_per_epoch=DEFAULT_STEPS_PER_EPOCH)
    run, device = trainer.settings, trainer.device
    config = {
        "kind": KIND, "variant": variant, "depth": int(depth), "head_init": head_init,
        "prior_angle_deg": float(prior_angle_deg), "giou_weight": float(giou_weight),
        "shape": [int(n) for n in train_pairs["cc"].shape[1:]],
        "batch_size": int(run.batch_size), "lr": float(run.lr), "seed": int(run.seed),
        "steps_per_epoch": int(run.steps_per_epoch), "log_every": int(run.log_every),
        "val_every": int(run.val_every) if val_pairs is not None else None,
        "trunk_source": str(trunk_source),
        "data_sha256": array_fingerprint(train_pairs["cc"], train_pairs["mlo"], train_pairs["cc_box"],
                                         train_pairs["mlo_box"]),
        "val_sha256": array_fingerprint(val_pairs["cc"], val_pairs["mlo"]) if val_pairs is not None else None,
    }
    trainer.build(lambda: _with_trunk(build_model(config), trunk_state, trunk_source, weights_dir))
    pairs = _Pairs(train_pairs, device)
    batch_size = min(int(run.batch_size), len(pairs))

    def prepare_batch(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        return pairs.batch(torch.as_tensor(rng.choice(len(pairs), size=batch_size, replace=False), device=device))

    validation = None
    if val_pairs is not None:
        val = _Pairs(val_pairs, device)
        validation = ValidationSet(len(val), val.chunk, batch_size)
    return trainer.run(prepare_batch=prepare_batch, loss=_pair_loss(variant, giou_weight), validation=validation,
                       config=config, generator="pairs", kind=KIND, log_columns=LOG_COLUMNS, desc=variant)


def _with_trunk(model: networks.DualViewSpatialTransformer, trunk_state: Mapping[str, torch.Tensor] | None,
                trunk_source: str, weights_dir: str | Path | None) -> networks.DualViewSpatialTransformer:
    """``model`` with its trunk from ``trunk_state`` when given, else from ``trunk_source``."""
    if trunk_state is not None:
        model.trunk.load_state_dict(dict(trunk_state), strict=True)
    else:
        networks.load_trunk_weights(model.trunk, trunk_source, weights_dir)
    return model


def load_registration_model(path: str | Path, device: str | torch.device = "cpu") -> networks.DualViewSpatialTransformer:
    """A trained network from its model file, in eval mode; another kind of file is a DataError."""
    model, _ = load_model(path, kinds=KIND, build=build_model, what="registration model",
                          wanted="a dual-view registration model", remedy="re-run training", device=device)
    return model


def model_config(path: str | Path) -> dict:
    """The configuration a model file was trained with."""
    return dict(load_torch(path, "registration model")["config"])


@torch.no_grad()
def predict_matrices(model: networks.DualViewSpatialTransformer, cc: np.ndarray, mlo: np.ndarray,
                     batch_size: int = 8) -> np.ndarray:
    """The pixel affines (N, 2, 3) float64 the network predicts for the pairs ``cc``, ``mlo`` (N, H, W)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(cc), batch_size):
        out.append(model(views_tensor(cc[start:start + batch_size], device),
                         views_tensor(mlo[start:start + batch_size], device)).double().cpu().numpy())
    return np.concatenate(out, axis=0)
