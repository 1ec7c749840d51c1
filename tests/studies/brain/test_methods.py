"""The study's networks, losses, pre-training affines and evaluation on hand-made cases: VoxelMorph's field in the
kernel's channel order (MONAI's warp agrees), landmark regions, the registration loss's terms, affine copies whose
landmarks follow them, and the per-case scores (the exact field gives zero error, the identity the error before)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from medrepro.data.io.nifti import Geometry
from medrepro.spatial.warp import warp
from medrepro.studies.brain import evaluation, losses, networks, training
from medrepro.studies.brain.preprocess import PreparedCase


def smooth_volume(shape, seed=0, sigma=2.0):
    return ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), sigma).astype(np.float32)


def test_voxelmorph_field_is_in_the_kernels_channel_order():
    """MONAI orders the field by array axis (z, y, x); flipped, the kernel's warp gives MONAI's own warp."""
    from monai.networks.blocks import Warp

    image = torch.from_numpy(smooth_volume((8, 10, 12)))[None, None]
    monai_field = torch.randn(1, 3, 8, 10, 12) * 1.5
    ours = warp(image, monai_field.flip(1))
    theirs = Warp(mode="bilinear", padding_mode="zeros")(image, monai_field)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", networks.REGISTRATION_KINDS)
def test_every_network_starts_near_the_identity(kind):
    config = {"modalities": ["t1ce", "flair"], "channels": [8, 16, 32] if kind != "voxelmorph" else [8, 8, 8, 8],
              "final_channels": [8, 8], "integration_steps": 7, "integration_downsize": 2}
    torch.manual_seed(0)
    network = networks.build(kind, config)
    outputs = network(torch.rand(1, 2, 16, 16, 16), torch.rand(1, 2, 16, 16, 16))
    assert outputs["displacement"].shape == (1, 3, 16, 16, 16)
    assert outputs["displacement"].abs().max() < 0.05
    assert ("moving_logits" in outputs) == (kind == "wssamnet")


def test_landmark_regions_are_cubes_of_the_given_side():
    mask = losses.landmark_regions(np.array([[10.0, 12.0, 8.0], [0.2, 0.0, 0.0]]), (20, 24, 30), 9.0, 1.0)
    assert mask[4:13, 8:17, 6:15].all() and mask[3, 12, 10] == 0 and mask[8, 12, 5] == 0
    assert mask[0:5, 0:5, 0:5].all()  # a landmark at the border keeps the part inside
    assert mask.sum() == 9 ** 3 + 5 ** 3
    coarse = losses.landmark_regions(np.array([[5.0, 5.0, 5.0]]), (10, 10, 10), 9.0, 3.0)  # 9 mm = 3 voxels
    assert coarse.sum() == 27


def test_the_registration_loss_rewards_alignment_and_penalises_rough_fields():
    fixed = torch.from_numpy(smooth_volume((16, 20, 20), 1))[None, None]
    moved = torch.roll(fixed, 3, dims=-1)
    loss = losses.RegistrationLoss(lncc_window=5, log_sigma_mm=1.0)
    zero = torch.zeros(1, 3, 16, 20, 20)
    aligned, misaligned = loss(fixed, fixed, zero), loss(moved, fixed, zero)
    assert aligned["lncc"] > misaligned["lncc"] and aligned["mi"] > misaligned["mi"]
    assert aligned["registration"] < misaligned["registration"]
    rough = loss(fixed, fixed, torch.randn(1, 3, 16, 20, 20))
    assert rough["smooth"] > 1.0 > aligned["smooth"]
    printed = losses.RegistrationLoss(lncc_window=5, log_sigma_mm=1.0, lncc_form="eq2")(fixed, fixed, zero)
    assert torch.isfinite(printed["registration"])
    with pytest.raises(ValueError, match="lncc_form"):
        losses.RegistrationLoss(lncc_form="pearson")


def test_an_affine_copys_landmarks_follow_it():
    """The copy shows the volume through the affine; a bright dot at a landmark appears where carry() puts it."""
    shape = (24, 28, 32)
    volume = np.zeros(shape, np.float32)
    landmark = np.array([[20.0, 12.0, 9.0]])  # x, y, z
    volume[9, 12, 20] = 1.0
    volume = ndimage.gaussian_filter(volume, 1.5)
    field, carry = training.random_affine(np.random.default_rng(3), shape, 1.0, training.AffineRange(10, 0.1, 3))
    copy = warp(torch.from_numpy(volume)[None, None], torch.from_numpy(field)[None])[0, 0].numpy()
    peak = np.array(ndimage.center_of_mass(copy ** 4))[::-1]  # z, y, x -> x, y, z
    np.testing.assert_allclose(carry(landmark)[0], peak, atol=0.35)


def _case(moving_points, fixed_points, shape=(12, 14, 16)):
    n = len(moving_points)
    return PreparedCase("BraTSReg_001", "test", np.zeros((1, *shape), np.float32), np.zeros((1, *shape), np.float32),
                        np.arange(1, n + 1), np.asarray(moving_points, float), np.asarray(fixed_points, float),
                        Geometry((2.0, 2.0, 2.0), (0.0, 0.0, 0.0)), shape)


def test_the_identity_scores_the_error_before_and_no_robustness():
    case = _case([[3.0, 4.0, 5.0], [6.0, 6.0, 6.0], [2.0, 2.0, 2.0]], [[4.0, 4.0, 5.0], [6.0, 8.0, 6.0], [2, 2, 5.0]])
    rows, summary = evaluation.score_case(case, evaluation.identity(case), "euclidean")
    np.testing.assert_allclose(rows["error_before_mm"], [2.0, 4.0, 6.0])
    np.testing.assert_allclose(rows["error_after_mm"], rows["error_before_mm"])
    assert summary["median_error_mm"] == summary["median_error_before_mm"] == 4.0
    assert summary["robustness"] == 0.0 and summary["folding_pct"] == 0.0 and "runtime_cpu_s" not in summary


def test_the_exact_field_gives_zero_error_and_full_robustness():
    """A constant field u: fixed p shows moving p + u; follow-up landmarks carried back land on the baseline's."""
    shift = np.array([1.5, -0.5, 2.0])
    fixed = np.array([[4.0, 6.0, 3.0], [8.0, 5.0, 5.0], [10.0, 9.0, 4.0]])
    case = _case(fixed + shift, fixed)
    field = np.broadcast_to(shift[:, None, None, None], (3, 12, 14, 16)).astype(np.float32).copy()
    points = evaluation.carry_with_field(field, case.moving_landmarks)
    rows, summary = evaluation.score_case(case, evaluation.Registered(points, field, 0.1), "per_axis")
    np.testing.assert_allclose(rows["error_after_mm"], 0.0, atol=1e-4)
    assert summary["robustness"] == 1.0
    assert summary["median_error_before_mm"] == pytest.approx(np.mean(np.abs(shift)) * 2.0)  # per-axis, mm


def test_run_times_come_from_the_evaluation_jobs_record():
    import pandas as pd

    from medrepro.errors import DataError

    cases = pd.DataFrame({"case": ["a", "b"], "median_error_mm": [1.0, 2.0]})
    registered = evaluation.Registered(np.zeros((1, 3)), np.zeros((3, 2, 2, 2)), 0.25)
    runtimes = {"a": evaluation.runtime_entry(registered, None), "b": evaluation.runtime_entry(registered, 0.01)}
    timed = evaluation.with_runtimes(cases, runtimes, "cases.csv")
    assert timed["runtime_cpu_s"].tolist() == [0.25, 0.25]
    assert np.isnan(timed["runtime_gpu_s"][0]) and timed["runtime_gpu_s"][1] == 0.01
    with pytest.raises(DataError, match="cases.csv: no recorded run time for case"):
        evaluation.with_runtimes(cases, {"a": runtimes["a"]}, "cases.csv")
