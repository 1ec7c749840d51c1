"""Learned registration throughput against the elastix B-spline baseline, same test pairs, one run.

Reads a finished run's pre-aligned arrays, folds and trained AC-RegNet, registers
the dataset's test pairs with the network (images only, batched, labels warped)
and with elastix (the run's B-spline settings), and reports pairs per second for
both and their ratio. Both sides include warping the moving labels.

    python benchmarks/bench_registration.py --results results --dataset JSRT --out bench.json

Run the pipeline first (``make run``); the settings are read from the config the
run used (``--configfile``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from medrepro.data.atomic import write_json
from medrepro.studies.chest.prealigned import load_prealigned
from medrepro.studies.chest.readers.convert import n_classes
from medrepro.nn.device import resolve_device
from medrepro.studies.chest.inference import load_registration_model, register_batch, warp_label_maps


def test_pairs(results: Path, dataset: str, arrays) -> tuple[np.ndarray, np.ndarray]:
    pairs = json.loads((results / "chest" / dataset / "split.json").read_text())["test_pairs"]
    return (np.array([arrays.index(m) for m, _ in pairs]), np.array([arrays.index(f) for _, f in pairs]))


def learned_seconds(model_path: Path, arrays, moving, fixed, n_classes_: int, repeats: int) -> float:
    device = resolve_device()
    model = load_registration_model(model_path, device)
    register_batch(model, arrays.images[moving[:2]], arrays.images[fixed[:2]], batch_size=32, device=device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        disp = register_batch(model, arrays.images[moving], arrays.images[fixed], batch_size=32, device=device)
        warp_label_maps(arrays.labels[moving], disp, n_classes_)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def elastix_seconds(arrays, moving, fixed, settings: dict, seed: int) -> float:
    from medrepro.studies.chest.baseline import bspline_register_pairs
    from medrepro.spatial.elastix import with_overrides
    from medrepro.studies.chest.parameters import published_map

    pmap = with_overrides(published_map("bspline"), grid_spacing=settings["grid_spacing"],
                          iterations=settings["iterations"], resolutions=settings["resolutions"],
                          spatial_samples=settings["spatial_samples"], seed=seed)
    pairs = list(zip(moving.tolist(), fixed.tolist()))
    bspline_register_pairs(arrays.images, arrays.labels, pairs[:1], pmap, spacing=None, threads=1,
                           progress=False)  # warm-up: loading itk takes ~15 s once per process
    start = time.perf_counter()
    bspline_register_pairs(arrays.images, arrays.labels, pairs, pmap, spacing=None, threads=1, progress=False)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--dataset", default="JSRT")
    parser.add_argument("--method", default="AC-RegNet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    config = yaml.safe_load(args.configfile.read_text())
    arrays_path = args.results / "chest" / args.dataset / "prealigned.npz"
    model_path = args.results / "chest" / args.dataset / "models" / f"{args.method}.pt"
    for needed in (arrays_path, model_path):
        if not needed.exists():
            print(f"error: {needed} not found: run the pipeline first (make run)", file=sys.stderr)
            return 2
    arrays = load_prealigned(arrays_path)
    moving, fixed = test_pairs(args.results, args.dataset, arrays)
    n = len(moving)
    learned = learned_seconds(model_path, arrays, moving, fixed, n_classes(args.dataset), args.repeats)
    elastix = elastix_seconds(arrays, moving, fixed, config["chest"]["elastix_bspline"], config["seed"])
    result = {
        "dataset": args.dataset, "method": args.method, "pairs": n, "image_size": int(arrays.images.shape[-1]),
        "learned_pairs_per_second": n / learned, "elastix_pairs_per_second": n / elastix,
        "speedup_learned_over_elastix": elastix / learned, "device": str(resolve_device()),
        "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
        "elastix_settings": config["chest"]["elastix_bspline"],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
