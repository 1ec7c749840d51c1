"""The study's loss composition (eq. 5) and the anatomical term L_ae with the study's autoencoder."""

import numpy as np
import pytest
import torch

from medrepro.nn.losses import code_distance, ncc_loss, onehot_cross_entropy, total_variation
from medrepro.nn.modules import freeze
from medrepro.studies.chest.losses import RegistrationLoss, method_terms
from medrepro.studies.chest.networks import MaskAutoencoder
from medrepro.spatial.warp import to_onehot, warp_onehot


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
