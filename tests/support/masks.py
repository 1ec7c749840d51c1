"""Random smooth masks and the medpy 0.4.0 ASSD, for metric tests."""

import numpy as np
from medpy.metric import binary as medpy_binary
from scipy.ndimage import gaussian_filter


def smooth_blob(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 4.0, level: float = 0.0) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field > level * field.std()


def medpy_assd_040(a, b, spacing=None) -> float:
    """ASSD as medpy 0.4.0 defined it: mean of the two directed average surface distances."""
    return float(np.mean((medpy_binary.asd(a, b, spacing), medpy_binary.asd(b, a, spacing))))
