"""Steps of the dual-view mammography registration study (Famouri et al.).

One function per rule in ``workflow/rules/mammo_registration/*.smk``; each
reads its inputs, calls the study's library, and writes its outputs atomically.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path, write_csv, write_json
from medrepro.pipeline.runner import Job
from medrepro.pipeline.steps import download_step, job_device, obtain_step, record_user_copy, synthesize_step

log = logging.getLogger(__name__)

# Methods run once (no training): their per-pair files serve every seed.
UNTRAINED = ("unregistered", "prior", "elastix")


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.mammo_registration.synthetic import generate_cbis_ddsm

    p = job.params
    truth = synthesize_step(job, lambda out: generate_cbis_ddsm(out, n_patients=p.n_patients, seed=p.seed,
                                                                image_size=tuple(p.image_size), layout=p.layout,
                                                                test_fraction=p.test_fraction))
    log.info("wrote a synthetic CBIS-DDSM with %d annotated lesions to %s", len(truth), job.output._0)


def download(job: Job) -> None:
    from medrepro.studies.mammo_registration import datasets  # registers CBIS-DDSM

    download_step(job, datasets.NAME)


def obtain(job: Job) -> None:
    """Verify the raw files against their pin (a user's copy is pinned at first use); the output is a verified copy."""
    from medrepro.studies.mammo_registration import datasets  # registers CBIS-DDSM

    obtain_step(job, datasets.NAME)


def prepare(job: Job) -> None:
    from medrepro.studies.mammo_registration.preprocess import prepare as prepare_pairs, write_prepared

    p = job.params
    record_user_copy(job, p.raw_dir)
    prepared = prepare_pairs(p.raw_dir, longest_side=p.longest_side, aspect=p.aspect, pairing_rule=p.pairing_rule,
                             val_fraction=p.val_fraction, seed=p.seed, mirror_side=p.mirror_side,
                             exclude_bad_masks=p.exclude_bad_masks)
    if prepared.summary["unpaired_cc"]:
        log.warning("%d CC lesion(s) have no MLO partner under pairing rule %r: skipped",
                    prepared.summary["unpaired_cc"], p.pairing_rule)
    for problem in prepared.summary["excluded"]:
        log.warning("excluded: %s", problem)
    write_prepared(prepared, job.output.pairs, job.output.table)
    write_json(job.output.summary, prepared.summary)
    log.info("%d pairs: %d train, %d val, %d test", prepared.summary["pairs"], prepared.summary["train_pairs"],
             prepared.summary["val_pairs"], prepared.summary["test_pairs"])


# ------------------------------------------------------------------- models
def _settings(job: Job, device, method_keys: tuple[str, ...] = ()):
    """The rule's training section (``params.training``, whole) as settings; ``method_keys`` are the trainer's own."""
    from medrepro.nn.training import TrainingSettings

    p = job.params
    return TrainingSettings.from_section(p.training, method_keys=method_keys, checkpoint_path=p.checkpoint,
                                         log_csv=job.output.losses, out_path=job.output.model, seed=p.seed,
                                         device=device, threads=job.threads)


def development_views(pairs: dict, table: pd.DataFrame, split: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct views of one split's pairs, each with every lesion box drawn on it (the detector's data)."""
    keep = np.flatnonzero(pairs["split"] == split)
    files = table.set_index("pair")
    images, boxes, index = [], [], {}
    for i in keep:
        for view in ("cc", "mlo"):
            key = (view, files.loc[pairs["pair"][i], f"{view}_image_file"])
            if key not in index:
                index[key] = len(images)
                images.append(pairs[view][i])
                boxes.append([])
            boxes[index[key]].append(pairs[f"{view}_box"][i])
    return np.stack(images), [np.unique(np.stack(b), axis=0) for b in boxes]


def pretrain_detector(job: Job) -> None:
    """Fine-tune the trunk as a lesion detector on the development views (the paper's Faster R-CNN stage)."""
    from medrepro.studies.mammo_registration.detection import train_detector
    from medrepro.studies.mammo_registration.preprocess import load_pairs

    p = job.params
    pairs = load_pairs(job.input.pairs)
    table = pd.read_csv(job.input.table)
    train_images, train_boxes = development_views(pairs, table, "train")
    val_images, val_boxes = development_views(pairs, table, "val")
    summary = train_detector(train_images, train_boxes, _settings(job, job_device(job)), depth=p.depth,
                             trunk_weights=p.trunk_weights, weights_dir=p.weights_dir, val_images=val_images,
                             val_boxes=val_boxes, source=job.input.pairs)
    job.extra["training"] = {k: summary[k] for k in ("steps", "resumed_from_step", "steps_run", "seconds_per_step")}
    job.extra["training"]["validation_hit_rate"] = summary.get("validation_hit_rate")
    log.info("detector: %d views, validation hit rate %s", len(train_images), summary.get("validation_hit_rate"))


def train_registration(job: Job) -> None:
    from medrepro.provenance.hashing import sha256_file
    from medrepro.studies.mammo_registration.detection import trunk_state_from_detector
    from medrepro.studies.mammo_registration.preprocess import load_pairs
    from medrepro.studies.mammo_registration.training import train_registration as train

    p = job.params
    detector = job.input.get("detector")
    trunk_state = trunk_state_from_detector(detector) if detector else None
    summary = train(load_pairs(job.input.pairs, "train"), _settings(job, job_device(job), ("giou_weight",)),
                    variant=p.variant, depth=p.depth, head_init=p.head_init, prior_angle_deg=p.prior_angle_deg,
                    giou_weight=p.training["giou_weight"], trunk_state=trunk_state,
                    trunk_source=f"detector sha256:{sha256_file(detector)}" if detector else p.trunk_weights,
                    weights_dir=p.weights_dir,
                    val_pairs=load_pairs(job.input.pairs, "val"), source=job.input.pairs)
    job.extra["training"] = {k: summary[k] for k in ("steps", "resumed_from_step", "steps_run", "seconds_per_step")}
    log.info("%s seed %s: final train %s, val %s", p.variant, p.seed, summary["final_train"], summary["final_val"])


# --------------------------------------------------------------- evaluation
def _write_evaluation(job: Job, pairs: dict, matrices: np.ndarray, seconds: list[float] | None = None) -> None:
    from medrepro.studies.mammo_registration.evaluation import evaluate_matrices, write_scores

    scores = evaluate_matrices(pairs, matrices)
    if job.params.get("seed") is not None:
        scores["seed"] = int(job.params.seed)
    write_scores(scores, job.output.scores)
    with atomic_path(job.output.matrices) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, matrix=np.asarray(matrices, dtype=np.float64), pair=pairs["pair"])
    if seconds is not None and len(seconds):  # timings go to the provenance record, never into an output
        job.extra["seconds_per_pair"] = float(np.mean(seconds))
    log.info("%s: overlap %.3f, GIoU loss %.3f over %d test pairs", job.params.method, scores["overlap"].mean(),
             scores["giou_loss"].mean(), len(scores))


def evaluate_untrained(job: Job) -> None:
    """The identity ("unregistered") and the network's rotation prior alone ("prior") on the test pairs."""
    from medrepro.studies.mammo_registration.evaluation import identity_matrices, prior_matrices
    from medrepro.studies.mammo_registration.preprocess import load_pairs

    p = job.params
    pairs = load_pairs(job.input.pairs, "test")
    n, shape = len(pairs["pair"]), pairs["cc"].shape[1:]
    if p.method == "unregistered":
        matrices = identity_matrices(n)
    elif p.method == "prior":
        matrices = prior_matrices(n, shape, pairs["mlo"].shape[1:], p.prior_angle_deg)
    else:
        raise ValueError(f"no untrained method {p.method!r}")
    _write_evaluation(job, pairs, matrices)


def evaluate_elastix(job: Job) -> None:
    from medrepro.studies.mammo_registration.elastix_affine import register_pairs
    from medrepro.studies.mammo_registration.preprocess import load_pairs

    p = job.params
    pairs = load_pairs(job.input.pairs, "test")
    matrices, seconds = register_pairs(pairs["cc"], pairs["mlo"], pairs["cc_region"], pairs["mlo_region"],
                                       seed=p.seed, iterations=p.iterations, resolutions=p.resolutions,
                                       threads=job.threads)
    _write_evaluation(job, pairs, matrices, seconds)


def evaluate_learned(job: Job) -> None:
    import time

    from medrepro.nn.device import resolve_device
    from medrepro.studies.mammo_registration.preprocess import load_pairs
    from medrepro.studies.mammo_registration.training import load_registration_model, predict_matrices

    pairs = load_pairs(job.input.pairs, "test")
    device = resolve_device()
    job.extra["device"] = str(device)
    model = load_registration_model(job.input.model, device)
    started = time.perf_counter()
    matrices = predict_matrices(model, pairs["cc"], pairs["mlo"], batch_size=job.params.batch_size)
    per_pair = (time.perf_counter() - started) / len(matrices)
    _write_evaluation(job, pairs, matrices, [per_pair] * len(matrices))


def gather_seeds(job: Job) -> None:
    """One learned method's per-pair files of every seed as one file, with a ``seed`` column."""
    from medrepro.studies.mammo_registration.evaluation import read_scores, write_scores

    frames = [read_scores(path) for path in job.input.scores]
    write_scores(pd.concat(frames, ignore_index=True), job.output.scores)


# ------------------------------------------------------------------ reports
def _scores(job: Job) -> dict[str, pd.DataFrame]:
    """Named inputs 'method' -> per-pair scores (learned methods with a seed column)."""
    from medrepro.studies.mammo_registration.evaluation import read_scores

    return {name: read_scores(path) for name, path in job.input.items() if not name.startswith("_")}


def _long_scores(job: Job) -> pd.DataFrame:
    """Every method's per-pair scores in the long format, each row with its file."""
    from medrepro.studies.mammo_registration.tables import long_scores

    return long_scores(_scores(job), {name: str(path) for name, path in job.input.items() if not name.startswith("_")})


def registration_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.mammo_registration.tables import (
        METHOD_ORDER, registration_table as build, render_latex, render_markdown)
    from medrepro.report.tables import write_table

    scores = _long_scores(job)
    table = build(scores, METHOD_ORDER)
    required = table.drop(columns=["overlap_rate_seed_sd"]).select_dtypes("number")
    if not np.isfinite(required.to_numpy(dtype=float)).all():
        raise ValueError("the registration table has non-finite cells; see the per-pair files")
    write_table(table, job.output.csv, renderings=[(job.output.markdown, render_markdown),
                                                   (job.output.latex, render_latex)])
    job.cells = cell_lineage(table, ["method"], scores)


def registration_wilcoxon(job: Job) -> None:
    from medrepro.report.stats import wilcoxon_lineage
    from medrepro.studies.mammo_registration.tables import METHOD_ORDER, wilcoxon_table

    scores = _long_scores(job)
    tests = wilcoxon_table(scores, METHOD_ORDER)
    write_csv(job.output.csv, tests)
    job.cells = wilcoxon_lineage(tests, scores)


def claims(job: Job) -> None:
    from medrepro.report.claims import claims_lineage, judge_claims
    from medrepro.studies.mammo_registration.claims import study_claims

    scores = _long_scores(job)
    claims = study_claims(scores["method"].unique().tolist())
    table = judge_claims(claims, scores, source="mammo_registration")
    write_csv(job.output.csv, table)
    job.cells = claims_lineage(claims, table, scores)
    log.info("%d claims: %s", len(table), table["verdict"].value_counts().to_dict())


def _test_pairs_and_matrices(job: Job) -> tuple[dict, dict[str, np.ndarray]]:
    from medrepro.studies.mammo_registration.preprocess import load_pairs

    pairs = load_pairs(job.input.pairs, "test")
    matrices = {}
    for name, path in job.input.items():
        if name.startswith("matrices_"):
            with np.load(path, allow_pickle=False) as data:
                if list(data["pair"]) != list(pairs["pair"]):
                    raise ValueError(f"{path}: its pairs are not the test pairs of {job.input.pairs}; re-run it")
                matrices[name.removeprefix("matrices_")] = data["matrix"]
    return pairs, matrices


def figure_overlap_mask(job: Job) -> None:
    from medrepro.studies.mammo_registration.figures import plot_overlap_mask

    pairs, matrices = _test_pairs_and_matrices(job)
    plot_overlap_mask(pairs, matrices, job.output.png)


def figure_training_curves(job: Job) -> None:
    from medrepro.studies.mammo_registration.figures import plot_training_curves
    from medrepro.nn.training.loop import read_loss_log

    logs = {}
    for name, path in job.input.items():
        method, _, seed = name.rpartition("_seed")
        logs[(method, int(seed))] = read_loss_log(path)
    plot_training_curves(logs, job.output.png)


def figure_giou_histogram(job: Job) -> None:
    from medrepro.studies.mammo_registration.figures import plot_giou_histogram

    plot_giou_histogram(_scores(job), job.output.png)


def figure_examples(job: Job) -> None:
    from medrepro.studies.mammo_registration.evaluation import read_scores
    from medrepro.studies.mammo_registration.figures import plot_examples

    pairs, matrices = _test_pairs_and_matrices(job)
    scores = {job.params.method: read_scores(job.input.scores)}
    plot_examples(pairs, matrices, scores, job.output.png, method=job.params.method,
                  per_kind=job.params.per_kind, seed=job.params.seed)


def figure_synthetic(job: Job) -> None:
    from medrepro.studies.mammo_registration.figures import plot_synthetic_pairs
    from medrepro.studies.mammo_registration.preprocess import load_pairs

    plot_synthetic_pairs(load_pairs(job.input.pairs), job.output.png, n=job.params.n)

