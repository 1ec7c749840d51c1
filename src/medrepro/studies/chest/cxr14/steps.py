"""Steps of the ChestX-ray14 applications (AC-RegNet, Sec. 5.3).

One function per rule in ``workflow/rules/cxr14/*.smk``: the label table is cut
into shards; each shard is pre-aligned, segmented by multi-atlas registration
with the JSRT AC-RegNet and scored by reverse classification accuracy (RCA);
the scores then drive quality control, the cardiomegaly cohort and the SVM.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path, write_csv
from medrepro.pipeline.runner import Job
from medrepro.pipeline.steps import synthesize_step
from medrepro.studies.chest.steps import obtain  # noqa: F401  (the same verification as the chest datasets)
from medrepro.studies.chest.tables import FLOAT_FORMAT

log = logging.getLogger(__name__)

SHARD_KEYS = ("names", "images", "masks", "atlas_index", "atlas_ncc", "aligned")
REPRESENTATIONS = ("pca32", "ae32", "ctr_threshold")


def _save_npz(path: str, **arrays) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def _load_npz(path: str, keys) -> dict[str, np.ndarray]:
    from medrepro.errors import DataError

    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise DataError(path, f"lacks arrays {missing}")
        return {k: data[k] for k in keys}


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.chest.cxr14.synthetic import generate_cxr14

    p = job.params
    truth = synthesize_step(job, lambda out: generate_cxr14(out, n_images=p.n_images, seed=p.seed,
                                                            poor_fraction=p.poor_fraction, image_size=p.image_size,
                                                            enlarged_fraction=p.enlarged_fraction))
    log.info("wrote %d synthetic ChestX-ray14 images (%d with cardiomegaly, %d poor)", len(truth),
             int(truth["cardiomegaly"].sum()), int((truth["quality"] == "poor").sum()))


def manifest(job: Job) -> None:
    """The first ``n_images`` rows of the label table, each with its shard, once the images are checked."""
    from medrepro.errors import DataError
    from medrepro.studies.chest.cxr14.dataset import IMAGES_DIR, LABEL_TABLE, check_images, read_label_table

    p = job.params
    table_path = Path(p.raw_dir) / LABEL_TABLE
    table = read_label_table(table_path)
    if len(table) < p.n_images:
        raise DataError(table_path, f"lists {len(table)} images; the config asks for cxr14.n_images = {p.n_images}")
    table = table.iloc[: p.n_images].reset_index(drop=True)
    check_images(table, Path(p.raw_dir) / IMAGES_DIR, table_path)
    out = pd.DataFrame({"image": table["Image Index"], "patient_id": table["Patient ID"],
                        "finding_labels": table["Finding Labels"],
                        "shard": np.arange(len(table)) // p.shard_size})
    write_csv(job.output.manifest, out, FLOAT_FORMAT)
    log.info("%d images in %d shards of up to %d", len(out), out["shard"].nunique(), p.shard_size)


def atlases(job: Job) -> None:
    """The atlas set (training fold), the held-out fold for RCA validation, and the pre-alignment reference."""
    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.studies.chest.readers.convert import n_classes
    from medrepro.studies.chest.subjects import load_subjects
    from medrepro.studies.chest.prealign import working_image

    p = job.params
    arrays = load_prealigned(job.input.arrays)
    folds = json.loads(Path(job.input.split).read_text())
    train = arrays.subset(folds["train"])
    held_out = arrays.subset(list(folds["val"]) + list(folds["test"]))
    (reference,) = load_subjects(job.input.converted, names=[arrays.reference])
    work_size = p.work_size or max(reference.image.shape)
    _save_npz(job.output.atlases, atlas_images=train.images, atlas_labels=train.labels, atlas_names=train.names,
              held_out_images=held_out.images, held_out_labels=held_out.labels, held_out_names=held_out.names,
              reference_image=working_image(reference.image, work_size), reference_name=np.array(arrays.reference),
              n_classes=np.array(n_classes(p.dataset)))
    log.info("%d atlases, %d held-out images, reference %s at %d px", len(train), len(held_out),
             arrays.reference, work_size)


def _atlas_set(path: str) -> dict[str, np.ndarray]:
    return _load_npz(path, ("atlas_images", "atlas_labels", "atlas_names", "held_out_images", "held_out_labels",
                            "held_out_names", "reference_image", "n_classes"))


def _model(job: Job):
    from medrepro.nn.device import resolve_device
    from medrepro.studies.chest.inference import load_registration_model

    device = resolve_device()
    job.extra["device"] = str(device)
    return load_registration_model(job.input.model, device), device


# ------------------------------------------------------------- per shard
def segment(job: Job) -> None:
    """Pre-align the shard's images like the atlases, then multi-atlas segmentation with AC-RegNet."""
    from medrepro.studies.chest.cxr14.multiatlas import segment as multiatlas_segment
    from medrepro.studies.chest.cxr14.dataset import IMAGES_DIR, read_cxr14_image
    from medrepro.studies.chest.prealign import prealign_images
    from medrepro.spatial.elastix import with_overrides
    from medrepro.studies.chest.parameters import published_map

    p = job.params
    rows = pd.read_csv(job.input.manifest, dtype={"image": str})
    names = rows.loc[rows["shard"] == int(job.wildcards.shard), "image"].tolist()
    atlas = _atlas_set(job.input.atlases)
    pmap = with_overrides(published_map("similarity"), iterations=p.iterations,
                          resolutions=p.resolutions, spatial_samples=p.spatial_samples, seed=p.seed)
    images_dir = Path(p.raw_dir) / IMAGES_DIR
    work_size = atlas["reference_image"].shape[0]
    stream = ((name, read_cxr14_image(images_dir / name)) for name in names)
    aligned, table = prealign_images(stream, atlas["reference_image"], out_size=atlas["atlas_images"].shape[-1],
                                     work_size=work_size, parameter_map=pmap, threads=job.threads, total=len(names))
    model, device = _model(job)
    result = multiatlas_segment(model, aligned, atlas["atlas_images"], atlas["atlas_labels"],
                                int(atlas["n_classes"]), k=p.n_atlases, batch_size=p.batch_size, device=device)
    _save_npz(job.output.segmentation, names=np.array(names), images=aligned.astype(np.float16),
              masks=result.masks, atlas_index=result.atlas_index, atlas_ncc=result.atlas_ncc.astype(np.float32),
              aligned=np.array([r["aligned"] for r in table]))
    job.extra["prealign_failures"] = int(sum(not r["aligned"] for r in table))
    log.info("shard %s: segmented %d images", job.wildcards.shard, len(names))


def rca(job: Job) -> None:
    """RCA-predicted Dice of each segmentation: its image and mask as a single atlas, scored on the references."""
    from medrepro.studies.chest.cxr14.rca import rca_scores

    shard = _load_npz(job.input.segmentation, SHARD_KEYS)
    atlas = _atlas_set(job.input.atlases)
    model, device = _model(job)
    result = rca_scores(model, shard["images"].astype(np.float32), shard["masks"], atlas["atlas_images"],
                        atlas["atlas_labels"], int(atlas["n_classes"]), batch_size=job.params.batch_size,
                        device=device)
    table = pd.DataFrame({"image": shard["names"], "dice": result.predicted_dice,
                          "best_reference": atlas["atlas_names"][result.best_reference],
                          "prealigned": shard["aligned"]})
    write_csv(job.output.scores, table, FLOAT_FORMAT)
    log.info("shard %s: median RCA Dice %.3f", job.wildcards.shard, float(np.median(result.predicted_dice)))


def rca_scores_table(job: Job) -> None:
    """All shards' RCA scores in manifest order."""
    scores = pd.concat([pd.read_csv(path, dtype={"image": str}) for path in job.input.scores], ignore_index=True)
    write_csv(job.output.scores, scores, FLOAT_FORMAT)


# ----------------------------------------------------------- validation
def rca_validation(job: Job) -> None:
    """Segment held-out atlas-dataset images whose truth is known; compare RCA-predicted with real Dice."""
    from scipy import stats

    from medrepro.studies.chest.cxr14.multiatlas import segment as multiatlas_segment
    from medrepro.studies.chest.cxr14.rca import batch_mean_dice, rca_scores

    p = job.params
    atlas = _atlas_set(job.input.atlases)
    n_classes = int(atlas["n_classes"])
    model, device = _model(job)
    seg = multiatlas_segment(model, atlas["held_out_images"], atlas["atlas_images"], atlas["atlas_labels"],
                             n_classes, k=p.n_atlases, batch_size=p.batch_size, device=device)
    real = batch_mean_dice(seg.masks, atlas["held_out_labels"], list(range(1, n_classes)))
    predicted = rca_scores(model, atlas["held_out_images"], seg.masks, atlas["atlas_images"], atlas["atlas_labels"],
                           n_classes, batch_size=p.batch_size, device=device).predicted_dice
    per_image = pd.DataFrame({"image": atlas["held_out_names"], "real_dice": real, "rca_dice": predicted})
    write_csv(job.output.per_image, per_image, FLOAT_FORMAT)
    summary = pd.DataFrame([{
        "dataset": p.dataset, "n_images": len(per_image),
        "pearson_r": stats.pearsonr(real, predicted).statistic if len(real) > 2 else np.nan,
        "spearman_rho": stats.spearmanr(real, predicted).statistic if len(real) > 2 else np.nan,
        "mae": float(np.mean(np.abs(predicted - real))),
        "mean_real_dice": float(np.mean(real)), "mean_rca_dice": float(np.mean(predicted)),
    }])
    write_csv(job.output.table, summary, FLOAT_FORMAT)
    job.cells = {"key_columns": ["dataset"], "rows": {p.dataset: [job.input.atlases, job.input.model]}}
    log.info("RCA validation on %d held-out images: %s", len(per_image), summary.iloc[0].to_dict())


# ------------------------------------------------------- cohort and SVM
def cohort(job: Job) -> None:
    """Quality control and the balanced cardiomegaly cohort: this run's row and the published one."""
    from medrepro.studies.chest.cxr14.cohort import cohort_counts, read_published_rca
    from medrepro.studies.chest.cxr14.dataset import read_label_table

    p = job.params
    rows = pd.read_csv(job.input.manifest, dtype={"image": str, "finding_labels": str}, keep_default_na=False)
    labels = rows.rename(columns={"image": "Image Index", "finding_labels": "Finding Labels"})
    scores = pd.read_csv(job.input.scores, dtype={"image": str})[["image", "dice"]]
    counts, members = cohort_counts(labels, scores, p.threshold, p.seed, labels_path=job.input.manifest,
                                    rca_path=job.input.scores)
    published, _ = cohort_counts(read_label_table(job.input.published_labels),
                                 read_published_rca(job.input.published_rca), p.published_threshold, p.seed,
                                 labels_path=job.input.published_labels, rca_path=job.input.published_rca)
    table = pd.DataFrame([{"source": p.source_name, **counts}, {"source": "published", **published}])
    write_csv(job.output.table, table, FLOAT_FORMAT)
    write_csv(job.output.members, members, FLOAT_FORMAT)
    job.cells = {"key_columns": ["source"],
                 "rows": {p.source_name: [job.input.manifest, job.input.scores],
                          "published": [job.input.published_labels, job.input.published_rca]}}
    log.info("cohort: %s; published: %s", counts, published)


def features(job: Job) -> None:
    """Mask representations of the cohort: vectorised one-hot masks, autoencoder codes, cardiothoracic ratio."""
    from medrepro.studies.chest.cxr14.cardiac import cardiothoracic_ratios
    from medrepro.studies.chest.cxr14.classify import autoencoder_codes
    from medrepro.errors import DataError
    from medrepro.studies.chest.autoencoder import load_autoencoder
    from medrepro.nn.device import resolve_device

    members = pd.read_csv(job.input.members, dtype={"image": str})
    wanted = set(members["image"])
    found: dict[str, np.ndarray] = {}
    for path in job.input.segmentations:
        shard = _load_npz(path, ("names", "masks"))
        for name, mask in zip(shard["names"], shard["masks"]):
            if name in wanted:
                found[str(name)] = mask
    missing = wanted - set(found)
    if missing:
        raise DataError(job.input.members, f"{len(missing)} cohort images have no segmentation, e.g. "
                                           f"{sorted(missing)[:5]}")
    masks = np.stack([found[name] for name in members["image"]])
    device = resolve_device()
    encoder = load_autoencoder(job.input.autoencoder, device)
    n_classes = int(encoder.config["n_classes"])
    onehot = (masks[:, None] == np.arange(1, n_classes)[None, :, None, None]).reshape(len(masks), -1)
    _save_npz(job.output.features, names=members["image"].to_numpy(dtype=str), y=members["label"].to_numpy(),
              vectors=onehot.astype(np.uint8), codes=autoencoder_codes(encoder, masks, n_classes, device=device),
              ctr=cardiothoracic_ratios(masks))
    log.info("features of %d cohort images (%d with cardiomegaly)", len(members), int(members["label"].sum()))


def svm(job: Job) -> None:
    """20-fold stratified cross-validated SVM accuracy per representation, and the CTR > 0.5 rule."""
    from medrepro.studies.chest.cxr14.classify import cross_validate, ctr_threshold_accuracy

    p = job.params
    data = _load_npz(job.input.features, ("y", "vectors", "codes", "ctr"))
    y = data["y"].astype(int)
    options = {"kernel": p.kernel, "C": p.C}
    results = {
        "pca32": cross_validate(data["vectors"].astype(np.float32), y, p.folds, p.seed, "pca32",
                                n_components=p.pca_components, **options),
        "ae32": cross_validate(data["codes"], y, p.folds, p.seed, "ae32", **options),
        "ctr_threshold": ctr_threshold_accuracy(data["ctr"], y, p.folds, p.seed, p.ctr_threshold),
    }
    table = pd.DataFrame([{"representation": name, "accuracy_mean": r["accuracy_mean"],
                           "accuracy_sd": r["accuracy_sd"], "folds": r["folds"]} for name, r in results.items()])
    write_csv(job.output.table, table, FLOAT_FORMAT)
    job.cells = {"key_columns": ["representation"], "rows": {name: [job.input.features] for name in results}}
    job.extra["fold_accuracies"] = {name: r["fold_accuracies"] for name, r in results.items()}
    log.info("cardiomegaly SVM: %s", table.to_dict("records"))


# ------------------------------------------------------------------ figures
def figure_rca(job: Job) -> None:
    """Fig. 4: RCA Dice histogram with the threshold, and example masks below and above it."""
    from medrepro.studies.chest.cxr14.figures import pick_examples, plot_rca_histogram

    p = job.params
    scores = pd.read_csv(job.input.scores, dtype={"image": str})
    chosen = pick_examples(scores, p.threshold, p.examples)
    examples = []
    for path in job.input.segmentations:
        shard = _load_npz(path, ("names", "images", "masks"))
        for k, name in enumerate(shard["names"]):
            if name in chosen:
                examples.append({"image": str(name), "dice": chosen[str(name)],
                                 "pixels": shard["images"][k].astype(np.float32), "mask": shard["masks"][k]})
    plot_rca_histogram(scores["dice"].to_numpy(), p.threshold, job.output.png, examples=examples,
                       title=f"RCA-predicted Dice, {len(scores)} ChestX-ray14 images ({p.source_name})")


def figure_published_rca(job: Job) -> None:
    from medrepro.studies.chest.cxr14.cohort import read_published_rca
    from medrepro.studies.chest.cxr14.figures import plot_rca_histogram

    scores = read_published_rca(job.input.published_rca)
    plot_rca_histogram(scores["dice"].to_numpy(), job.params.threshold, job.output.png,
                       title=f"Published RCA-predicted Dice, {len(scores):,} ChestX-ray14 images")


def figure_rca_validation(job: Job) -> None:
    from medrepro.studies.chest.cxr14.figures import plot_rca_validation

    plot_rca_validation(pd.read_csv(job.input.per_image), job.params.threshold, job.output.png)
