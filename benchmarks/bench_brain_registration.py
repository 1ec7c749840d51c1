"""Brain registration: seconds per pair of every method at the default and the native size, as ratios against ANTs,
and the peak memory of WSSAMNet's training and inference at the native size.

One synthetic BraTS-Reg case (:mod:`medrepro.studies.brain.synthetic`, 240 x 240 x 155 at 1 mm) is prepared at the
config's working resolution (``brain.voxel_mm``) and at 1 mm, and registered by each method as the evaluation does
(:mod:`medrepro.studies.brain.evaluation`: the pair registered and its follow-up landmarks carried into baseline
space), on one thread each, as the pipeline's evaluation jobs run:

* **ants**: SyN with the config's settings (``brain.ants``);
* **voxelmorph**, **wssamnet**, **wssamnet_no_attention**: the config's architectures, untrained and seeded (a
  forward pass costs the same whatever the weights), in eval mode; the median of ``--repeats`` timings after an
  untimed warm-up; on the GPU as well where CUDA is available.

Ratios are ANTs' seconds divided by the method's (> 1: faster than ANTs). Peak memory: one training step (forward
and backward of the three U-Nets and eq. 5 with both focal terms, batch 1) and one inference pass at the native
size, each in a fresh process: the process's peak resident memory on the CPU (``VmHWM``), or
``torch.cuda.max_memory_allocated`` on a GPU. The paper trained on three 12 GB GPUs, one U-Net on each.

    python benchmarks/bench_brain_registration.py --out benchmarks/results/brain_registration.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LEARNED = ("voxelmorph", "wssamnet", "wssamnet_no_attention")


def prepared_pair(voxel_mm: float, modalities, raw_root: Path):
    from medrepro.studies.brain.preprocess import prepare_case
    from medrepro.studies.brain.readers.brats_reg import index_cases

    case = index_cases(raw_root, tuple(modalities))[0]
    return prepare_case(case, "test", tuple(modalities), voxel_mm)


def method_settings(section: dict, kind: str):
    from types import SimpleNamespace

    from medrepro.studies.brain.steps import _method

    params = SimpleNamespace(modalities=section["modalities"], voxel_mm=section["voxel_mm"],
                             voxelmorph=section["voxelmorph"], wssamnet=section["wssamnet"])
    return _method(params, kind)


def time_learned(section: dict, kind: str, case, repeats: int, device: str) -> float:
    import torch

    from medrepro.nn.device import place, resolve_device, seed_everything
    from medrepro.studies.brain import evaluation

    seed_everything(0)
    network = place(method_settings(section, kind).network(), resolve_device(device)).eval()
    synchronise = torch.cuda.synchronize if device == "cuda" else None
    evaluation.with_network(network, case, synchronise)  # warm-up: oneDNN and cuDNN pick their kernels
    return statistics.median(evaluation.with_network(network, case, synchronise).seconds for _ in range(repeats))


def time_ants(section: dict, case) -> float:
    from medrepro.spatial.ants import SynSettings
    from medrepro.studies.brain import evaluation

    settings = SynSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in section["ants"].items()},
                           random_seed=1, threads=1)
    return evaluation.with_ants(case, settings).seconds


def sizes(section: dict, raw_root: Path, repeats: int, native_ants: bool) -> dict:
    import torch

    results = {}
    for label, voxel_mm in (("default", float(section["voxel_mm"])), ("native", 1.0)):
        case = prepared_pair(voxel_mm, section["modalities"], raw_root)
        seconds = {"ants": time_ants(section, case) if (label == "default" or native_ants) else None}
        for kind in LEARNED:
            seconds[kind] = time_learned(section, kind, case, repeats, "cpu")
        gpu = {kind: time_learned(section, kind, case, repeats, "cuda") for kind in LEARNED} \
            if torch.cuda.is_available() else {}
        ants = seconds["ants"]
        results[label] = {
            "voxel_mm": voxel_mm, "grid_zyx": list(case.moving.shape[1:]), "seconds_cpu_1_thread": seconds,
            "seconds_gpu": gpu,
            "ratio_vs_ants": {k: (ants / v if ants else None) for k, v in seconds.items() if k != "ants"}}
        print(label, json.dumps(results[label], indent=1), flush=True)
    return results


PEAK_SCRIPT = """
import json, resource, sys, torch
from medrepro.studies.brain import training
sys.path.insert(0, {bench!r})
from bench_brain_registration import method_settings, prepared_pair
from pathlib import Path
section = json.loads({section!r})
case = prepared_pair(1.0, section["modalities"], Path({raw!r}))
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_num_threads(1)
method = method_settings(section, "wssamnet")
network = method.network().to(device)
batches = training.PairBatches([case], method, "finetune", device, training.AffineRange())
batch = batches(__import__("numpy").random.default_rng(0))
if {mode!r} == "train":
    terms = training.loss_function(method)(network, batch)
    terms["total"].backward()
else:
    network.eval()
    with torch.no_grad():
        network(batch["moving"], batch["fixed"])
def high_water_mib():
    # VmHWM starts afresh at exec, unlike ru_maxrss, which keeps the forking parent's peak
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else high_water_mib()
print(json.dumps({{"device": device, "peak_mib": peak}}))
"""


def peak_memory(section: dict, raw_root: Path) -> dict:
    """WSSAMNet's peak memory at the native size, training step and inference, each in a fresh process."""
    out = {}
    for mode in ("train", "inference"):
        script = PEAK_SCRIPT.format(bench=str(Path(__file__).parent), section=json.dumps(section), raw=str(raw_root),
                                    mode=mode)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        out[mode] = json.loads(result.stdout.strip().splitlines()[-1])
        print(mode, out[mode], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-native-ants", action="store_true",
                        help="leave ANTs out at 1 mm (several minutes on one thread)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/brain_registration.json"))
    args = parser.parse_args()

    import torch

    from medrepro.data.atomic import write_json
    from medrepro.studies.brain.synthetic import generate_brats_reg

    torch.set_num_threads(1)
    section = yaml.safe_load(Path(args.config).read_text())["brain"]
    with tempfile.TemporaryDirectory() as folder:
        raw_root = Path(folder) / "BraTS-Reg"
        generate_brats_reg(raw_root, n_training=1, n_validation=0, seed=0, voxel_mm=1.0, landmarks=(20, 20))
        report = {"host": platform.node(), "machine": platform.processor() or platform.machine(),
                  "torch_threads": 1, "cuda": torch.cuda.is_available(),
                  "sizes": sizes(section, raw_root, args.repeats, not args.skip_native_ants),
                  "wssamnet_peak_memory_native": peak_memory(section, raw_root),
                  "max_rss_mib_parent": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
