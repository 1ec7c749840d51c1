"""Steps of the microcalcification Detector / Segmentator study (Valvano et al.).

One function per rule in ``workflow/rules/microcalc/*.smk``; each reads its inputs, calls the study's library and
writes its outputs atomically.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path, write_csv
from medrepro.pipeline.runner import Job
from medrepro.pipeline.steps import job_device, obtain_step, record_user_copy, synthesize_step

log = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"


def _source(job: Job):
    from medrepro.studies.microcalc.mammograms import Source

    return Source.from_section(job.params.dataset, job.params.pixel_mm)


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.microcalc.synthetic import generate_inbreast

    p = job.params
    truth = synthesize_step(job, lambda out: generate_inbreast(
        out, n_images=p.n_images, seed=p.seed, image_size=tuple(p.image_size), pixel_mm=p.pixel_mm,
        film_fraction=p.film_fraction, normal_fraction=p.normal_fraction, vessel_fraction=p.vessel_fraction,
        workers=job.threads))
    log.info("wrote a synthetic INbreast with %d structures to %s", len(truth), job.output._0)


def obtain(job: Job) -> None:
    from medrepro.studies.microcalc import datasets  # registers INbreast and the masks folder

    obtain_step(job, datasets.BY_FORMAT[job.params.format])


def extract(job: Job) -> None:
    """Images split by image, resampled to the working pixel size, their patches in the SQLite database."""
    from medrepro.studies.microcalc.mammograms import image_names, read_mammograms
    from medrepro.studies.microcalc.patchdb import ExtractionSettings, build_patch_database
    from medrepro.studies.microcalc.patches import split_images

    p = job.params
    record_user_copy(job, p.raw_dir)
    source = _source(job)
    split = split_images(image_names(p.raw_dir, source), p.seed, dict(p.split))
    settings = ExtractionSettings.from_section({**p.patches, "seed": p.seed})
    counts = build_patch_database(job.output.database, read_mammograms(p.raw_dir, source), split, settings)
    job.extra["patches"] = counts
    log.info("patches per set and class: %s", counts)


# ------------------------------------------------------------------- models
def train(job: Job) -> None:
    from medrepro.nn.training import TrainingSettings
    from medrepro.studies.microcalc.training import train_network

    p = job.params
    settings = TrainingSettings.from_section(p.training, checkpoint_path=p.checkpoint, log_csv=job.output.losses,
                                             out_path=job.output.model, seed=p.seed, device=job_device(job),
                                             threads=job.threads)
    summary = train_network(job.input.database, p.network, p.convolution, settings, widths=tuple(p.widths),
                            hidden=p.hidden, dropout=p.dropout, augment=p.augment)
    keys = ("steps", "resumed_from_step", "steps_run", "seconds_per_step", "sampling_share",
            "sampling_seconds_per_step", "timed_step_seconds")
    job.extra["training"] = {k: summary[k] for k in keys if k in summary}
    log.info("%s (%s) seed %d: sampling %.1f%% of a step", p.network, p.convolution, p.seed,
             100 * summary.get("sampling_share", float("nan")))


# --------------------------------------------------------------- evaluation
def evaluate_patches(job: Job) -> None:
    """P(positive) of every stored test patch."""
    from medrepro.studies.microcalc.evaluation import patch_predictions
    from medrepro.studies.microcalc.patchdb import PatchDatabase
    from medrepro.studies.microcalc.training import load_network

    p = job.params
    model, _ = load_network(job.input.model, p.network, job_device(job))
    with PatchDatabase(job.input.database) as database:
        test = database.patch_set("test")
    table = patch_predictions(model, test, p.network, p.convolution, p.seed)
    write_csv(job.output.predictions, table, float_format=FLOAT_FORMAT)
    log.info("%s (%s) seed %d: accuracy %.2f%% on %d test patches", p.network, p.convolution, p.seed,
             100 * table["correct"].mean(), len(table))


def _test_names(database_path) -> pd.DataFrame:
    from medrepro.studies.microcalc.patchdb import PatchDatabase

    with PatchDatabase(database_path) as database:
        images = database.images()
    return images[images["split"] == "test"]


def segment(job: Job) -> None:
    """The whole-mammogram model (Detector windows, Segmentator on the candidates) on every test image, scored
    against its mask; the predicted masks for the figures."""
    from medrepro.pipeline.progress import progress_bar
    from medrepro.studies.microcalc.mammograms import read_mammograms
    from medrepro.studies.microcalc.scoring import score_image
    from medrepro.studies.microcalc.segmentation import ClusterRule, segment_mammogram
    from medrepro.studies.microcalc.training import load_network

    p = job.params
    record_user_copy(job, p.raw_dir)
    device = job_device(job)
    detector, _ = load_network(job.input.detector, "detector", device)
    segmentator, _ = load_network(job.input.segmentator, "segmentator", device)
    settings = p.segmentation
    rule = ClusterRule.from_section(settings["cluster"])
    test = _test_names(job.input.database)
    rows, masks = [], {}
    with progress_bar(total=len(test), desc=f"segmenting ({p.convolution})") as bar:
        for mammogram in read_mammograms(p.raw_dir, _source(job), test["name"]):
            result = segment_mammogram(detector, segmentator, mammogram.image, p.pixel_mm, mammogram.source,
                                       settings["threshold"], settings["detector_threshold"], rule=rule)
            scores = score_image(result.mask, mammogram.mask, p.pixel_mm, settings["match_px"],
                                 settings["cluster_tolerance_mm"], rule)
            rows.append({"convolution": p.convolution, "seed": p.seed, "image": mammogram.name,
                         "digital": int(mammogram.digital), **scores, "seconds": result.seconds,
                         "windows": len(result.windows.candidate),
                         "candidate_windows": int(result.windows.candidate.sum())})
            masks[f"mask_{mammogram.name}"] = np.packbits(result.mask)
            masks[f"shape_{mammogram.name}"] = np.asarray(result.mask.shape)
            bar.update()
    frame = pd.DataFrame(rows)
    write_csv(job.output.scores, frame, float_format=FLOAT_FORMAT)
    with atomic_path(job.output.masks) as tmp:
        np.savez_compressed(tmp, **masks)
    job.extra["seconds_per_mammogram"] = float(frame["seconds"].mean()) if len(frame) else float("nan")
    log.info("%s seed %d: Dice %.3f, %.1f s per mammogram over %d test images", p.convolution, p.seed,
             frame["dice"].mean() if len(frame) else float("nan"), job.extra["seconds_per_mammogram"], len(frame))


# ------------------------------------------------------------------ reports
def _read(job: Job, prefix: str) -> pd.DataFrame:
    from medrepro.report.scores import SOURCE

    frames = [pd.read_csv(path).assign(**{SOURCE: str(path)}) for name, path in job.input.items()
              if name.startswith(prefix)]
    return pd.concat(frames, ignore_index=True)


def patch_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.microcalc.tables import (
        patch_errors_latex, patch_errors_markdown, patch_errors_table, write_study_table)

    predictions = _read(job, "predictions_")
    table = patch_errors_table(predictions)
    write_study_table(table, job, patch_errors_markdown, patch_errors_latex)
    job.cells = cell_lineage(table, ["network", "convolution"], predictions)


def images_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.microcalc.tables import images_latex, images_markdown, images_table as build, \
        write_study_table

    scores = _read(job, "scores_")
    table = build(scores)
    write_study_table(table, job, images_markdown, images_latex)
    job.cells = cell_lineage(table, ["convolution"], scores)


def claims(job: Job) -> None:
    from medrepro.report.claims import claims_lineage, judge_claims
    from medrepro.studies.microcalc.claims import claim_values, study_claims

    predictions = _read(job, "predictions_")
    values = claim_values(predictions)
    claim_list = study_claims(predictions)
    table = judge_claims(claim_list, values, source="microcalc")
    write_csv(job.output.csv, table)
    job.cells = claims_lineage(claim_list, table, values)
    log.info("%d claims: %s", len(table), table["verdict"].value_counts().to_dict())


# ------------------------------------------------------------------ figures
def figure_synthetic(job: Job) -> None:
    from medrepro.studies.microcalc.figures import plot_synthetic

    p = job.params
    plot_synthetic(p.raw_dir, job.output.png, p.examples, p.dataset["point_radius_px"])


def _seed_predictions(job: Job) -> pd.DataFrame:
    predictions = _read(job, "predictions_")
    return predictions[predictions["seed"] == job.params.seed]


def figure_features(job: Job) -> None:
    """Fig. 4 (t-SNE of the first fully connected layer's features) and Figs. 5 and 6 (the worst misclassified
    patches beside their nearest correctly classified neighbour of the other class, with their masks)."""
    from medrepro.studies.microcalc.figures import feature_views, plot_tsne, plot_worst_pairs

    p = job.params
    models = {name.removeprefix("model_"): path for name, path in job.input.items() if name.startswith("model_")}
    views = feature_views(models, job.input.database, _seed_predictions(job), p.tsne_patches, p.perplexity, p.seed)
    plot_tsne(views, job.output.tsne)
    plot_worst_pairs(views, p.raw_dir, _source(job), p.worst,
                     {"detector": job.output.detector, "segmentator": job.output.segmentator}, job.input.database)


def figure_training_curves(job: Job) -> None:
    from medrepro.nn.training.loop import read_loss_log
    from medrepro.studies.microcalc.figures import plot_training_curves

    logs = {}
    for name, path in job.input.items():
        model, _, seed = name.rpartition("_seed")
        network, convolution = model.split("_")
        logs[(network, convolution, int(seed))] = read_loss_log(path)
    plot_training_curves(logs, job.output.png)


def figure_segmentation(job: Job) -> None:
    """Figs. 1 and 7: a segmented region of a test image, and failures at the breast border, chosen by rule."""
    from medrepro.studies.microcalc.figures import plot_border_failures, plot_segmented_region

    p = job.params
    scores = _read(job, "scores_")
    masks = {name.removeprefix("masks_"): path for name, path in job.input.items() if name.startswith("masks_")}
    plot_segmented_region(scores, masks, p.raw_dir, _source(job), p.segmentation, job.output.region)
    plot_border_failures(scores, masks, p.raw_dir, _source(job), p.segmentation, job.output.border)
