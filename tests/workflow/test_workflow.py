"""The workflow as a whole: config validation, lint, planning of every study, and the smoke run's outputs.

Nothing here names a study: the studies, their job counts and their outputs come from the workflow itself
(workflow/studies.yaml, dry runs, Snakemake's summary). Each study's own smoke assertions live in
tests/studies/<study>/test_smoke.py, over the same session fixtures.
"""

import zipfile
from pathlib import Path

import pytest

from medrepro.pipeline.planning import job_counts

from conftest import REPO, STUDIES, STUDY_TABLE, smoke_config_with, snakemake

# Rules that gather every enabled study's outputs, once per run whatever the studies.
GATHERING_RULES = {"all", "claims"}


def test_config_failing_the_schema_is_rejected(tmp_path):
    """End to end, one config mistake of each kind reaches the user through `snakemake -n`: a value the schema
    rejects here, an unknown key below; the others are checked in-process (tests/workflow/test_bad_inputs.py)."""
    bad = tmp_path / "bad.yaml"
    text = (REPO / "config/smoke.yaml").read_text().replace("image_size: 32", "image_size: 30")
    bad.write_text(text)
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "image_size" in result.stderr + result.stdout and "multiple of 8" in result.stderr + result.stdout


def test_unknown_config_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "config/smoke.yaml").read_text() + "\nlearning_rat: 3\n")
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0 and "learning_rat" in result.stderr + result.stdout


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_every_config_plans(tmp_path):
    for config in ("config/config.yaml", "config/smoke.yaml"):
        result = snakemake("-n", "--configfile", config, "--config", f"results_dir={tmp_path}/r")
        assert result.returncode == 0, result.stderr


def test_the_studies_file_names_every_study_of_the_schema():
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert tuple(schema["properties"]["studies"]["items"]["enum"]) == STUDIES
    for study, entry in STUDY_TABLE.items():
        assert set(entry["needs"]) <= set(STUDIES) - {study}
        assert (REPO / "workflow/rules" / study).is_dir() and (REPO / f"workflow/schemas/{study}.schema.yaml").is_file()


def _rule_study(rule: str) -> str | None:
    """The study a rule belongs to: rules are named <study>_<what>, the longest matching study first."""
    return next((s for s in sorted(STUDIES, key=len, reverse=True) if rule == s or rule.startswith(f"{s}_")), None)


@pytest.mark.parametrize("study", STUDIES)
def test_each_study_plans_alone_with_only_the_studies_it_reads(study, study_plans):
    allowed = {study, *STUDY_TABLE[study]["needs"]}
    planned = {rule for rule in study_plans[study] if rule != "total" and rule not in GATHERING_RULES}
    assert planned and {_rule_study(rule) for rule in planned} <= allowed, planned
    assert any(_rule_study(rule) == study for rule in planned)


def test_all_studies_together_plan_the_union_of_their_jobs(study_plans):
    """A study that reads another's outputs shares that study's jobs: together, each rule runs as often as in the
    study that needs it most, and the gathering rules once."""
    together = study_plans["all"]
    alone = [study_plans[study] for study in STUDIES]
    rules = {rule for counts in alone for rule in counts if rule != "total"} - GATHERING_RULES
    assert {rule: together.get(rule, 0) for rule in rules} == {rule: max(c.get(rule, 0) for c in alone)
                                                                for rule in rules}
    assert together["total"] == sum(together[rule] for rule in rules) + sum(
        together.get(rule, 0) for rule in GATHERING_RULES)


def test_a_study_target_rule_plans_that_study_only(tmp_path):
    study = next(s for s in STUDIES if not STUDY_TABLE[s]["needs"])
    result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={tmp_path}/r", "--", study)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts[study] == 1
    assert {_rule_study(rule) for rule in counts if rule != "total"} == {study}


def test_no_study_enabled_is_one_clear_message(tmp_path):
    result = snakemake("-n", "--configfile", smoke_config_with(tmp_path, "[]"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (f"the config enables no study: list one or more of {', '.join(STUDIES)} under `studies:`") in output


def test_an_unknown_study_is_rejected_by_the_schema(tmp_path):
    result = snakemake("-n", "--configfile", smoke_config_with(tmp_path, f"[{STUDIES[0]}, brainz]"))
    assert result.returncode != 0 and "brainz" in result.stdout + result.stderr


# ------------------------------------------------------------------ the smoke run


@pytest.mark.slow
def test_every_planned_output_of_the_smoke_run_is_there(smoke_run, smoke_outputs):
    assert smoke_outputs, "Snakemake's summary listed no output"
    missing = [path for path in smoke_outputs if not (smoke_run / path).exists()]
    assert missing == []
    figures = [path for path in smoke_outputs if path.startswith("figures/")]
    tables = [path for path in smoke_outputs if path.startswith("tables/")]
    for study in STUDIES:  # every study shows tables and figures
        assert any(_rule_study(smoke_outputs[p]) == study for p in tables), study
        assert any(_rule_study(smoke_outputs[p]) == study for p in figures), study
    for path in figures:
        if path.endswith(".png"):
            assert (smoke_run / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert sorted(p.relative_to(smoke_run).as_posix() for p in (smoke_run / "figures").iterdir()) == sorted(figures)


@pytest.mark.slow
def test_smoke_rerun_is_a_no_op_and_report_builds(smoke_run, tmp_path):
    result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    for study in STUDIES:  # each study's target rule finds its outputs done
        result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}", "--", study)
        assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, study
    report = tmp_path / "report.zip"
    result = snakemake("--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}",
                       "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    assert report.stat().st_size > 10_000
    with zipfile.ZipFile(report) as archive:
        in_report = {Path(name).name for name in archive.namelist()}
    tables = {p.name for p in (smoke_run / "tables").iterdir()}
    assert tables and tables <= in_report, sorted(tables - in_report)  # every table, each rendering included
