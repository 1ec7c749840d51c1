"""The balanced sampler's share of a microcalcification training step: drawing a minibatch on the fly must not slow
training down.

A patch database of random patches (``--patches`` training patches per class, 256 validation patches) is written
in a temporary folder; the sampler holds its training patches in memory. A Segmentator (or Detector, ``--label``)
of the default widths is then trained for ``--steps`` steps of ``--batch`` patches through
:func:`medrepro.studies.microcalc.training.train_network`, which times each step from the sampler's call to the end
of the optimiser's step, the first step left out. The share is the sampler's time (drawing the batch and gathering
its turned and mirrored pixels) over the steps' time; on the CPU it must stay under 5%. The sampler's cost alone
(:func:`medrepro.studies.microcalc.patchdb.sampler_cost`, 20 batches) is reported beside it.

    python benchmarks/bench_microcalc_sampling.py --batch 256 --threads 2 --out results.json

Random pixels cost a step what real ones do: neither the sampler's gathers nor the network's arithmetic look at
the values.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from medrepro.data.atomic import write_json  # noqa: E402
from medrepro.nn.training import TrainingSettings  # noqa: E402
from medrepro.studies.microcalc import networks, patchdb, training  # noqa: E402
from medrepro.studies.microcalc.patches import CLASSES  # noqa: E402

SHARE_LIMIT = 0.05
VALIDATION_PATCHES = 256


def random_database(path: Path, patch: int, per_class: int, seed: int = 0) -> Path:
    """A finished patch database of random patches: ``per_class`` training patches of each class, and a validation
    and a test set of :data:`VALIDATION_PATCHES` spread over the classes, each set from an image of its own."""
    rng = np.random.default_rng(seed)
    with patchdb.writing_database(path, patch, {"settings": {"patch_size": patch}}) as writer:
        sizes = {"train": per_class * len(CLASSES), "val": VALIDATION_PATCHES, "test": VALIDATION_PATCHES}
        for split, n in sizes.items():
            placeholder = np.zeros((patch, patch), dtype=np.float32)  # the images table records its shape alone
            image = writer.add_image(patchdb.Mammogram(f"random_{split}", placeholder, placeholder.astype(bool),
                                                       f"random_{split}", "0" * 64, digital=True), split)
            classes = np.resize(np.asarray(CLASSES), n)
            for start in range(0, n, 4096):  # a few thousand patches at a time bound the memory
                chunk = slice(start, min(start + 4096, n))
                count = chunk.stop - chunk.start
                pixels = rng.random((count, patch, patch), dtype=np.float32)
                centre = np.full(count, patch // 2)
                writer.add_patches(image, split, centre, centre, classes[chunk], pixels)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="minibatch size (the paper's: 256)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the workflow's job: 1)")
    parser.add_argument("--patch", type=int, default=49, help="patch side N (odd; the paper's: 49)")
    parser.add_argument("--variant", choices=networks.VARIANTS, default="same")
    parser.add_argument("--label", choices=("detector", "segmentator"), default="segmentator")
    parser.add_argument("--steps", type=int, default=12, help="training steps (the first is not timed)")
    parser.add_argument("--patches", type=int, default=2000, help="training patches per class")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="JSON report")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        database = random_database(folder / "patches.sqlite", args.patch, args.patches)
        settings = TrainingSettings(steps=args.steps, checkpoint_path=folder / "run.ckpt",
                                    log_csv=folder / "run.losses.csv", out_path=folder / "run.pt",
                                    batch_size=args.batch, device=args.device, threads=args.threads,
                                    checkpoint_every=args.steps + 1, val_every=args.steps, progress=False)
        summary = training.train_network(database, args.label, args.variant, settings)
        with patchdb.PatchDatabase(database) as db:
            device = torch.device(summary["device"])
            sampler = patchdb.BalancedSampler(db, args.label, batch_size=args.batch,
                                              device=device if device.type == "cuda" else None)
            alone = patchdb.sampler_cost(sampler, batches=20)
    share = summary["sampling_share"]
    report = {"label": args.label, "variant": args.variant, "patch": args.patch, "batch": args.batch,
              "widths": list(networks.DEFAULT_WIDTHS), "threads": args.threads, "device": summary["device"],
              "torch": torch.__version__, "training_patches": args.patches * len(CLASSES), "steps": args.steps,
              "timed_steps": summary["timed_steps"], "step_s": round(summary["timed_step_seconds"], 4),
              "sampling_ms_per_step": round(1000 * summary["sampling_seconds_per_step"], 3),
              "sampler_alone_ms": round(1000 * alone, 3), "sampling_share": round(share, 5),
              "share_limit": SHARE_LIMIT, "under_limit": bool(share < SHARE_LIMIT)}
    print(report)
    if args.out:
        write_json(args.out, report)
    if summary["device"] == "cpu" and not share < SHARE_LIMIT:
        sys.exit(f"the sampler takes {share:.1%} of a training step on the CPU, above {SHARE_LIMIT:.0%}")


if __name__ == "__main__":
    main()
