"""Multi-atlas segmentation: global NCC, atlas selection, majority voting, the segmentation loop."""

from collections import Counter

import numpy as np
import pytest
import torch

from medrepro.studies.chest.cxr14.multiatlas import global_ncc, majority_vote, segment, select_atlases
from medrepro.errors import ConfigError
from support.phantoms import ConstantField

SIZE, N_CLASSES = 16, 4


def random_atlases(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth-ish images and blocky 4-class label maps (4x4 blocks)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, SIZE, SIZE)).astype(np.float32)
    blocks = rng.integers(0, N_CLASSES, (n, SIZE // 4, SIZE // 4))
    labels = np.kron(blocks, np.ones((4, 4), dtype=np.int64)).astype(np.uint8)
    return images, labels


def slow_vote(stack: np.ndarray) -> np.ndarray:
    """Per-pixel most frequent label; the lowest label among ties."""
    t, k, h, w = stack.shape
    out = np.zeros((t, h, w), dtype=np.uint8)
    for i in range(t):
        for y in range(h):
            for x in range(w):
                counts = Counter(stack[i, :, y, x].tolist())
                top = max(counts.values())
                out[i, y, x] = min(label for label, count in counts.items() if count == top)
    return out


# --- global_ncc ---------------------------------------------------------------------------------------------


def test_global_ncc_matches_corrcoef():
    rng = np.random.default_rng(0)
    targets = rng.random((5, SIZE, SIZE)).astype(np.float32)
    atlases = rng.random((7, SIZE, SIZE)).astype(np.float32)
    atlases[2] = 0.3 * targets[1] + 0.2  # a positive linear copy
    atlases[3] = 1.0 - targets[4]  # an inverted copy
    ncc = global_ncc(targets, atlases)
    assert ncc.shape == (5, 7)
    for t in range(5):
        for a in range(7):
            expected = np.corrcoef(targets[t].ravel().astype(np.float64), atlases[a].ravel().astype(np.float64))[0, 1]
            assert ncc[t, a] == pytest.approx(expected, abs=1e-10)
    assert ncc[1, 2] == pytest.approx(1.0, abs=1e-6)
    assert ncc[4, 3] == pytest.approx(-1.0, abs=1e-6)


def test_global_ncc_of_constant_images_is_zero():
    rng = np.random.default_rng(1)
    targets = np.stack([np.full((SIZE, SIZE), 0.37, np.float32), rng.random((SIZE, SIZE)).astype(np.float32)])
    atlases = np.stack([rng.random((SIZE, SIZE)).astype(np.float32), np.zeros((SIZE, SIZE), np.float32)])
    ncc = global_ncc(targets, atlases)
    assert np.isfinite(ncc).all()
    assert ncc[0, 0] == 0.0 and ncc[0, 1] == 0.0 and ncc[1, 1] == 0.0
    assert ncc[1, 0] != 0.0


def test_global_ncc_rejects_mismatched_sizes():
    with pytest.raises(ValueError):
        global_ncc(np.zeros((2, 8, 8)), np.zeros((2, 16, 16)))


# --- select_atlases -----------------------------------------------------------------------------------------


def test_select_atlases_finds_the_source_of_noisy_copies():
    rng = np.random.default_rng(2)
    atlases = rng.random((9, SIZE, SIZE))
    sources = np.array([3, 0, 8, 5, 3])
    targets = atlases[sources] + rng.normal(0, 0.05, (len(sources), SIZE, SIZE))
    chosen = select_atlases(global_ncc(targets, atlases), k=3)
    assert chosen.shape == (5, 3)
    np.testing.assert_array_equal(chosen[:, 0], sources)
    np.testing.assert_array_equal(select_atlases(global_ncc(targets, atlases), k=1)[:, 0], sources)


def test_select_atlases_orders_by_similarity_and_breaks_ties_by_lower_index():
    ncc = np.array([[0.5, 0.9, 0.5, 0.9, 0.1],
                    [0.2, 0.2, 0.2, 0.2, 0.2],
                    [-0.1, 0.3, 0.7, 0.3, 0.0]])
    np.testing.assert_array_equal(select_atlases(ncc, 3), [[1, 3, 0], [0, 1, 2], [2, 1, 3]])
    np.testing.assert_array_equal(select_atlases(ncc, 5)[2], [2, 1, 3, 4, 0])


@pytest.mark.parametrize("k", [0, -1, 6])
def test_select_atlases_rejects_bad_k(k):
    with pytest.raises(ConfigError, match="1..5"):
        select_atlases(np.zeros((2, 5)), k)


# --- majority_vote ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_majority_vote_matches_slow_reference(seed, k):
    rng = np.random.default_rng(seed * 10 + k)
    stack = rng.integers(0, N_CLASSES, (3, k, 9, 11)).astype(np.uint8)
    voted = majority_vote(stack, N_CLASSES)
    assert voted.dtype == np.uint8 and voted.shape == (3, 9, 11)
    np.testing.assert_array_equal(voted, slow_vote(stack))


def test_majority_vote_ties_go_to_the_lowest_label():
    votes = np.array([
        [1, 2],           # 1-1 tie between structures -> 1
        [0, 3],           # tie with background -> 0
        [3, 3, 2, 2],     # 2-2 tie -> 2
        [3, 2, 1, 3, 2],  # 3 and 2 tie with two each -> 2
        [3, 3, 0, 1, 2],  # plurality of 3
    ], dtype=object)
    for candidates, expected in zip(votes, [1, 0, 2, 2, 3]):
        stack = np.array(candidates, dtype=np.uint8).reshape(1, -1, 1, 1)
        assert majority_vote(stack, N_CLASSES)[0, 0, 0] == expected


def test_majority_vote_label_sets():
    rng = np.random.default_rng(5)
    only_0_and_3 = np.where(rng.random((2, 5, 6, 6)) < 0.5, 0, 3).astype(np.uint8)
    voted = majority_vote(only_0_and_3, N_CLASSES)
    assert set(np.unique(voted)) <= {0, 3}
    np.testing.assert_array_equal(voted, slow_vote(only_0_and_3))
    single = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(majority_vote(single, 1), np.zeros((2, 4, 4)))
    np.testing.assert_array_equal(majority_vote(np.full((1, 3, 4, 4), 2, np.int64), N_CLASSES), 2)


def test_majority_vote_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        majority_vote(np.full((1, 2, 4, 4), 4, np.uint8), N_CLASSES)
    with pytest.raises(ValueError):
        majority_vote(np.zeros((2, 4, 4), np.uint8), N_CLASSES)


# --- segment ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atlas_case():
    atlas_images, atlas_labels = random_atlases(8, seed=3)
    rng = np.random.default_rng(4)
    # each target mixes two atlases, so several atlases are similar to it
    mix = rng.integers(0, 8, (7, 2))
    targets = (0.6 * atlas_images[mix[:, 0]] + 0.4 * atlas_images[mix[:, 1]]
               + rng.normal(0, 0.05, (7, SIZE, SIZE))).astype(np.float32)
    return targets, atlas_images, atlas_labels


@pytest.mark.parametrize("k, batch_size", [(5, 64), (3, 7), (2, 1), (8, 16)])
def test_segment_with_identity_model_votes_the_chosen_atlases(atlas_case, k, batch_size):
    targets, atlas_images, atlas_labels = atlas_case
    model = ConstantField()
    result = segment(model, targets, atlas_images, atlas_labels, N_CLASSES, k=k, batch_size=batch_size)
    ncc = global_ncc(targets, atlas_images)
    chosen = select_atlases(ncc, k)
    np.testing.assert_array_equal(result.atlas_index, chosen)
    np.testing.assert_allclose(result.atlas_ncc, np.take_along_axis(ncc, chosen, axis=1), atol=1e-12)
    assert result.masks.dtype == np.uint8 and result.masks.shape == targets.shape
    np.testing.assert_array_equal(result.masks, slow_vote(atlas_labels[chosen]))
    # atlases are the moving images and targets the fixed ones, target by target, best atlas first
    moving = np.concatenate([m for m, _ in model.calls])
    fixed = np.concatenate([f for _, f in model.calls])
    np.testing.assert_array_equal(moving, atlas_images[chosen.ravel()])
    np.testing.assert_array_equal(fixed, np.repeat(targets, k, axis=0))
    assert max(len(m) for m, _ in model.calls) <= max(batch_size, k)


def test_segment_warps_the_atlas_labels_by_the_displacement(atlas_case):
    targets, atlas_images, atlas_labels = atlas_case
    result = segment(ConstantField(dx=4.0), targets, atlas_images, atlas_labels, N_CLASSES, k=1)
    # output pixel x reads the atlas at x + 4; beyond the right edge the edge column repeats
    chosen = atlas_labels[result.atlas_index[:, 0]]
    shifted = np.concatenate([chosen[:, :, 4:], np.repeat(chosen[:, :, -1:], 4, axis=2)], axis=2)
    np.testing.assert_array_equal(result.masks, shifted)


def test_segment_validates_inputs(atlas_case):
    targets, atlas_images, atlas_labels = atlas_case
    with pytest.raises(ConfigError):
        segment(ConstantField(), targets, atlas_images, atlas_labels, N_CLASSES, k=9)
    with pytest.raises(ValueError):
        segment(ConstantField(), targets, atlas_images[:5], atlas_labels, N_CLASSES)
    with pytest.raises(ValueError):
        segment(ConstantField(), targets[:, :8, :8], atlas_images, atlas_labels, N_CLASSES)


def test_segment_runs_the_real_network_independently_of_chunking(atlas_case):
    from medrepro.studies.chest.networks import VectorCNN

    targets, atlas_images, atlas_labels = atlas_case
    torch.manual_seed(0)
    model = VectorCNN().eval()
    one_pass = segment(model, targets, atlas_images, atlas_labels, N_CLASSES, k=3, batch_size=64, device="cpu")
    chunked = segment(model, targets, atlas_images, atlas_labels, N_CLASSES, k=3, batch_size=4, device="cpu")
    assert one_pass.masks.max() < N_CLASSES
    np.testing.assert_array_equal(one_pass.atlas_index, chunked.atlas_index)
    assert (one_pass.masks == chunked.masks).mean() > 0.99
