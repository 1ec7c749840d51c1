"""The dual-view spatial transformer, its trunk weights and the study's loss composition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medrepro.data import sourcing

from medrepro.spatial import warp
from medrepro.errors import ConfigError, DataError
from medrepro.studies.mammo_registration import networks
from medrepro.studies.mammo_registration.losses import registration_loss
from medrepro.studies.mammo_registration.networks import (DualViewSpatialTransformer, Trunk, carry_cc_boxes,
                                                          centred_to_pixel, imagenet_state_for_trunk,
                                                          load_trunk_weights, pixel_to_centred, register)


def prior_in_pixels(cc_shape, mlo_shape) -> torch.Tensor:
    """The 45-degree prior written with the kernel's rotation_matrix (centres matched, longer sides scaled)."""
    scale = max(cc_shape) / max(mlo_shape)
    return warp.rotation_matrix(45.0, warp.image_centre(mlo_shape), scale=scale, in_centre=warp.image_centre(cc_shape))


@pytest.fixture(scope="module")
def model18() -> DualViewSpatialTransformer:
    torch.manual_seed(0)
    return DualViewSpatialTransformer(depth=18, head_init="zero")


# --- Shapes and the prior ---------------------------------------------------------------------


def test_output_shape_and_prior_for_any_input(model18):
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        cc, mlo = torch.randn(2, 3, 64, 64, generator=generator), torch.randn(2, 3, 64, 64, generator=generator)
        matrix = model18(cc, mlo)
        assert matrix.shape == (2, 2, 3)
        expected = prior_in_pixels((64, 64), (64, 64)).expand(2, 2, 3)
        torch.testing.assert_close(matrix, expected, atol=1e-5, rtol=0)


def test_prior_on_non_square_grids_of_different_sizes(model18):
    cc, mlo = torch.rand(1, 1, 64, 48), torch.rand(1, 1, 48, 80)
    matrix = model18(cc, mlo)[0]
    torch.testing.assert_close(matrix, prior_in_pixels((64, 48), (48, 80)), atol=1e-5, rtol=0)
    # The linear part is a rotation scaled isotropically: A A^T = s^2 I.
    linear = matrix[:, :2]
    torch.testing.assert_close(linear @ linear.T, (64 / 80) ** 2 * torch.eye(2), atol=1e-6, rtol=0)


def test_prior_turns_content_counter_clockwise(model18):
    """A bright pixel right of the centre ends up up-right of it (y points down) at 45 degrees."""
    size, offset = 65, 20
    cc = torch.zeros(1, 1, size, size)
    cc[0, 0, size // 2, size // 2 + offset] = 1.0
    warped, _ = register(model18, cc, torch.rand(1, 1, size, size))
    row, column = np.unravel_index(int(warped.argmax()), (size, size))
    step = offset / math.sqrt(2)
    assert abs(column - (size // 2 + step)) <= 1 and abs(row - (size // 2 - step)) <= 1


def test_depth_50_output_shape():
    torch.manual_seed(0)
    model = DualViewSpatialTransformer(depth=50, head_init="zero")
    assert model.trunk.out_channels == 1024
    matrix = model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    assert matrix.shape == (1, 2, 3)
    torch.testing.assert_close(matrix[0], prior_in_pixels((64, 64), (64, 64)), atol=1e-5, rtol=0)


def test_unknown_depth_and_bad_views_are_refused(model18):
    with pytest.raises(ConfigError, match="depth"):
        DualViewSpatialTransformer(depth=101)
    with pytest.raises(ValueError, match="view"):
        model18(torch.rand(1, 2, 32, 32), torch.rand(1, 3, 32, 32))


def test_localisation_is_glorot_initialised(model18):
    """Xavier-uniform bounds: every weight within sqrt(6 / (fan_in + fan_out)), and the spread fits it."""
    stage_conv = model18.localisation[0][0].conv1
    fan_out, fan_in = stage_conv.weight.shape[0] * 9, stage_conv.weight.shape[1] * 9
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert stage_conv.weight.abs().max() <= bound
    assert stage_conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    head = model18.localisation[-1]
    assert torch.count_nonzero(head.weight) == 0  # head_init="zero"


def test_the_paper_s_head_is_glorot_with_the_prior_as_bias():
    torch.manual_seed(1)
    model = DualViewSpatialTransformer(depth=18)
    head = model.localisation[-1]
    bound = math.sqrt(6.0 / (head.in_features + head.out_features))
    assert torch.count_nonzero(head.weight) == head.weight.numel() and head.weight.abs().max() <= bound
    torch.testing.assert_close(head.bias.detach(), networks.prior_parameters(45.0).float())
    with pytest.raises(ConfigError, match="head_init"):
        DualViewSpatialTransformer(depth=18, head_init="ones")


# --- Frames -----------------------------------------------------------------------------------


def test_centred_frame_round_trip_and_theta_on_square_grids():
    params = torch.tensor([[[0.9, -0.2, 0.1], [0.3, 1.1, -0.05]]], dtype=torch.float64)
    matrix = centred_to_pixel(params, (40, 30), (50, 70))
    torch.testing.assert_close(pixel_to_centred(matrix, (40, 30), (50, 70)), params)
    # On square grids the centred frame is F.affine_grid's align_corners=False frame.
    matrix = centred_to_pixel(params, (32, 32), (48, 48))
    torch.testing.assert_close(warp.pixel_to_theta(matrix, (32, 32), (48, 48)), params)


def test_carry_cc_boxes_uses_the_inverse():
    matrix = warp.translation_matrix(10.0, -4.0).unsqueeze(0)  # output p samples input p + (10, -4)
    cc_boxes = torch.tensor([[20.0, 10.0, 30.0, 16.0]])
    torch.testing.assert_close(carry_cc_boxes(matrix, cc_boxes), torch.tensor([[10.0, 14.0, 20.0, 20.0]]))
    several = carry_cc_boxes(matrix, cc_boxes.expand(2, 4).reshape(1, 2, 4))
    assert several.shape == (1, 2, 4)


# --- Shared weights and gradients -------------------------------------------------------------


def _perturbed_model(seed: int) -> DualViewSpatialTransformer:
    """A depth-18 model whose head has left its zero start, as after a first training step."""
    torch.manual_seed(seed)
    model = DualViewSpatialTransformer(depth=18, head_init="zero")
    with torch.no_grad():
        model.localisation[-1].weight.normal_(std=1e-3)
    return model


def test_one_trunk_serves_both_views_and_receives_gradient_from_each():
    model = _perturbed_model(2)
    assert sum(isinstance(module, Trunk) for module in model.modules()) == 1
    features = []

    def keep(_module, _inputs, output):
        output.retain_grad()
        features.append(output)

    model.trunk.register_forward_hook(keep)
    model.parameters_centred(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)).sum().backward()
    assert len(features) == 2
    assert all(feature.grad is not None and feature.grad.abs().sum() > 0 for feature in features)
    assert model.trunk.conv1.weight.grad.abs().sum() > 0


def test_gradient_reaches_the_trunk_through_the_loss():
    model = _perturbed_model(3)
    generator = torch.Generator().manual_seed(4)
    cc, mlo = torch.rand(1, 1, 64, 64, generator=generator), torch.rand(1, 1, 64, 64, generator=generator)
    cc_box, mlo_box = torch.tensor([[20.0, 20.0, 36.0, 30.0]]), torch.tensor([[24.0, 18.0, 40.0, 34.0]])
    terms = registration_loss(cc, mlo, model(cc, mlo), cc_box, mlo_box)
    terms["total"].backward()
    for parameter in (model.trunk.conv1.weight, model.trunk.layer3[0].conv1.weight, model.localisation[-1].bias):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0


def test_at_initialisation_only_the_localisation_learns():
    """The zero head blocks the trunk's gradient until the first step: a property of the prior start."""
    torch.manual_seed(5)
    model = DualViewSpatialTransformer(depth=18, head_init="zero")
    cc, mlo = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    registration_loss(cc, mlo, model(cc, mlo), torch.tensor([[5.0, 5, 20, 20]]), torch.tensor([[30.0, 30, 50, 50]]))[
        "total"
    ].backward()
    assert model.localisation[-1].weight.grad.abs().sum() > 0
    assert model.trunk.conv1.weight.grad is None or model.trunk.conv1.weight.grad.abs().sum() == 0


# --- ImageNet key mapping (a generated torchvision layout; no torchvision) ---------------------


def torchvision_resnet_state(depth: int, seed: int = 0, counters: bool = True) -> dict:
    """The key layout and shapes of torchvision's ResNet``depth``, written from the architecture, random values."""
    generator = torch.Generator().manual_seed(seed)
    bottleneck = depth == 50
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
    expansion = 4 if bottleneck else 1
    state = {}

    def conv(key, out_ch, in_ch, k):
        state[f"{key}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=generator)

    def bn(key, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"{key}.{name}"] = torch.randn(channels, generator=generator)
        if counters:
            state[f"{key}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    in_ch = 64
    for stage, (planes, n_blocks) in enumerate(zip([64, 128, 256, 512], blocks), start=1):
        for index in range(n_blocks):
            key = f"layer{stage}.{index}"
            if bottleneck:
                conv(f"{key}.conv1", planes, in_ch, 1), bn(f"{key}.bn1", planes)
                conv(f"{key}.conv2", planes, planes, 3), bn(f"{key}.bn2", planes)
                conv(f"{key}.conv3", planes * 4, planes, 1), bn(f"{key}.bn3", planes * 4)
            else:
                conv(f"{key}.conv1", planes, in_ch, 3), bn(f"{key}.bn1", planes)
                conv(f"{key}.conv2", planes, planes, 3), bn(f"{key}.bn2", planes)
            if index == 0 and (stage > 1 or in_ch != planes * expansion):
                conv(f"{key}.downsample.0", planes * expansion, in_ch, 1), bn(f"{key}.downsample.1", planes * expansion)
            in_ch = planes * expansion
    state["fc.weight"] = torch.randn(1000, in_ch, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


@pytest.mark.parametrize("depth", [18, 50])
def test_key_mapping_fills_every_trunk_key(depth):
    source = torchvision_resnet_state(depth)
    mapped = imagenet_state_for_trunk(source)
    trunk_state = Trunk(depth).state_dict()
    assert set(mapped) == set(trunk_state)
    assert all(mapped[key].shape == trunk_state[key].shape for key in trunk_state)
    unused = set(source) - set(mapped)
    assert unused and all(key.startswith(("fc.", "layer4.")) for key in unused)


def test_load_from_a_local_file_copies_the_values(tmp_path):
    source = torchvision_resnet_state(18, seed=3, counters=False)  # the published files lack the counters
    path = tmp_path / "resnet18.pth"
    torch.save({f"module.{key}": value for key, value in source.items()}, path)
    trunk = Trunk(18)
    assert load_trunk_weights(trunk, path) == str(path)
    loaded = trunk.state_dict()
    for key in ("conv1.weight", "layer1.0.bn2.running_var", "layer3.0.downsample.0.weight", "layer3.1.conv2.weight"):
        torch.testing.assert_close(loaded[key], source[key])
    assert int(loaded["bn1.num_batches_tracked"]) == 0


def test_none_keeps_the_random_weights():
    trunk = Trunk(18)
    before = trunk.conv1.weight.detach().clone()
    assert load_trunk_weights(trunk, "none") == "none"
    torch.testing.assert_close(trunk.conv1.weight, before)


def test_wrong_depth_missing_file_and_foreign_file_are_data_errors(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision_resnet_state(50), path)
    with pytest.raises(DataError, match="resnet50.pth.*ResNet18"):
        load_trunk_weights(Trunk(18), path)
    with pytest.raises(DataError, match="not found"):
        load_trunk_weights(Trunk(18), tmp_path / "absent.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, foreign)
    with pytest.raises(DataError, match="foreign.pth.*unexpected key"):
        load_trunk_weights(Trunk(18), foreign)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated.pth.*cannot read"):
        load_trunk_weights(Trunk(18), truncated)


def test_failed_imagenet_download_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    def refuse(url, target, **_kwargs):
        raise DataError(url, "download failed: no network")

    monkeypatch.setattr(sourcing, "download", refuse)
    with pytest.raises(DataError) as caught:
        load_trunk_weights(Trunk(50), "imagenet", weights_dir=tmp_path)
    message = str(caught.value)
    assert networks.IMAGENET_FILES[50] in message and str(tmp_path / "resnet50-0676ba61.pth") in message
    with pytest.raises(ConfigError):
        load_trunk_weights(Trunk(50), "imagenet")


def test_imagenet_file_with_a_wrong_hash_is_removed(tmp_path, monkeypatch):
    def fake_download(url, target, **_kwargs):
        torch.save(torchvision_resnet_state(18), target)
        return target

    monkeypatch.setattr(sourcing, "download", fake_download)
    with pytest.raises(DataError, match="sha256 does not start with f37072fd"):
        load_trunk_weights(Trunk(18), "imagenet", weights_dir=tmp_path)
    assert not (tmp_path / "resnet18-f37072fd.pth").exists()


# --- The loss ---------------------------------------------------------------------------------


def test_identical_views_and_boxes_score_zero():
    image = torch.rand(2, 1, 32, 40, generator=torch.Generator().manual_seed(6))
    box = torch.tensor([[4.0, 5.0, 20.0, 18.0], [10.0, 2.0, 30.0, 12.0]])
    identity = torch.eye(2, 3).expand(2, 2, 3)
    for variant in ("mse", "masked_mse", "masked_mse_giou"):
        terms = registration_loss(image, image, identity, box, box, variant=variant)
        for name in ("total", "mse", "giou_loss"):
            assert float(terms[name]) == pytest.approx(0.0, abs=1e-6)


def numpy_giou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def test_variants_against_numpy_on_a_translation():
    """Output column j samples CC column j + 10: the last 10 columns read 0 and leave the overlap mask."""
    rng = np.random.default_rng(7)
    cc, mlo = rng.random((1, 1, 24, 30)), rng.random((1, 1, 24, 30))
    shift = 10
    warped = np.zeros_like(cc)
    warped[..., : 30 - shift] = cc[..., shift:]
    unmasked = np.mean((warped - mlo) ** 2)
    masked = np.mean((warped - mlo)[..., : 30 - shift] ** 2)
    cc_box, mlo_box = [15.0, 4.0, 25.0, 12.0], [2.0, 6.0, 9.0, 20.0]
    expected_giou_loss = 1.0 - numpy_giou([cc_box[0] - shift, cc_box[1], cc_box[2] - shift, cc_box[3]], mlo_box)

    matrix = warp.translation_matrix(float(shift), 0.0, dtype=torch.float64).unsqueeze(0)
    args = (torch.from_numpy(cc), torch.from_numpy(mlo), matrix, torch.tensor([cc_box], dtype=torch.float64),
            torch.tensor([mlo_box], dtype=torch.float64))
    plain = registration_loss(*args, variant="mse")
    eq2 = registration_loss(*args, variant="masked_mse")
    paper = registration_loss(*args, variant="masked_mse_giou", giou_weight=1000.0)
    assert float(plain["total"]) == pytest.approx(unmasked, rel=1e-9)
    assert float(eq2["total"]) == pytest.approx(masked, rel=1e-9)
    assert abs(unmasked - masked) > 1e-3
    assert float(paper["giou_loss"]) == pytest.approx(expected_giou_loss, rel=1e-9)
    assert float(paper["total"]) == pytest.approx(masked + 1000.0 * expected_giou_loss, rel=1e-9)
    assert float(eq2["giou_loss"]) == pytest.approx(expected_giou_loss, rel=1e-9)  # reported, not added


def test_breast_regions_narrow_the_mask():
    rng = np.random.default_rng(8)
    cc, mlo = torch.from_numpy(rng.random((1, 1, 16, 16))), torch.from_numpy(rng.random((1, 1, 16, 16)))
    region = torch.zeros(16, 16)
    region[:, :8] = 1
    box = torch.tensor([[2.0, 2.0, 6.0, 6.0]], dtype=torch.float64)
    identity = torch.eye(2, 3, dtype=torch.float64).unsqueeze(0)
    terms = registration_loss(cc, mlo, identity, box, box, variant="masked_mse", mlo_region=region)
    assert float(terms["mse"]) == pytest.approx(float(torch.mean((cc - mlo)[..., :8] ** 2)), rel=1e-9)


def test_unknown_variant_is_refused():
    image, box = torch.rand(1, 1, 8, 8), torch.tensor([[1.0, 1.0, 4.0, 4.0]])
    with pytest.raises(ValueError, match="variant"):
        registration_loss(image, image, torch.eye(2, 3).unsqueeze(0), box, box, variant="ncc")
