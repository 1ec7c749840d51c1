"""Where a run's time went, rule by rule, from its provenance records.

Every job's record holds when its process started (``process_started``), when its step started and when it
finished. Per job, *start-up* is the interpreter, Snakemake's script preamble and the imports before the step;
*step* is the work itself. Over a run, the machine's time (wall time x cores) that neither accounts for went to
Snakemake between jobs, or to cores left idle by the job graph.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from medrepro.data.atomic import write_csv

COLUMNS = ["rule", "jobs", "startup_s", "step_s", "process_s"]


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return (_dt.datetime.fromisoformat(end) - _dt.datetime.fromisoformat(start)).total_seconds()


def read_records(prov_dir: str | Path, since: str | None = None) -> list[dict]:
    """The job records under ``prov_dir/jobs`` (those that finished at or after ``since``, an ISO time)."""
    records = [json.loads(p.read_text()) for p in sorted(Path(prov_dir, "jobs").glob("*.json"))]
    if since is not None:
        cut = _dt.datetime.fromisoformat(since)
        records = [r for r in records if r.get("finished") and _dt.datetime.fromisoformat(r["finished"]) >= cut]
    return records


def job_times(records: Iterable[dict]) -> pd.DataFrame:
    """One row per job: its rule, start-up and step seconds (start-up NaN for records without a process start)."""
    rows = [{"rule": r["rule"], "startup_s": _seconds(r.get("process_started"), r["started"]),
             "step_s": _seconds(r["started"], r["finished"])} for r in records]
    return pd.DataFrame(rows, columns=["rule", "startup_s", "step_s"])


def rule_breakdown(records: Iterable[dict]) -> pd.DataFrame:
    """Per rule, most time first: jobs, summed start-up, step and process (start-up + step) seconds; a last
    row ``total``."""
    jobs = job_times(records)
    if jobs.empty:
        return pd.DataFrame(columns=COLUMNS)
    jobs["process_s"] = jobs["startup_s"].fillna(0) + jobs["step_s"]
    table = (jobs.groupby("rule").agg(jobs=("rule", "size"), startup_s=("startup_s", "sum"), step_s=("step_s", "sum"),
                                      process_s=("process_s", "sum"))
             .reset_index().sort_values(["process_s", "rule"], ascending=[False, True]))
    total = pd.DataFrame([{"rule": "total", "jobs": int(table["jobs"].sum()),
                           **{c: table[c].sum() for c in ("startup_s", "step_s", "process_s")}}])
    return pd.concat([table, total], ignore_index=True)[COLUMNS]


def summary_line(table: pd.DataFrame, wall_s: float, cores: int) -> str:
    """One line: jobs, wall time, and how the machine's time (wall x cores) divides."""
    total = table.iloc[-1]
    machine = wall_s * cores
    rest = machine - total["process_s"]
    return (f"run times: {int(total['jobs'])} jobs in {wall_s:.0f} s of wall time on {cores} cores "
            f"({machine:.0f} core-seconds): steps {total['step_s']:.0f} s ({total['step_s'] / machine:.0%}), "
            f"job start-up {total['startup_s']:.0f} s ({total['startup_s'] / machine:.0%}), "
            f"Snakemake between jobs and idle cores {rest:.0f} s ({rest / machine:.0%})")


def report_run_times(prov_dir: str | Path, out_csv: str | Path, since: str, cores: int,
                     log: Callable[[str], None] = print) -> pd.DataFrame | None:
    """After a run: write the per-rule breakdown of the jobs that finished since ``since`` (the run's start) to
    ``out_csv`` and log it. Nothing when no job ran."""
    table = rule_breakdown(read_records(prov_dir, since))
    if table.empty:
        return None
    wall_s = _seconds(since, _dt.datetime.now(_dt.timezone.utc).isoformat())
    write_csv(out_csv, table.round(2))
    log(summary_line(table, wall_s, cores))
    log(f"per-rule breakdown (rule, jobs, start-up s, step s, process s) in {out_csv}:\n"
        + table.round(1).to_string(index=False))
    return table
