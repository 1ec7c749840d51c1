"""Training the registration networks on the kernel's training entry (Sec. 4), and loading them.

* **Pre-training** (WSSAMNet and its no-attention ablation): "register a volume (before surgery or a follow-up) to
  its augmented version; to learn the affine transformation (rotation, scaling, and translation) besides the
  identity". Each step draws a training case, one of its two scans and a random affine (:class:`AffineRange`);
  moving = the scan, fixed = the scan through the affine, and the scan's landmarks carried along, so that the
  segmentation networks have their targets in both.
* **Fine-tuning**: moving = follow-up, fixed = baseline of a training case, from the pre-trained weights.
* **VoxelMorph** trains on the same pairs for the same steps, without pre-training (its paper has none).

Adam at the settings' rate (1e-4 in the paper) with the kernel's step schedule (``lr_step_every``,
``lr_step_factor``: the paper names a step scheduler without its settings); one pair per step. The configuration
records what defines the run (kind, stage, modalities, architecture, loss settings, the training cases), so a
checkpoint of another run is not resumed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from medrepro.nn.training import SupervisedTrainer, TrainingSettings
from medrepro.nn.training.checkpoint import load_model
from medrepro.spatial.warp import warp
from medrepro.studies.brain import losses, networks
from medrepro.studies.brain.preprocess import PreparedCase

KIND_PREFIX = "brain_"
LOG_COLUMNS = {
    "voxelmorph": ["step", "epoch", "split", "total", "lncc", "smooth"],
    "wssamnet": ["step", "epoch", "split", "total", "lncc", "mi", "smooth", "focal_moving", "focal_fixed"],
    "wssamnet_no_attention": ["step", "epoch", "split", "total", "lncc", "mi", "smooth"],
}


@dataclass(frozen=True)
class AffineRange:
    """The pre-training's random affines: rotation about each axis, isotropic scale and shift."""

    rotation_deg: float = 10.0
    scale: float = 0.1
    shift_mm: float = 8.0


def random_affine(rng: np.random.Generator, shape: tuple, voxel_mm: float, limits: AffineRange):
    """A (3, z, y, x) displacement of a random affine about the volume's centre, and the point map it implies.

    The augmented copy is ``warp(volume, field)``: its voxel p shows the volume at ``A (p - c) + c + t``; a point
    q of the volume is at ``A^-1 (q - c - t) + c`` in the copy.
    """
    angles = np.deg2rad(rng.uniform(-limits.rotation_deg, limits.rotation_deg, 3))
    matrix = _rotation(angles) * rng.uniform(1 - limits.scale, 1 + limits.scale)
    shift = rng.uniform(-limits.shift_mm, limits.shift_mm, 3) / voxel_mm
    centre = (np.asarray(shape[::-1], dtype=float) - 1) / 2.0
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")[::-1])  # x, y, z
    points = grid.reshape(3, -1) - centre[:, None]
    field = (matrix @ points + centre[:, None] + shift[:, None]).reshape(grid.shape) - grid
    inverse = np.linalg.inv(matrix)

    def carry(q: np.ndarray) -> np.ndarray:
        return (np.asarray(q) - centre - shift) @ inverse.T + centre

    return field.astype(np.float32), carry


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Method:
    """A network and its loss settings, as the config gives them."""

    kind: str
    modalities: tuple
    channels: tuple
    registration: losses.RegistrationLoss
    roi_mm: float = 9.0
    final_channels: tuple = (16, 16)
    integration_steps: int = 7
    integration_downsize: int = 2
    smooth_weight: float = 1.0  # VoxelMorph's lambda
    lncc_window: int = 9

    def config(self) -> dict:
        config = {"kind": self.kind, "modalities": list(self.modalities), "channels": list(self.channels)}
        if self.kind == "voxelmorph":
            config.update(final_channels=list(self.final_channels), integration_steps=self.integration_steps,
                          integration_downsize=self.integration_downsize,
                          smooth_weight=self.smooth_weight, lncc_window=self.lncc_window)
        else:
            config.update(registration_loss=asdict(self.registration), roi_mm=self.roi_mm)
        return config

    def network(self) -> torch.nn.Module:
        return networks.build(self.kind, self.config())


def _tensor(array: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(device)


class PairBatches:
    """A step's pair: fine-tuning draws a training case; pre-training one scan and its affine copy."""

    def __init__(self, cases: list[PreparedCase], method: Method, stage: str, device, limits: AffineRange):
        self.cases, self.method, self.stage, self.device, self.limits = cases, method, stage, device, limits
        self.voxel_mm = float(cases[0].geometry.spacing[0])

    def __call__(self, rng: np.random.Generator) -> dict:
        case = self.cases[int(rng.integers(len(self.cases)))]
        if self.stage == "finetune":
            return self._batch(case.moving, case.fixed, case.moving_landmarks, case.fixed_landmarks)
        use_followup = bool(rng.integers(2))
        volume = case.moving if use_followup else case.fixed
        points = case.moving_landmarks if use_followup else case.fixed_landmarks
        field, carry = random_affine(rng, volume.shape[1:], self.voxel_mm, self.limits)
        copy = warp(torch.from_numpy(volume)[None], torch.from_numpy(field)[None])[0].numpy()
        return self._batch(volume, copy, points, carry(points))

    def _batch(self, moving, fixed, moving_points, fixed_points) -> dict:
        batch = {"moving": _tensor(moving, self.device), "fixed": _tensor(fixed, self.device)}
        if self.method.kind == "wssamnet":
            shape = moving.shape[1:]
            for name, points in (("moving_regions", moving_points), ("fixed_regions", fixed_points)):
                regions = losses.landmark_regions(points, shape, self.method.roi_mm, self.voxel_mm)
                batch[name] = _tensor(regions[None], self.device)
        return batch


def loss_function(method: Method):
    def loss(network: torch.nn.Module, batch: dict) -> dict:
        outputs = network(batch["moving"], batch["fixed"])
        if method.kind == "voxelmorph":
            displacement = outputs["displacement"]
            terms = losses.voxelmorph_loss(warp(batch["moving"], displacement), batch["fixed"], displacement,
                                           window=method.lncc_window, smooth_weight=method.smooth_weight)
            return {**terms, "total": terms["registration"]}
        return losses.wssamnet_loss(outputs, batch["moving"], batch["fixed"], batch.get("moving_regions"),
                                    batch.get("fixed_regions"), method.registration)
    return loss


def train_registration(cases: list[PreparedCase], method: Method, settings: TrainingSettings, stage: str,
                       initial: str | Path | None = None, limits: AffineRange = AffineRange()) -> dict:
    """One training run (``stage`` "pretrain" or "finetune"), from ``initial``'s weights when given."""
    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"stage must be 'pretrain' or 'finetune', got {stage!r}")
    trainer = SupervisedTrainer(settings, steps_per_epoch=max(1, len(cases)))
    network = trainer.build(method.network)
    config = {**method.config(), "stage": stage, "cases": sorted(c.name for c in cases),
              "batch_size": 1, "learning_rate": settings.lr, "seed": settings.seed}
    if stage == "pretrain":
        config["affine"] = asdict(limits)
    if initial is not None:
        start, start_config = load_registration(initial, method.kind)
        network.load_state_dict(start.state_dict())
        config["initial"] = {"stage": start_config.get("stage"), "steps": start_config.get("steps")}
    batches = PairBatches(cases, method, stage, trainer.device, limits)
    return trainer.run(prepare_batch=batches, loss=loss_function(method), config=config,
                       kind=KIND_PREFIX + method.kind, log_columns=LOG_COLUMNS[method.kind],
                       desc=f"{method.kind} {stage}")


def load_registration(path: str | Path, kind: str, device="cpu") -> tuple[torch.nn.Module, dict]:
    return load_model(path, kinds=KIND_PREFIX + kind, build=lambda config: networks.build(kind, config),
                      what=f"{kind} model", device=device)


@torch.no_grad()
def predict_displacement(network: torch.nn.Module, case: PreparedCase) -> np.ndarray:
    """The network's (3, z, y, x) displacement for a case's pair, in voxels, on the CPU."""
    device = next(network.parameters()).device
    outputs = network(_tensor(case.moving, device), _tensor(case.fixed, device))
    return outputs["displacement"][0].float().cpu().numpy()
