"""Otsu's threshold: a bimodal histogram split between its modes, at the split a reference implementation finds
(scikit-image where it is installed, else a brute-force search of the between-class variance)."""

import numpy as np
import pytest

from medrepro.spatial.threshold import otsu_threshold


def bimodal(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.8, 0.1, 4000), rng.normal(3.2, 0.1, 6000)])


def brute_force_otsu(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """The range (lowest, highest bin centre) of the splits ``value <= t`` with the largest between-class
    variance, each split's variance computed from its two classes directly."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    scores = []
    for k in range(bins - 1):
        low, high = counts[: k + 1], counts[k + 1:]
        w0, w1 = low.sum(), high.sum()
        if w0 == 0 or w1 == 0:
            scores.append(0.0)
            continue
        m0 = (low * centres[: k + 1]).sum() / w0
        m1 = (high * centres[k + 1:]).sum() / w1
        scores.append(w0 * w1 * (m0 - m1) ** 2)
    scores = np.asarray(scores)
    best = np.flatnonzero(scores >= scores.max() * (1 - 1e-9))
    return float(centres[best[0]]), float(centres[best[-1]])


def test_a_bimodal_histogram_is_split_in_the_gap_between_its_modes():
    threshold = otsu_threshold(bimodal())
    assert 1.6 < threshold < 2.4  # the middle of the gap between the modes


def test_the_threshold_is_the_split_of_largest_between_class_variance():
    values = bimodal(1)
    threshold = otsu_threshold(values)
    try:
        from skimage.filters import threshold_otsu
    except ImportError:
        low, high = brute_force_otsu(values)
        assert low <= threshold <= high
        assert threshold == pytest.approx((low + high) / 2)
    else:  # scikit-image takes the first of equally good splits; both lie in the empty gap between the modes
        reference = threshold_otsu(values, nbins=256)
        separated = values[(values > min(threshold, reference)) & (values < max(threshold, reference))]
        assert separated.size == 0


def test_an_unequal_mixture_is_still_split_between_its_modes():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.normal(10.0, 2.0, 50_000), rng.normal(60.0, 5.0, 5_000)])
    threshold = otsu_threshold(values)
    low, high = brute_force_otsu(values)
    assert 20.0 < threshold < 50.0 and low <= threshold <= high
