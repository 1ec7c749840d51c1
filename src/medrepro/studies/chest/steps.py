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

from medrepro.data.atomic import atomic_dir, atomic_path, write_csv, write_json
from medrepro.pipeline.runner import Job
from medrepro.pipeline.steps import download_step, obtain_step, record_user_copy, synthesize_step

log = logging.getLogger(__name__)

METHOD_ORDER = ["AC-RegNet", "AE-RegNet", "CE-RegNet", "RegNet", "SimpleElastix", "Unregistered"]


# --------------------------------------------------------------------- data
def synthesize(job: Job) -> None:
    from medrepro.studies.chest.synthetic import generate_dataset

    p = job.params
    image_size = tuple(p.image_size) if p.image_size else None
    truth = synthesize_step(job, lambda out: generate_dataset(p.dataset, out, n_subjects=p.n_subjects, seed=p.seed,
                                                             image_size=image_size))
    log.info("wrote %d synthetic %s subjects to %s", len(truth), p.dataset, job.output._0)


def download(job: Job) -> None:
    from medrepro.studies.chest import datasets  # noqa: F401  (registers the chest datasets)

    download_step(job, job.params.dataset)


def obtain(job: Job) -> None:
    """Verify the raw files against their pin (a user's copy is pinned at first use); the output is a verified copy."""
    from medrepro.studies.chest import datasets  # noqa: F401  (registers the chest datasets)
    from medrepro.studies.chest.cxr14 import dataset  # noqa: F401  (and ChestX-ray14)

    obtain_step(job, job.params.dataset)


def convert(job: Job) -> None:
    from medrepro.studies.chest.readers.convert import iter_dataset
    from medrepro.studies.chest.subjects import save_subjects

    p = job.params
    record_user_copy(job, p.raw_dir)
    with atomic_dir(job.output.converted) as tmp:  # streamed: real sets do not fit in memory at once
        table = save_subjects(iter_dataset(p.dataset, Path(p.raw_dir), p.spacing_mm), tmp)
    log.info("converted %d %s subjects", len(table), p.dataset)


def prealign(job: Job) -> None:
    from medrepro.studies.chest.prealigned import save_prealigned
    from medrepro.studies.chest.subjects import load_subjects
    from medrepro.studies.chest.prealign import choose_reference, prealign_subjects
    from medrepro.spatial.elastix import with_overrides
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
    from medrepro.nn.device import resolve_device

    arrays = load_prealigned(job.input.arrays)
    device = resolve_device()
    job.extra["device"] = str(device)
    return _fold(arrays, job.input.split, "train"), _fold(arrays, job.input.split, "val"), device


def _training_settings(job: Job, device, method_keys: tuple[str, ...]):
    """The rule's training section (``params.training``, whole) as settings; ``method_keys`` are the trainer's own."""
    from medrepro.nn.training import TrainingSettings

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
    write_csv(job.output.scores, scores)
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
    from medrepro.nn.device import resolve_device
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
    from medrepro.spatial.elastix import with_overrides
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
def _per_pair(job: Job) -> pd.DataFrame:
    """Class means per (dataset, method, seed, pair) in the long format, each row with its score file (``source``).

    The score files are the named inputs 'Dataset/Method' (run once, seed NaN) or 'Dataset/Method/seed<N>'.
    """
    from medrepro.report.scores import SOURCE
    from medrepro.studies.chest.evaluation import pair_values

    scores = [pd.read_csv(path).assign(**{SOURCE: str(path)}) for key, path in job.input.items() if "/" in key]
    return pair_values(pd.concat(scores, ignore_index=True))


def registration_table(job: Job) -> None:
    from medrepro.report.scores import cell_lineage
    from medrepro.studies.chest.tables import FLOAT_FORMAT, registration_table as build, render_latex, render_markdown
    from medrepro.report.tables import write_table

    per_pair = _per_pair(job)
    methods = [m for m in METHOD_ORDER if m in job.params.methods]
    table = build(per_pair, methods_order=methods, datasets_order=job.params.datasets)
    required = table.drop(columns=[c for c in table.columns if c.endswith("_seed_sd")]).select_dtypes("number")
    if not np.isfinite(required.to_numpy(dtype=float)).all():
        raise ValueError("Table 1 has non-finite cells; see the per-pair scores")
    write_table(table, job.output.csv, FLOAT_FORMAT,
                [(job.output.markdown, render_markdown), (job.output.latex, render_latex)])
    job.cells = cell_lineage(table, ["dataset", "method"], per_pair)


def registration_wilcoxon(job: Job) -> None:
    from medrepro.report.stats import paired_wilcoxon, wilcoxon_lineage
    from medrepro.studies.chest.evaluation import METRICS
    from medrepro.studies.chest.tables import FLOAT_FORMAT

    # Each pair's value is first averaged over the replicate seeds: the test is over test pairs.
    per_pair = _per_pair(job)
    tests = paired_wilcoxon(per_pair, METRICS, groups=("dataset",))
    write_csv(job.output.csv, tests, FLOAT_FORMAT)
    job.cells = wilcoxon_lineage(tests, per_pair, groups=("dataset",))


def claims(job: Job) -> None:
    from medrepro.report.claims import claims_lineage, judge_claims
    from medrepro.studies.chest.claims import chest_claims
    from medrepro.studies.chest.tables import FLOAT_FORMAT

    per_pair = _per_pair(job)
    claims = [claim for dataset in job.params.datasets for claim in chest_claims(dataset, job.params.methods)]
    table = judge_claims(claims, per_pair, source="the chest per-pair scores")
    write_csv(job.output.csv, table, FLOAT_FORMAT)
    job.cells = claims_lineage(claims, table, per_pair)
    log.info("%d claims: %s", len(table), table["verdict"].value_counts().to_dict())


def figure_dice(job: Job) -> None:
    from medrepro.report.scores import seed_means
    from medrepro.studies.chest.evaluation import METRICS
    from medrepro.studies.chest.figures import plot_dice_distributions

    methods = [m for m in METHOD_ORDER if m in job.params.methods]
    # moving and fixed ride along as groups (each case has one of each): the figure counts pairs by them.
    per_pair = seed_means(_per_pair(job), METRICS, groups=("dataset", "moving", "fixed"))
    plot_dice_distributions(per_pair, job.output.png, methods_order=methods, datasets_order=job.params.datasets)


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
    from medrepro.nn.training.loop import read_loss_log

    curves = {tuple(key.split("/")): read_loss_log(path) for key, path in job.input.items() if "/" in key}
    plot_training_curves(curves, job.output.png)


def figure_anatomical_loss(job: Job) -> None:
    import torch

    from medrepro.studies.chest.anatomical_loss import anatomical_loss_experiment
    from medrepro.studies.chest.prealigned import load_prealigned
    from medrepro.studies.chest.figures import plot_anatomical_loss
    from medrepro.studies.chest.autoencoder import load_autoencoder
    from medrepro.studies.chest.tables import FLOAT_FORMAT

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
    write_csv(job.output.csv, table, FLOAT_FORMAT)
    plot_anatomical_loss(table, job.output.png)


def figure_synthetic(job: Job) -> None:
    from medrepro.studies.chest.synthetic_figure import plot_synthetic_examples

    plot_synthetic_examples({k: Path(v) for k, v in job.input.items() if not k.startswith("_")}, job.output.png)
