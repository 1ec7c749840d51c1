"""How long Snakemake takes to plan the paper-scale run (112,120 ChestX-ray14 images), and how many jobs.

A dry run of ``config/paper.yaml``: nothing is read but the config, so the
images need not exist. The job count comes from Snakemake's own job table.

    python benchmarks/bench_planning.py --out bench.json
"""

from __future__ import annotations

import argparse
import os
import tempfile

from medrepro.data.atomic import write_json
from medrepro.pipeline.planning import dry_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/paper.yaml")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counts, seconds = dry_run(args.configfile, f"{tmp}/results")
    report = {"configfile": args.configfile, "dry_run_seconds": round(seconds, 2), "jobs": counts.get("total"),
              "cxr14_segment_jobs": counts.get("cxr14_segment"), "cxr14_rca_jobs": counts.get("cxr14_rca"),
              "cpus": os.cpu_count()}
    print(report)
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
