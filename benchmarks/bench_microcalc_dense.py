"""Dense inference of the microcalcification networks against the patch-by-patch reference, on the same region.

Both compute P(positive) of the patch centred at every pixel of a ``--size`` x ``--size`` region, in the middle of
a random image ``--patch`` pixels larger on each side (every patch reads image pixels only), with a Segmentator of
the given ``--patch`` and ``--variant`` at the default widths; they must agree to 1e-5
(:mod:`medrepro.studies.microcalc.dense`). The weights are untrained and seeded: the cost of a forward pass does
not depend on their values. One thread each by default (``--threads``, as the workflow's job runs); each timing
after an untimed warm-up on a small region.

    python benchmarks/bench_microcalc_dense.py --size 256 --patch 49 --variant valid --out results.json

The speed-up is the dense pixels/s divided by the reference's (> 1: dense is faster).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from medrepro.data.atomic import write_json  # noqa: E402
from timing import timed  # noqa: E402  (benchmarks/, the script's folder)
from medrepro.studies.microcalc import dense, networks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="side of the region in pixels")
    parser.add_argument("--patch", type=int, default=49, help="patch side N (odd)")
    parser.add_argument("--variant", choices=networks.VARIANTS, default="valid")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both (the workflow's job: 1)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = networks.Segmentator(args.patch, args.variant).eval()
    side = args.size + 2 * args.patch
    image = np.random.default_rng(0).normal(0.5, 0.2, (side, side)).astype(np.float32)
    region = (slice(args.patch, args.patch + args.size),) * 2
    warm_up = (slice(args.patch, args.patch + 8),) * 2
    dense.dense_probabilities(model, image, region=warm_up)
    dense.patch_probabilities(model, image, region=warm_up)
    dense_s, fast = timed(lambda: dense.dense_probabilities(model, image, region=region))
    patch_s, reference = timed(lambda: dense.patch_probabilities(model, image, region=region))
    difference = float(np.abs(fast - reference).max())
    pixels = args.size ** 2
    report = {"size": args.size, "patch": args.patch, "variant": args.variant, "threads": args.threads,
              "widths": list(model.widths), "pixels": pixels, "torch": torch.__version__,
              "dense_s": round(dense_s, 3), "patch_s": round(patch_s, 3),
              "dense_pixels_per_s": round(pixels / dense_s, 1), "patch_pixels_per_s": round(pixels / patch_s, 1),
              "speed_up": round(patch_s / dense_s, 2), "max_abs_difference": difference,
              "equal_to_1e-5": difference <= 1e-5}
    print(report)
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
