"""Multi-atlas segmentation and RCA throughput, and the projected time for all 112,120 ChestX-ray14 images.

Three stages are timed per image, as the ``cxr14_segment`` and ``cxr14_rca``
jobs run them: elastix similarity pre-alignment onto the atlas reference (the
run's settings), multi-atlas segmentation (atlas choice, ``n_atlases``
registrations with AC-RegNet, label warping, majority vote) and RCA (one
registration per reference). Measured on a finished run (its atlases, model
and ChestX-ray14 images), then once more for the network stages at the
paper's scale (256 x 256, every JSRT training image as an RCA reference) with
an untrained network of the same architecture, whose cost does not depend on
its weights. The projection multiplies the per-image seconds by 112,120.

    python benchmarks/bench_multiatlas.py --results results --images 24 --out bench.json
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from medrepro.studies.chest.cxr14.multiatlas import segment
from medrepro.studies.chest.cxr14.rca import rca_scores
from medrepro.data.atomic import write_json
from medrepro.studies.chest.cxr14.dataset import IMAGES_DIR, read_cxr14_image
from medrepro.studies.chest.networks import VectorCNN
from medrepro.studies.chest.prealign import prealign_images
from medrepro.spatial.elastix import with_overrides
from medrepro.studies.chest.parameters import published_map
from medrepro.nn.device import resolve_device, place
from medrepro.studies.chest.inference import load_registration_model

FULL_SET = 112_120
PAPER_SIZE = 256
PAPER_REFERENCES = 197  # the authors' JSRT training fold


def _timed(fn, repeats: int = 1):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def network_seconds(model, images, atlas_images, atlas_labels, n_classes, n_atlases, batch_size, device) -> dict:
    """Seconds per image for multi-atlas segmentation and for RCA against every atlas."""
    segment(model, images[:2], atlas_images, atlas_labels, n_classes, k=n_atlases, batch_size=batch_size,
            device=device)  # warm-up
    seg_s, seg = _timed(lambda: segment(model, images, atlas_images, atlas_labels, n_classes, k=n_atlases,
                                        batch_size=batch_size, device=device))
    rca_s, _ = _timed(lambda: rca_scores(model, images, seg.masks, atlas_images, atlas_labels, n_classes,
                                         batch_size=batch_size, device=device))
    return {"segment_s_per_image": seg_s / len(images), "rca_s_per_image": rca_s / len(images),
            "rca_references": len(atlas_images)}


def paper_scale(n_images: int, n_atlases: int, batch_size: int, device) -> dict:
    rng = np.random.default_rng(0)
    images = rng.random((n_images, PAPER_SIZE, PAPER_SIZE), dtype=np.float32)
    atlas_images = rng.random((PAPER_REFERENCES, PAPER_SIZE, PAPER_SIZE), dtype=np.float32)
    atlas_labels = rng.integers(0, 4, (PAPER_REFERENCES, PAPER_SIZE, PAPER_SIZE), dtype=np.uint8)
    model = place(VectorCNN(), device).eval()
    return network_seconds(model, images, atlas_images, atlas_labels, 4, n_atlases, batch_size, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--images", type=int, default=24, help="ChestX-ray14 images timed")
    parser.add_argument("--paper-images", type=int, default=4, help="images timed at the paper's scale")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.configfile).read_text())
    cxr14, prealign = config["cxr14"], config["chest"]["prealign"]
    results = Path(args.results)
    torch.set_num_threads(1)  # as the jobs run (threads: 1); a cluster runs many such jobs side by side
    device = resolve_device()
    atlas = np.load(results / "cxr14" / "atlases.npz")
    model = load_registration_model(results / "chest" / cxr14["atlas_dataset"] / "models" / "AC-RegNet.pt", device)
    names = pd.read_csv(results / "cxr14" / "manifest.csv", dtype={"image": str})["image"].tolist()[: args.images]
    raw = Path(cxr14["raw_dir"]) if cxr14["source"] == "verify" else results / "raw" / "ChestX-ray14"

    pmap = with_overrides(published_map("similarity"), iterations=prealign["iterations"],
                          resolutions=prealign["resolutions"], spatial_samples=prealign["spatial_samples"],
                          seed=config["seed"])
    reference = atlas["reference_image"]
    stream = lambda: ((n, read_cxr14_image(raw / IMAGES_DIR / n)) for n in names)  # noqa: E731
    prealign_images(stream(), reference, atlas["atlas_images"].shape[-1], reference.shape[0], pmap, threads=1,
                    progress=False)  # loads itk and warms elastix up
    prealign_s, (images, _) = _timed(lambda: prealign_images(
        stream(), reference, atlas["atlas_images"].shape[-1], reference.shape[0], pmap, threads=1, progress=False))
    run_scale = network_seconds(model, images, atlas["atlas_images"], atlas["atlas_labels"], int(atlas["n_classes"]),
                                cxr14["n_atlases"], cxr14["batch_size"], device)
    run_scale["prealign_s_per_image"] = prealign_s / len(names)
    per_image = run_scale["prealign_s_per_image"] + run_scale["segment_s_per_image"] + run_scale["rca_s_per_image"]
    run_scale.update(images=len(names), image_size=int(images.shape[-1]), images_per_second=1.0 / per_image,
                     projected_hours_112120=per_image * FULL_SET / 3600)

    paper = paper_scale(args.paper_images, cxr14["n_atlases"], cxr14["batch_size"], device)
    paper_network = paper["segment_s_per_image"] + paper["rca_s_per_image"]
    paper.update(images=args.paper_images, image_size=PAPER_SIZE,
                 network_projected_hours_112120=paper_network * FULL_SET / 3600,
                 segment_only_projected_hours_112120=paper["segment_s_per_image"] * FULL_SET / 3600)

    report = {"device": str(device), "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
              "processor": platform.processor() or platform.machine(), "run_scale": run_scale,
              "paper_scale_network": paper}
    text = yaml.safe_dump(report, sort_keys=False)
    print(text)
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
