"""Lesion-detection pre-training: targets, loss, decoding, training, resume and the trunk's transfer."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.spatial import boxes as box_ops
from medrepro.errors import DataError
from medrepro.studies.mammo_registration import networks
from medrepro.studies.mammo_registration.detection import (
    DETECTOR_KIND, OUTPUT_STRIDE, LesionDetector, decode_boxes, detection_loss, detection_targets, lesion_radius,
    load_detector, output_shape, train_detector, trunk_state_from_detector, write_trunk_weights,
)
from medrepro.nn.training.checkpoint import load_checkpoint, load_torch, save_torch_atomic
from support import training
from support.interrupt import Interrupted, kill_at

SIZE = 40


def bright_squares(n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tissue-grey images with one bright square lesion each, and its box."""
    rng = np.random.default_rng(seed)
    images = (0.3 + rng.normal(0, 0.02, (n, SIZE, SIZE))).astype(np.float32)
    boxes = []
    for image in images:
        side = int(rng.integers(8, 15))
        x, y = rng.integers(0, SIZE - side + 1, size=2)
        image[y:y + side, x:x + side] = 0.95
        boxes.append(np.array([[x, y, x + side, y + side]], dtype=np.float32))
    return images, boxes


# The runs use one thread: shared CPUs make two threads several times slower.
settings_for = partial(training.settings_for, name="det", steps=30, batch_size=8, lr=1e-3, seed=5,
                       checkpoint_every=100, steps_per_epoch=10)
pytestmark = pytest.mark.usefixtures("restore_thread_count")


@pytest.fixture(scope="module")
def data():
    images, boxes = bright_squares(22, seed=0)
    return images[:16], boxes[:16], images[16:], boxes[16:]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector")
    images, boxes, val_images, val_boxes = data
    summary = train_detector(images, boxes, settings_for(folder, val_every=15), depth=18,
                             val_images=val_images, val_boxes=val_boxes)
    return folder, summary


# --- Targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width, height", [(6.0, 4.0), (1.0, 1.0), (0.5, 3.0)])
def test_radius_is_the_shift_keeping_the_minimum_overlap(width, height):
    radius = lesion_radius(width, height, 0.7)
    box = np.array([0.0, 0.0, width, height])
    shifted = box + radius
    assert box_ops.box_iou(box, shifted) == pytest.approx(0.7, abs=1e-9)
    assert box_ops.box_iou(box, box + 1.01 * radius) < 0.7


def test_targets_peak_at_the_centre_cell_with_log_size_and_gaussian_fall_off():
    box = np.array([[40.0, 56.0, 136.0, 120.0]])  # 6 x 4 cells, centre (88, 88) -> cell row 5, column 5
    targets = detection_targets([box, np.zeros((0, 4))], (160, 160), 16)
    heatmap, size, mask = (targets[name].numpy() for name in ("heatmap", "size", "mask"))
    assert heatmap.shape == mask.shape == (2, 1, 10, 10) and size.shape == (2, 2, 10, 10)
    assert heatmap[0, 0, 5, 5] == 1.0 and np.unravel_index(heatmap[0, 0].argmax(), (10, 10)) == (5, 5)
    assert mask[0, 0].sum() == 1 and mask[0, 0, 5, 5] == 1
    np.testing.assert_allclose(size[0, :, 5, 5], [math.log(96 / 16), math.log(64 / 16)], rtol=1e-6)
    assert np.count_nonzero(size[0]) == 2
    sigma = (2 * lesion_radius(6.0, 4.0) + 1) / 6
    rows, cols = np.mgrid[:10, :10]
    expected = np.exp(-((rows - 5) ** 2 + (cols - 5) ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(heatmap[0, 0], expected, rtol=1e-5, atol=1e-7)
    assert 0 < heatmap[0, 0, 5, 6] < 0.1 and heatmap[0, 0, 5, 7] < heatmap[0, 0, 5, 6]
    assert not heatmap[1].any() and not mask[1].any() and not size[1].any()


def test_overlapping_gaussians_take_the_maximum_and_centres_outside_are_clamped():
    first, second = np.array([0.0, 0.0, 96.0, 96.0]), np.array([16.0, 0.0, 112.0, 96.0])  # centre cells adjacent
    both = detection_targets([np.stack([first, second])], (96, 112), 16)["heatmap"]
    alone = [detection_targets([box[None]], (96, 112), 16)["heatmap"] for box in (first, second)]
    torch.testing.assert_close(both, torch.maximum(*alone), atol=1e-7, rtol=1e-6)
    assert both[0, 0, 3, 3] == both[0, 0, 3, 4] == 1 and float(alone[1][0, 0, 3, 3]) > 1e-3
    outside = detection_targets([np.array([[100.0, -10.0, 130.0, 6.0]])], (96, 112), 16)
    assert outside["mask"][0, 0, 0, 6] == 1 and outside["heatmap"][0, 0, 0, 6] == 1  # centre (115, -2) -> row 0, col 6


def test_bad_boxes_are_data_errors():
    with pytest.raises(DataError, match="x2 > x1"):
        detection_targets([np.array([[5.0, 5.0, 5.0, 9.0]])], (32, 32), 16)
    with pytest.raises(DataError, match=r"\(K, 4\)"):
        detection_targets([np.array([1.0, 2.0, 3.0])], (32, 32), 16)
    with pytest.raises(DataError, match="non-finite"):
        detection_targets([np.array([[0.0, 0.0, np.nan, 4.0]])], (32, 32), 16)


# --- Loss -------------------------------------------------------------------------------------


def focal_by_hand(logits, heatmap, mask):
    p = 1 / (1 + np.exp(-logits))
    positive = -((1 - p) ** 2) * np.log(p) * mask
    negative = -((1 - heatmap) ** 4) * p**2 * np.log(1 - p) * (1 - mask)
    return (positive.sum() + negative.sum()) / max(mask.sum(), 1)


def test_loss_matches_a_hand_computation():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (1, 1, 2, 3))
    heatmap = np.array([[[[1.0, 0.5, 0.0], [0.2, 1.0, 0.9]]]])
    mask = (heatmap == 1).astype(float)
    size, size_target = rng.normal(0, 1, (1, 2, 2, 3)), rng.normal(0, 1, (1, 2, 2, 3))
    outputs = {"heatmap": torch.tensor(logits), "size": torch.tensor(size)}
    targets = {"heatmap": torch.tensor(heatmap), "mask": torch.tensor(mask), "size": torch.tensor(size_target)}
    loss = detection_loss(outputs, targets)
    expected_focal = focal_by_hand(logits, heatmap, mask)
    expected_size = (np.abs(size - size_target) * mask).sum() / (2 * mask.sum())
    assert float(loss["heatmap"]) == pytest.approx(expected_focal, rel=1e-6)
    assert float(loss["size"]) == pytest.approx(expected_size, rel=1e-6)
    assert float(loss["total"]) == pytest.approx(expected_focal + 0.1 * expected_size, rel=1e-6)


def test_loss_without_centres_and_with_extreme_logits_is_finite():
    logits = torch.tensor([[[[-100.0, 100.0], [0.0, 30.0]]]])
    empty = {"heatmap": torch.zeros(1, 1, 2, 2), "mask": torch.zeros(1, 1, 2, 2), "size": torch.zeros(1, 2, 2, 2)}
    loss = detection_loss({"heatmap": logits, "size": torch.ones(1, 2, 2, 2)}, empty)
    assert float(loss["size"]) == 0.0
    # Without centres the focal sum is divided by 1; p = 1 at 100 gives -log(1 - p) = 100 (log-sigmoid, not inf).
    expected = 100.0 + focal_by_hand(np.array([0.0, 30.0]), np.zeros(2), np.zeros(2))
    assert float(loss["heatmap"]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="differ"):
        detection_loss({"heatmap": torch.zeros(1, 1, 3, 3), "size": torch.zeros(1, 2, 3, 3)}, empty)


# --- Decoding ---------------------------------------------------------------------------------


def perfect_outputs(targets):
    return {"heatmap": torch.logit(targets["heatmap"], eps=1e-6), "size": targets["size"]}


def test_decode_recovers_boxes_from_perfect_targets():
    boxes = [np.array([[8.0, 8.0, 40.0, 40.0]]), np.array([[56.0, 16.0, 88.0, 64.0], [0.0, 16.0, 16.0, 32.0]])]
    found, scores = decode_boxes(perfect_outputs(detection_targets(boxes, (96, 128), 16)), 16, k=2)
    np.testing.assert_allclose(found[0][0], boxes[0][0], atol=1e-3)
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5) and scores[0][1] < 1e-3  # only one peak in image 0
    order = np.argsort(found[1][:, 0])
    np.testing.assert_allclose(found[1][order], boxes[1][::-1], atol=1e-3)
    assert found[1].dtype == np.float32 and scores[1].shape == (2,)


def test_decode_quantises_centres_to_cells_and_caps_k():
    box = np.array([[21.0, 3.0, 51.0, 23.0]])  # centre (36, 13): cell column 2, row 0 -> decoded centre (40, 8)
    found, scores = decode_boxes(perfect_outputs(detection_targets([box], (32, 64), 16)), 16, k=50)
    assert found[0].shape == (8, 4) and scores[0].shape == (8,)  # 2 x 4 cells
    np.testing.assert_allclose(found[0][0], [25.0, -2.0, 55.0, 18.0], atol=1e-3)
    assert box_ops.centre_distance(found[0][0], box[0]) <= 16 / math.sqrt(2)


# --- The network ------------------------------------------------------------------------------


def test_network_shapes_prior_bias_and_imagenet_input(monkeypatch):
    torch.manual_seed(0)
    model = LesionDetector(18).eval()
    seen, imagenet_input = [], networks.imagenet_input
    monkeypatch.setattr(networks, "imagenet_input", lambda image: seen.append(image) or imagenet_input(image))
    for shape in ((SIZE, SIZE), (33, 47)):
        outputs = model(torch.rand(2, 1, *shape))
        assert outputs["heatmap"].shape == (2, 1, *output_shape(shape)) and outputs["size"].shape == (
            2, 2, *output_shape(shape))
    assert len(seen) == 2 and seen[0].shape == (2, 1, SIZE, SIZE)
    assert model.heatmap_head[-1].bias.item() == pytest.approx(-math.log(99.0))
    assert output_shape((600, 480)) == (38, 30) and OUTPUT_STRIDE == 16


# --- Training ---------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_model_and_log(trained):
    folder, summary = trained
    log = pd.read_csv(folder / "det.losses.csv")
    assert list(log.columns) == ["step", "epoch", "split", "total", "heatmap", "size"]
    train, val = log[log["split"] == "train"], log[log["split"] == "val"]
    assert len(train) == 30 and val["step"].tolist() == [15, 30]
    assert train["total"].iloc[-5:].mean() < 0.6 * train["total"].iloc[:5].mean()
    assert val["total"].iloc[-1] < val["total"].iloc[0]
    saved = load_torch(folder / "det.pt")
    assert saved["kind"] == DETECTOR_KIND == "lesion_detector"
    assert saved["config"]["depth"] == 18 and saved["config"]["trunk_weights"] == "none"
    assert any(key.startswith("heatmap_head.") for key in saved["state_dict"])
    assert summary["trunk_weights"] == "none" and summary["steps_run"] == 30
    assert not (folder / "det.ckpt").exists()


def test_validation_hit_rate_matches_an_independent_count(trained, data):
    folder, summary = trained
    _, _, val_images, val_boxes = data
    model = load_detector(folder / "det.pt")
    hits = 0
    with torch.no_grad():
        outputs = model(torch.from_numpy(val_images)[:, None])
    heat, size = outputs["heatmap"][:, 0].numpy(), outputs["size"].numpy()
    for i, truth in enumerate(val_boxes):
        row, col = np.unravel_index(heat[i].argmax(), heat[i].shape)
        width, height = np.exp(size[i, :, row, col]) * 16
        cx, cy = (col + 0.5) * 16, (row + 0.5) * 16
        x1, y1, x2, y2 = truth[0]
        overlap_x = min(cx + width / 2, x2) - max(cx - width / 2, x1)
        overlap_y = min(cy + height / 2, y2) - max(cy - height / 2, y1)
        hits += overlap_x > 0 and overlap_y > 0
    assert summary["validation_hit_rate"] == pytest.approx(hits / len(val_boxes))


def test_resume_after_interruption_gives_identical_files(data, tmp_path):
    images, boxes, val_images, val_boxes = data
    common = dict(steps=7, batch_size=4, checkpoint_every=3, log_every=2)
    val = dict(val_images=val_images[:3], val_boxes=val_boxes[:3])
    train_detector(images, boxes, settings_for(tmp_path / "straight", **common), depth=18, **val)
    interrupted = settings_for(tmp_path / "resumed", **common)
    with pytest.raises(Interrupted):
        train_detector(images, boxes, interrupted.replace(callback=kill_at(5)), depth=18, **val)
    assert load_checkpoint(interrupted.checkpoint_path)["step"] == 3 and not interrupted.out_path.exists()
    summary = train_detector(images, boxes, interrupted, depth=18, **val)
    assert summary["resumed_from_step"] == 3 and summary["steps_run"] == 4
    for name in ("det.pt", "det.losses.csv"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


def test_bad_training_inputs_are_data_errors(data, tmp_path):
    images, boxes, _, _ = data
    with pytest.raises(DataError, match="one per image"):
        train_detector(images, boxes[:-1], settings_for(tmp_path, steps=1), depth=18, source="pairs.npz")
    with pytest.raises(DataError, match="finite"):
        train_detector(np.full_like(images, np.nan), boxes, settings_for(tmp_path, steps=1), depth=18)
    with pytest.raises(ValueError, match="val_boxes"):
        train_detector(images, boxes, settings_for(tmp_path, steps=1), depth=18, val_images=images)


# --- The trunk's transfer ---------------------------------------------------------------------


def test_trunk_state_loads_strictly_into_a_fresh_trunk(trained, tmp_path):
    folder, _ = trained
    state = trunk_state_from_detector(folder / "det.pt")
    assert all(key.split(".")[0] in ("conv1", "bn1", "layer1", "layer2", "layer3") for key in state)
    trunk = networks.Trunk(18)
    trunk.load_state_dict(state, strict=True)
    saved = load_torch(folder / "det.pt")["state_dict"]
    assert torch.equal(trunk.layer3[0].conv1.weight, saved["trunk.layer3.0.conv1.weight"])
    # The written trunk file is accepted by the registration network's loader.
    written = write_trunk_weights(folder / "det.pt", tmp_path / "trunk.pt")
    fresh = networks.Trunk(18)
    assert networks.load_trunk_weights(fresh, written) == str(written)
    assert torch.equal(fresh.bn1.running_mean, saved["trunk.bn1.running_mean"])


def test_a_file_of_another_kind_is_a_data_error(tmp_path):
    other = tmp_path / "reg.pt"
    save_torch_atomic({"kind": "VectorCNN", "config": {}, "state_dict": {}}, other)
    with pytest.raises(DataError, match="not a lesion detector") as caught:
        trunk_state_from_detector(other)
    assert str(other) in str(caught.value)
    with pytest.raises(DataError, match="not found"):
        trunk_state_from_detector(tmp_path / "missing.pt")
