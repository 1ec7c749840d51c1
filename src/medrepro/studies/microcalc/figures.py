"""The study's figures, composed from the kernel's figure helpers (:mod:`medrepro.report.figures`).

Every example is chosen by a stated rule, never by hand:

* the synthetic INbreast: the first digital and the first digitised-film image with calcifications, then images
  with vascular tracks, in table order;
* Fig. 4: every misclassified test patch (the most confidently wrong first when they are too many), the rest a
  seeded draw;
* Figs. 5 and 6: the most confidently wrong test patches, each beside the nearest correctly classified patch of the
  other label in the first fully connected layer's feature space;
* Fig. 1: the test image with the most calcifications found (summed over the variants, ties by name), around its
  largest true cluster (or its largest calcification);
* Fig. 7: the (image, variant) with the most false detections within :data:`BORDER_MM` of the breast's edge, around
  the one with the most such neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage as ndi

from medrepro.errors import DataError
from medrepro.report.figures import (
    assign_colours, draw_box, draw_loss_curves, draw_mask_contour, group_runs, legend_below, line_entry,
    marker_entry, save_figure,
    show_image, split_entries,
)
from medrepro.studies.microcalc.mammograms import Source, read_mammograms
from medrepro.studies.microcalc.patches import breast_mask
from medrepro.studies.microcalc.readers import DIGITAL, inbreast
from medrepro.studies.microcalc.segmentation import ClusterRule, cluster_calcifications, label_calcifications

TRUTH, PREDICTED, FALSE, BORDER = "tab:green", "tab:red", "gold", "tab:cyan"
POSITIVE, NEGATIVE = "tab:red", "tab:blue"
CROP_MM = 10.0
BORDER_MM = 2.0
ZOOM_MM = 8.0
ACQUISITION_NAMES = {"digital": "digital", "film": "digitised film"}


# ---------------------------------------------------------------- shared pieces

def crop_box(centre: tuple[float, float], side: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """A ``side`` x ``side`` window centred on ``centre`` (row, col), moved inside an image of ``shape`` (smaller
    where the image is)."""
    box = []
    for c, n in zip(centre, shape):
        length = min(side, n)
        start = int(round(c - length / 2))
        start = min(max(start, 0), n - length)
        box.append(slice(start, start + length))
    return tuple(box)


def _unpacked(masks_npz, name: str) -> np.ndarray:
    with np.load(masks_npz) as data:
        if f"mask_{name}" not in data:
            raise DataError(masks_npz, f"holds no predicted mask of image {name}; rerun the segmentation")
        shape = tuple(int(v) for v in data[f"shape_{name}"])
        return np.unpackbits(data[f"mask_{name}"], count=shape[0] * shape[1]).reshape(shape).astype(bool)


def _show_crop(ax, image: np.ndarray, box, title: str) -> None:
    patch = image[box]
    low, high = np.percentile(patch, [1, 99.5])
    show_image(ax, patch, vmin=float(low), vmax=float(high) if high > low else float(low) + 1e-6)
    ax.set_title(title, fontsize=8)


# ---------------------------------------------------------------- the synthetic INbreast

def synthetic_examples(entries: list, truth: pd.DataFrame, examples: int) -> list:
    """The rule of the module docstring: first digital and first film image with calcifications, then images with
    vascular tracks, in table order, at most ``examples``."""
    calcified = set(truth.loc[truth["structure"].isin(["cluster", "isolated", "near_skin"]), "file_name"].astype(str))
    vessels = set(truth.loc[truth["structure"] == "vascular", "file_name"].astype(str))
    acquisition = truth.drop_duplicates("file_name").set_index(truth.drop_duplicates("file_name")["file_name"]
                                                               .astype(str))["acquisition"]
    chosen = []
    for kind in (DIGITAL, "film"):
        first = next((e for e in entries if e.file_name in calcified and acquisition.get(e.file_name) == kind
                      and e not in chosen), None)
        if first is not None:
            chosen.append(first)
    chosen += [e for e in entries if e.file_name in vessels and e not in chosen]
    return chosen[:examples]


def _zoom_centre(rows: pd.DataFrame, shape) -> tuple[tuple[float, float], str]:
    """Where to zoom and what is there: the largest cluster, else the first calcification, else the middle of the
    first vessel, else the image centre."""
    clusters = rows[rows["structure"] == "cluster"]
    if len(clusters):
        largest = clusters.groupby("group").size().sort_values(ascending=False, kind="stable").index[0]
        members = clusters[clusters["group"] == largest]
        return (float(members["centre_row"].mean()), float(members["centre_col"].mean())), "its largest cluster"
    calcifications = rows[rows["structure"].isin(["isolated", "near_skin"])]
    if len(calcifications):
        first = calcifications.iloc[0]
        return (float(first["centre_row"]), float(first["centre_col"])), "a calcification"
    vessels = rows.loc[rows["structure"] == "vascular", "path_px"].dropna()
    if len(vessels):
        points = str(vessels.iloc[0]).split(";")
        row, col = (float(v) for v in points[len(points) // 2].split())
        return (row, col), "a vascular tram track"
    return (shape[0] / 2, shape[1] / 2), "the image centre"


def _draw_unannotated(ax, rows: pd.DataFrame, offset=(0, 0)) -> None:
    for path in rows.loc[rows["structure"] == "vascular", "path_px"].dropna():
        points = np.array([[float(v) for v in p.split()] for p in str(path).split(";")])
        ax.plot(points[:, 1] - offset[1] + 0.5, points[:, 0] - offset[0] + 0.5, color=BORDER, lw=0.8, ls="--")
    dust = rows[rows["structure"] == "dust"]
    ax.scatter(dust["centre_col"] - offset[1] + 0.5, dust["centre_row"] - offset[0] + 0.5, s=30, facecolors="none",
               edgecolors=FALSE, linewidths=0.8)


def plot_synthetic(raw_dir, out, examples: int, point_radius_px: float) -> Path:
    """Examples of the synthetic INbreast (rule: module docstring): the whole image with its painted mask, and a
    zoom on its largest cluster; vessels (tram tracks) and dust, both never annotated, marked."""
    from medrepro.studies.microcalc.synthetic import TRUTH_FILE

    raw_dir = Path(raw_dir)
    truth_path = raw_dir / TRUTH_FILE
    if not truth_path.is_file():
        raise DataError(truth_path, "no synthetic truth table: this figure is drawn for the synthetic INbreast only")
    truth = pd.read_csv(truth_path, dtype={"file_name": str})
    chosen = synthetic_examples(inbreast.index_inbreast(inbreast.find_root(raw_dir)), truth, examples)
    if not chosen:
        raise DataError(raw_dir, "no image with calcifications or vessels to show")
    fig = Figure(figsize=(3.2 * len(chosen), 7.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(chosen), squeeze=False))
    for k, entry in enumerate(chosen):
        record = inbreast.read_inbreast_image(entry, point_radius_px=point_radius_px)
        image = record.image / float(record.max_value)
        rows = truth[truth["file_name"] == entry.file_name]
        top, bottom = axes[0, k], axes[1, k]
        show_image(top, image)
        draw_mask_contour(top, record.mask, TRUTH, linewidths=0.6)
        _draw_unannotated(top, rows)
        top.set_title(f"{entry.file_name} ({ACQUISITION_NAMES[record.acquisition]}, {entry.view})", fontsize=8)
        side = int(round(ZOOM_MM / record.spacing_mm[0]))
        centre, what = _zoom_centre(rows, image.shape)
        box = crop_box(centre, side, image.shape)
        _show_crop(bottom, image, box, f"{ZOOM_MM:g} mm around {what}")
        draw_mask_contour(bottom, record.mask[box], TRUTH, linewidths=0.8)
        _draw_unannotated(bottom, rows, (box[0].start, box[1].start))
        bottom.set_xlim(0, box[1].stop - box[1].start)
        bottom.set_ylim(box[0].stop - box[0].start, 0)
    legend_below(fig, [line_entry(TRUTH, "calcification mask (painted from the XML)"),
                       line_entry(BORDER, "vascular tram track (not annotated)", "--"),
                       marker_entry(FALSE, "dust speck (not annotated)", filled=False)], columns=3)
    return save_figure(fig, out)


# ---------------------------------------------------------------- features (Figs. 4-6)

@dataclass(frozen=True)
class FeatureView:
    """Test patches of one network seen through its first fully connected layer: per patch its database id,
    image id and centre, class, label, P(positive), correctness, pixels, features and 2-D t-SNE embedding."""

    network: str
    convolution: str
    patch_ids: np.ndarray
    image_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    probability: np.ndarray
    correct: np.ndarray
    pixels: np.ndarray
    features: np.ndarray
    embedding: np.ndarray


def wrongness(probability: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How confidently wrong each prediction is: P(the wrong label)."""
    return np.where(labels == 1, 1.0 - probability, probability)


def choose_patches(correct: np.ndarray, probability: np.ndarray, labels: np.ndarray, n: int, seed: int
                   ) -> np.ndarray:
    """Indices of at most ``n`` patches: every misclassified one (the most confidently wrong first when they are
    too many), then a seeded draw of the others; sorted."""
    wrong = np.flatnonzero(correct == 0)
    wrong = wrong[np.argsort(-wrongness(probability[wrong], labels[wrong]), kind="stable")][:n]
    right = np.flatnonzero(correct == 1)
    rng = np.random.default_rng(seed)
    rest = rng.permutation(right)[:max(n - len(wrong), 0)]
    return np.sort(np.concatenate([wrong, rest]))


def _embed(features: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 4:
        return np.zeros((n, 2))
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(perplexity, (n - 1) / 3)
                ).fit_transform(features.astype(np.float64))


def feature_views(models: Mapping[str, str | Path], database_path, predictions: pd.DataFrame, n_patches: int,
                  perplexity: float, seed: int) -> dict[str, FeatureView]:
    """Per network (``models``: network -> model file) the chosen test patches (:func:`choose_patches`) with their
    features and t-SNE embedding; ``predictions`` are one seed's rows of every network and convolution."""
    from medrepro.studies.microcalc.evaluation import fc_features
    from medrepro.studies.microcalc.patchdb import PatchDatabase
    from medrepro.studies.microcalc.training import load_network

    with PatchDatabase(database_path) as database:
        test = database.patch_set("test")
    position = {int(p): i for i, p in enumerate(test.ids)}
    views = {}
    for network, path in models.items():
        model, config = load_network(path, network)
        rows = predictions[(predictions["network"] == network) & (predictions["convolution"] == config["variant"])]
        if rows.empty:
            raise DataError(path, f"no test predictions of the {network} ({config['variant']}); rerun its evaluation")
        index = np.array([position[int(p)] for p in rows["patch_id"]])
        probability, labels = rows["probability"].to_numpy(), rows["label"].to_numpy()
        chosen = choose_patches(rows["correct"].to_numpy(), probability, labels, n_patches, seed)
        at = index[chosen]
        features = fc_features(model, test.pixels[at])
        views[network] = FeatureView(network, config["variant"], test.ids[at], test.image_ids[at], test.rows[at],
                                     test.cols[at], test.classes[at], labels[chosen], probability[chosen],
                                     rows["correct"].to_numpy()[chosen], test.pixels[at, 0], features,
                                     _embed(features, perplexity, seed))
    return views


def plot_tsne(views: Mapping[str, FeatureView], out) -> Path:
    """Fig. 4: each network's t-SNE of its first fully connected layer's features, by true label, misclassified
    patches marked."""
    fig = Figure(figsize=(5.0 * len(views), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(views)))
    for ax, view in zip(axes, views.values()):
        for label, colour, name in ((0, NEGATIVE, "negative"), (1, POSITIVE, "positive")):
            chosen = view.labels == label
            ax.scatter(view.embedding[chosen, 0], view.embedding[chosen, 1], s=6, c=colour, alpha=0.6, label=name)
        wrong = view.correct == 0
        ax.scatter(view.embedding[wrong, 0], view.embedding[wrong, 1], s=18, c="black", marker="x", linewidths=0.7)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_title(f"{view.network.capitalize()} ({view.convolution}): {len(view.labels)} test patches, "
                     f"{int(wrong.sum())} misclassified", fontsize=9)
    legend_below(fig, [marker_entry(POSITIVE, "positive (true label)"),
                       marker_entry(NEGATIVE, "negative (true label)"), marker_entry("black", "misclassified", "x")],
                 columns=3)
    return save_figure(fig, out)


def worst_pairs(view: FeatureView, worst: int) -> list[tuple[int, int]]:
    """(misclassified, neighbour) index pairs: the ``worst`` most confidently wrong patches, each with the nearest
    correctly classified patch of the other true label in feature space (none where there is no such patch)."""
    wrong = np.flatnonzero(view.correct == 0)
    wrong = wrong[np.argsort(-wrongness(view.probability[wrong], view.labels[wrong]), kind="stable")][:worst]
    pairs = []
    for i in wrong:
        others = np.flatnonzero((view.correct == 1) & (view.labels != view.labels[i]))
        if len(others):
            distance = np.linalg.norm(view.features[others] - view.features[i], axis=1)
            pairs.append((int(i), int(others[np.argmin(distance)])))
    return pairs


def _mask_patches(view: FeatureView, indices, raw_dir, source: Source, database_path) -> dict[int, np.ndarray]:
    """The ground-truth mask of each patch, cut from its image's mask read again from the raw annotations."""
    from medrepro.studies.microcalc.patchdb import PatchDatabase

    with PatchDatabase(database_path) as database:
        names = database.images().set_index("id")["name"]
    size, half = view.pixels.shape[-1], view.pixels.shape[-1] // 2
    wanted = {int(view.image_ids[i]) for i in indices}
    masks = {}
    for mammogram in read_mammograms(raw_dir, source, [names[i] for i in sorted(wanted)]):
        image_id = int(names.index[names == mammogram.name][0])
        for i in indices:
            if int(view.image_ids[i]) == image_id:
                r, c = int(view.rows[i]), int(view.cols[i])
                masks[i] = mammogram.mask[r - half:r - half + size, c - half:c - half + size]
    return masks


def _patch_title(view: FeatureView, i: int, what: str) -> str:
    return f"{what}: C{view.classes[i]}, label {view.labels[i]}\nP(positive) {view.probability[i]:.2f}"


def plot_worst_pairs(views: Mapping[str, FeatureView], raw_dir, source: Source, worst: int,
                     outs: Mapping[str, str | Path], database_path) -> None:
    """Figs. 5 and 6, one file per network: each of the worst misclassified patches (:func:`worst_pairs`) and its
    neighbour, with their ground-truth masks outlined."""
    for network, out in outs.items():
        view = views.get(network)
        pairs = worst_pairs(view, worst) if view is not None else []
        fig = Figure(figsize=(2.2 * max(len(pairs), 1) * 2, 2.8), layout="constrained")
        if not pairs:
            ax = fig.subplots()
            ax.axis("off")
            ax.set_title(f"{network.capitalize()}: no misclassified test patch with a correctly classified "
                         "neighbour of the other label", fontsize=9)
            save_figure(fig, out)
            continue
        masks = _mask_patches(view, [i for pair in pairs for i in pair], raw_dir, source, database_path)
        axes = np.atleast_1d(fig.subplots(1, 2 * len(pairs)))
        for k, (i, j) in enumerate(pairs):
            for ax, index, what in ((axes[2 * k], i, "misclassified"), (axes[2 * k + 1], j, "nearest correct")):
                show_image(ax, view.pixels[index], vmin=float(view.pixels[index].min()),
                           vmax=float(view.pixels[index].max()) + 1e-6)
                if index in masks:
                    draw_mask_contour(ax, masks[index], TRUTH, linewidths=0.8)
                ax.set_title(_patch_title(view, index, what), fontsize=7)
        fig.suptitle(f"{network.capitalize()} ({view.convolution}): the most confidently wrong test patches and "
                     "their nearest correct neighbour of the other label", fontsize=9)
        legend_below(fig, [line_entry(TRUTH, "ground-truth calcification")], columns=1)
        save_figure(fig, out)


# ---------------------------------------------------------------- training curves

def plot_training_curves(logs: Mapping[tuple[str, str, int], pd.DataFrame], out) -> Path:
    """Per network: the cross-entropy over training (training solid, validation dashed; seeds thin, their mean
    thick) and the validation accuracy, one colour per convolution."""
    if not logs:
        raise DataError(None, "no training loss log to plot; run the training steps first")
    networks = list(dict.fromkeys(key[0] for key in logs))
    convolutions = list(dict.fromkeys(key[1] for key in logs))
    colours = assign_colours(convolutions)
    fig = Figure(figsize=(5.0 * len(networks), 7.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(networks), squeeze=False))
    for k, network in enumerate(networks):
        mine = {key: log for key, log in logs.items() if key[0] == network}
        runs = group_runs(mine, by=lambda key: key[1])
        draw_loss_curves(axes[0, k], runs, colours, "total", per="step", seed_mean=True, ylabel="cross-entropy")
        axes[0, k].set_title(f"{network.capitalize()}: loss", fontsize=9)
        for (_, convolution, _), log in mine.items():
            val = log[(log["split"] == "val") & log["accuracy"].notna()]
            axes[1, k].plot(val["step"], 100 * val["accuracy"], color=colours[convolution], alpha=0.6)
        axes[1, k].set_xlabel("step")
        axes[1, k].set_ylabel("validation accuracy (%)")
        axes[1, k].set_title(f"{network.capitalize()}: validation accuracy (each seed)", fontsize=9)
        axes[1, k].grid(alpha=0.3)
    legend_below(fig, [line_entry(colours[c], c) for c in convolutions] + split_entries(), columns=4)
    return save_figure(fig, out)


# ---------------------------------------------------------------- whole mammograms (Figs. 1 and 7)

def choose_region_image(scores: pd.DataFrame) -> str:
    """The test image with the most calcifications found, summed over the variants (ties: the first name)."""
    if scores.empty:
        raise DataError(None, "no test image was segmented")
    found = scores.groupby("image")["detected_calcifications"].sum().reset_index()
    found["image"] = found["image"].astype(str)
    return str(found.sort_values(["detected_calcifications", "image"], ascending=[False, True])["image"].iloc[0])


def region_centre(truth: np.ndarray, pixel_mm: float, rule: ClusterRule) -> tuple[float, float]:
    """The centre of the largest true cluster, else of the largest true calcification, else of the image."""
    calcifications = label_calcifications(truth)
    if len(calcifications) == 0:
        return truth.shape[0] / 2, truth.shape[1] / 2
    clusters = cluster_calcifications(calcifications.centroids, pixel_mm, rule)
    if len(clusters):
        return tuple(float(v) for v in clusters.centroids[int(np.argmax(clusters.sizes))])
    return tuple(float(v) for v in calcifications.centroids[int(np.argmax(calcifications.areas))])


def _read_one(raw_dir, source: Source, name: str):
    return next(read_mammograms(raw_dir, source, [name]))


def plot_segmented_region(scores: pd.DataFrame, masks: Mapping[str, str | Path], raw_dir, source: Source,
                          segmentation: Mapping, out) -> Path:
    """Fig. 1: a region of the test image of :func:`choose_region_image`, 10 mm around :func:`region_centre`, with
    the ground truth and each variant's segmentation."""
    name = choose_region_image(scores)
    mammogram = _read_one(raw_dir, source, name)
    rule = ClusterRule.from_section(segmentation["cluster"])
    side = int(round(CROP_MM / source.pixel_mm))
    box = crop_box(region_centre(mammogram.mask, source.pixel_mm, rule), side, mammogram.image.shape)
    fig = Figure(figsize=(3.0 * (2 + len(masks)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 2 + len(masks)))
    _show_crop(axes[0], mammogram.image, box, "image")
    _show_crop(axes[1], mammogram.image, box, "ground truth")
    draw_mask_contour(axes[1], mammogram.mask[box], TRUTH, linewidths=0.8)
    for ax, (convolution, path) in zip(axes[2:], masks.items()):
        predicted = _unpacked(path, name)
        row = scores[(scores["image"].astype(str) == name) & (scores["convolution"] == convolution)]
        dice = float(row["dice"].iloc[0]) if len(row) else float("nan")
        _show_crop(ax, mammogram.image, box, f"{convolution} convolutions (Dice {dice:.2f} on the image)")
        draw_mask_contour(ax, mammogram.mask[box], TRUTH, linewidths=0.6)
        draw_mask_contour(ax, predicted[box], PREDICTED, linewidths=0.8)
    fig.suptitle(f"{name}: {CROP_MM:g} mm around its largest true cluster (the test image with the most "
                 "calcifications found)", fontsize=9)
    legend_below(fig, [line_entry(TRUTH, "ground truth"), line_entry(PREDICTED, "segmented")], columns=2)
    return save_figure(fig, out)


def border_false_positives(predicted: np.ndarray, truth: np.ndarray, breast: np.ndarray, pixel_mm: float,
                           match_px: float, border_mm: float = BORDER_MM) -> np.ndarray:
    """(k, 2) centroids of the predicted calcifications that match no true one and lie within ``border_mm`` of the
    breast's edge (inside the breast: the distance to the nearest background pixel; outside it: they are at the
    border too)."""
    from medrepro.studies.microcalc.scoring import match_calcifications

    found, real = label_calcifications(predicted), label_calcifications(truth)
    _, matched = match_calcifications(real, found, match_px)
    false = found.centroids[~matched]
    if not len(false):
        return false.reshape(0, 2)
    depth_mm = ndi.distance_transform_edt(breast) * pixel_mm
    pixels = np.clip(np.floor(false + 0.5).astype(int), 0, np.array(breast.shape) - 1)
    return false[depth_mm[pixels[:, 0], pixels[:, 1]] <= border_mm]


def densest(points: np.ndarray, side: int) -> tuple[float, float]:
    """The point with the most others within a ``side`` square around it (ties: the first)."""
    near = (np.abs(points[:, None, :] - points[None, :, :]) <= side / 2).all(axis=2).sum(axis=1)
    return tuple(float(v) for v in points[int(np.argmax(near))])


def plot_border_failures(scores: pd.DataFrame, masks: Mapping[str, str | Path], raw_dir, source: Source,
                         segmentation: Mapping, out) -> Path:
    """Fig. 7: the (image, variant) with the most false detections near the breast border
    (:func:`border_false_positives`), 10 mm around the densest of them; the image with the most false positives
    when none lies near the border."""
    side = int(round(CROP_MM / source.pixel_mm))
    best = None
    for name in sorted(scores["image"].astype(str).unique()):
        mammogram = _read_one(raw_dir, source, name)
        breast = breast_mask(mammogram.image, mammogram.source)
        for convolution, path in masks.items():
            points = border_false_positives(_unpacked(path, name), mammogram.mask, breast, source.pixel_mm,
                                            float(segmentation["match_px"]))
            if best is None or len(points) > len(best[2]):
                best = (mammogram, convolution, points, breast)
    if best is None:
        raise DataError(None, "no test image was segmented")
    mammogram, convolution, points, breast = best
    if len(points):
        centre, rule = densest(points, side), f"{len(points)} false detections within {BORDER_MM:g} mm of the edge"
    else:
        worst = scores.sort_values(["false_positives", "image"], ascending=[False, True]).iloc[0]
        mammogram, convolution = _read_one(raw_dir, source, str(worst["image"])), str(worst["convolution"])
        breast = breast_mask(mammogram.image, mammogram.source)
        centre = region_centre(_unpacked(masks[convolution], mammogram.name), source.pixel_mm, ClusterRule())
        rule = f"no false detection within {BORDER_MM:g} mm of the edge; the image with the most false positives"
    predicted = _unpacked(masks[convolution], mammogram.name)
    box = crop_box(centre, side, mammogram.image.shape)
    fig = Figure(figsize=(9.0, 4.2), layout="constrained")
    whole, crop = fig.subplots(1, 2)
    show_image(whole, mammogram.image, vmin=float(mammogram.image.min()), vmax=float(mammogram.image.max()))
    draw_mask_contour(whole, breast, BORDER, linewidths=0.6)
    draw_box(whole, (box[1].start, box[0].start, box[1].stop, box[0].stop), FALSE, linewidth=1.0)
    whole.set_title(f"{mammogram.name} ({convolution} convolutions)", fontsize=8)
    _show_crop(crop, mammogram.image, box, f"{CROP_MM:g} mm at the breast border")
    draw_mask_contour(crop, breast[box], BORDER, linewidths=0.8)
    draw_mask_contour(crop, mammogram.mask[box], TRUTH, linewidths=0.6)
    draw_mask_contour(crop, predicted[box], PREDICTED, linewidths=0.6)
    inside = [(r - box[0].start, c - box[1].start) for r, c in points
              if box[0].start <= r < box[0].stop and box[1].start <= c < box[1].stop]
    if inside:
        rows, cols = np.array(inside).T
        crop.scatter(cols + 0.5, rows + 0.5, s=80, facecolors="none", edgecolors=FALSE, linewidths=1.0)
    fig.suptitle(f"False detections at the breast border: {rule}", fontsize=9)
    legend_below(fig, [line_entry(BORDER, "breast border (Otsu)"), line_entry(TRUTH, "ground truth"),
                       line_entry(PREDICTED, "segmented"),
                       marker_entry(FALSE, "false detection near the border", filled=False)], columns=4)
    return save_figure(fig, out)
