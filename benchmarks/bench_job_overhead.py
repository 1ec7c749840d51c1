"""Where the smoke run's time goes, job by job: interpreter and library start-up, the step itself, and Snakemake.

Runs the smoke config (or the studies given) from empty into a temporary directory with a ``sitecustomize``
(benchmarks/job_overhead/) that times each job process's first import of the heavy libraries, then joins that with
the jobs' provenance records (process start, step start and end). Per rule: jobs, start-up before the step
(interpreter, Snakemake's script preamble, module imports; from the record's process start, where it has one),
the step, the whole process (from the operating system's process start to its exit) and the heavy libraries it
imported with their seconds. The run's wall time x cores minus the processes' time is what Snakemake spent
between jobs (and cores left idle by the job graph).

Each mode runs the same workflow from empty: ``warm`` (jobs start in forks of the run's warm-start server,
medrepro.pipeline.warm) and ``cold`` (MEDREPRO_WARM=0: every job in its own process, the baseline); the report
gives each and the ratio of their wall times. ``--workdir`` runs another checkout's workflow (an earlier commit).

    python benchmarks/bench_job_overhead.py --out benchmarks/results/job_overhead.json [--studies chest,cxr14]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from medrepro.data.atomic import write_json  # noqa: E402
from medrepro.provenance.run_times import job_times, read_records  # noqa: E402


MODES = {"warm": {}, "cold": {"MEDREPRO_WARM": "0"}}


def run_smoke(results: Path, studies: str | None, import_log: Path, cores: int, workdir: Path,
              mode: str = "warm") -> float:
    """The smoke workflow from empty; its wall time in seconds."""
    env = {**os.environ, **MODES[mode], "MEDREPRO_IMPORT_LOG": str(import_log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "benchmarks/job_overhead"),
                                                       os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", "config/smoke.yaml",
               "--config", f"results_dir={results}"]
    if studies:
        command += ["--", *studies.split(",")]
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def breakdown(records: list[dict], imports: list[dict]) -> dict[str, dict]:
    """Per rule: jobs and summed seconds of start-up, each library's import, the rest of the step, the process."""
    per_rule: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    times = job_times(records)
    for row in times.itertuples():
        entry = per_rule[row.rule]
        entry["jobs"] += 1
        entry["startup_s"] += row.startup_s
        entry["step_s"] += row.step_s
    for line in imports:
        per_rule[line["rule"]]["process_s"] += line["lifetime_s"]
        for library, seconds in line["imports"].items():
            per_rule[line["rule"]][f"import_{library}_s"] += seconds
    return {rule: {k: round(v, 2) for k, v in sorted(entry.items())} for rule, entry in sorted(per_rule.items())}


def measure(mode: str, args, folder: Path) -> dict:
    """One run of the smoke workflow in ``mode``: its wall time, the machine's time divided, and per rule."""
    results, import_log = folder / mode / "results", folder / mode / "imports.jsonl"
    wall = run_smoke(results, args.studies, import_log, args.cores, args.workdir, mode)
    records = read_records(results / "provenance")
    imports = [json.loads(line) for line in import_log.read_text().splitlines()] if import_log.exists() else []
    per_rule = breakdown(records, imports)
    startup = sum(r["startup_s"] for r in per_rule.values())
    step = sum(r["step_s"] for r in per_rule.values())
    process = sum(r.get("process_s", 0.0) for r in per_rule.values())
    library = defaultdict(float)
    for entry in per_rule.values():
        for key, value in entry.items():
            if key.startswith("import_"):
                library[key[len("import_"):-2]] += value
    return {
        "mode": mode, "jobs": len(records), "warm_starts": sum(bool(r.get("warm_start")) for r in records),
        "wall_s": round(wall, 1), "core_seconds": round(wall * args.cores, 1), "process_s": round(process, 1),
        "step_s": round(step, 1), "in_process_outside_step_s": round(process - step, 1),
        "startup_s": round(startup, 1), "snakemake_and_idle_s": round(wall * args.cores - process, 1),
        "imports_by_library_s": {k: round(v, 1) for k, v in sorted(library.items(), key=lambda kv: -kv[1])},
        "per_rule": per_rule,
    }


def print_report(report: dict) -> None:
    print(json.dumps({k: v for k, v in report.items() if k != "per_rule"}, indent=1))
    for rule, entry in sorted(report["per_rule"].items(), key=lambda kv: -kv[1].get("process_s", 0.0)):
        heavy = ", ".join(f"{k[7:-2]} {v:.1f}" for k, v in entry.items() if k.startswith("import_") and v >= 0.2)
        print(f"{rule:45s} {int(entry['jobs']):3d} jobs  process {entry.get('process_s', 0):6.1f} s  "
              f"start-up {entry['startup_s']:6.1f} s  step {entry['step_s']:6.1f} s  imports: {heavy}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=None, help="comma-separated target rules (default: the whole config)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--modes", default="warm,cold", help="comma-separated: warm, cold (the baseline)")
    parser.add_argument("--workdir", type=Path, default=REPO, help="the checkout whose workflow runs (default: this one)")
    parser.add_argument("--keep", type=Path, default=None, help="write the runs here and keep them (default: a temporary folder)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reports = {mode: measure(mode, args, args.keep or Path(tmp)) for mode in args.modes.split(",")}
    summary = {"studies": args.studies or "all", "cores": args.cores, "modes": reports}
    for report in reports.values():
        print_report(report)
    if {"warm", "cold"} <= set(reports):
        summary["wall_ratio_warm_to_cold"] = round(reports["warm"]["wall_s"] / reports["cold"]["wall_s"], 3)
        print(f"wall time, warm / cold starts: {summary['wall_ratio_warm_to_cold']}")
    if args.out:
        write_json(args.out, summary)


if __name__ == "__main__":
    main()
