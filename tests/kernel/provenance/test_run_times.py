"""The per-rule breakdown of a run's time, from job records with known times."""

import json

import pandas as pd

from medrepro.provenance.run_times import job_times, read_records, report_run_times, rule_breakdown, summary_line


def record(rule, process_started, started, finished):
    return {"rule": rule, "process_started": process_started, "started": started, "finished": finished}


T = "2026-01-01T00:00:{:02d}.000+00:00"
RECORDS = [record("train", T.format(0), T.format(4), T.format(14)),  # 4 s start-up, 10 s step
           record("train", T.format(1), T.format(3), T.format(9)),   # 2 s, 6 s
           record("table", None, T.format(20), T.format(21))]        # an older record: no process start


def test_breakdown_sums_start_up_and_step_per_rule_most_time_first():
    table = rule_breakdown(RECORDS)
    assert table["rule"].tolist() == ["train", "table", "total"]
    train = table.set_index("rule").loc["train"]
    assert (train["jobs"], train["startup_s"], train["step_s"], train["process_s"]) == (2, 6.0, 16.0, 22.0)
    table_row = table.set_index("rule").loc["table"]
    assert table_row["startup_s"] == 0.0 and table_row["process_s"] == 1.0  # unknown start-up counts as none
    total = table.iloc[-1]
    assert (total["jobs"], total["startup_s"], total["step_s"], total["process_s"]) == (3, 6.0, 17.0, 23.0)


def test_summary_line_divides_the_machines_time():
    line = summary_line(rule_breakdown(RECORDS), wall_s=20.0, cores=2)
    assert "3 jobs in 20 s of wall time on 2 cores (40 core-seconds)" in line
    assert "steps 17 s (42%)" in line and "job start-up 6 s (15%)" in line
    assert "idle cores 17 s (42%)" in line


def test_only_the_jobs_of_this_run_are_reported(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for i, r in enumerate(RECORDS):
        (jobs / f"{i}.json").write_text(json.dumps(r))
    assert len(read_records(tmp_path, since=T.format(15))) == 1
    lines = []
    table = report_run_times(tmp_path, tmp_path / "run_times.csv", since=T.format(0), cores=2, log=lines.append)
    assert len(table) == 3 and len(lines) == 2
    written = pd.read_csv(tmp_path / "run_times.csv")
    assert written["rule"].tolist() == ["train", "table", "total"]
    assert report_run_times(tmp_path, tmp_path / "none.csv", since="2030-01-01T00:00:00+00:00", cores=2) is None
    assert not (tmp_path / "none.csv").exists()


def test_a_job_without_times_is_not_a_number():
    jobs = job_times([record("x", None, None, None)])
    assert pd.isna(jobs.iloc[0]["step_s"]) and pd.isna(jobs.iloc[0]["startup_s"])
