"""The Detector/Segmentator architecture and dense inference: map sizes per layer and the patches each variant
refuses, logits, He initialisation, batch norm placement, and dense inference equal to the patch-by-patch
reference with its coordinate convention."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medrepro.studies.microcalc import dense, networks

SMALL = dict(widths=(4, 4, 8, 8, 8, 8), hidden=8)
LAYERS = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "conv6")
SIZES = {  # (patch, variant): side after each layer; 0 is an empty map
    (29, "same"): (29, 14, 14, 7, 7, 7, 7, 7),
    (39, "same"): (39, 19, 19, 9, 9, 9, 9, 9),
    (49, "same"): (49, 24, 24, 12, 12, 12, 12, 12),
    (29, "valid"): (27, 13, 11, 5, 3, 1, 0, 0),
    (39, "valid"): (37, 18, 16, 8, 6, 4, 2, 0),
    (49, "valid"): (47, 23, 21, 10, 8, 6, 4, 2),
}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the workflow's jobs run: small convolutions only wait on each other with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _with_random_statistics(model: networks.MicrocalcNet, seed: int = 0) -> networks.MicrocalcNet:
    """The model in eval mode with batch norms away from identity, as after training."""
    generator = torch.Generator().manual_seed(seed)
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            count = layer.num_features
            layer.running_mean.copy_(0.3 * torch.randn(count, generator=generator))
            layer.running_var.copy_(0.5 + 1.5 * torch.rand(count, generator=generator))
            layer.weight.data.copy_(0.5 + torch.rand(count, generator=generator))
            layer.bias.data.copy_(0.3 * torch.randn(count, generator=generator))
    return model.eval()


@pytest.mark.parametrize("patch,variant", sorted(SIZES))
def test_layer_sizes_follow_the_paper(patch, variant):
    assert networks.layer_sizes(patch, variant) == tuple(zip(LAYERS, SIZES[patch, variant]))


def test_patches_a_variant_cannot_take_are_refused():
    assert networks.check_patch(49, "valid") == 2  # the paper's 49 x 49 to 2 x 2
    assert [networks.check_patch(n, "same") for n in (29, 39, 49)] == [7, 9, 12]
    with pytest.raises(ValueError, match=r"N = 29 .*'valid'.*conv5 would be empty"):
        networks.check_patch(29, "valid")
    with pytest.raises(ValueError, match=r"N = 39 .*'valid'.*conv6 would be empty.*N >= 43"):
        networks.Segmentator(39, "valid")
    for variant in networks.VARIANTS:
        with pytest.raises(ValueError, match="N = 48 must be odd"):
            networks.Detector(48, variant)
    with pytest.raises(ValueError, match="neither 'same' nor 'valid'"):
        networks.layer_sizes(49, "full")
    assert networks.smallest_patch("valid") == 43 and networks.smallest_patch("same") == 5


@pytest.mark.parametrize("network", [networks.Detector, networks.Segmentator])
@pytest.mark.parametrize("patch,variant", [(29, "same"), (39, "same"), (49, "same"), (43, "valid"), (49, "valid")])
def test_networks_give_two_logits_per_patch(network, patch, variant):
    model = network(patch, variant, **SMALL)
    assert model(torch.randn(3, 1, patch, patch)).shape == (3, 2)
    probability = networks.positive_probability(model.eval()(torch.randn(5, 1, patch, patch)))
    assert probability.shape == (5,) and bool(((probability >= 0) & (probability <= 1)).all())
    with pytest.raises(ValueError, match=f"expected \\(B, 1, {patch}, {patch}\\)"):
        model(torch.randn(1, 1, patch + 2, patch + 2))


def test_weights_have_he_initialisation():
    torch.manual_seed(0)
    model = networks.Segmentator(49, "same")
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 8
    for layer in weighted:
        fan_in = layer.weight[0].numel()
        expected = math.sqrt(2.0 / fan_in)
        tolerance = 5 / math.sqrt(2 * layer.weight.numel())  # five standard errors of a sample std
        assert abs(layer.weight.std().item() / expected - 1) < tolerance, layer
        assert abs(layer.weight.mean().item()) < 5 * expected / math.sqrt(layer.weight.numel())
        assert layer.bias is None or not layer.bias.any()


def test_batch_norm_follows_every_layer_but_the_last_and_precedes_the_activation():
    model = networks.Segmentator(49, "valid", widths=SMALL["widths"], activation=nn.ELU)
    layers = [m for m in model.modules() if not isinstance(m, (nn.Sequential, networks.MicrocalcNet))]
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 8
    for i in weighted[:-1]:
        assert isinstance(layers[i + 1], (nn.BatchNorm2d, nn.BatchNorm1d)) and isinstance(layers[i + 2], nn.ELU)
    assert weighted[-1] == len(layers) - 1 and isinstance(layers[-2], nn.Dropout) and layers[-2].p == 0.5
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    assert pools == [weighted[0] + 3, weighted[1] + 3]
    assert model.classifier[1].out_features == 64 and model.classifier[-1].out_features == 2


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_stride_one_pool_is_max_pooling(dilation):
    x = torch.randn(2, 3, 17, 15)
    assert torch.equal(dense.stride_one_pool(x, dilation), F.max_pool2d(x, 2, stride=1, dilation=dilation))


@pytest.mark.parametrize("patch,variant,activation", [(39, "same", nn.ReLU), (43, "valid", nn.ReLU),
                                                      (49, "valid", nn.ReLU), (39, "same", nn.ELU)])
def test_dense_inference_equals_patch_by_patch(patch, variant, activation):
    torch.manual_seed(1)
    model = _with_random_statistics(networks.Segmentator(patch, variant, **SMALL, activation=activation))
    image = np.random.default_rng(2).normal(0.5, 0.3, (40, 36)).astype(np.float32)
    region = (slice(0, 24), slice(12, 36))  # at the image's border: patches there read the fill
    reference = dense.patch_probabilities(model, image, fill=0.1, region=region, batch_size=50)
    fast = dense.dense_probabilities(model, image, fill=0.1, region=region, tile=10, batch_size=7)
    assert fast.shape == reference.shape == (24, 24) and fast.dtype == np.float32
    assert reference.std() > 1e-3  # the comparison is not between constants
    np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("patch,variant", [(39, "same"), (43, "valid")])
def test_dense_pixel_is_the_patch_centred_there(patch, variant):
    torch.manual_seed(3)
    model = _with_random_statistics(networks.Segmentator(patch, variant, **SMALL), seed=1)
    image = np.random.default_rng(4).normal(0.5, 0.3, (30, 30)).astype(np.float32)
    top, left = 3, 5
    out = dense.dense_probabilities(model, image, fill=0.7, region=(slice(top, 27), slice(left, 29)), tile=16)
    half = patch // 2
    padded = np.pad(image, half, constant_values=0.7)
    for r, c in [(0, 0), (5, 17), (23, 23), (11, 2)]:
        centre_row, centre_col = top + r, left + c  # patch rows centre_row - half ... centre_row + half
        cut = padded[centre_row:centre_row + patch, centre_col:centre_col + patch]
        with torch.no_grad():
            expected = networks.positive_probability(model(torch.from_numpy(cut.copy())[None, None]))
        assert out[r, c] == pytest.approx(float(expected), abs=1e-5)


def test_dense_inference_needs_eval_mode_and_a_valid_region():
    model = networks.Segmentator(43, "valid", **SMALL)
    image = np.zeros((20, 20), np.float32)
    with pytest.raises(ValueError, match="eval mode"):
        dense.dense_probabilities(model, image)
    with pytest.raises(ValueError, match="non-empty slices"):
        dense.dense_probabilities(model.eval(), image, region=(slice(5, 5), slice(0, 3)))
    with pytest.raises(ValueError, match="only the valid variant"):
        dense.fully_convolutional_logits(networks.Segmentator(39, "same", **SMALL).eval(), torch.zeros(1, 1, 50, 50))
