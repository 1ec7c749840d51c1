"""Time medrepro's Dice, Hausdorff and ASSD against medpy on the same masks.

The masks are lung-shaped blobs (an ellipse per lung with a smoothly
perturbed outline); the "prediction" is the same lung with a different
perturbation, which is what a registration result looks like. Values are
checked to agree with medpy before any timing is reported; ASSD is compared
with the medpy 0.4.0 definition built from medpy's directed ``asd``.

    python benchmarks/bench_metrics.py --size 256 1024 --repeats 5 --out bench.json

Speed ratios are medpy seconds / medrepro seconds (> 1 means medrepro is faster).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
from medpy.metric import binary as medpy_binary
from scipy.ndimage import gaussian_filter

from medrepro.data.atomic import write_json
from medrepro.metrics.overlap import dice
from medrepro.metrics.surface import assd, hausdorff, surface_scores


def lung_blob(size: int, rng: np.random.Generator, centre_col: float = 0.3) -> np.ndarray:
    """One lung-like mask: an upright ellipse whose radius is modulated by smooth noise."""
    r, c = np.mgrid[:size, :size] / size
    radius = ((r - 0.48) / 0.32) ** 2 + ((c - centre_col) / 0.14) ** 2
    wobble = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 16)
    wobble *= 0.25 / (np.abs(wobble).max() + 1e-12)
    return radius + wobble < 1.0


def mask_pairs(size: int, n_pairs: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(lung_blob(size, rng), lung_blob(size, rng)) for _ in range(n_pairs)]


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def medpy_assd_040(a: np.ndarray, b: np.ndarray, spacing) -> float:
    return float(np.mean((medpy_binary.asd(a, b, spacing), medpy_binary.asd(b, a, spacing))))


def check_agreement(pairs, spacing) -> None:
    for a, b in pairs:
        np.testing.assert_allclose(dice(a, b), medpy_binary.dc(a, b), rtol=1e-12)
        np.testing.assert_allclose(hausdorff(a, b, spacing), medpy_binary.hd(a, b, spacing), rtol=1e-12)
        np.testing.assert_allclose(assd(a, b, spacing), medpy_assd_040(a, b, spacing), rtol=1e-12)


def benchmark_size(size: int, n_pairs: int, repeats: int, seed: int) -> dict:
    spacing = (0.35 * 256 / size,) * 2  # JSRT-like mm per pixel at this size
    pairs = mask_pairs(size, n_pairs, seed)
    check_agreement(pairs, spacing)
    candidates = {
        "dice": (lambda a, b: medpy_binary.dc(a, b), lambda a, b: dice(a, b)),
        "hd": (lambda a, b: medpy_binary.hd(a, b, spacing), lambda a, b: hausdorff(a, b, spacing)),
        "assd_040": (lambda a, b: medpy_assd_040(a, b, spacing), lambda a, b: assd(a, b, spacing)),
        "hd_and_assd": (
            lambda a, b: (medpy_binary.hd(a, b, spacing), medpy_assd_040(a, b, spacing)),
            lambda a, b: surface_scores(a, b, spacing),
        ),
    }
    results = {}
    for name, (reference, ours) in candidates.items():
        medpy_s = median_seconds(lambda: [reference(a, b) for a, b in pairs], repeats) / n_pairs
        ours_s = median_seconds(lambda: [ours(a, b) for a, b in pairs], repeats) / n_pairs
        results[name] = {"medpy_s": medpy_s, "medrepro_s": ours_s, "speedup": medpy_s / ours_s}
    return {"size": size, "n_pairs": n_pairs, "spacing": spacing, "metrics": results}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256, 1024], help="image sizes (square)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions; the median is reported")
    parser.add_argument("--pairs", type=int, default=4, help="mask pairs per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeats": args.repeats,
        "note": "seconds per mask pair (median over repeats); speedup = medpy / medrepro",
        "results": [benchmark_size(size, args.pairs, args.repeats, args.seed) for size in args.size],
    }
    for entry in report["results"]:
        print(f"size {entry['size']}x{entry['size']} ({entry['n_pairs']} pairs, values agree with medpy)")
        for name, r in entry["metrics"].items():
            print(f"  {name:12s} medpy {r['medpy_s'] * 1e3:9.2f} ms  medrepro {r['medrepro_s'] * 1e3:9.2f} ms  x{r['speedup']:.1f}")
    if args.out is not None:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
