"""Dual-view mammography registration throughput: the learned network against the elastix affine baseline.

Both methods register the same CC/MLO pairs in one run and deliver what the
study's evaluation uses: the pixel affine (MLO position -> CC position), the
CC warped onto the MLO grid and the CC lesion box carried onto the MLO grid.

* **learned**: the dual-view spatial transformer at the configured depth
  (``mammo_registration.network``), in eval mode without gradients, in
  batches. Its weights are untrained and seeded: the cost of a forward pass
  does not depend on the weights' values.
* **elastix**: :func:`elastix_affine.register_pairs` with the run's
  iterations and resolutions (``mammo_registration.elastix``), one elastix
  thread, followed by the same warping and box carrying.

The fair comparison is one thread each (``torch.set_num_threads(1)``, elastix
``threads=1``): a cluster runs many such jobs side by side. The learned
network is also timed with all of torch's default threads and, where CUDA is
available, on the GPU. Every timing follows an untimed warm-up (loading itk
and elastix alone takes ~20 s once per process; oneDNN prepares its kernels
on the first pass); the learned timings are medians over ``--repeats``.

Pairs: by default a small synthetic CBIS-DDSM (``--patients`` patients,
written to a temporary directory) prepared at the run's working size
(longest side 192, aspect 0.6); ``--pairs results/mammo_registration/pairs.npz``
uses a finished run's prepared pairs instead. ``--split`` picks the pairs
timed (default the test pairs, what the evaluation registers), the first
``--max-pairs`` of them (elastix takes ~1 s a pair on a busy 2-core machine).

    python benchmarks/bench_mammo_registration.py --out benchmarks/results/mammo_registration.json

Ratios are learned pairs/s divided by elastix pairs/s (> 1: the network is faster).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import yaml

from medrepro.spatial import warp
from medrepro.data.atomic import write_json
from medrepro.nn.device import place, resolve_device
from medrepro.studies.mammo_registration import elastix_affine, preprocess, synthetic
from medrepro.studies.mammo_registration.networks import carry_cc_boxes
from medrepro.studies.mammo_registration.training import build_model, views_tensor

# Used when the config file lacks the study's section (the shipped defaults).
DEFAULT_NETWORK = {"depth": 18, "head_init": "zero", "prior_angle_deg": 45.0}
DEFAULT_ELASTIX = {"iterations": 200, "resolutions": 3}
DEFAULT_PAIRS = {"longest_side": 192, "aspect": 0.6, "pairing_rule": "abnormality_id", "val_fraction": 0.25,
                 "mirror_side": "LEFT"}


# ------------------------------------------------------------------------ pairs
def synthetic_pairs(patients: int, seed: int, settings: Mapping, test_fraction: float) -> dict[str, np.ndarray]:
    """All prepared pairs of a fresh synthetic CBIS-DDSM of ``patients`` patients (written to a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="bench_mammo_") as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        synthetic.generate_cbis_ddsm(raw, n_patients=patients, seed=seed, test_fraction=test_fraction)
        prepared = preprocess.prepare(raw, longest_side=int(settings["longest_side"]), aspect=float(settings["aspect"]),
                                      pairing_rule=str(settings["pairing_rule"]),
                                      val_fraction=float(settings["val_fraction"]), seed=seed,
                                      mirror_side=settings.get("mirror_side", "LEFT"), progress=False)
    return prepared.arrays


def select_pairs(pairs: dict[str, np.ndarray], split: str, max_pairs: int) -> dict[str, np.ndarray]:
    """The first ``max_pairs`` pairs (0: all) of one split ("all": every split); none is an error worth stopping for."""
    keep = np.ones(len(pairs["split"]), dtype=bool) if split == "all" else pairs["split"] == split
    if not keep.any():
        raise SystemExit(f"error: no pair in the {split!r} split; add patients (--patients) or use --split all")
    index = np.flatnonzero(keep)[: max_pairs or None]
    return {name: value[index] for name, value in pairs.items()}


# ------------------------------------------------------------------- the timing
def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warp_and_carry(cc: torch.Tensor, matrix: torch.Tensor, mlo_shape, cc_box: torch.Tensor):
    """The evaluation's use of a matrix: the CC on the MLO grid, and its lesion box carried there."""
    return warp.affine_warp(cc, matrix, mlo_shape), carry_cc_boxes(matrix, cc_box)


@torch.no_grad()
def learned_register(model, pairs: Mapping[str, np.ndarray], batch_size: int, device: torch.device):
    """Matrices (N, 2, 3), warped CCs (N, 1, H, W) and carried boxes (N, 4) of the network, batch by batch."""
    matrices, warped, carried = [], [], []
    mlo_shape = pairs["mlo"].shape[1:]
    for start in range(0, len(pairs["cc"]), batch_size):
        part = slice(start, start + batch_size)
        cc = views_tensor(pairs["cc"][part], device)
        matrix = model(cc, views_tensor(pairs["mlo"][part], device))
        box = torch.as_tensor(np.asarray(pairs["cc_box"][part], dtype=np.float32), device=device)
        image, moved_box = warp_and_carry(cc, matrix, mlo_shape, box)
        matrices.append(matrix.cpu())
        warped.append(image.cpu())
        carried.append(moved_box.cpu())
    _synchronise(device)
    return torch.cat(matrices), torch.cat(warped), torch.cat(carried)


def elastix_register(pairs: Mapping[str, np.ndarray], settings: Mapping, seed: int, batch_size: int):
    """The elastix matrices for every pair (one thread), then the same warping and box carrying as the network."""
    matrices, _ = elastix_affine.register_pairs(
        pairs["cc"], pairs["mlo"], pairs["cc_region"], pairs["mlo_region"], seed=seed,
        iterations=int(settings["iterations"]), resolutions=int(settings["resolutions"]), threads=1, progress=False)
    matrix = torch.from_numpy(matrices.astype(np.float32))
    cpu = torch.device("cpu")
    warped, carried = [], []
    for start in range(0, len(matrix), batch_size):
        part = slice(start, start + batch_size)
        box = torch.from_numpy(np.asarray(pairs["cc_box"][part], dtype=np.float32))
        image, moved_box = warp_and_carry(views_tensor(pairs["cc"][part], cpu), matrix[part], pairs["mlo"].shape[1:],
                                          box)
        warped.append(image)
        carried.append(moved_box)
    return matrix, torch.cat(warped), torch.cat(carried)


def check_outputs(name: str, outputs, n: int, mlo_shape) -> None:
    """Each method must deliver a finite result for every pair, or its speed means nothing."""
    matrices, warped, carried = outputs
    expected = {"matrices": (n, 2, 3), "warped": (n, 1, *mlo_shape), "boxes": (n, 4)}
    for what, value in zip(expected, (matrices, warped, carried)):
        if tuple(value.shape) != expected[what] or not torch.isfinite(value).all():
            raise RuntimeError(f"{name}: {what} has shape {tuple(value.shape)} (expected {expected[what]}) "
                               "or a non-finite value")


def time_learned(model, pairs, batch_size: int, device: torch.device, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    model = place(model, device).eval()
    check_outputs("learned", learned_register(model, pairs, batch_size, device), len(pairs["cc"]),
                  pairs["mlo"].shape[1:])  # the warm-up pass, checked
    seconds = median_seconds(lambda: learned_register(model, pairs, batch_size, device), repeats)
    return {"method": "learned", "device": str(device), "threads": threads, "seconds": seconds}


def time_elastix(pairs, settings: Mapping, seed: int, batch_size: int) -> dict:
    torch.set_num_threads(1)  # the padding warp inside register_pairs runs in torch
    first = {name: value[:1] for name, value in pairs.items()}
    elastix_register(first, settings, seed, batch_size)  # warm-up: imports itk and loads elastix
    start = time.perf_counter()
    outputs = elastix_register(pairs, settings, seed, batch_size)
    seconds = time.perf_counter() - start
    check_outputs("elastix", outputs, len(pairs["cc"]), pairs["mlo"].shape[1:])
    return {"method": "elastix", "device": "cpu", "threads": 1, "seconds": seconds}


# ------------------------------------------------------------------- reporting
def with_rates(rows: list[dict], n_pairs: int) -> list[dict]:
    """Pairs/s of every row and its ratio to elastix's pairs/s (one thread)."""
    elastix_rate = n_pairs / next(r["seconds"] for r in rows if r["method"] == "elastix")
    out = []
    for row in rows:
        rate = n_pairs / row["seconds"]
        out.append({**row, "pairs_per_second": rate, "ratio_to_elastix": rate / elastix_rate})
    return out


def print_table(rows: list[dict], header: str) -> None:
    print(header)
    print(f"  {'method':8s} {'device':7s} {'threads':>7s} {'s/pair':>9s} {'pairs/s':>9s} {'x elastix':>10s}")
    for r in rows:
        n = r["pairs_per_second"]
        print(f"  {r['method']:8s} {r['device']:7s} {r['threads']:7d} {1.0 / n:9.3f} {n:9.2f} "
              f"{r['ratio_to_elastix']:10.1f}")


def study_settings(configfile: Path) -> tuple[dict, dict, dict, int]:
    """(network, elastix, pairs) settings of the study and the run's seed; the shipped defaults fill gaps."""
    config = yaml.safe_load(configfile.read_text()) if configfile.is_file() else {}
    study = config.get("mammo_registration", {})
    network = {**DEFAULT_NETWORK, **study.get("network", {})}
    elastix = {**DEFAULT_ELASTIX, **study.get("elastix", {})}
    pairs = {**DEFAULT_PAIRS, **study.get("pairs", {})}
    return network, elastix, pairs, int(config.get("seed", 0))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--pairs", type=Path, default=None,
                        help="a prepared pairs.npz (e.g. results/mammo_registration/pairs.npz); default: synthetic")
    parser.add_argument("--split", default="test", choices=(*preprocess.SPLITS, "all"))
    parser.add_argument("--max-pairs", type=int, default=24, help="time at most this many pairs (0: all)")
    parser.add_argument("--patients", type=int, default=8, help="synthetic patients (without --pairs)")
    parser.add_argument("--test-fraction", type=float, default=0.35, help="synthetic patients in the Test split")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per network batch (the evaluation's 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the network; the median is reported")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # elastix fallbacks are worth seeing

    network, elastix, pair_settings, seed = study_settings(args.configfile)
    all_threads = torch.get_num_threads()  # torch's default before anything changes it
    if args.pairs is not None:
        pairs, source = preprocess.load_pairs(args.pairs), str(args.pairs)
    else:
        pairs = synthetic_pairs(args.patients, seed, pair_settings, args.test_fraction)
        source = f"synthetic CBIS-DDSM, {args.patients} patients, seed {seed}"
    pairs = select_pairs(pairs, args.split, args.max_pairs)
    n = len(pairs["cc"])

    torch.manual_seed(seed)
    model = build_model(network)
    cpu = torch.device("cpu")
    rows = [time_learned(model, pairs, args.batch_size, cpu, 1, args.repeats),
            time_elastix(pairs, elastix, seed, args.batch_size)]
    if all_threads > 1:
        rows.append(time_learned(model, pairs, args.batch_size, cpu, all_threads, args.repeats))
    accelerator = resolve_device("auto")
    if accelerator.type != "cpu":
        rows.append(time_learned(model, pairs, args.batch_size, accelerator, all_threads, args.repeats))
    rows = with_rates(rows, n)

    report = {
        "pairs": n, "split": args.split, "source": source, "image_shape": list(pairs["cc"].shape[1:]),
        "depth": int(network["depth"]), "batch_size": args.batch_size, "repeats": args.repeats,
        "elastix_settings": {k: elastix[k] for k in ("iterations", "resolutions")}, "seed": seed,
        "learned_over_elastix_one_thread": next(r["ratio_to_elastix"] for r in rows
                                                if r["method"] == "learned" and r["threads"] == 1),
        "rows": rows, "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "note": "pairs/s include warping the CC and carrying its box; ratio = learned pairs/s / elastix pairs/s "
                "(one thread each); elastix excludes its one-pair warm-up (itk loading)",
    }
    print_table(rows, f"{n} {args.split} pairs {report['image_shape'][0]}x{report['image_shape'][1]} ({source}); "
                      f"network depth {report['depth']}, batch {args.batch_size}; elastix "
                      f"{elastix['iterations']} iterations x {elastix['resolutions']} resolutions")
    if args.out is not None:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
