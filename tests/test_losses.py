"""Loss terms against direct NumPy formulas."""

import numpy as np
import pytest
import torch

from medrepro.nn.losses import (
    RegistrationLoss,
    code_distance,
    freeze,
    method_terms,
    ncc_loss,
    onehot_cross_entropy,
    total_variation,
)
from medrepro.nn.networks import MaskAutoencoder
from medrepro.nn.warp import to_onehot, warp_onehot


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


def warmed_encoder(masks: torch.Tensor) -> MaskAutoencoder:
    """A random autoencoder whose batch-norm statistics fit ``masks``, then frozen.

    Without this the running statistics stay at their initial values and the
    final 1-channel ReLU can be dead, making every code identical.
    """
    torch.manual_seed(0)
    model = MaskAutoencoder(n_classes=3, size=16)
    with torch.no_grad():
        for _ in range(30):
            model(to_onehot(masks, 3))
    return freeze(model)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return warmed_encoder(torch.randint(0, 3, (8, 16, 16)))


def test_code_distance_matches_direct_computation(encoder):
    a = to_onehot(torch.randint(0, 3, (5, 16, 16)), 3)
    b = to_onehot(torch.randint(0, 3, (5, 16, 16)), 3)
    with torch.no_grad():
        codes_a = np.stack([encoder.encode(a[i : i + 1])[0].numpy() for i in range(5)])
        codes_b = np.stack([encoder.encode(b[i : i + 1])[0].numpy() for i in range(5)])
        got = code_distance(encoder, a, b).item()
    expected = np.mean(np.sum((codes_a - codes_b) ** 2, axis=1))
    assert got == pytest.approx(expected, rel=1e-5)
    assert code_distance(encoder, a, a).item() == pytest.approx(0.0, abs=1e-10)


def test_code_distance_requires_eval_mode(encoder):
    encoder.train()
    x = to_onehot(torch.zeros(2, 16, 16, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="eval mode"):
        code_distance(encoder, x, x)


def test_gradient_flows_through_frozen_encoder_to_displacement():
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 4:12, 3:8] = 1
    labels[:, 4:12, 9:13] = 2
    labels[1, 2:6, 5:12] = 2
    encoder = warmed_encoder(torch.cat([labels, torch.roll(labels, shifts=2, dims=2)]))
    target = to_onehot(torch.roll(labels, shifts=2, dims=2), 3)
    displacement = torch.zeros(2, 2, 16, 16, requires_grad=True)
    warped = warp_onehot(to_onehot(labels, 3), displacement)
    code_distance(encoder, warped, target).backward()
    assert torch.isfinite(displacement.grad).all()
    assert displacement.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())


@pytest.mark.parametrize("method", ["RegNet", "CE-RegNet", "AE-RegNet", "AC-RegNet"])
def test_registration_loss_is_weighted_sum_of_terms(method, encoder):
    torch.manual_seed(1)
    warped, fixed = torch.rand(2, 2, 1, 16, 16)
    displacement = torch.randn(2, 2, 16, 16)
    warped_onehot = warp_onehot(to_onehot(torch.randint(0, 3, (2, 16, 16)), 3), displacement)
    fixed_onehot = to_onehot(torch.randint(0, 3, (2, 16, 16)), 3)
    weights = {"ncc": 1.0, "tv": 0.3, "ce": 0.7, "ae": 0.2}
    loss = RegistrationLoss(method, lambda_r=0.3, lambda_ce=0.7, lambda_ae=0.2, encoder=encoder)
    total, terms = loss(warped, fixed, displacement, warped_onehot, fixed_onehot)
    assert tuple(terms) == method_terms(method)
    assert total.item() == pytest.approx(sum(weights[k] * v.item() for k, v in terms.items()), rel=1e-6)
    assert terms["ncc"].item() == pytest.approx(ncc_loss(warped, fixed).item())
    assert terms["tv"].item() == pytest.approx(total_variation(displacement).item())
    if "ce" in terms:
        assert terms["ce"].item() == pytest.approx(onehot_cross_entropy(warped_onehot, fixed_onehot).item())
    if "ae" in terms:
        assert terms["ae"].item() == pytest.approx(code_distance(encoder, warped_onehot, fixed_onehot).item())


def test_registration_loss_argument_checks(encoder):
    with pytest.raises(ValueError, match="unknown method"):
        RegistrationLoss("VoxelMorph")
    with pytest.raises(ValueError, match="autoencoder"):
        RegistrationLoss("AC-RegNet")
    image = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="mask"):
        RegistrationLoss("CE-RegNet")(image, image, torch.zeros(1, 2, 16, 16))
    assert not RegistrationLoss("RegNet").needs_masks
    encoder.train()
    RegistrationLoss("AE-RegNet", encoder=encoder)
    assert not encoder.training  # the loss freezes the encoder it is given
