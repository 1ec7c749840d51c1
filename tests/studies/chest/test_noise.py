"""The border-swap noise model of the denoising autoencoder."""

import numpy as np
import pytest

from medrepro.studies.chest.noise import border_pixels, corrupt_borders


def blob_masks(n: int, size: int, seed: int) -> np.ndarray:
    """Masks with three overlapping elliptical structures on background."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        for label in (1, 2, 3):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.1, 0.3, 2) * size
            masks[i][((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1] = label
    return masks


def test_border_pixel_definition_on_a_row():
    row = np.array([[0, 0, 1, 1, 1, 2, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(border_pixels(row)[0], [0, 0, 1, 0, 0, 1, 1, 0])
    swapped = corrupt_borders(row, p=1.0, rng=np.random.default_rng(0))
    # every border pixel takes its (clean) left neighbour's label; no propagation along the row
    np.testing.assert_array_equal(swapped[0], [0, 0, 0, 1, 1, 1, 2, 0])


def test_p_zero_is_identity_and_returns_a_copy():
    masks = blob_masks(3, 32, seed=0)
    out = corrupt_borders(masks, p=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, masks)
    assert out is not masks and out.dtype == masks.dtype


def test_only_border_pixels_change_to_their_left_neighbour():
    masks = blob_masks(20, 48, seed=1)
    out = corrupt_borders(masks, p=0.3, rng=np.random.default_rng(1))
    changed = out != masks
    assert changed.any()
    assert not (changed & ~border_pixels(masks)).any()
    assert not changed[..., 0].any()
    n, r, c = np.nonzero(changed)
    np.testing.assert_array_equal(out[n, r, c], masks[n, r, c - 1])


def test_change_rate_among_border_pixels_is_p():
    masks = blob_masks(200, 64, seed=2)
    border = border_pixels(masks)
    for p in (0.1, 0.5):
        out = corrupt_borders(masks, p=p, rng=np.random.default_rng(2))
        rate = (out != masks)[border].mean()
        assert rate == pytest.approx(p, abs=0.01), (p, rate, border.sum())


def test_two_dimensional_input_and_reproducibility():
    mask = blob_masks(1, 32, seed=3)[0]
    a = corrupt_borders(mask, 0.5, np.random.default_rng(5))
    b = corrupt_borders(mask, 0.5, np.random.default_rng(5))
    assert a.shape == mask.shape
    np.testing.assert_array_equal(a, b)
    assert (a != mask).any()


def test_argument_checks():
    mask = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="rng"):
        corrupt_borders(mask, 0.1)
    with pytest.raises(ValueError, match="probability"):
        corrupt_borders(mask, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="integer"):
        corrupt_borders(mask.astype(float), 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        corrupt_borders(np.zeros(8, dtype=np.uint8), 0.1, np.random.default_rng(0))
