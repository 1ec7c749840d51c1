"""Loss terms against direct NumPy formulas, and the focal loss against MONAI's."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import FocalLoss

from medrepro.nn.losses import focal_loss, focal_terms, ncc_loss, onehot_cross_entropy, total_variation
from medrepro.spatial.warp import to_onehot
from support.phantoms import make_phantom


def numpy_ncc_loss(warped: np.ndarray, fixed: np.ndarray, eps: float = 1e-8) -> float:
    values = []
    for a, b in zip(warped, fixed):
        a = a.ravel() - a.mean()
        b = b.ravel() - b.mean()
        values.append(np.mean(a * b) / np.sqrt(np.mean(a**2) * np.mean(b**2) + eps))
    return -float(np.mean(values))


def numpy_tv(d: np.ndarray) -> float:
    dx = np.abs(np.diff(d, axis=3)).mean()
    dy = np.abs(np.diff(d, axis=2)).mean()
    return float((dx + dy) / 2)


def numpy_ce(p: np.ndarray, t: np.ndarray, eps: float = 1e-7) -> float:
    per_pixel = -(t * np.log(np.clip(p, eps, 1 - eps))).sum(axis=1)
    return float(per_pixel.mean())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_ncc_matches_numpy(rng):
    warped = rng.random((4, 1, 16, 12))
    fixed = rng.random((4, 1, 16, 12)) + 0.3 * warped
    got = ncc_loss(torch.from_numpy(warped), torch.from_numpy(fixed)).item()
    assert got == pytest.approx(numpy_ncc_loss(warped, fixed), abs=1e-12)


def test_ncc_of_image_with_itself_and_affine_copies(rng):
    image = torch.from_numpy(rng.random((3, 1, 20, 20)))
    assert ncc_loss(image, image).item() == pytest.approx(-1.0, abs=1e-6)
    assert ncc_loss(3.0 * image + 2.0, image).item() == pytest.approx(-1.0, abs=1e-6)
    # eps = 1e-8 inside the square root moves the value by about eps / (2 var_a var_b)
    assert ncc_loss(image, 0.5 * image - 7.0).item() == pytest.approx(-1.0, abs=1e-5)
    assert ncc_loss(image, 0.5 * image - 7.0, eps=0.0).item() == pytest.approx(-1.0, abs=1e-12)
    assert ncc_loss(-image, image).item() == pytest.approx(1.0, abs=1e-6)


def test_ncc_is_mean_of_per_sample_values(rng):
    warped, fixed = rng.random((2, 3, 1, 8, 8))
    batch = ncc_loss(torch.from_numpy(warped), torch.from_numpy(fixed)).item()
    singles = [ncc_loss(torch.from_numpy(warped[i : i + 1]), torch.from_numpy(fixed[i : i + 1])).item()
               for i in range(3)]
    assert batch == pytest.approx(np.mean(singles), abs=1e-12)


def test_ncc_constant_image_has_finite_value_and_gradient(rng):
    warped = torch.zeros(2, 1, 8, 8, requires_grad=True)
    fixed = torch.from_numpy(rng.random((2, 1, 8, 8))).float()
    loss = ncc_loss(warped, fixed)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(warped.grad).all()


def test_ncc_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        ncc_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 7))


def test_total_variation_matches_numpy(rng):
    d = rng.normal(size=(3, 2, 10, 14))
    assert total_variation(torch.from_numpy(d)).item() == pytest.approx(numpy_tv(d), abs=1e-12)


def test_total_variation_of_constant_and_ramp_fields():
    constant = torch.full((2, 2, 8, 8), 3.5)
    assert total_variation(constant).item() == 0.0
    # d_x = 2 * column: |x-difference| = 2 everywhere in channel 0, 0 elsewhere
    # mean over both channels of x-differences = 1, y-differences = 0 -> TV = 0.5
    ramp = torch.zeros(1, 2, 6, 6)
    ramp[:, 0] = 2.0 * torch.arange(6.0)
    assert total_variation(ramp).item() == pytest.approx(0.5)


def test_cross_entropy_matches_numpy(rng):
    logits = rng.normal(size=(2, 4, 6, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=(2, 6, 5))
    target = np.moveaxis(np.eye(4)[labels], -1, 1)
    got = onehot_cross_entropy(torch.from_numpy(probs), torch.from_numpy(target)).item()
    assert got == pytest.approx(numpy_ce(probs, target), abs=1e-12)


def test_cross_entropy_clipping_edge_cases():
    target = to_onehot(torch.tensor([[[0, 1], [1, 0]]]), 2).double()
    perfect = target.clone()
    assert onehot_cross_entropy(perfect, target).item() == pytest.approx(-np.log(1 - 1e-7), rel=1e-6)
    wrong = 1.0 - target
    assert onehot_cross_entropy(wrong, target).item() == pytest.approx(-np.log(1e-7), rel=1e-9)


def test_total_variation_in_3d_matches_numpy(rng):
    d = rng.standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    expected = np.mean([np.abs(np.diff(d, axis=axis)).mean() for axis in (4, 3, 2)])
    assert total_variation(torch.from_numpy(d)).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="displacement"):
        total_variation(torch.zeros(1, 2, 4, 5, 6))  # 2 channels for a 3-D field


def test_total_variation_of_a_3d_ramp():
    z = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(1, 3, 4, 5, 6)
    assert total_variation(z).item() == pytest.approx(1.0 / 3.0)  # unit steps along z only


def test_cross_entropy_in_3d_matches_numpy(rng):
    logits = rng.standard_normal((2, 3, 4, 5, 6))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = np.eye(3)[rng.integers(0, 3, (2, 4, 5, 6))].transpose(0, 4, 1, 2, 3)
    got = onehot_cross_entropy(torch.from_numpy(p), torch.from_numpy(t)).item()
    assert got == pytest.approx(numpy_ce(p, t), rel=1e-6)


# ---------------------------------------------------------------- the focal loss


@pytest.fixture(scope="module")
def segmentation():
    """A phantom's labels, one-hot (B, 4, H, W), and the logits of a noisy prediction of them."""
    labels = np.stack([make_phantom(48, seed)[1] for seed in range(3)])
    target = to_onehot(torch.from_numpy(labels.astype(np.int64)), 4)
    noise = torch.from_numpy(np.random.default_rng(5).normal(0, 1.5, target.shape).astype(np.float32))
    return 3.0 * target - 1.5 + noise, target, torch.from_numpy(labels.astype(np.int64))


@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (2.0, 0.25), (0.5, 0.75), (3.0, None)])
def test_binary_focal_loss_matches_monai(segmentation, gamma, alpha):
    logits, target, _ = segmentation
    monai = FocalLoss(gamma=gamma, alpha=alpha, reduction="none")(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, gamma, alpha, reduction="none"), monai)
    assert focal_loss(logits, target, gamma, alpha).item() == pytest.approx(monai.mean().item(), rel=1e-5)


@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (2.0, [0.1, 0.3, 0.3, 0.3]), (1.0, [1.0, 2.0, 2.0, 4.0])])
def test_multiclass_focal_loss_matches_monai_summed_over_classes(segmentation, gamma, alpha):
    logits, target, _ = segmentation
    monai = FocalLoss(gamma=gamma, alpha=torch.tensor(alpha) if alpha else None, use_softmax=True,
                      reduction="none")(logits, target)
    got = focal_loss(logits, target, gamma, alpha, softmax=True, reduction="none")
    torch.testing.assert_close(got, monai.sum(dim=1))
    assert focal_loss(logits, target, gamma, alpha, softmax=True, reduction="sum").item() == pytest.approx(
        monai.sum().item(), rel=1e-5)


def test_gamma_zero_is_the_cross_entropy(segmentation):
    logits, target, labels = segmentation
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-6)
    assert focal_loss(logits, target, gamma=0.0, softmax=True).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_focusing_lowers_the_loss_of_well_classified_elements(segmentation):
    logits, target, _ = segmentation
    values = [focal_loss(logits, target, gamma).item() for gamma in (0.0, 1.0, 2.0, 5.0)]
    assert values == sorted(values, reverse=True) and values[-1] > 0


def test_all_zero_targets_give_finite_values_and_gradients(segmentation):
    logits = segmentation[0].clone().requires_grad_(True)
    empty = torch.zeros_like(logits)
    binary = focal_loss(logits, empty)
    assert binary.item() == pytest.approx(FocalLoss()(logits.detach(), empty).item(), rel=1e-5)
    binary.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    logits.grad = None
    multiclass = focal_loss(logits, empty, softmax=True)  # no class present anywhere: nothing to score
    multiclass.backward()
    assert multiclass.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_extreme_logits_keep_the_focal_loss_finite():
    logits = torch.tensor([[[-200.0, -30.0, 0.0, 30.0, 200.0]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0, 1.0, 1.0, 0.0]]])
    loss = focal_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(FocalLoss()(logits.detach(), target).item(), rel=1e-5)


def test_focal_terms_split_the_binary_loss_and_weight_the_negatives(segmentation):
    logits, target, _ = segmentation
    positive, negative = focal_terms(logits, target)
    assert (positive[target == 0] == 0).all() and (negative[target == 1] == 0).all()
    torch.testing.assert_close(positive + negative, focal_loss(logits, target, reduction="none"))
    weight = torch.rand(target.shape, generator=torch.Generator().manual_seed(0))
    weighted_positive, weighted = focal_terms(logits, target, negative_weight=weight)
    assert torch.equal(weighted_positive, positive)
    torch.testing.assert_close(weighted, weight * negative)


def test_focal_loss_refuses_bad_arguments(segmentation):
    logits, target, _ = segmentation
    with pytest.raises(ValueError, match="differ in shape"):
        focal_loss(logits, target[:, :1])
    with pytest.raises(ValueError, match="differ in shape"):
        focal_loss(logits, target[:, :1], softmax=True)
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(logits, target, reduction="batch")
    with pytest.raises(ValueError, match="one alpha per class"):
        focal_loss(logits, target, alpha=[0.5, 0.5], softmax=True)
    with pytest.raises(ValueError, match="one alpha"):
        focal_loss(logits, target, alpha=[0.5, 0.5, 0.5, 0.5])
