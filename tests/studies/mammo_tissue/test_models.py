"""Patches, networks, aggregation and saliency: exact cuts, augmentation at identity, the batched aggregation
equal to the patch loop, and the saliency against finite differences."""

import numpy as np
import pytest
import torch

from medrepro.studies.mammo_tissue import aggregation, networks, patches, saliency


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return networks.TissueClassifier(patch=16, width=4, hidden=8, dropout=0.5).eval()


def test_networks_give_logits_per_patch_and_a_32_by_32_heatmap():
    model = networks.TissueClassifier(patch=32, width=4, hidden=8)
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3, 2)
    for local in (False, True):
        heatmap = networks.HeatmapNet(input_size=128, grid=32, width=4, local_results=local)
        out = heatmap(torch.zeros(2, 1, 128, 128), torch.zeros(2, 1, 32, 32) if local else None)
        assert out.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="4 times a power of two"):
        networks.TissueClassifier(patch=24)
    with pytest.raises(ValueError, match="power of two"):
        networks.HeatmapNet(input_size=100)


def test_augmentation_at_identity_is_the_exact_cut():
    rng = np.random.default_rng(0)
    images = rng.normal(2.0, 0.5, (2, 40, 40)).astype(np.float32)
    padded = patches.pad(images, 8, 3.6)
    index, rows, cols = np.array([0, 1, 1]), np.array([0, 20, 39]), np.array([5, 20, 39])
    exact = patches.cut(padded, index, rows, cols, 8)
    none = patches.Augmentation(rotation=False, flip=False, offset=0, crop=0.0, brightness=0.0)
    same = patches.augmented(torch.from_numpy(padded)[:, None], index, rows, cols, 8, none, rng)
    np.testing.assert_allclose(same[:, 0].numpy(), exact, atol=1e-5)
    assert exact.shape == (3, 8, 8) and np.array_equal(exact[1], images[1, 16:24, 16:24])


def test_augmented_patches_keep_their_tissue():
    """A bright disc at the sample's centre stays at the centre under rotation, mirroring and a small crop."""
    image = np.full((1, 41, 41), 3.0, np.float32)
    r, c = np.mgrid[:41, :41]
    image[0][(r - 20.0) ** 2 + (c - 20.0) ** 2 <= 16] = 0.5
    padded = torch.from_numpy(patches.pad(image, 16, 3.6))[:, None]
    rng = np.random.default_rng(1)
    settings = patches.Augmentation(rotation=True, flip=True, offset=0, crop=0.15, brightness=0.0)
    out = patches.augmented(padded, np.zeros(8, int), np.full(8, 20), np.full(8, 20), 16, settings, rng)[:, 0]
    assert (out[:, 7:9, 7:9] < 1.0).all() and (out[:, 0, 0] > 2.5).all()


def test_batched_local_results_equal_the_patch_loop(classifier):
    rng = np.random.default_rng(2)
    images = rng.normal(2.0, 0.6, (2, 48, 48)).astype(np.float32)
    padded = patches.pad(images, 16, 3.6)
    batched = aggregation.local_results(classifier, padded, factor=2, patch=16, base=96, grid=8, batch_size=7)
    loop = aggregation.local_results_loop(classifier, padded, factor=2, patch=16, base=96, grid=8)
    assert batched.shape == (2, 8, 8)
    np.testing.assert_allclose(batched, loop, atol=1e-5)
    rows, cols = aggregation.grid_positions(96, 8)
    assert rows[0, 0] == 6 and rows[-1, 0] == 90 and cols[0, -1] == 90  # centres of 12-pixel cells


@pytest.mark.parametrize("mode", saliency.MODES)
def test_saliency_is_the_gradient_magnitude_by_finite_differences(classifier, mode):
    torch.manual_seed(3)
    x = (2.0 + 0.5 * torch.randn(2, 1, 16, 16)).double()
    model = classifier.double()
    gradient, probability = saliency.patch_saliency(model, x, mode)

    def term(images):
        with torch.no_grad():
            log_p = torch.log_softmax(model(images), dim=1)
            if mode == "cross_entropy":
                return -log_p[torch.arange(len(images)), model(x).argmax(dim=1)].sum()
            return -(log_p.exp() * log_p).sum()

    eps = 1e-6
    for (b, i, j) in [(0, 3, 4), (1, 8, 8), (0, 15, 0)]:
        up, down = x.clone(), x.clone()
        up[b, 0, i, j] += eps
        down[b, 0, i, j] -= eps
        numeric = float((term(up) - term(down)) / (2 * eps))
        assert gradient[b, i, j].item() == pytest.approx(abs(numeric), rel=1e-4, abs=1e-9)
    assert probability.shape == (2,) and ((probability >= 0) & (probability <= 1)).all()


def test_mass_inside_a_region():
    image = np.zeros((10, 10))
    image[2:4, 2:4] = 1.0
    image[8, 8] = 4.0
    region = np.zeros((10, 10), bool)
    region[:5, :5] = True
    assert saliency.mass_inside(image, region) == pytest.approx(0.5)
    assert np.isnan(saliency.mass_inside(np.zeros((3, 3)), region[:3, :3]))
