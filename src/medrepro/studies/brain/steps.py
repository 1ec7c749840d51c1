"""Steps of the WSSAMNet brain registration study (Almahfouz Nasser et al.).

One function per rule in ``workflow/rules/brain/*.smk``; each reads its inputs, calls the study's library and
writes its outputs atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_dir, atomic_path, write_csv
from medrepro.pipeline.runner import Job
from medrepro.pipeline.steps import (job_device, obtain_step, record_user_copy, recorded_extras,
                                     synthesize_step)

log = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.brain.synthetic import generate_brats_reg

    p = job.params
    truth = synthesize_step(job, lambda out: generate_brats_reg(
        out, n_training=p.n_training, n_validation=p.n_validation, seed=p.seed, voxel_mm=p.voxel_mm,
        landmarks=tuple(p.landmarks), workers=job.threads))
    log.info("wrote a synthetic BraTS-Reg with %d landmarks to %s", len(truth), job.output._0)


def obtain(job: Job) -> None:
    from medrepro.studies.brain import datasets

    obtain_step(job, datasets.NAME)


def prepare(job: Job) -> None:
    """Every case read, checked, normalised and resampled to the working grid; the seeded split."""
    from medrepro.pipeline.parallel import ordered_map
    from medrepro.studies.brain.preprocess import cases_table, split_cases
    from medrepro.studies.brain.readers.brats_reg import index_cases

    p = job.params
    record_user_copy(job, p.raw_dir)
    cases = index_cases(p.raw_dir, tuple(p.modalities))
    splits = split_cases(cases, p.seed, p.split["test_fraction"])
    with atomic_dir(job.output._0) as out:
        tasks = [(case, splits[case.name], tuple(p.modalities), float(p.voxel_mm), out) for case in cases]
        prepared = ordered_map(_prepare_one, tasks, job.threads, desc="preparing cases")
        table = cases_table(prepared, [f"{c.name}.npz" for c in prepared])
        write_csv(out / "cases.csv", table)
    job.extra["cases"] = table["split"].value_counts().to_dict()
    log.info("cases per split: %s", job.extra["cases"])


def _prepare_one(task):
    from medrepro.studies.brain.preprocess import prepare_case, save_case

    case, split, modalities, voxel_mm, out = task
    prepared = prepare_case(case, split, modalities, voxel_mm)
    save_case(Path(out) / f"{case.name}.npz", prepared)
    prepared.moving = prepared.fixed = None  # the parent needs the names and splits only
    return prepared


# ------------------------------------------------------------------- models
def _method(p, kind: str):
    from medrepro.studies.brain.losses import RegistrationLoss
    from medrepro.studies.brain.training import Method

    if kind == "voxelmorph":
        v = p.voxelmorph
        return Method(kind, tuple(p.modalities), tuple(v["channels"]), RegistrationLoss(),
                      final_channels=tuple(v["final_channels"]), integration_steps=v["integration_steps"],
                      integration_downsize=v["integration_downsize"], smooth_weight=v["smooth_weight"],
                      lncc_window=v["lncc_window"])
    w = p.wssamnet
    loss = RegistrationLoss(lncc_window=w["lncc_window"], lncc_form=w["lncc_form"], mi_bins=w["mi_bins"],
                            log_sigma_mm=w["log_sigma_mm"], voxel_mm=float(p.voxel_mm),
                            smooth_weight=w["smooth_weight"])
    return Method(kind, tuple(p.modalities), tuple(w["channels"]), loss, roi_mm=w["roi_mm"])


def _train(job: Job, stage: str, section: dict, initial=None) -> None:
    from medrepro.nn.training import TrainingSettings
    from medrepro.studies.brain.preprocess import load_split
    from medrepro.studies.brain.training import AffineRange, train_registration

    p = job.params
    settings = TrainingSettings.from_section(section, checkpoint_path=p.checkpoint, log_csv=job.output.losses,
                                             out_path=job.output.model, seed=p.seed, device=job_device(job),
                                             threads=job.threads)
    cases = load_split(job.input.prepared, "train")
    limits = AffineRange(**p.wssamnet["affine"]) if stage == "pretrain" else AffineRange()
    summary = train_registration(cases, _method(p, p.method), settings, stage, initial=initial, limits=limits)
    job.extra["training"] = {k: summary[k] for k in ("steps", "resumed_from_step", "steps_run", "seconds_per_step")
                             if k in summary}


def pretrain(job: Job) -> None:
    """WSSAMNet (or its ablation) registering a scan to its affinely augmented copy."""
    _train(job, "pretrain", job.params.pretraining)


def train(job: Job) -> None:
    """Follow-up to baseline: VoxelMorph from scratch, WSSAMNet from its pre-trained weights."""
    _train(job, "finetune", job.params.training, initial=job.input.get("pretrained"))


# --------------------------------------------------------------- evaluation
def evaluate(job: Job) -> None:
    """Every held-out pair registered and scored; submission files for the validation cases; the example case's
    views for the figures."""
    from medrepro.pipeline.progress import progress_bar
    from medrepro.studies.brain import evaluation
    from medrepro.studies.brain.preprocess import load_split

    p = job.params
    registrar, on_gpu = _registrar(job)
    rows, summaries, runtimes, example = [], [], {}, None
    test = load_split(job.input.prepared, "test")
    with progress_bar(total=len(test), desc=f"registering ({p.method})") as bar:
        for case in test:
            registered = registrar(case)
            runtimes[case.name] = evaluation.runtime_entry(registered, None if on_gpu is None else on_gpu(case))
            landmarks, summary = evaluation.score_case(case, registered, p.median_kind)
            rows.append(landmarks)
            summaries.append(summary)
            if example is None:
                example = _example_views(case, registered)
            bar.update()
    seed = p.seed if p.method in ("voxelmorph", "wssamnet", "wssamnet_no_attention") else np.nan
    cases = pd.DataFrame(summaries, columns=evaluation.CASE_COLUMNS).assign(method=p.method, seed=seed)
    write_csv(job.output.landmarks, pd.concat(rows, ignore_index=True)[evaluation.LANDMARK_COLUMNS],
              float_format=FLOAT_FORMAT)
    write_csv(job.output.cases, cases, float_format=FLOAT_FORMAT)
    with atomic_path(job.output.example, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **example)
    job.extra["runtimes"] = runtimes
    _write_submission(job, registrar, load_split(job.input.prepared, "validation"))
    log.info("%s: median error %.2f mm (before %.2f), robustness %.2f on %d cases", p.method,
             cases["median_error_mm"].median(), cases["median_error_before_mm"].median(),
             cases["robustness"].mean(), len(cases))


def _registrar(job: Job):
    """The method's pair registration on the CPU, and its GPU timing where the job has a GPU (else None)."""
    from medrepro.studies.brain import evaluation

    p = job.params
    if p.method == "unregistered":
        return evaluation.identity, None
    if p.method == "ants":
        from medrepro.spatial.ants import SynSettings

        settings = SynSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.ants.items()},
                               random_seed=int(p.seed) + 1, threads=job.threads)  # ANTs takes seeds >= 1
        return (lambda case: evaluation.with_ants(case, settings)), None
    from medrepro.studies.brain.training import load_registration

    network, _ = load_registration(job.input.model, p.method, device="cpu")
    on_gpu = None
    if job_device(job).type == "cuda":
        gpu_network, _ = load_registration(job.input.model, p.method, device="cuda")
        on_gpu = lambda case: evaluation.gpu_seconds(gpu_network, case)  # noqa: E731
    return (lambda case: evaluation.with_network(network, case)), on_gpu


def _example_views(case, registered) -> dict:
    import torch

    from medrepro.spatial.warp import warp
    from medrepro.studies.brain.evaluation import jacobian_volume

    z, y, x = case.shape
    warped = warp(torch.from_numpy(case.moving[:1])[None], torch.from_numpy(registered.displacement)[None])[0, 0]
    return {"case": case.name, "fixed": case.fixed[0, :z, :y, :x], "moving": case.moving[0, :z, :y, :x],
            "warped": warped.numpy()[:z, :y, :x], "jacobian": jacobian_volume(registered, case),
            "fixed_landmarks": case.fixed_landmarks, "moving_landmarks": case.moving_landmarks,
            "carried_landmarks": registered.points, "spacing": np.asarray(case.geometry.spacing)}


def _write_submission(job: Job, registrar, cases) -> None:
    """Per validation case the follow-up landmarks carried into baseline space (``Landmark,X,Y,Z``, physical mm)
    and ``<case>_detj.nii.gz``, the Jacobian determinant on the working grid, as the challenge takes them."""
    from medrepro.data.io.nifti import write_volume
    from medrepro.studies.brain.evaluation import jacobian_volume
    from medrepro.studies.brain.readers.brats_reg import write_landmarks

    with atomic_dir(job.output.submission) as out:
        for case in cases:
            registered = registrar(case)
            write_landmarks(out / f"{case.name}.csv", case.ids, case.geometry.index_to_physical(registered.points))
            write_volume(out / f"{case.name}_detj.nii.gz", jacobian_volume(registered, case), case.geometry)


# ------------------------------------------------------------------ reports
def _case_scores(job: Job) -> pd.DataFrame:
    """Every method's per-case scores with the run times from the records of the jobs that wrote them."""
    from medrepro.report.scores import SOURCE
    from medrepro.studies.brain.evaluation import with_runtimes

    paths = [path for name, path in job.input.items() if name.startswith("cases_")]
    runtimes = recorded_extras(job, paths, "runtimes")
    return pd.concat([with_runtimes(pd.read_csv(path).assign(**{SOURCE: str(path)}), runtimes[str(path)] or {}, path)
                      for path in paths], ignore_index=True)


def landmark_errors(job: Job) -> None:
    """A method's per-landmark errors of every seed in one file (``seed`` empty for a method run once)."""
    paths = [path for _, path in job.input.items()]
    frames = [pd.read_csv(path).assign(seed=seed) for seed, path in zip(job.params.seeds, paths)]
    write_csv(job.output.csv, pd.concat(frames, ignore_index=True), float_format=FLOAT_FORMAT)


def registration_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.brain.tables import long_values, registration_table as build, write_registration_table

    values = long_values(_case_scores(job))
    table = build(values)
    write_registration_table(table, job.output.csv, job.output.markdown, job.output.latex)
    job.cells = cell_lineage(table, ["method"], values)
    log.info("Table 1:\n%s", table.to_string(index=False))


def wilcoxon(job: Job) -> None:
    """Paired Wilcoxon tests of the per-case median errors between every two methods, Bonferroni-corrected."""
    from medrepro.report.stats import paired_wilcoxon, wilcoxon_lineage
    from medrepro.studies.brain.tables import METHODS, long_values

    values = long_values(_case_scores(job))
    tests = paired_wilcoxon(values, ["median_error_mm"], (), methods_order=METHODS)
    write_csv(job.output.csv, tests, float_format=FLOAT_FORMAT)
    job.cells = wilcoxon_lineage(tests, values)


def claims(job: Job) -> None:
    from medrepro.report.claims import claims_lineage, judge_claims
    from medrepro.studies.brain.claims import study_claims
    from medrepro.studies.brain.tables import long_values

    values = long_values(_case_scores(job))
    claim_list = study_claims(set(values["method"]))
    table = judge_claims(claim_list, values, source="brain")
    write_csv(job.output.csv, table)
    job.cells = claims_lineage(claim_list, table, values)
    log.info("%d claims: %s", len(table), table["verdict"].value_counts().to_dict())


# ------------------------------------------------------------------ figures
def figure_synthetic(job: Job) -> None:
    from medrepro.studies.brain.figures import plot_synthetic

    record_user_copy(job, job.params.raw_dir)
    plot_synthetic(job.params.raw_dir, job.output.png)


def figure_examples(job: Job) -> None:
    from medrepro.studies.brain.figures import plot_examples, plot_jacobians

    examples = {name[len("example_"):]: path for name, path in job.input.items() if name.startswith("example_")}
    plot_examples(examples, job.output.examples)
    plot_jacobians(examples, job.output.jacobians)


def figure_errors(job: Job) -> None:
    from medrepro.studies.brain.figures import plot_error_boxes

    plot_error_boxes({name[len("errors_"):]: path for name, path in job.input.items()
                      if name.startswith("errors_")}, job.output.png)


def figure_training_curves(job: Job) -> None:
    from medrepro.studies.brain.figures import plot_training_curves

    plot_training_curves([path for name, path in job.input.items() if name.startswith("losses_")],
                         job.output.png)
