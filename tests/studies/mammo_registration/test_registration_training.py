"""Training the dual-view spatial transformer: outputs, validation, reloading, the prior, resume and trunk start.

The pairs are tiny (48 x 32) and synthetic: a breast-like glow against the
right (chest-wall) edge with a bright blurred blob as the lesion, its box
8 pixels wide; the region is where the image exceeds 0.05. Boxes and
matrices follow :mod:`medrepro.spatial.warp`: a pixel affine maps an MLO-grid
position to the CC position it samples, so CC boxes reach the MLO grid
through its inverse. Runs use one thread and depth 18 to stay fast.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.nn.device import seed_everything
from medrepro.errors import ConfigError, DataError
from medrepro.studies.mammo_registration import losses, networks
from medrepro.studies.mammo_registration.evaluation import prior_matrices
from medrepro.studies.mammo_registration.training import (
    KIND, LOG_COLUMNS, build_model, load_registration_model, predict_matrices, train_registration, views_tensor)
from medrepro.nn.training.checkpoint import load_checkpoint, load_torch, save_torch_atomic
from support import training
from support.interrupt import Interrupted, kill_at

SHAPE = (48, 32)
STEPS = 8


def blob_pairs(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` CC/MLO pairs: tissue glow at the right edge plus a lesion blob, its region and its box."""
    rng = np.random.default_rng(seed)
    rows, cols = SHAPE
    ys, xs = np.mgrid[:rows, :cols] + 0.5  # pixel centres
    arrays = {name: [] for name in ("cc", "mlo", "cc_region", "mlo_region", "cc_box", "mlo_box")}
    for _ in range(n):
        for view in ("cc", "mlo"):
            cx, cy = rng.uniform(8, 24), rng.uniform(10, 38)
            glow = 0.3 * np.exp(-(((xs - cols) / 14) ** 2 + ((ys - rows / 2) / 18) ** 2))
            image = glow + 0.6 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.5 ** 2))
            arrays[view].append(image.astype(np.float32))
            arrays[f"{view}_region"].append(image > 0.05)
            arrays[f"{view}_box"].append([cx - 4, cy - 4, cx + 4, cy + 4])
    return {name: np.asarray(values, dtype=bool if name.endswith("region") else np.float32)
            for name, values in arrays.items()}


# The runs use one thread: shared CPUs make two threads slower.
settings_for = partial(training.settings_for, name="reg", steps=STEPS, batch_size=2, lr=1e-3, seed=1,
                       checkpoint_every=3, log_every=2, steps_per_epoch=4, val_every=4)
pytestmark = pytest.mark.usefixtures("restore_thread_count")


@pytest.fixture(scope="module")
def data():
    return blob_pairs(6, seed=0), blob_pairs(2, seed=1)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted 8-step run of the paper's loss with validation (no checkpoint: that is no part of the
    configuration, and skipping it saves time)."""
    folder = tmp_path_factory.mktemp("straight")
    train, val = data
    summary = train_registration(train, settings_for(folder, checkpoint_every=100), variant="masked_mse_giou",
                                 depth=18, val_pairs=val, source="pairs.npz")
    return folder, summary


# ------------------------------------------------------------------------------------------ by-hand helpers


def carried_boxes_by_hand(matrices: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """CC boxes on the MLO grid: the inverse affine's four corners, rectified (NumPy)."""
    out = []
    for matrix, (x1, y1, x2, y2) in zip(matrices, boxes):
        full = np.vstack([matrix, [0.0, 0.0, 1.0]])
        inverse = np.linalg.inv(full)[:2]
        corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], dtype=np.float64)
        mapped = corners @ inverse.T
        out.append([*mapped.min(axis=0), *mapped.max(axis=0)])
    return np.asarray(out)


def giou_loss_by_hand(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - GIoU of box rows (x1, y1, x2, y2)."""
    area = lambda box: (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])  # noqa: E731
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    union = area(a) + area(b) - inter
    hull = (np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0])) * \
        (np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1]))
    return 1.0 - (inter / union - (hull - union) / hull)


def prior_by_hand(angle_deg: float, cc_shape, mlo_shape) -> np.ndarray:
    """MLO pixel p -> CC pixel: (s_cc / s_mlo) R (p - c_mlo) + c_cc, c the grid centre, s half the longer side."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    rotation = np.array([[c, -s], [s, c]]) * (max(cc_shape) / max(mlo_shape))
    centre_cc = np.array([cc_shape[1] / 2, cc_shape[0] / 2])
    centre_mlo = np.array([mlo_shape[1] / 2, mlo_shape[0] / 2])
    return np.hstack([rotation, (centre_cc - rotation @ centre_mlo)[:, None]])


# ------------------------------------------------------------------------------------------------ the run


def test_run_writes_model_and_log(straight, data):
    folder, summary = straight
    log = pd.read_csv(folder / "reg.losses.csv")
    assert list(log.columns) == LOG_COLUMNS
    train_rows, val_rows = log[log["split"] == "train"], log[log["split"] == "val"]
    assert train_rows["step"].tolist() == [2, 4, 6, 8] and train_rows["epoch"].tolist() == [1, 1, 2, 2]
    assert val_rows["step"].tolist() == [4, 8]
    assert log[["total", "mse", "giou_loss"]].notna().all().all()
    # the paper's loss: total = mse + 1000 GIoU loss, on every row (the train rows are means of two steps)
    np.testing.assert_allclose(log["total"], log["mse"] + losses.PAPER_GIOU_WEIGHT * log["giou_loss"], rtol=1e-5)
    assert sorted(p.name for p in folder.iterdir()) == ["reg.losses.csv", "reg.pt"]  # checkpoints removed
    saved = load_torch(folder / "reg.pt")
    assert saved["kind"] == KIND
    config = saved["config"]
    assert config["variant"] == "masked_mse_giou" and config["depth"] == 18 and config["shape"] == list(SHAPE)
    assert config["steps"] == STEPS and config["trunk_source"] == "none" and config["head_init"] == "glorot"
    assert summary["steps_run"] == STEPS and summary["resumed_from_step"] == 0
    assert summary["final_val"]["step"] == STEPS and summary["final_val"]["total"] == pytest.approx(
        val_rows["total"].iloc[-1], rel=1e-6)


def test_final_validation_row_matches_a_recomputation(straight, data):
    """The last val row is the saved network's loss over the validation pairs, the GIoU term worked by hand."""
    folder, _ = straight
    _, val = data
    model = load_registration_model(folder / "reg.pt")
    matrices = predict_matrices(model, val["cc"], val["mlo"])
    giou = giou_loss_by_hand(carried_boxes_by_hand(matrices, val["cc_box"].astype(np.float64)),
                             val["mlo_box"].astype(np.float64)).mean()
    with torch.no_grad():
        cc, mlo = views_tensor(val["cc"], "cpu"), views_tensor(val["mlo"], "cpu")
        terms = losses.registration_loss(cc, mlo, model(cc, mlo), torch.from_numpy(val["cc_box"]),
                                         torch.from_numpy(val["mlo_box"]), variant="masked_mse_giou",
                                         mlo_region=views_tensor(val["mlo_region"], "cpu"),
                                         cc_region=views_tensor(val["cc_region"], "cpu"))
    last = pd.read_csv(folder / "reg.losses.csv").query("split == 'val'").iloc[-1]
    assert last["giou_loss"] == pytest.approx(giou, rel=1e-4)
    assert last["mse"] == pytest.approx(float(terms["mse"]), rel=1e-4, abs=1e-7)
    assert last["total"] == pytest.approx(float(terms["mse"]) + 1000.0 * giou, rel=1e-4)


def test_reloaded_model_gives_identical_predictions(straight, data):
    folder, _ = straight
    train, val = data
    cc, mlo = np.concatenate([train["cc"], val["cc"]]), np.concatenate([train["mlo"], val["mlo"]])
    first, second = load_registration_model(folder / "reg.pt"), load_registration_model(folder / "reg.pt")
    assert not first.training
    predicted = predict_matrices(first, cc, mlo, batch_size=4)
    assert predicted.shape == (len(cc), 2, 3) and predicted.dtype == np.float64
    np.testing.assert_array_equal(predict_matrices(second, cc, mlo, batch_size=4), predicted)
    # batching does not change a prediction beyond float32 rounding (eval mode: batch norm's running statistics)
    np.testing.assert_allclose(predict_matrices(first, cc, mlo, batch_size=3), predicted, rtol=1e-5, atol=1e-4)
    # the weights are the trained ones: the same network as it started predicts otherwise
    seed_everything(1)
    start = build_model(load_torch(folder / "reg.pt")["config"]).eval()
    assert not np.allclose(predict_matrices(start, cc, mlo), predicted, atol=1e-6)


def test_loading_another_kind_of_file_is_a_data_error(tmp_path):
    path = tmp_path / "detector.pt"
    save_torch_atomic({"kind": "lesion_detector", "config": {}, "state_dict": {}}, path)
    with pytest.raises(DataError, match="not a dual-view registration model") as error:
        load_registration_model(path)
    assert error.value.path == str(path)
    with pytest.raises(DataError):
        load_registration_model(tmp_path / "absent.pt")


# ---------------------------------------------------------------------------------------------- the prior


@pytest.mark.parametrize("angle, mlo_shape", [(45.0, SHAPE), (30.0, SHAPE), (45.0, (40, 40))])
def test_untrained_zero_head_predicts_exactly_the_prior(angle, mlo_shape):
    torch.manual_seed(0)
    model = build_model({"depth": 18, "prior_angle_deg": angle, "head_init": "zero"})
    rng = np.random.default_rng(2)
    cc = rng.uniform(size=(5, *SHAPE)).astype(np.float32)
    mlo = rng.uniform(size=(5, *mlo_shape)).astype(np.float32)
    predicted = predict_matrices(model, cc, mlo, batch_size=2)
    prior = prior_matrices(5, SHAPE, mlo_shape, angle)
    assert predicted.shape == prior.shape == (5, 2, 3)
    np.testing.assert_allclose(predicted, prior, atol=1e-5)
    # prior_parameters holds cos and sin in float32, so the prior agrees with the exact one to about 1e-6
    np.testing.assert_allclose(prior, np.repeat(prior_by_hand(angle, SHAPE, mlo_shape)[None], 5, axis=0),
                               atol=2e-6)


# --------------------------------------------------------------------------------------------------- resume


def test_resume_after_an_interruption_gives_identical_files(straight, data, tmp_path):
    folder, _ = straight
    train, val = data
    settings = settings_for(tmp_path)
    with pytest.raises(Interrupted):
        train_registration(train, settings.replace(callback=kill_at(4)), variant="masked_mse_giou", depth=18,
                           val_pairs=val, source="pairs.npz")
    assert load_checkpoint(settings.checkpoint_path)["step"] == 3  # step 4 is lost and redone
    assert not settings.out_path.exists() and not settings.log_csv.exists()
    summary = train_registration(train, settings, variant="masked_mse_giou", depth=18, val_pairs=val,
                                 source="pairs.npz")
    assert summary["resumed_from_step"] == 3 and summary["steps_run"] == STEPS - 3
    assert not settings.checkpoint_path.exists()
    assert settings.out_path.read_bytes() == (folder / "reg.pt").read_bytes()
    assert settings.log_csv.read_bytes() == (folder / "reg.losses.csv").read_bytes()


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_variant_or_head_init_raises_and_writes_nothing(data, tmp_path):
    train, _ = data
    with pytest.raises(ValueError, match="variant"):
        train_registration(train, settings_for(tmp_path), variant="giou", depth=18)
    with pytest.raises(ConfigError, match="head_init"):
        train_registration(train, settings_for(tmp_path), variant="mse", depth=18, head_init="random")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage, message", [
    (lambda pairs: {k: v for k, v in pairs.items() if k != "mlo_region"}, "mlo_region"),
    (lambda pairs: {**pairs, "mlo": pairs["mlo"][:, :40]}, "differ"),
    (lambda pairs: {k: v[:0] for k, v in pairs.items()}, "no training pair"),
])
def test_malformed_pairs_are_a_data_error_naming_the_source(data, tmp_path, damage, message):
    train, _ = data
    with pytest.raises(DataError, match=message) as error:
        train_registration(damage(train), settings_for(tmp_path), variant="mse", depth=18, source="pairs.npz")
    assert error.value.path == "pairs.npz"


# ------------------------------------------------------------------------------------------- the trunk start


def distinctive_trunk_state() -> dict[str, torch.Tensor]:
    """A depth-18 trunk's state with weights no fresh initialisation would draw."""
    torch.manual_seed(123)
    state = networks.Trunk(18).state_dict()
    return {key: value * 0.5 + 0.01 if value.is_floating_point() else value for key, value in state.items()}


def test_training_starts_from_the_given_trunk_state(data, tmp_path):
    """With a learning rate of 0 the trunk's weights stay what they were loaded as."""
    train, _ = data
    given = distinctive_trunk_state()
    start = dict(trunk_state=given, trunk_source="detector det.pt")
    settings = settings_for(tmp_path, steps=1, lr=0.0)
    train_registration(train, settings, variant="masked_mse", depth=18, **start)
    saved = load_torch(settings.out_path)
    assert saved["config"]["trunk_source"] == start["trunk_source"]
    weights = [key for key in given if key.endswith("weight") and "bn" not in key and "downsample.1" not in key]
    assert len(weights) > 10
    for key in weights:  # convolutions (batch-norm statistics move in training mode even at lr 0)
        assert torch.equal(saved["state_dict"][f"trunk.{key}"], given[key]), key


def test_a_trunk_state_that_does_not_fit_is_refused(data, tmp_path):
    train, _ = data
    given = distinctive_trunk_state()
    del given["conv1.weight"]
    with pytest.raises(RuntimeError, match="conv1.weight"):
        train_registration(train, settings_for(tmp_path, steps=1), variant="mse", depth=18, trunk_state=given)
