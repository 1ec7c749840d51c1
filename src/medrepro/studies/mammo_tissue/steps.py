"""Steps of the multi-scale mammography tissue classifier study (An et al.).

One function per rule in ``workflow/rules/mammo_tissue/*.smk``; each reads its inputs, calls the study's
library and writes its outputs atomically.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path, write_csv
from medrepro.pipeline.runner import Job
from medrepro.pipeline.steps import download_step, job_device, obtain_step, record_user_copy, synthesize_step

log = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.mammo_tissue.synthetic import Artefacts, generate_ddsm

    p = job.params
    truth = synthesize_step(job, lambda out: generate_ddsm(
        out, n_cases=p.n_cases, seed=p.seed, pixel_mm=p.pixel_mm, case_mix=dict(p.case_mix),
        constants=p.constants, artefacts=Artefacts(**p.artefacts), workers=job.threads))
    log.info("wrote a synthetic DDSM with %d annotated findings to %s", len(truth), job.output._0)


def download(job: Job) -> None:
    from medrepro.studies.mammo_tissue import datasets  # registers DDSM

    download_step(job, datasets.NAME)


def obtain(job: Job) -> None:
    from medrepro.studies.mammo_tissue import datasets  # registers DDSM

    obtain_step(job, datasets.NAME)


def prepare(job: Job) -> None:
    from medrepro.studies.mammo_tissue.base_images import prepare as prepare_base

    p = job.params
    record_user_copy(job, p.raw_dir)
    summary = prepare_base(p.raw_dir, job.output.views, job.output.annotations, job.output.images,
                           crop_size=p.crop, constants=p.constants, clip=tuple(p.clip), workers=job.threads)
    job.extra["prepared"] = summary


def sample(job: Job) -> None:
    """Splits by patient, tissue samples and full mammograms of each split (Table 1's counts)."""
    from medrepro.studies.mammo_tissue.base_images import load_images
    from medrepro.studies.mammo_tissue.sampling import HeldOut, mammograms, split_cases, tissue_samples

    p = job.params
    views, annotations = pd.read_csv(job.input.views), pd.read_csv(job.input.annotations)
    annotations = annotations.assign(case=views.set_index("view_id").loc[annotations["view_id"], "case"].to_numpy())
    views["label"] = views["label"].fillna("")
    held_out = {name: HeldOut(**p.held_out[name]) for name in ("test", "val")}
    split = split_cases(views, annotations, held_out["test"], held_out["val"], seed=p.seed)
    blocked = load_images(job.input.images)["blocked"]
    field = p.patch * max(p.magnifications)  # the coarsest magnification's patch, in native pixels
    samples = tissue_samples(views, annotations, blocked, split, negative_stride=p.negative_stride, field=field,
                             max_positive_extent=p.max_positive_extent, held_out=held_out, seed=p.seed)
    full = mammograms(views, split, held_out, seed=p.seed)
    write_csv(job.output.samples, samples)
    write_csv(job.output.mammograms, full)
    write_csv(job.output.splits, pd.DataFrame(sorted(split.items()), columns=["case", "split"]))
    counts = samples.groupby(["split", "label"]).size().unstack(fill_value=0)
    log.info("tissue samples (split x label):\n%s", counts.to_string())


def _samples(path, split: str) -> dict[str, np.ndarray]:
    table = pd.read_csv(path)
    table = table[table["split"] == split]
    return {column: table[column].to_numpy() for column in ("view_id", "row", "col", "label")}


def _settings(job: Job, device):
    from medrepro.nn.training import TrainingSettings

    p = job.params
    return TrainingSettings.from_section(p.training, checkpoint_path=p.checkpoint, log_csv=job.output.losses,
                                         out_path=job.output.model, seed=p.seed, device=device,
                                         threads=job.threads)


# ------------------------------------------------------------------- models
def train_classifier(job: Job) -> None:
    from medrepro.studies.mammo_tissue.base_images import load_images, magnified
    from medrepro.studies.mammo_tissue.patches import Augmentation
    from medrepro.studies.mammo_tissue.training import train_classifier as train

    p = job.params
    images = magnified(load_images(job.input.images)["crops"], p.factor)
    summary = train(images, _samples(job.input.samples, "train"), _samples(job.input.samples, "val"),
                    _settings(job, job_device(job)), factor=p.factor, patch=p.patch, width=p.width, hidden=p.hidden,
                    dropout=p.dropout, augmentation=Augmentation.from_section(p.augmentation),
                    positive_fraction=p.positive_fraction, fill=p.fill, source=job.input.samples)
    job.extra["training"] = {k: summary[k] for k in ("steps", "resumed_from_step", "steps_run", "seconds_per_step")}
    log.info("x1/%g seed %d: final train %s, val %s", p.factor, p.seed, summary["final_train"], summary["final_val"])


def evaluate_classifier(job: Job) -> None:
    """P(findings) of every test patch."""
    from medrepro.studies.mammo_tissue.base_images import load_images, magnified
    from medrepro.studies.mammo_tissue.evaluation import PREDICTION_COLUMNS
    from medrepro.studies.mammo_tissue.training import PatchSet, load_classifier, predict

    p = job.params
    device = job_device(job)
    model, config = load_classifier(job.input.model, device)
    images = magnified(load_images(job.input.images)["crops"], config["factor"])
    test = _samples(job.input.samples, "test")
    probability = predict(model, PatchSet(images, test, config["factor"], config["patch"], p.fill, device))
    table = pd.read_csv(job.input.samples).query("split == 'test'")
    table = table.assign(magnification=p.magnification, seed=p.seed, probability=probability)
    write_csv(job.output.predictions, table[PREDICTION_COLUMNS], float_format=FLOAT_FORMAT)
    log.info("%s seed %d: %d test patches", p.magnification, p.seed, len(table))


def _padded_x05(images_npz, factor: float, patch: int, fill: float):
    """The base images and masks, and the base images magnified by 1/``factor`` and padded for patches."""
    from medrepro.studies.mammo_tissue.base_images import load_images, magnified
    from medrepro.studies.mammo_tissue.patches import pad

    images = load_images(images_npz)
    return images, pad(magnified(images["crops"], factor), patch, fill)


def aggregate(job: Job) -> None:
    """The x0.5 classifier's local results on the 32 x 32 grid of every CC mammogram the heatmap models see."""
    import time

    from medrepro.studies.mammo_tissue.aggregation import local_results
    from medrepro.studies.mammo_tissue.training import load_classifier

    p = job.params
    device = job_device(job)
    model, config = load_classifier(job.input.model, device)
    views = pd.read_csv(job.input.mammograms)["view_id"].to_numpy()
    images, padded = _padded_x05(job.input.images, config["factor"], config["patch"], p.fill)
    started = time.perf_counter()
    grids = local_results(model, padded[views], config["factor"], config["patch"], images["crops"].shape[-1],
                          p.grid, device=device)
    job.extra["seconds_per_mammogram"] = (time.perf_counter() - started) / max(len(views), 1)
    with atomic_path(job.output.local) as tmp:
        np.savez(tmp, view_id=views, local=grids)


def _heatmap_data(job: Job, splits: Sequence[str], local_path=None) -> list[tuple]:
    """Each split's CC mammograms ("" for all): view ids, inputs, targets and (optionally) local results.

    ``images.npz``, the mammogram table and the local results are read once for all the splits.
    """
    from medrepro.studies.mammo_tissue.base_images import TARGETS, heatmap_inputs, heatmap_targets, load_images

    p = job.params
    table = pd.read_csv(job.input.mammograms)
    images = load_images(job.input.images)
    saved_local = None
    if local_path is not None:
        with np.load(local_path) as data:
            saved_local = {int(v): i for i, v in enumerate(data["view_id"])}, data["local"]
    out = []
    for split in splits:
        views = table.loc[table["split"] == split, "view_id"].to_numpy() if split else table["view_id"].to_numpy()
        inputs = heatmap_inputs(images["crops"][views], p.input_size)
        targets = heatmap_targets(images[TARGETS[p.target]][views], p.grid, p.blur_sigma)
        local = None
        if saved_local is not None:
            index, grids = saved_local
            local = grids[[index[int(v)] for v in views]][:, None][:, 0]
        out.append((views, inputs, targets, local))
    return out


def train_heatmap(job: Job) -> None:
    from medrepro.studies.mammo_tissue.training import train_heatmap as train

    p = job.params
    (_, inputs, targets, train_local), (_, val_inputs, val_targets, val_local) = _heatmap_data(
        job, ("train", "val"), job.input.get("local"))
    summary = train(inputs, targets, train_local, val_inputs, val_targets, val_local, _settings(job, job_device(job)),
                    width=p.width, flip=p.flip, source=job.input.mammograms)
    job.extra["training"] = {k: summary[k] for k in ("steps", "resumed_from_step", "steps_run", "seconds_per_step")}


def evaluate_heatmap(job: Job) -> None:
    """Each training, validation and test mammogram's MSE (Table 3), and the test heatmaps (saliency, figures)."""
    from medrepro.studies.mammo_tissue.evaluation import HEATMAP_COLUMNS, image_mse
    from medrepro.studies.mammo_tissue.training import load_heatmap, predict_heatmaps

    p = job.params
    device = job_device(job)
    model, _ = load_heatmap(job.input.model, device)
    table = pd.read_csv(job.input.mammograms)
    [(views, inputs, targets, local)] = _heatmap_data(job, ("",), job.input.get("local"))
    predicted = predict_heatmaps(model, inputs, local, device)
    # mse_empty: an empty heatmap's, the error of a model that has learnt nothing (Table 3's reference row)
    errors = table.assign(model=p.model, seed=p.seed, mse=image_mse(predicted, targets),
                          mse_empty=image_mse(np.zeros_like(targets), targets))
    write_csv(job.output.errors, errors[HEATMAP_COLUMNS], float_format=FLOAT_FORMAT)
    test = (table["split"] == "test").to_numpy()
    with atomic_path(job.output.heatmaps) as tmp:
        np.savez(tmp, view_id=views[test], heatmap=predicted[test], target=targets[test])
    log.info("%s seed %d: MSE %s", p.model, p.seed, errors.groupby("split")["mse"].mean().round(5).to_dict())


def saliency(job: Job) -> None:
    """Full-scale saliency of the positive test mammograms and the share of it inside their annotations."""
    from medrepro.studies.mammo_tissue.aggregation import grid_positions
    from medrepro.studies.mammo_tissue.evaluation import SALIENCY_COLUMNS
    from medrepro.studies.mammo_tissue.preprocess import downsample
    from medrepro.studies.mammo_tissue.saliency import full_saliency, mass_inside
    from medrepro.studies.mammo_tissue.training import load_classifier

    p = job.params
    device = job_device(job)
    model, config = load_classifier(job.input.model, device)
    factor, patch = config["factor"], config["patch"]
    images, padded = _padded_x05(job.input.images, factor, patch, p.fill)
    base = images["crops"].shape[-1]
    with np.load(job.input.heatmaps) as data:
        heatmaps = {int(v): h for v, h in zip(data["view_id"], data["heatmap"])}
    table = pd.read_csv(job.input.mammograms).query("split == 'test' and label == 1")
    rows, cols = grid_positions(base, p.grid * p.density)
    size = padded.shape[-1] - 2 * patch
    out, maps = [], {}
    for view_id, case in zip(table["view_id"], table["case"]):
        image, kept = full_saliency(model, padded[view_id], heatmaps[view_id], factor, patch, rows.ravel(),
                                    cols.ravel(), base, size, p.heatmap_threshold, p.mode, device)
        region = downsample(images["positive"][view_id].astype(np.float32), size) >= 0.5
        heatmap = downsample(np.clip(heatmaps[view_id], 0, None).repeat(base // heatmaps[view_id].shape[0], 0)
                             .repeat(base // heatmaps[view_id].shape[0], 1), size)
        out.append({"seed": p.seed, "view_id": view_id, "case": case, "patches_kept": kept,
                    "saliency_share": mass_inside(image, region), "heatmap_share": mass_inside(heatmap, region),
                    "uniform_share": float(region.mean())})
        maps[f"saliency_{view_id}"] = image.astype(np.float32)
    write_csv(job.output.shares, pd.DataFrame(out, columns=SALIENCY_COLUMNS), float_format=FLOAT_FORMAT)
    with atomic_path(job.output.maps) as tmp:
        np.savez_compressed(tmp, **maps)
    if out:
        frame = pd.DataFrame(out)
        log.info("saliency inside the annotations: %.3f (heatmap %.3f, uniform %.3f) over %d mammograms",
                 frame["saliency_share"].mean(), frame["heatmap_share"].mean(), frame["uniform_share"].mean(),
                 len(frame))


# ------------------------------------------------------------------ reports
def _read(job: Job, prefix: str) -> pd.DataFrame:
    from medrepro.report.scores import SOURCE

    frames = [pd.read_csv(path).assign(**{SOURCE: str(path)}) for name, path in job.input.items()
              if name.startswith(prefix)]
    return pd.concat(frames, ignore_index=True)


def splits_table(job: Job) -> None:
    from medrepro.report.scores import SOURCE, cell_lineage
    from medrepro.studies.mammo_tissue.tables import splits_table as build, write_study_table

    samples, full = pd.read_csv(job.input.samples), pd.read_csv(job.input.mammograms)
    table = build(samples, full)
    write_study_table(table, job)
    files = pd.DataFrame({SOURCE: [str(job.input.samples), str(job.input.mammograms)]})
    job.cells = cell_lineage(table, ["stage"], files, [{}] * len(table))


def classification_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.mammo_tissue.tables import classification_table as build, write_study_table

    predictions = _read(job, "predictions_")
    table = build(predictions, job.params.bootstrap, job.params.seed)
    write_study_table(table, job)
    job.cells = cell_lineage(table, ["magnification"], predictions)


def heatmap_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.mammo_tissue.tables import heatmap_table as build, write_study_table

    errors = _read(job, "errors_")
    table = build(errors)
    write_study_table(table, job)
    job.cells = cell_lineage(table, ["model", "split"], errors)


def saliency_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.mammo_tissue.tables import saliency_table as build, write_study_table

    shares = _read(job, "shares_")
    table = build(shares)
    write_study_table(table, job)
    job.cells = cell_lineage(table, ["map"], shares, [{}] * len(table))


def claims(job: Job) -> None:
    from medrepro.report.claims import claims_lineage, judge_claims
    from medrepro.studies.mammo_tissue.claims import study_claims, with_auc_bar
    from medrepro.studies.mammo_tissue.evaluation import classification_long, heatmap_long

    predictions, errors = _read(job, "predictions_"), _read(job, "errors_")
    values = pd.concat([with_auc_bar(classification_long(predictions)), heatmap_long(errors)], ignore_index=True)
    claim_list = study_claims(list(predictions["magnification"].unique()), list(errors["model"].unique()))
    table = judge_claims(claim_list, values, source="mammo_tissue")
    write_csv(job.output.csv, table)
    job.cells = claims_lineage(claim_list, table, values.fillna({"source": ""}))
    log.info("%d claims: %s", len(table), table["verdict"].value_counts().to_dict())


# ------------------------------------------------------------------ figures
def figure_synthetic(job: Job) -> None:
    from medrepro.studies.mammo_tissue.figures import plot_synthetic

    p = job.params
    plot_synthetic(p.raw_dir, job.output.png, p.examples, p.constants, p.clip)


def figure_roc(job: Job) -> None:
    from medrepro.studies.mammo_tissue.figures import plot_roc

    plot_roc(_read(job, "predictions_"), job.output.png)


def _largest_positive_test(job: Job, images: dict, n: int, regions: str = "positive") -> pd.DataFrame:
    """The ``n`` positive test mammograms with the largest area of ``regions`` (the figures' rule: findings, or
    the heatmap's target)."""
    table = pd.read_csv(job.input.mammograms).query("split == 'test' and label == 1").copy()
    table["area"] = [int(images[regions][v].sum()) for v in table["view_id"]]
    return table.sort_values(["area", "view_id"], ascending=[False, True]).head(n)


def figure_aggregation(job: Job) -> None:
    from medrepro.studies.mammo_tissue.base_images import load_images, magnified
    from medrepro.studies.mammo_tissue.figures import plot_aggregation
    from medrepro.studies.mammo_tissue.preprocess import downsample

    p = job.params
    images = load_images(job.input.images)
    chosen = _largest_positive_test(job, images, 1)
    if chosen.empty:
        raise ValueError(f"{job.input.mammograms}: no positive test mammogram to show")
    view_id = int(chosen["view_id"].iloc[0])
    with np.load(job.input.local) as data:
        local = data["local"][list(data["view_id"]).index(view_id)]
    image = magnified(images["crops"][[view_id]], p.factor)[0]
    region = downsample(images["positive"][view_id].astype(np.float32), image.shape[0]) >= 0.5
    plot_aggregation(image, local, region, job.output.png,
                     f"Aggregated local results, {chosen['case'].iloc[0]} (seed {p.seed})")


def figure_heatmaps(job: Job) -> None:
    from medrepro.studies.mammo_tissue.base_images import TARGETS, heatmap_inputs, heatmap_targets, load_images
    from medrepro.studies.mammo_tissue.figures import plot_heatmaps

    p = job.params
    images = load_images(job.input.images)
    chosen = _largest_positive_test(job, images, p.examples, TARGETS[p.target])
    views = chosen["view_id"].to_numpy()
    predicted = {}
    for name, path in job.input.items():
        if name.startswith("heatmaps_"):
            with np.load(path) as data:
                index = {int(v): i for i, v in enumerate(data["view_id"])}
                predicted[p.models[name.removeprefix("heatmaps_")]] = data["heatmap"][[index[int(v)] for v in views]]
    plot_heatmaps(heatmap_inputs(images["crops"][views], p.input_size),
                  heatmap_targets(images[TARGETS[p.target]][views], p.grid, p.blur_sigma), predicted,
                  [f"{c} {v}" for c, v in zip(chosen["case"], chosen["view"])], job.output.png)


def figure_saliency(job: Job) -> None:
    import torch

    from medrepro.studies.mammo_tissue.figures import plot_saliency
    from medrepro.studies.mammo_tissue.patches import cut, magnified_position
    from medrepro.studies.mammo_tissue.preprocess import downsample
    from medrepro.studies.mammo_tissue.saliency import patch_saliency
    from medrepro.studies.mammo_tissue.training import PatchSet, load_classifier, predict

    p = job.params
    model, config = load_classifier(job.input.model)
    factor, patch = config["factor"], config["patch"]
    images, padded = _padded_x05(job.input.images, factor, patch, p.fill)
    test = _samples(job.input.samples, "test")
    size = padded.shape[-1] - 2 * patch
    probability = predict(model, PatchSet(padded[:, patch:patch + size, patch:patch + size], test, factor, patch,
                                          p.fill, torch.device("cpu")))
    positive = np.flatnonzero((test["label"] == 1) & (probability > 0.5))
    best = positive[np.argsort(-probability[positive], kind="stable")[:p.examples]]
    rows, cols = magnified_position(test["row"][best], factor), magnified_position(test["col"][best], factor)
    tiles = cut(padded, test["view_id"][best], rows, cols, patch)
    gradients, _ = patch_saliency(model, torch.from_numpy(tiles)[:, None], p.mode)
    chosen = _largest_positive_test(job, images, 1)
    view_id = int(chosen["view_id"].iloc[0])
    with np.load(job.input.maps) as data:
        saliency = data[f"saliency_{view_id}"] if f"saliency_{view_id}" in data else np.zeros((1, 1))
    image = padded[view_id, patch:patch + size, patch:patch + size]
    region = downsample(images["positive"][view_id].astype(np.float32), size) >= 0.5
    plot_saliency(tiles, gradients.numpy(), probability[best], image, saliency, region, job.output.png,
                  f"Full-scale saliency of {chosen['case'].iloc[0]} {chosen['view'].iloc[0]} (seed {p.seed})")


def figure_training_curves(job: Job) -> None:
    from medrepro.nn.training.loop import read_loss_log
    from medrepro.studies.mammo_tissue.figures import plot_training_curves

    logs = {}
    for name, path in job.input.items():
        model, _, seed = name.rpartition("_seed")
        logs[(model, int(seed))] = read_loss_log(path)
    plot_training_curves(logs, job.output.png)
