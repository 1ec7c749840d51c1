"""Aggregated local results: the batched evaluation against the patch-by-patch loop, on the same mammograms.

Both evaluate the x0.5 tissue classifier of the configured size (``mammo_tissue`` section of the config: patch,
width, hidden, base crop, grid) on every grid cell of ``--mammograms`` base images and must agree to 1e-5
(:mod:`medrepro.studies.mammo_tissue.aggregation`). The weights are untrained and seeded: the cost of a forward
pass does not depend on their values; the images are random optical densities at the base size. One thread each
(``--threads``: 1, as the workflow's job runs); each timing after an untimed warm-up.

    python benchmarks/bench_mammo_tissue.py --out benchmarks/results/mammo_tissue.json [--config config/paper.yaml]

The ratio is the batched mammograms/s divided by the loop's (> 1: batching is faster).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from medrepro.data.atomic import write_json  # noqa: E402
from timing import timed  # noqa: E402  (benchmarks/, the script's folder)
from medrepro.studies.mammo_tissue import aggregation, networks, patches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--mammograms", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both (the workflow's job: 1)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    section = yaml.safe_load(Path(args.config).read_text())["mammo_tissue"]
    base, patch, grid = section["base"]["crop"], section["samples"]["patch"], section["aggregation"]["grid"]
    factor = section["aggregation"]["factor"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = networks.TissueClassifier(patch, section["classifier"]["width"], section["classifier"]["hidden"]).eval()
    size = int(round(base / factor))
    images = np.random.default_rng(0).normal(2.0, 0.6, (args.mammograms, size, size)).astype(np.float32)
    padded = patches.pad(images, patch, section["classifier"]["fill"])
    run = dict(model=model, padded=padded, factor=factor, patch=patch, base=base, grid=grid)
    aggregation.local_results(**{**run, "padded": padded[:1]})  # warm-up
    batched_s, batched = timed(lambda: aggregation.local_results(**run))
    loop_s, loop = timed(lambda: aggregation.local_results_loop(**run))
    difference = float(np.abs(batched - loop).max())
    report = {"config": args.config, "threads": args.threads, "base": base, "patch": patch, "grid": grid,
              "mammograms": args.mammograms,
              "patches": args.mammograms * grid * grid, "batched_s": round(batched_s, 3), "loop_s": round(loop_s, 3),
              "batched_per_s": round(args.mammograms / batched_s, 3), "loop_per_s": round(args.mammograms / loop_s, 3),
              "speed_up": round(loop_s / batched_s, 2), "max_abs_difference": difference,
              "equal_to_1e-5": difference <= 1e-5}
    print(report)
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
