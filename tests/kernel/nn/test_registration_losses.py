"""Registration similarity and regularity terms against MONAI, SciPy, scikit-learn and direct NumPy formulas."""

import numpy as np
import pytest
import torch
from monai.losses import FocalLoss, GlobalMutualInformationLoss, LocalNormalizedCrossCorrelationLoss
from scipy import ndimage
from sklearn.metrics import mutual_info_score

from medrepro.nn.losses import (
    focal_loss,
    gradient_norm_smoothness,
    laplacian_of_gaussian,
    local_cross_correlation,
    mutual_information,
)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def smooth_volume(rng, shape, sigma=2.0) -> np.ndarray:
    """Smoothed noise rescaled to [0, 1]."""
    volume = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (volume - volume.min()) / (volume.max() - volume.min())


def as_batch(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)[:, None])


# ---------------------------------------------------------------- local cross-correlation


def numpy_local_cc(a: np.ndarray, b: np.ndarray, window: int, eps: float) -> float:
    """The unsquared local ratio at every voxel over a zero-padded window, by a direct loop, then its mean."""
    radius = window // 2
    a_pad, b_pad = np.pad(a, radius), np.pad(b, radius)
    values = []
    for index in np.ndindex(a.shape):
        box = tuple(slice(i, i + window) for i in index)
        f, m = a_pad[box], b_pad[box]
        f, m = f - f.mean(), m - m.mean()
        values.append((f * m).sum() / ((f**2).sum() * (m**2).sum() + eps))
    return float(np.mean(values))


@pytest.mark.parametrize("shape, window", [((20, 18, 16), 9), ((20, 18, 16), 5), ((32, 28), 7)])
def test_squared_local_cc_is_minus_monai_lncc(rng, shape, window):
    a = as_batch(smooth_volume(rng, shape), smooth_volume(rng, shape))
    b = 0.7 * a + 0.3 * as_batch(smooth_volume(rng, shape), smooth_volume(rng, shape))
    monai = LocalNormalizedCrossCorrelationLoss(spatial_dims=len(shape), kernel_size=window)(a, b)
    assert local_cross_correlation(a, b, window=window).item() == pytest.approx(-monai.item(), abs=1e-6)


@pytest.mark.parametrize("shape", [(6, 7, 8), (7, 9)])
def test_unsquared_local_cc_matches_a_direct_loop(rng, shape):
    a, b = rng.random(shape), rng.random(shape)
    expected = numpy_local_cc(a, b, window=3, eps=1e-5)
    got = local_cross_correlation(as_batch(a), as_batch(b), window=3, squared=False).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_local_cc_of_an_image_with_itself_and_its_negative(rng):
    a = as_batch(smooth_volume(rng, (16, 16, 16)))
    # zero-padded border windows still see a straight line, so the squared value is 1 up to the variance floor
    assert local_cross_correlation(a, a, window=5).item() == pytest.approx(1.0, abs=1e-3)
    assert local_cross_correlation(a, -a, window=5).item() == pytest.approx(1.0, abs=1e-3)
    assert local_cross_correlation(a, -a, window=5, squared=False).item() < 0


def test_local_cc_has_finite_gradients_and_rejects_bad_windows(rng):
    a = as_batch(smooth_volume(rng, (10, 10, 10))).requires_grad_()
    b = torch.zeros_like(a)  # flat: every window's variance is floored
    local_cross_correlation(a, b, window=3).backward()
    assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError):
        local_cross_correlation(a, b, window=4)
    with pytest.raises(ValueError):
        local_cross_correlation(a, b[..., :-1], window=3)


# ---------------------------------------------------------------- mutual information


def rounded_bins(image: np.ndarray, bins: int) -> np.ndarray:
    """The nearest of ``bins`` evenly spaced centres on [0, 1], the hard limit of the Parzen weights."""
    return np.rint(image * (bins - 1)).astype(int).ravel()


def histogram_entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / labels.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def related_pair():
    """A smooth volume and a noisy monotone function of it, both in [0, 1]."""
    rng = np.random.default_rng(7)
    a = smooth_volume(rng, (24, 24, 24))
    b = np.clip(0.8 * a**2 + 0.1 + 0.03 * rng.normal(size=a.shape), 0, 1)
    return a, b


@pytest.mark.parametrize("bins", [16, 32])
def test_mutual_information_is_minus_monai_loss(related_pair, bins):
    a, b = (as_batch(x) for x in related_pair)
    monai = GlobalMutualInformationLoss(num_bins=bins)(a, b)
    assert mutual_information(a, b, bins=bins).item() == pytest.approx(-monai.item(), rel=1e-6)


def test_narrow_parzen_windows_approach_the_hard_histogram(related_pair):
    # As sigma_ratio -> 0 each voxel's weight goes to its nearest bin centre; at 0.05 only values within
    # about a tenth of a bin of a bin edge still split, which moves the estimates by a few per cent at most.
    a, b = related_pair
    bins = 32
    got_self = mutual_information(as_batch(a), as_batch(a), bins=bins, sigma_ratio=0.05).item()
    assert got_self == pytest.approx(histogram_entropy(rounded_bins(a, bins)), rel=0.03)
    got_pair = mutual_information(as_batch(a), as_batch(b), bins=bins, sigma_ratio=0.05).item()
    assert got_pair == pytest.approx(mutual_info_score(rounded_bins(a, bins), rounded_bins(b, bins)), rel=0.01)


def test_default_parzen_windows_lower_the_estimate(related_pair):
    # The smoothing acts like noise added to each variable, so the estimates fall below the hard-histogram
    # values; MI(a, a) is bounded by the entropy of the Parzen marginal, whose joint it is.
    a, b = related_pair
    bins = 32
    self_information = mutual_information(as_batch(a), as_batch(a), bins=bins).item()
    centres = np.linspace(0, 1, bins)
    weights = np.exp(-((a.reshape(-1, 1) - centres) ** 2) / (2 * (0.5 / (bins - 1)) ** 2))
    marginal = (weights / weights.sum(axis=1, keepdims=True)).mean(axis=0)
    assert 0.5 * histogram_entropy(rounded_bins(a, bins)) < self_information <= -(marginal * np.log(marginal)).sum()
    pair_information = mutual_information(as_batch(a), as_batch(b), bins=bins).item()
    assert pair_information < mutual_info_score(rounded_bins(a, bins), rounded_bins(b, bins))


def test_mutual_information_of_shuffled_and_independent_images(rng, related_pair):
    a = related_pair[0]
    shuffled = rng.permutation(a.ravel()).reshape(a.shape)
    self_information = mutual_information(as_batch(a), as_batch(a)).item()
    assert mutual_information(as_batch(a), as_batch(shuffled)).item() < 0.01 * self_information
    noise_a, noise_b = rng.random((2, 32, 32, 32))
    assert mutual_information(as_batch(noise_a), as_batch(noise_b)).item() == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("monotone", [lambda x: x**2, lambda x: x**1.5, lambda x: 0.5 * (x + x**2), lambda x: 1 - x])
def test_mutual_information_barely_moves_under_monotone_intensity_maps(related_pair, monotone):
    # Exact invariance holds for the true MI only; binning loses a little where a map compresses intensities.
    a, b = (as_batch(x) for x in related_pair)
    assert mutual_information(monotone(a), b).item() == pytest.approx(mutual_information(a, b).item(), rel=0.03)


def test_mutual_information_gradient_is_finite(related_pair):
    a = as_batch(related_pair[0]).requires_grad_()
    mutual_information(a, as_batch(related_pair[1])).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


# ---------------------------------------------------------------- gradient-norm smoothness


def numpy_gradient_norm(d: np.ndarray, eps: float = 1e-12) -> float:
    n = d.ndim - 2
    interior = (slice(None), slice(None)) + tuple(slice(0, s - 1) for s in d.shape[2:])
    squared = np.zeros_like(d[interior][:, 0])
    for axis in range(2, 2 + n):
        squared += (np.diff(d, axis=axis)[interior] ** 2).sum(axis=1)
    return float(np.sqrt(squared + eps).mean())


@pytest.mark.parametrize("shape", [(2, 3, 5, 6, 7), (3, 2, 8, 9)])
def test_gradient_norm_matches_numpy(rng, shape):
    d = rng.normal(size=shape)
    assert gradient_norm_smoothness(torch.from_numpy(d)).item() == pytest.approx(numpy_gradient_norm(d), rel=1e-12)


def test_gradient_norm_of_constant_and_linear_fields():
    constant = torch.ones(1, 3, 5, 6, 7, dtype=torch.float64) * torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1, 1)
    assert gradient_norm_smoothness(constant).item() == pytest.approx(0.0, abs=1e-5)
    matrix = torch.tensor([[0.1, -0.2, 0.05], [0.3, 0.0, 0.1], [-0.1, 0.2, 0.4]], dtype=torch.float64)
    z, y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (5, 6, 7)), indexing="ij")
    points = torch.stack([x, y, z])  # u(p) = A p with p = (x, y, z)
    linear = torch.einsum("ij,j...->i...", matrix, points).unsqueeze(0)
    assert gradient_norm_smoothness(linear).item() == pytest.approx(torch.linalg.norm(matrix).item(), rel=1e-9)


def test_gradient_norm_has_a_finite_gradient_at_a_constant_field():
    field = torch.zeros(1, 2, 6, 6, requires_grad=True)
    gradient_norm_smoothness(field).backward()
    assert torch.isfinite(field.grad).all()
    with pytest.raises(ValueError):
        gradient_norm_smoothness(torch.zeros(1, 3, 6, 6))


# ---------------------------------------------------------------- Laplacian of Gaussian


@pytest.mark.parametrize("shape, sigma", [((14, 16, 18), 1.5), ((14, 16, 18), 0.7), ((30, 26), 2.5), ((6, 7, 5), 2.0)])
def test_laplacian_of_gaussian_matches_scipy_everywhere(rng, shape, sigma):
    volume = smooth_volume(rng, shape, sigma=1.0)
    expected = ndimage.gaussian_laplace(volume, sigma, mode="reflect")
    got = laplacian_of_gaussian(as_batch(volume), sigma)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_laplacian_of_gaussian_filters_each_channel_and_is_differentiable(rng):
    channels = rng.random((2, 3, 8, 9, 10))
    got = laplacian_of_gaussian(torch.from_numpy(channels).requires_grad_(), 1.0)
    for b, c in np.ndindex(2, 3):
        np.testing.assert_allclose(got[b, c].detach().numpy(), ndimage.gaussian_laplace(channels[b, c], 1.0),
                                   atol=1e-12)
    got.pow(2).sum().backward()


def test_laplacian_of_gaussian_is_negative_at_a_bright_blob_centre():
    z, y, x = np.mgrid[:21, :21, :21] - 10.0
    blob = np.exp(-(x**2 + y**2 + z**2) / (2 * 2.0**2))
    response = laplacian_of_gaussian(as_batch(blob), 2.0)[0, 0]
    # the LoG of a Gaussian of width s at width sigma is the Laplacian of a Gaussian of width sqrt(s^2 + sigma^2)
    combined = 2.0**2 + 2.0**2
    analytic = -3.0 / combined * (2.0**2 / combined) ** 1.5
    assert response[10, 10, 10].item() < 0
    assert response[10, 10, 10].item() == pytest.approx(analytic, rel=0.02)
    assert response[10, 10, 10].item() == response.min().item()


# ---------------------------------------------------------------- focal loss in 3-D


def test_binary_focal_loss_matches_monai_on_3d_segmentation_logits(rng):
    target = torch.from_numpy((smooth_volume(rng, (2, 1, 12, 14, 16)) > 0.5).astype(np.float32))
    logits = 4.0 * target - 2.0 + torch.from_numpy(rng.normal(0, 1.5, target.shape).astype(np.float32))
    monai = FocalLoss(gamma=2.0, use_softmax=False, reduction="none")(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, gamma=2.0, reduction="none"), monai)
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(monai.mean().item(), rel=1e-5)
