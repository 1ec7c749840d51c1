"""Figures (valid PNGs, no temp files left) and the Fig. 2 anatomical-loss experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import label as connected_components

from medrepro.studies.chest.anatomical_loss import (
    PROBABILITY_FLOOR,
    anatomical_loss_experiment,
    border_pixels,
    choose_masks,
    modify_block,
    modified_versions,
    modify_plausible,
    onehot,
    pixel_cross_entropy,
)
from medrepro.studies.chest.subjects import HEART, LEFT_LUNG, RIGHT_LUNG
from medrepro.studies.chest.figures import (
    plot_anatomical_loss,
    plot_dice_distributions,
    plot_registration_examples,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE = 64


def chest_mask(size: int = SIZE, shift: int = 0, heart: bool = True) -> np.ndarray:
    """Two lung ellipses and a heart ellipse overlapping the left lung, like an SCR label map."""
    r, c = np.mgrid[:size, :size] / size
    labels = np.zeros((size, size), np.uint8)
    s = shift / size
    labels[((r - 0.47 - s) / 0.33) ** 2 + ((c - 0.28) / 0.15) ** 2 < 1] = RIGHT_LUNG
    labels[((r - 0.47 - s) / 0.33) ** 2 + ((c - 0.72) / 0.15) ** 2 < 1] = LEFT_LUNG
    if heart:
        labels[((r - 0.66 - s) / 0.14) ** 2 + ((c - 0.56) / 0.17) ** 2 < 1] = HEART
    return labels


def assert_png_written_alone(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 1000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def linear_encoder(n_classes: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_classes * SIZE * SIZE, 32))


# ----------------------------------------------------------------------------- mask modifications


@pytest.mark.parametrize("n_pixels", [1, 120, 400])
def test_plausible_erosion_changes_exactly_n_border_pixels(n_pixels):
    labels = chest_mask()
    modified = modify_plausible(labels, n_pixels, np.random.default_rng(0))
    changed = modified != labels
    assert changed.sum() == n_pixels
    assert np.all(modified[changed] == 0)  # foreground turned to background only
    if n_pixels <= border_pixels(labels).sum():
        assert np.all(border_pixels(labels)[changed])
    for organ in (RIGHT_LUNG, LEFT_LUNG, HEART):
        assert np.any(changed & (labels == organ)) or n_pixels < 10  # spread over every organ


def test_plausible_erosion_peels_layers_when_asked_for_more_than_the_border():
    labels = chest_mask()
    n_border = int(border_pixels(labels).sum())
    modified = modify_plausible(labels, n_border + 50, np.random.default_rng(1))
    assert (modified != labels).sum() == n_border + 50
    assert not np.any(modified[border_pixels(labels)])  # the whole first layer is gone


@pytest.mark.parametrize("organ,where", [(RIGHT_LUNG, "top"), (LEFT_LUNG, "bottom"), (HEART, "bottom")])
def test_block_removal_is_one_compact_part_of_one_organ(organ, where):
    labels = chest_mask()
    modified = modify_block(labels, 120, np.random.default_rng(2), organ, where)
    changed = modified != labels
    assert changed.sum() == 120
    assert np.all(labels[changed] == organ)
    assert connected_components(changed)[1] == 1
    rows = np.nonzero(changed)[0]
    organ_rows = np.nonzero(labels == organ)[0]
    extreme = organ_rows.min() if where == "top" else organ_rows.max()
    assert extreme in rows  # the tip itself is removed


def test_modifications_are_deterministic_and_validate_sizes():
    labels = chest_mask()
    first = modify_plausible(labels, 120, np.random.default_rng(5))
    np.testing.assert_array_equal(first, modify_plausible(labels, 120, np.random.default_rng(5)))
    with pytest.raises(ValueError, match="cannot remove"):
        modify_block(labels, int((labels == HEART).sum()), np.random.default_rng(0), HEART)
    with pytest.raises(ValueError, match="cannot remove"):
        modify_plausible(np.zeros((8, 8), np.uint8), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="where"):
        modify_block(labels, 10, np.random.default_rng(0), HEART, "left")


def test_pixel_cross_entropy_against_torch_nll():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 4, (16, 16))
    probs = rng.dirichlet(np.ones(4), size=(16, 16)).transpose(2, 0, 1)
    probs[0, :2] = 0.0  # exercises the clipping
    expected = torch.nn.functional.nll_loss(
        torch.log(torch.from_numpy(probs).clamp(PROBABILITY_FLOOR, 1.0)).unsqueeze(0),
        torch.from_numpy(target).unsqueeze(0),
    )
    assert pixel_cross_entropy(probs, onehot(target, 4)) == pytest.approx(float(expected), rel=1e-12)


# ----------------------------------------------------------------------------- the experiment


def test_experiment_with_linear_encoder():
    masks = np.stack([chest_mask(shift=s) for s in (0, 2, -3)])
    encoder = linear_encoder(4)
    table = anatomical_loss_experiment(masks, 4, encoder, n_pixels=120, seed=0)
    assert list(table.columns) == ["mask_index", "variant", "changed_pixels", "l_ce", "l_ae"]
    assert len(table) == 3 * 4
    assert (table.changed_pixels == 120).all()
    expected_ce = 120 * -np.log(PROBABILITY_FLOOR) / SIZE**2
    np.testing.assert_allclose(table.l_ce, expected_ce, rtol=1e-12)  # equal across variants
    assert (table.l_ae > 0).all()
    again = anatomical_loss_experiment(masks, 4, encoder, n_pixels=120, seed=0)
    pd.testing.assert_frame_equal(table, again)
    # Rows depend only on their own mask, its index and the seed, not on the other masks.
    prefix = anatomical_loss_experiment(masks[:2], 4, encoder, n_pixels=120, seed=0)
    np.testing.assert_allclose(prefix.l_ae, table[table.mask_index < 2].l_ae, rtol=1e-6)


def test_experiment_l_ae_matches_manual_code_distance():
    masks = chest_mask()[None]
    encoder = linear_encoder(4, seed=1)
    table = anatomical_loss_experiment(masks, 4, encoder, n_pixels=50, seed=3)
    versions = modified_versions(masks[0], 50, np.random.default_rng([3, 0]))
    with torch.no_grad():
        original = encoder(torch.from_numpy(onehot(masks[0], 4)[None]))
        for variant, modified in versions.items():
            code = encoder(torch.from_numpy(onehot(modified, 4)[None]))
            manual = float(((code - original) ** 2).sum())
            assert table.set_index("variant").loc[variant, "l_ae"] == pytest.approx(manual, rel=1e-5)


def test_experiment_without_heart_and_mode_restored():
    masks = np.stack([chest_mask(heart=False), chest_mask(shift=3, heart=False)])
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(2 * SIZE * SIZE, 32)
    )
    encoder.train()
    table = anatomical_loss_experiment(masks, 3, encoder, n_pixels=80, seed=0)
    assert (table.changed_pixels == 80).all()
    assert encoder.training  # mode restored after running in eval mode


def test_experiment_rejects_bad_masks():
    with pytest.raises(ValueError, match="labels must lie"):
        anatomical_loss_experiment(chest_mask()[None], 3, linear_encoder(3))
    with pytest.raises(ValueError, match="shape"):
        anatomical_loss_experiment(chest_mask(), 4, linear_encoder(4))


def test_choose_masks():
    chosen = choose_masks(50, 20, seed=0)
    assert len(set(chosen.tolist())) == 20 and chosen.max() < 50
    np.testing.assert_array_equal(chosen, choose_masks(50, 20, seed=0))
    with pytest.raises(ValueError):
        choose_masks(5, 20)


# ----------------------------------------------------------------------------- figures


def test_plot_anatomical_loss(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        [{"mask_index": m, "variant": v, "changed_pixels": 120, "l_ce": 0.03, "l_ae": rng.uniform(1, 5) * (1 + (v != "a"))}
         for m in range(20) for v in "abcd"]
    )
    out = plot_anatomical_loss(df, tmp_path / "fig" / "fig2.png")
    assert_png_written_alone(out)


def test_plot_registration_examples(tmp_path):
    rng = np.random.default_rng(1)

    def example(dataset: str, heart: bool) -> dict:
        fixed, moving = chest_mask(heart=heart), chest_mask(shift=4, heart=heart)
        methods = {}
        for method, shift in [("acregnet", 1), ("regnet", 3), ("unregistered", 4)]:
            methods[method] = {"warped_image": rng.uniform(0, 1, (SIZE, SIZE)), "warped_labels": chest_mask(shift=shift, heart=heart)}
        return {
            "dataset": dataset, "moving_image": rng.uniform(0, 1, (SIZE, SIZE)), "fixed_image": rng.uniform(0, 1, (SIZE, SIZE)),
            "moving_labels": moving, "fixed_labels": fixed, "methods": methods,
        }

    out = plot_registration_examples([example("JSRT", True), example("Shenzhen", False)], tmp_path / "fig3.png")
    assert_png_written_alone(out)
    with pytest.raises(ValueError):
        plot_registration_examples([], tmp_path / "none.png")


def test_plot_training_curves(tmp_path):
    steps = np.arange(0, 200)
    curves = {}
    for dataset in ("JSRT", "Montgomery"):
        for method in ("acregnet", "regnet"):
            scale = 0.3 if method == "acregnet" else 0.2
            noise = np.random.default_rng(0).normal(0, 0.02, steps.size)
            train = pd.DataFrame({"step": steps, "split": "train", "total": -0.8 + scale * np.exp(-steps / 50) + noise, "ncc": -0.8})
            val = pd.DataFrame({"step": steps[::20], "split": "val", "total": -0.75 + scale * np.exp(-steps[::20] / 50), "ncc": -0.8})
            curves[(dataset, method)] = pd.concat([train, val])
        curves[(dataset, "autoencoder")] = pd.DataFrame({"step": steps, "split": "train", "total": np.exp(-steps / 40) + 0.01})
    out = plot_training_curves(curves, tmp_path / "curves.png")
    assert_png_written_alone(out)


def test_plot_dice_distributions(tmp_path):
    rng = np.random.default_rng(2)
    per_pair = pd.DataFrame(
        [{"dataset": d, "method": m, "moving": f"m{i}", "fixed": f"f{i}", "dsc": rng.uniform(0.7, 0.95)}
         for d in ("Shenzhen", "JSRT") for m in ("regnet", "acregnet", "simpleelastix") for i in range(15)]
    )
    out = plot_dice_distributions(per_pair, tmp_path / "dice.png", ["acregnet", "regnet", "simpleelastix"], ["JSRT", "Shenzhen"])
    assert_png_written_alone(out)


def test_failed_figure_leaves_no_file(tmp_path):
    with pytest.raises(KeyError):
        plot_dice_distributions(pd.DataFrame({"dataset": ["JSRT"], "method": ["m"]}), tmp_path / "bad.png", [], [])
    assert list(tmp_path.iterdir()) == []
