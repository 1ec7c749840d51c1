"""Steps of the chest X-ray registration study (AC-RegNet, Table 1).

One function per rule in ``workflow/rules/chest/*.smk``; each reads its inputs,
calls the library, and writes its outputs atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.atomic import atomic_dir, atomic_path, write_json, write_text
from medrepro.runner import Job

log = logging.getLogger(__name__)

METHOD_ORDER = ["AC-RegNet", "AE-RegNet", "CE-RegNet", "RegNet", "SimpleElastix", "Unregistered"]


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.chest.synthetic import generate_dataset

    p = job.params
    image_size = tuple(p.image_size) if p.image_size else None
    with atomic_dir(job.output._0) as tmp:
        truth = generate_dataset(p.dataset, tmp, n_subjects=p.n_subjects, seed=p.seed, image_size=image_size)
    log.info("wrote %d synthetic %s subjects to %s", len(truth), p.dataset, job.output._0)


def download(job: Job) -> None:
    from medrepro.sourcing import fetch
    from medrepro.studies.chest import datasets  # noqa: F401  (registers the chest datasets)

    with atomic_dir(job.output._0) as tmp:
        fetch(job.params.dataset, tmp)


def obtain(job: Job) -> None:
    """Verify the raw files against their pin (a user's copy is pinned at first use); the output is a verified copy."""
    from medrepro.pinning import pins_dir
    from medrepro.sourcing import obtain as obtain_dataset
    from medrepro.studies.chest import datasets  # noqa: F401  (registers the chest datasets)
    from medrepro.studies.chest.cxr14 import dataset  # noqa: F401  (and ChestX-ray14)

    p = job.params
    mode = {"synthetic": "synthetic", "download": "verify", "verify": "verify"}[p.source]
    obtain_dataset(p.dataset, Path(p.raw_dir), Path(job.output.manifest), mode,
                   pins_dir=pins_dir(job.provenance_dir))
    _record_user_copy(job)


def _record_user_copy(job: Job) -> None:
    """A user-placed copy is no rule's output, so it is recorded as this job's input here."""
    if job.params.raw_dir not in job.all_inputs():
        job.extra_inputs.append(str(job.params.raw_dir))


def convert(job: Job) -> None:
    from medrepro.studies.chest.readers.convert import iter_dataset
    from medrepro.studies.chest.subjects import save_subjects

    p = job.params
    _record_user_copy(job)
    with atomic_dir(job.output.converted) as tmp:  # streamed: real sets do not fit in memory at once
        table = save_subjects(iter_dataset(p.dataset, Path(p.raw_dir), p.spacing_mm), tmp)
    log.info("converted %d %s subjects", len(table), p.dataset)


def prealign(job: Job) -> None:
    from medrepro.studies.chest.prealigned import save_prealigned
    from medrepro.studies.chest.subjects import load_subjects
    from medrepro.studies.chest.prealign import choose_reference, prealign_subjects
    from medrepro.elastix import with_overrides
    from medrepro.studies.chest.parameters import published_map

    p = job.params
    subjects = load_subjects(job.input.converted)
    reference = choose_reference(subjects, p.reference)
    pmap = with_overrides(published_map("similarity"), iterations=p.iterations,
                          resolutions=p.resolutions, spatial_samples=p.spatial_samples, seed=p.seed)
    arrays = prealign_subjects(subjects, reference, out_size=p.image_size, work_size=p.work_size,
                               parameter_map=pmap, threads=job.threads, log_dir=p.elastix_log_dir)
    save_prealigned(job.output.arrays, **arrays)
    log.info("pre-aligned %d subjects to reference %s", len(subjects), reference)


def split(job: Job) -> None:
    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.studies.chest.split import folds_from_lists, random_folds, test_pairs

    p = job.params
    names = [str(n) for n in load_prealigned(job.input.arrays).names]
    if p.lists_dir:
        lists = Path(p.lists_dir)
        folds = folds_from_lists(names, lists / f"{p.dataset}_train.txt", lists / f"{p.dataset}_test.txt",
                                 val_fraction=p.fractions[1] / (p.fractions[0] + p.fractions[1]), seed=p.seed)
    else:
        folds = random_folds(names, tuple(p.fractions), p.seed)
    folds["test_pairs"] = test_pairs(folds["test"], p.test_pairs_factor, p.seed)
    folds["seed"] = p.seed
    write_json(job.output.split, folds)
    log.info("%s: %d train, %d val, %d test, %d test pairs", p.dataset, len(folds["train"]),
             len(folds["val"]), len(folds["test"]), len(folds["test_pairs"]))


def _fold(arrays, split_path: str, fold: str):
    folds = json.loads(Path(split_path).read_text())
    return arrays.subset(folds[fold])


# ------------------------------------------------------------------- models
def _training_inputs(job: Job):
    """Training and validation folds of the pre-aligned set, and the device the job runs on."""
    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.device import resolve_device

    arrays = load_prealigned(job.input.arrays)
    device = resolve_device()
    job.extra["device"] = str(device)
    return _fold(arrays, job.input.split, "train"), _fold(arrays, job.input.split, "val"), device


def _training_settings(job: Job, device, method_keys: tuple[str, ...]):
    """The rule's training section (``params.training``, whole) as settings; ``method_keys`` are the trainer's own."""
    from medrepro.training import TrainingSettings

    p = job.params
    return TrainingSettings.from_section(p.training, method_keys=method_keys, checkpoint_path=p.checkpoint,
                                         log_csv=job.output.losses, out_path=job.output.model, seed=p.seed,
                                         device=device, threads=job.threads)


def train_autoencoder(job: Job) -> None:
    from medrepro.studies.chest.readers.convert import n_classes
    from medrepro.studies.chest.autoencoder import train_autoencoder as train

    from medrepro.studies.chest.augment import augment_masks

    p, section = job.params, job.params.training
    train_set, val_set, device = _training_inputs(job)
    augmented = augment_masks(train_set.labels, section["augmented_masks"], p.seed)
    masks = np.concatenate([train_set.labels, augmented])
    log.info("autoencoder trains on %d masks (%d of them shape variants)", len(masks), len(augmented))
    settings = _training_settings(job, device, ("noise_p", "augmented_masks"))
    job.extra["training"] = train(masks, n_classes(job.wildcards.dataset), settings, noise_p=section["noise_p"],
                                  val_labels=val_set.labels)


def train_registration(job: Job) -> None:
    from medrepro.studies.chest.readers.convert import n_classes
    from medrepro.studies.chest.registration import train_registration as train

    p = job.params
    train_set, val_set, device = _training_inputs(job)
    autoencoder = job.input.autoencoder  # an empty list for the variants without L_ae
    if isinstance(autoencoder, list):
        autoencoder = autoencoder[0] if autoencoder else None
    loss_keys = ("lambda_r", "lambda_ce", "lambda_ae", "ce_epsilon")
    job.extra["training"] = train(
        train_set.images, train_set.labels, _training_settings(job, device, loss_keys), method=p.method,
        n_classes=n_classes(job.wildcards.dataset), autoencoder_path=autoencoder,
        **{key: p.training[key] for key in loss_keys}, val_images=val_set.images, val_labels=val_set.labels)


# --------------------------------------------------------------- evaluation
def _test_pairs(arrays, split_path: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    pairs = json.loads(Path(split_path).read_text())["test_pairs"]
    moving = np.array([arrays.index(m) for m, _ in pairs])
    fixed = np.array([arrays.index(f) for _, f in pairs])
    return moving, fixed, pairs


def _score_and_save(job: Job, arrays, pairs, moving_idx, fixed_idx, warped_labels, warped_images,
                    seconds_per_pair: float) -> None:
    from medrepro.studies.chest.readers.convert import n_classes
    from medrepro.studies.chest.evaluation import score_pair

    labels = list(range(1, n_classes(job.wildcards.dataset)))
    # Learned methods are scored once per replicate seed; the column says which.
    seed_column = {"seed": int(job.params.seed)} if "seed" in job.wildcards else {}
    rows = []
    for k, (m_name, f_name) in enumerate(pairs):
        spacing = arrays.spacing[fixed_idx[k]]
        spacing = None if np.isnan(spacing).any() else tuple(float(s) for s in spacing)
        for row in score_pair(warped_labels[k], arrays.labels[fixed_idx[k]], labels, spacing):
            rows.append({"dataset": job.wildcards.dataset, "method": job.params.method, **seed_column,
                         "moving": m_name, "fixed": f_name, **row, "distance_unit": "mm" if spacing else "px"})
    scores = pd.DataFrame(rows)
    with atomic_path(job.output.scores) as tmp:
        scores.to_csv(tmp, index=False)
    k = min(job.params.example_pair, len(pairs) - 1)
    with atomic_path(job.output.example) as tmp:
        np.savez_compressed(tmp, moving_image=arrays.images[moving_idx[k]], fixed_image=arrays.images[fixed_idx[k]],
                            moving_labels=arrays.labels[moving_idx[k]], fixed_labels=arrays.labels[fixed_idx[k]],
                            warped_image=warped_images[k], warped_labels=warped_labels[k],
                            pair=np.array(pairs[k]))
    job.extra["seconds_per_pair"] = seconds_per_pair  # timings go to the record, never into an output
    log.info("%s %s: mean DSC %.4f over %d pairs", job.wildcards.dataset, job.params.method,
             scores.groupby(["moving", "fixed"])["dsc"].mean().mean(), len(pairs))


def evaluate_unregistered(job: Job) -> None:
    from medrepro.studies.chest.prealigned import load_prealigned

    arrays = load_prealigned(job.input.arrays)
    moving, fixed, pairs = _test_pairs(arrays, job.input.split)
    _score_and_save(job, arrays, pairs, moving, fixed, arrays.labels[moving], arrays.images[moving], 0.0)


def evaluate_learned(job: Job) -> None:
    import time

    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.studies.chest.readers.convert import n_classes
    from medrepro.device import resolve_device
    from medrepro.studies.chest.inference import load_registration_model, register_batch, warp_label_maps, warp_images

    arrays = load_prealigned(job.input.arrays)
    moving, fixed, pairs = _test_pairs(arrays, job.input.split)
    device = resolve_device()
    job.extra["device"] = str(device)
    model = load_registration_model(job.input.model, device)
    start = time.perf_counter()
    disp = register_batch(model, arrays.images[moving], arrays.images[fixed], batch_size=32, device=device)
    warped_labels = warp_label_maps(arrays.labels[moving], disp, n_classes(job.wildcards.dataset))
    warped_images = warp_images(arrays.images[moving], disp)
    seconds = (time.perf_counter() - start) / len(pairs)
    _score_and_save(job, arrays, pairs, moving, fixed, warped_labels, warped_images, seconds)


def evaluate_elastix(job: Job) -> None:
    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.studies.chest.baseline import bspline_register_pairs
    from medrepro.elastix import with_overrides
    from medrepro.studies.chest.parameters import published_map

    p = job.params
    arrays = load_prealigned(job.input.arrays)
    moving, fixed, pairs = _test_pairs(arrays, job.input.split)
    pmap = with_overrides(published_map("bspline"), grid_spacing=p.grid_spacing, iterations=p.iterations,
                          resolutions=p.resolutions, spatial_samples=p.spatial_samples, seed=p.seed)
    # The published step length and bending-energy weight are in pixel units (the authors registered
    # PNG files), so elastix sees unit spacing here; distances are converted to mm when scoring.
    warped_labels, warped_images, seconds = bspline_register_pairs(
        arrays.images, arrays.labels, list(zip(moving.tolist(), fixed.tolist())), pmap, spacing=None,
        threads=job.threads, log_dir=p.elastix_log_dir)
    _score_and_save(job, arrays, pairs, moving, fixed, warped_labels, warped_images, float(np.mean(seconds)))


# ------------------------------------------------------------------ reports
def _scores_by_key(job: Job) -> dict[str, pd.DataFrame]:
    """Named inputs 'Dataset/Method' or 'Dataset/Method/seed<N>' -> per-(pair, class) score tables."""
    return {key: pd.read_csv(path) for key, path in job.input.items() if "/" in key}


def _per_pair(job: Job) -> pd.DataFrame:
    """Class means per (dataset, method, seed, pair); ``seed`` is NaN for the methods run once."""
    from medrepro.studies.chest.evaluation import pair_means

    scores = pd.concat(_scores_by_key(job).values(), ignore_index=True)
    if "seed" not in scores.columns:
        scores["seed"] = np.nan
    return pair_means(scores)


def _seed_averaged(per_pair: pd.DataFrame) -> pd.DataFrame:
    """One value per (dataset, method, pair): the mean over the seeds (methods run once keep theirs)."""
    from medrepro.studies.chest.evaluation import METRICS

    keys = ["dataset", "method", "moving", "fixed"]
    return per_pair.groupby(keys, sort=False)[list(METRICS)].mean().reset_index()


def _row_inputs(job: Job, row_keys) -> dict[str, list[str]]:
    """For each 'Dataset/Method' row, every input file that fed it (each seed's scores)."""
    return {row: [path for key, path in job.input.items() if key == row or key.startswith(f"{row}/")]
            for row in row_keys}


def registration_table(job: Job) -> None:
    from medrepro.studies.chest.tables import registration_table as build, render_latex, render_markdown

    per_pair = _per_pair(job)
    methods = [m for m in METHOD_ORDER if m in job.params.methods]
    table = build(per_pair, methods_order=methods, datasets_order=job.params.datasets)
    required = table.drop(columns=[c for c in table.columns if c.endswith("_seed_sd")]).select_dtypes("number")
    if not np.isfinite(required.to_numpy(dtype=float)).all():
        raise ValueError("Table 1 has non-finite cells; see the per-pair scores")
    with atomic_path(job.output.csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    write_text(job.output.markdown, render_markdown(table))
    write_text(job.output.latex, render_latex(table))
    job.cells = {"key_columns": ["dataset", "method"],
                 "rows": _row_inputs(job, [f"{d}/{m}" for d, m in zip(table["dataset"], table["method"])])}


def registration_wilcoxon(job: Job) -> None:
    from medrepro.stats import paired_wilcoxon

    # Each pair's value is first averaged over the replicate seeds: the test is over test pairs.
    tests = paired_wilcoxon(_seed_averaged(_per_pair(job)))
    with atomic_path(job.output.csv) as tmp:
        tests.to_csv(tmp, index=False, float_format="%.6g")
    rows = {}
    for r in tests.itertuples():
        inputs = _row_inputs(job, [f"{r.dataset}/{r.method_a}", f"{r.dataset}/{r.method_b}"])
        rows[f"{r.dataset}/{r.metric}/{r.method_a}/{r.method_b}"] = [path for paths in inputs.values() for path in paths]
    job.cells = {"key_columns": ["dataset", "metric", "method_a", "method_b"], "rows": rows}


def claims(job: Job) -> None:
    from medrepro.claims import judge_claims
    from medrepro.studies.chest.claims import chest_claims

    per_pair = _per_pair(job)
    per_pair["case"] = per_pair["moving"].astype(str) + "|" + per_pair["fixed"].astype(str)
    frames = []
    for dataset in job.params.datasets:
        values = per_pair[per_pair["dataset"] == dataset]
        frames.append(judge_claims(chest_claims(dataset, job.params.methods), values, source=dataset))
    table = pd.concat(frames, ignore_index=True)
    with atomic_path(job.output.csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    job.cells = {"key_columns": ["study", "claim", "metric"],
                 "rows": {f"{r.study}/{r.claim}/{r.metric}": _claim_inputs(job, r.claim) for r in table.itertuples()}}
    log.info("%d claims: %s", len(table), table["verdict"].value_counts().to_dict())


def _claim_inputs(job: Job, label: str) -> list[str]:
    """The score files of the methods a claim names ('JSRT: AC-RegNet > RegNet')."""
    dataset, _, order = label.partition(": ")
    inputs = _row_inputs(job, [f"{dataset}/{method}" for method in order.split(" > ")])
    return [path for paths in inputs.values() for path in paths]


def figure_dice(job: Job) -> None:
    from medrepro.studies.chest.figures import plot_dice_distributions

    methods = [m for m in METHOD_ORDER if m in job.params.methods]
    plot_dice_distributions(_seed_averaged(_per_pair(job)), job.output.png, methods_order=methods,
                            datasets_order=job.params.datasets)


def figure_examples(job: Job) -> None:
    from medrepro.studies.chest.figures import plot_registration_examples

    methods = [m for m in METHOD_ORDER if m in job.params.methods]
    examples = []
    for dataset in job.params.datasets:
        loaded = {method: np.load(job.input[f"{dataset}/{method}"]) for method in methods}
        pair = loaded[methods[0]]  # every method registered the same example pair
        example = {"dataset": dataset, **{key: pair[key] for key in
                                          ("moving_image", "fixed_image", "moving_labels", "fixed_labels")}}
        example["methods"] = {method: {"warped_image": data["warped_image"], "warped_labels": data["warped_labels"]}
                              for method, data in loaded.items()}
        examples.append(example)
    plot_registration_examples(examples, job.output.png)


def figure_training_curves(job: Job) -> None:
    from medrepro.studies.chest.figures import plot_training_curves

    curves = {tuple(key.split("/")): pd.read_csv(path) for key, path in job.input.items() if "/" in key}
    plot_training_curves(curves, job.output.png)


def figure_anatomical_loss(job: Job) -> None:
    import torch

    from medrepro.studies.chest.anatomical_loss import anatomical_loss_experiment
    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.studies.chest.figures import plot_anatomical_loss
    from medrepro.studies.chest.autoencoder import load_autoencoder

    p = job.params
    arrays = load_prealigned(job.input.arrays)
    # Training and validation masks only (never the test fold): the reduced runs have fewer than 20 training masks.
    masks = np.concatenate([_fold(arrays, job.input.split, "train").labels, _fold(arrays, job.input.split, "val").labels])
    rng = np.random.default_rng(p.seed)
    chosen = masks[np.sort(rng.choice(len(masks), size=min(p.n_masks, len(masks)), replace=False))]
    autoencoder = load_autoencoder(job.input.autoencoder, torch.device("cpu"))

    def encoder(onehot: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return autoencoder.encode(onehot)

    table = anatomical_loss_experiment(chosen, autoencoder.n_classes, encoder, p.changed_pixels, p.seed)
    with atomic_path(job.output.csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    plot_anatomical_loss(table, job.output.png)


def figure_synthetic(job: Job) -> None:
    from medrepro.studies.chest.synthetic_figure import plot_synthetic_examples

    plot_synthetic_examples({k: Path(v) for k, v in job.input.items() if not k.startswith("_")}, job.output.png)
