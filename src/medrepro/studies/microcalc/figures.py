"""The study's figures, composed from the kernel's figure helpers (:mod:`medrepro.report.figures`).

Every example is chosen by a stated rule, never by hand (each rule is a small function of its own):

* the synthetic INbreast (:func:`synthetic_examples`): the first digital and the first digitised-film image with
  calcifications, then the images with vascular tram tracks, in the dataset's table order; each zoomed on its largest
  cluster (:func:`zoom_centre`);
* Fig. 4 (:func:`choose_patches`): every misclassified test patch (the most confidently wrong first when they are
  more than asked for), the rest a seeded draw of the correctly classified ones;
* Figs. 5 and 6 (:func:`worst_pairs`): the most confidently wrong test patches, each beside the nearest (Euclidean,
  first fully connected layer's features) correctly classified patch of the other true label;
* Fig. 1 (:func:`choose_region_image`, :func:`region_centre`): the test image with the most calcifications detected,
  summed over the variants (ties: the first name), :data:`CROP_MM` around its largest true cluster (or its largest
  true calcification);
* Fig. 7 (:func:`choose_border_case`, :func:`densest`): the (image, variant) with the most false detections within
  :data:`BORDER_MM` of the breast's edge (ties: the first name, then the variants' order), :data:`CROP_MM` around
  the one with the most such neighbours; the (image, variant) with the most false detections anywhere when none
  lies near the edge.

Everything is deterministic: the only draws (the patches of Fig. 4, t-SNE) are seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from scipy import ndimage as ndi

from medrepro.errors import DataError
from medrepro.report.figures import (
    assign_colours, draw_box, draw_loss_curves, draw_mask_contour, group_runs, legend_below, line_entry,
    marker_entry, patch_entry, save_figure, show_image, shrink_for_display, split_entries,
)
from medrepro.studies.microcalc.mammograms import Source, read_mammograms
from medrepro.studies.microcalc.patches import breast_mask
from medrepro.studies.microcalc.readers import DIGITAL, FILM, inbreast
from medrepro.studies.microcalc.segmentation import ClusterRule, cluster_calcifications, label_calcifications

TRUTH, PREDICTED, FALSE, BORDER = "tab:green", "tab:red", "gold", "tab:cyan"
POSITIVE, NEGATIVE = "tab:red", "tab:blue"
MASK_COLOURS = ListedColormap(["black", TRUTH])
CROP_MM = 10.0    # Figs. 1 and 7: the side of the square shown
BORDER_MM = 2.0   # Fig. 7: how close to the breast's edge a false detection counts as "at the border"
ZOOM_MM = 8.0     # the synthetic INbreast's zoom
WHOLE_SIDE = 1000  # a whole mammogram is shrunk to this many pixels along its longer side for display
PAIRS_PER_ROW = 3  # Figs. 5 and 6
ACQUISITION_NAMES = {DIGITAL: "digital", FILM: "digitised film"}
CALCIFICATION_STRUCTURES = ("cluster", "isolated", "near_skin")  # the synthetic truth's annotated structures


# ---------------------------------------------------------------- shared pieces

def side_px(side_mm: float, pixel_mm: float) -> int:
    """``side_mm`` in pixels of ``pixel_mm``, rounded, at least 1."""
    return max(int(round(side_mm / pixel_mm)), 1)


def crop_box(centre: tuple[float, float], side: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """A ``side`` x ``side`` window centred on ``centre`` (row, col), moved inside an image of ``shape`` (smaller
    along an axis where the image is)."""
    box = []
    for c, n in zip(centre, shape):
        length = min(int(side), int(n))
        start = int(round(c - length / 2))
        start = min(max(start, 0), n - length)
        box.append(slice(start, start + length))
    return tuple(box)


def read_predicted_mask(masks_npz, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Image ``name``'s predicted mask from a segmentation's npz (``mask_<name>``: packed bits, ``shape_<name>``);
    a DataError when it is not there or (given ``shape``) does not fit the image."""
    with np.load(masks_npz) as data:
        if f"mask_{name}" not in data or f"shape_{name}" not in data:
            raise DataError(masks_npz, f"holds no predicted mask of image {name}; rerun the segmentation")
        stored = tuple(int(v) for v in data[f"shape_{name}"])
        mask = np.unpackbits(data[f"mask_{name}"], count=stored[0] * stored[1]).reshape(stored).astype(bool)
    if shape is not None and stored != tuple(shape):
        raise DataError(masks_npz, f"the predicted mask of {name} is {stored}, the image {tuple(shape)}: the masks "
                                   "were segmented from other raw files; rerun the segmentation")
    return mask


def _read_one(raw_dir, source: Source, name: str):
    return next(read_mammograms(raw_dir, source, [name]))


def _show_crop(ax, image: np.ndarray, box, title: str) -> None:
    """A crop in its own grey range (1st to 99.5th percentile): calcifications are a small part of the full one."""
    patch = image[box]
    low, high = (float(v) for v in np.percentile(patch, [1, 99.5]))
    show_image(ax, patch, vmin=low, vmax=high if high > low else low + 1e-6)
    ax.set_title(title, fontsize=8)


def _scatter_circles(ax, points: np.ndarray, offset=(0, 0), size: float = 80.0) -> None:
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    ax.scatter(points[:, 1] - offset[1] + 0.5, points[:, 0] - offset[0] + 0.5, s=size, facecolors="none",
               edgecolors=FALSE, linewidths=1.0)


def _keep_view(ax, box) -> None:
    """Keep a crop's panel on the crop when lines or markers run beyond it."""
    ax.set_xlim(0, box[1].stop - box[1].start)
    ax.set_ylim(box[0].stop - box[0].start, 0)


# ---------------------------------------------------------------- the synthetic INbreast

def synthetic_examples(entries: Sequence, truth: pd.DataFrame, examples: int) -> list:
    """The rule of the module docstring: the first digital and the first film image with calcifications, then the
    images with vascular tracks, in ``entries`` (table) order, at most ``examples``."""
    names = truth["file_name"].astype(str)
    calcified = set(names[truth["structure"].isin(CALCIFICATION_STRUCTURES)])
    vessels = set(names[truth["structure"] == "vascular"])
    acquisition = truth.assign(file_name=names).groupby("file_name")["acquisition"].first()
    chosen = []
    for kind in (DIGITAL, FILM):
        first = next((e for e in entries if e.file_name in calcified and acquisition.get(e.file_name) == kind), None)
        if first is not None:
            chosen.append(first)
    chosen += [e for e in entries if e.file_name in vessels and e not in chosen]
    return chosen[:max(int(examples), 0)]


def _path_points(text: str) -> np.ndarray:
    """A truth table's centre line ``row col;row col;...`` as (k, 2) (row, col)."""
    return np.array([[float(v) for v in point.split()] for point in str(text).split(";")])


def zoom_centre(rows: pd.DataFrame, shape) -> tuple[tuple[float, float], str]:
    """Where to zoom in one image's truth ``rows`` and what is there: the mean centre of its largest cluster (most
    members; ties: the lowest group), else its first calcification, else the middle of its first vessel, else the
    image's centre."""
    clusters = rows[rows["structure"] == "cluster"]
    if len(clusters):
        sizes = clusters.groupby("group").size()
        largest = sizes.index[int(np.argmax(sizes.to_numpy()))]
        members = clusters[clusters["group"] == largest]
        return (float(members["centre_row"].mean()), float(members["centre_col"].mean())), "its largest cluster"
    calcifications = rows[rows["structure"].isin(CALCIFICATION_STRUCTURES)]
    if len(calcifications):
        first = calcifications.iloc[0]
        return (float(first["centre_row"]), float(first["centre_col"])), "a calcification"
    vessels = rows.loc[rows["structure"] == "vascular", "path_px"].dropna()
    if len(vessels):
        points = _path_points(vessels.iloc[0])
        return tuple(float(v) for v in points[len(points) // 2]), "a vascular tram track"
    return (shape[0] / 2, shape[1] / 2), "the image's centre"


def _draw_unannotated(ax, rows: pd.DataFrame, offset=(0, 0)) -> None:
    """The structures no annotation covers: vessels' centre lines dashed, dust specks circled."""
    for path in rows.loc[rows["structure"] == "vascular", "path_px"].dropna():
        points = _path_points(path)
        ax.plot(points[:, 1] - offset[1] + 0.5, points[:, 0] - offset[0] + 0.5, color=BORDER, lw=0.8, ls="--")
    dust = rows[rows["structure"] == "dust"]
    _scatter_circles(ax, dust[["centre_row", "centre_col"]].to_numpy(), offset, size=30)


def _synthetic_example(top, bottom, entry, rows: pd.DataFrame, point_radius_px: float) -> None:
    """One example: the whole image with its painted mask (top), a zoom of :data:`ZOOM_MM` (bottom)."""
    record = inbreast.read_inbreast_image(entry, point_radius_px=point_radius_px)
    image = record.image / float(record.max_value)
    show_image(top, image)
    draw_mask_contour(top, record.mask, TRUTH, linewidths=0.6)
    _draw_unannotated(top, rows)
    calcifications = int(rows["structure"].isin(CALCIFICATION_STRUCTURES).sum())
    vessels = int((rows["structure"] == "vascular").sum())
    top.set_title(f"{entry.file_name} ({ACQUISITION_NAMES[record.acquisition]}, {entry.view})\n"
                  f"{calcifications} calcification{'s' * (calcifications != 1)}, "
                  f"{vessels} vessel{'s' * (vessels != 1)}", fontsize=8)
    centre, what = zoom_centre(rows, image.shape)
    box = crop_box(centre, side_px(ZOOM_MM, record.spacing_mm[0]), image.shape)
    _show_crop(bottom, image, box, f"{ZOOM_MM:g} mm around {what}")
    draw_mask_contour(bottom, record.mask[box], TRUTH, linewidths=0.8)
    _draw_unannotated(bottom, rows, (box[0].start, box[1].start))
    _keep_view(bottom, box)


def plot_synthetic(raw_dir, out, examples: int, point_radius_px: float) -> Path:
    """Examples of the synthetic INbreast (:func:`synthetic_examples`): each whole image (bright = dense, stored
    value over the bit depth's maximum) with the contour of the mask painted from its XML, and a zoom on its
    largest cluster; vessels (tram tracks) and dust specks, neither annotated, marked."""
    from medrepro.studies.microcalc.synthetic import TRUTH_FILE

    raw_dir = Path(raw_dir)
    truth_path = raw_dir / TRUTH_FILE
    if not truth_path.is_file():
        raise DataError(truth_path, "no synthetic truth table: this figure is drawn for the synthetic INbreast only")
    truth = pd.read_csv(truth_path, dtype={"file_name": str})
    chosen = synthetic_examples(inbreast.index_inbreast(inbreast.find_root(raw_dir)), truth, examples)
    if not chosen:
        raise DataError(raw_dir, "no image with calcifications or vessels to show")
    fig = Figure(figsize=(3.2 * len(chosen), 7.4), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(chosen), squeeze=False))
    for k, entry in enumerate(chosen):
        _synthetic_example(axes[0, k], axes[1, k], entry, truth[truth["file_name"] == entry.file_name],
                           point_radius_px)
    fig.suptitle("Synthetic INbreast: the first digital and the first film image with calcifications, then images "
                 "with vascular tracks", fontsize=9)
    legend_below(fig, [line_entry(TRUTH, "calcification mask (painted from the XML)"),
                       line_entry(BORDER, "vascular tram track (not annotated)", "--"),
                       marker_entry(FALSE, "dust speck (not annotated)", filled=False)], columns=3)
    return save_figure(fig, out)


# ---------------------------------------------------------------- features (Figs. 4-6)

@dataclass(frozen=True)
class FeatureView:
    """Test patches of one network seen through its first fully connected layer: per patch (n,) its database id,
    image id and centre (rows, cols), class, label, P(positive), correctness (1/0), ``pixels`` (n, N, N),
    ``features`` (n, hidden) and 2-D t-SNE ``embedding`` (n, 2)."""

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
    """How confidently wrong each prediction is: the P of the wrong label (> 0.5 when misclassified)."""
    return np.where(np.asarray(labels) == 1, 1.0 - np.asarray(probability), np.asarray(probability))


def _most_wrong_first(indices: np.ndarray, probability: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return indices[np.argsort(-wrongness(probability[indices], labels[indices]), kind="stable")]


def choose_patches(correct: np.ndarray, probability: np.ndarray, labels: np.ndarray, n: int, seed: int
                   ) -> np.ndarray:
    """Sorted indices of at most ``n`` patches: every misclassified one (the most confidently wrong when they are
    more than ``n``; ties: the first), then a draw seeded by ``seed`` of the correctly classified ones."""
    correct, probability, labels = np.asarray(correct), np.asarray(probability), np.asarray(labels)
    wrong = _most_wrong_first(np.flatnonzero(correct == 0), probability, labels)[:max(n, 0)]
    right = np.flatnonzero(correct != 0)
    rest = np.random.default_rng(seed).permutation(right)[:max(n - len(wrong), 0)]
    return np.sort(np.concatenate([wrong, rest])).astype(np.int64)


def embed(features: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """(n, 2) t-SNE of ``features`` (PCA start, ``seed``), the perplexity capped at (n - 1) / 3 for few patches;
    zeros for fewer than 4 patches, where t-SNE has nothing to arrange."""
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 4:
        return np.zeros((n, 2))
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(float(perplexity), (n - 1) / 3)
                ).fit_transform(np.asarray(features, dtype=np.float64))


def _positions(patch_ids: np.ndarray, stored_ids: np.ndarray, path, what: str) -> np.ndarray:
    """Where each predicted patch id lies in the database's test set; a DataError for a repeated or unknown id."""
    if len(np.unique(patch_ids)) != len(patch_ids):
        raise DataError(path, f"{what}: a test patch is predicted more than once; pass one seed's predictions")
    position = {int(p): i for i, p in enumerate(stored_ids)}
    missing = [int(p) for p in patch_ids if int(p) not in position]
    if missing:
        raise DataError(path, f"{what}: {len(missing)} predicted patches (first id {missing[0]}) are not in the "
                              "database's test set; the predictions come from another patch database")
    return np.array([position[int(p)] for p in patch_ids], dtype=np.int64)


def feature_views(models: Mapping[str, str | Path], database_path, predictions: pd.DataFrame, n_patches: int,
                  perplexity: float, seed: int) -> dict[str, FeatureView]:
    """Per network (``models``: network name -> model file, loaded on the CPU) the test patches of
    :func:`choose_patches` among its predictions (``predictions``: one seed's rows of
    :data:`~medrepro.studies.microcalc.evaluation.PREDICTION_COLUMNS`, those of the network and of the model's
    convolution), with their first fully connected layer's features and t-SNE embedding (:func:`embed`)."""
    from medrepro.studies.microcalc.evaluation import fc_features
    from medrepro.studies.microcalc.patchdb import PatchDatabase
    from medrepro.studies.microcalc.training import load_network

    with PatchDatabase(database_path) as database:
        test = database.patch_set("test")
    views = {}
    for network, path in models.items():
        model, config = load_network(path, network, "cpu")
        variant = config["variant"]
        rows = predictions[(predictions["network"] == network) & (predictions["convolution"] == variant)]
        if rows.empty:
            raise DataError(path, f"no test predictions of the {network} ({variant}); rerun its evaluation")
        index = _positions(rows["patch_id"].to_numpy(), test.ids, path, f"the {network} ({variant})")
        probability, labels = rows["probability"].to_numpy(float), rows["label"].to_numpy(np.int64)
        correct = rows["correct"].to_numpy(np.int64)
        chosen = choose_patches(correct, probability, labels, n_patches, seed)
        at = index[chosen]
        features = fc_features(model, test.pixels[at])
        views[network] = FeatureView(network, variant, test.ids[at], test.image_ids[at], test.rows[at],
                                     test.cols[at], test.classes[at], labels[chosen], probability[chosen],
                                     correct[chosen], test.pixels[at, 0], features, embed(features, perplexity, seed))
    return views


def plot_tsne(views: Mapping[str, FeatureView], out) -> Path:
    """Fig. 4: one panel per network, the t-SNE of its first fully connected layer's features coloured by true
    label, the misclassified patches marked."""
    if not views:
        raise DataError(None, "no network's features to project; train and evaluate the networks first")
    fig = Figure(figsize=(5.0 * len(views), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(views)))
    for ax, view in zip(axes, views.values()):
        wrong = view.correct == 0  # a cross under each misclassified patch's dot, which keeps its label's colour
        ax.scatter(view.embedding[wrong, 0], view.embedding[wrong, 1], s=40, c="black", marker="x", linewidths=0.8,
                   zorder=1)
        for label, colour in ((0, NEGATIVE), (1, POSITIVE)):
            chosen = view.labels == label
            ax.scatter(view.embedding[chosen, 0], view.embedding[chosen, 1], s=8, c=colour, alpha=0.7, zorder=2)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_title(f"{view.network.capitalize()} ({view.convolution} convolutions): {len(view.labels)} test "
                     f"patches, {int(wrong.sum())} misclassified", fontsize=9)
    fig.suptitle("First fully connected layer's features (t-SNE): every misclassified test patch, the rest a "
                 "seeded draw", fontsize=9)
    legend_below(fig, [marker_entry(POSITIVE, "positive (true label)"),
                       marker_entry(NEGATIVE, "negative (true label)"), marker_entry("black", "misclassified", "x")],
                 columns=3)
    return save_figure(fig, out)


def worst_pairs(view: FeatureView, worst: int) -> list[tuple[int, int]]:
    """(misclassified, neighbour) index pairs: the ``worst`` most confidently wrong patches (ties: the first), each
    with the nearest (Euclidean, in feature space; ties: the first) correctly classified patch of the other true
    label; a wrong patch without such a patch is left out."""
    wrong = _most_wrong_first(np.flatnonzero(view.correct == 0), view.probability, view.labels)[:max(worst, 0)]
    pairs = []
    for i in wrong:
        others = np.flatnonzero((view.correct != 0) & (view.labels != view.labels[i]))
        if len(others):
            distance = np.linalg.norm(view.features[others] - view.features[i], axis=1)
            pairs.append((int(i), int(others[np.argmin(distance)])))
    return pairs


def mask_patches(view: FeatureView, indices: Sequence[int], raw_dir, source: Source, database_path
                 ) -> dict[int, np.ndarray]:
    """Index -> the ground-truth mask (N, N) of each patch, cut at its centre from its image's mask read again from
    the raw files (each image read once)."""
    from medrepro.studies.microcalc.patchdb import PatchDatabase

    with PatchDatabase(database_path) as database:
        names = database.images().set_index("id")["name"].astype(str)
    size = view.pixels.shape[-1]
    half = size // 2
    by_image: dict[str, list[int]] = {}
    for i in indices:
        image_id = int(view.image_ids[i])
        if image_id not in names.index:
            raise DataError(database_path, f"patch {int(view.patch_ids[i])} comes from image id {image_id}, which "
                                           "the database does not list")
        by_image.setdefault(names[image_id], []).append(int(i))
    masks = {}
    for mammogram in read_mammograms(raw_dir, source, sorted(by_image)):
        for i in by_image[mammogram.name]:
            top, left = int(view.rows[i]) - half, int(view.cols[i]) - half
            cut = mammogram.mask[max(top, 0):top + size, max(left, 0):left + size]
            if top < 0 or left < 0 or cut.shape != (size, size):
                raise DataError(raw_dir, f"patch {int(view.patch_ids[i])} does not fit in image {mammogram.name}: "
                                         "the patch database was built from other raw files")
            masks[i] = cut
    return masks


def _patch_title(view: FeatureView, i: int, what: str) -> str:
    label = "positive" if view.labels[i] == 1 else "negative"
    return f"{what}\nC{view.classes[i]}, label {view.labels[i]} ({label})\nP(positive) {view.probability[i]:.3f}"


def _no_pairs_reason(view: FeatureView | None, network: str) -> str:
    if view is None:
        return f"{network.capitalize()}: no features were computed for this network"
    wrong = int((view.correct == 0).sum())
    if wrong == 0:
        return (f"{network.capitalize()} ({view.convolution} convolutions): all {len(view.labels)} test patches "
                "shown in Fig. 4 are correctly classified; no failure to show")
    return (f"{network.capitalize()} ({view.convolution} convolutions): {wrong} misclassified test patches, but no "
            "correctly classified patch of the other label to set beside them")


def _draw_pairs(fig: Figure, view: FeatureView, pairs: list[tuple[int, int]], masks: Mapping[int, np.ndarray]
                ) -> None:
    """Each pair a 2 x 2 block: the two patches above, their ground-truth masks below; :data:`PAIRS_PER_ROW`
    blocks to a row."""
    across = min(len(pairs), PAIRS_PER_ROW)
    down = -(-len(pairs) // across)
    axes = np.asarray(fig.subplots(2 * down, 2 * across, squeeze=False))
    for ax in axes.ravel():
        ax.axis("off")
    for k, pair in enumerate(pairs):
        block_row, block_col = divmod(k, across)
        for side, (index, what) in enumerate(zip(pair, (f"#{k + 1} misclassified", "nearest correct, other label"))):
            top, bottom = axes[2 * block_row, 2 * block_col + side], axes[2 * block_row + 1, 2 * block_col + side]
            pixels = view.pixels[index]
            top.axis("on")
            show_image(top, pixels, vmin=float(pixels.min()), vmax=float(pixels.max()) + 1e-6)
            top.set_title(_patch_title(view, index, what), fontsize=7)
            bottom.axis("on")
            show_image(bottom, masks[index], cmap=MASK_COLOURS, vmin=0, vmax=1)
            bottom.set_title("ground truth", fontsize=7)


def plot_worst_pairs(views: Mapping[str, FeatureView], raw_dir, source: Source, worst: int,
                     outs: Mapping[str, str | Path], database_path) -> None:
    """Figs. 5 and 6, one file per network in ``outs``: the ``worst`` most confidently wrong test patches each
    beside its nearest correct patch of the other label (:func:`worst_pairs`), over their ground-truth masks
    (:func:`mask_patches`); a figure saying why there is nothing to show when there is no such pair."""
    for network, out in outs.items():
        view = views.get(network)
        pairs = worst_pairs(view, worst) if view is not None else []
        if not pairs:
            fig = Figure(figsize=(7.0, 1.2), layout="constrained")
            ax = fig.subplots()
            ax.axis("off")
            ax.set_title(_no_pairs_reason(view, network), fontsize=9)
            save_figure(fig, out)
            continue
        masks = mask_patches(view, [i for pair in pairs for i in pair], raw_dir, source, database_path)
        across = min(len(pairs), PAIRS_PER_ROW)
        fig = Figure(figsize=(1.9 * 2 * across, 4.4 * -(-len(pairs) // across)), layout="constrained")
        _draw_pairs(fig, view, pairs, masks)
        fig.suptitle(f"{network.capitalize()} ({view.convolution} convolutions): the {len(pairs)} most confidently "
                     "wrong test patches,\neach beside its nearest correctly classified patch of the other label "
                     "(first fully connected layer's features)", fontsize=9)
        legend_below(fig, [patch_entry(TRUTH, "calcification (ground truth)"), patch_entry("black", "background")],
                     columns=2)
        save_figure(fig, out)


# ---------------------------------------------------------------- training curves

def _accuracy_percent(log: pd.DataFrame) -> pd.DataFrame:
    """The log's validation rows, their accuracy in percent."""
    val = log[log["split"] == "val"]
    if "accuracy" not in val.columns:
        return val
    return val.assign(accuracy=100 * pd.to_numeric(val["accuracy"], errors="coerce"))


def plot_training_curves(logs: Mapping[tuple[str, str, int], pd.DataFrame], out) -> Path:
    """Per network (keys: network, convolution, seed): the cross-entropy over training (training solid,
    validation dashed; each seed thin, their mean thick) above the validation accuracy (likewise), one colour per
    convolution."""
    if not logs:
        raise DataError(None, "no training loss log to plot; run the training steps first")
    networks = list(dict.fromkeys(key[0] for key in logs))
    convolutions = list(dict.fromkeys(key[1] for key in logs))
    colours = assign_colours(convolutions)
    fig = Figure(figsize=(5.0 * len(networks), 7.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(networks), squeeze=False))
    for k, network in enumerate(networks):
        mine = {key: log for key, log in logs.items() if key[0] == network}
        loss, accuracy = axes[0, k], axes[1, k]
        draw_loss_curves(loss, group_runs(mine, by=lambda key: key[1]), colours, "total", per="step",
                         seed_mean=True, ylabel="cross-entropy")
        loss.set_title(f"{network.capitalize()}: loss", fontsize=9)
        runs = group_runs({key: _accuracy_percent(log) for key, log in mine.items()}, by=lambda key: key[1])
        draw_loss_curves(accuracy, runs, colours, "accuracy", per="step", seed_mean=True,
                         ylabel="validation accuracy (%)")
        accuracy.set_yscale("linear")
        accuracy.set_title(f"{network.capitalize()}: validation accuracy", fontsize=9)
    seeds = len({key[2] for key in logs})
    fig.suptitle(f"Training of the Detector and the Segmentator ({seeds} seed{'s' if seeds > 1 else ''}: "
                 "each thin, their mean thick)", fontsize=9)
    legend_below(fig, [line_entry(colours[c], f"{c} convolutions") for c in convolutions] + split_entries(),
                 columns=4)
    return save_figure(fig, out)


# ---------------------------------------------------------------- Fig. 1: a segmented region

def choose_region_image(scores: pd.DataFrame) -> str:
    """The test image with the most calcifications detected, summed over the variants (ties: the first name)."""
    if scores.empty:
        raise DataError(None, "no test image was segmented")
    found = scores.assign(image=scores["image"].astype(str)).groupby("image")["detected_calcifications"].sum()
    found = found.reset_index().sort_values(["detected_calcifications", "image"], ascending=[False, True])
    return str(found["image"].iloc[0])


def region_centre(truth: np.ndarray, pixel_mm: float, rule: ClusterRule) -> tuple[tuple[float, float], str]:
    """Where to look in a true mask, and what is there: the centroid of its largest cluster under ``rule`` (most
    calcifications; ties: the first), else of its largest calcification (ties: the first), else the image's
    centre."""
    calcifications = label_calcifications(truth)
    if len(calcifications) == 0:
        return (truth.shape[0] / 2, truth.shape[1] / 2), "the image's centre (no true calcification)"
    clusters = cluster_calcifications(calcifications.centroids, pixel_mm, rule)
    if len(clusters):
        k = int(np.argmax(clusters.sizes))
        return (tuple(float(v) for v in clusters.centroids[k]),
                f"its largest true cluster ({int(clusters.sizes[k])} calcifications)")
    return (tuple(float(v) for v in calcifications.centroids[int(np.argmax(calcifications.areas))]),
            "its largest true calcification (no cluster)")


def _variant_dice(scores: pd.DataFrame, name: str, convolution: str) -> float:
    rows = scores[(scores["image"].astype(str) == name) & (scores["convolution"] == convolution)]
    return float(rows["dice"].mean()) if len(rows) else float("nan")


def plot_segmented_region(scores: pd.DataFrame, masks: Mapping[str, str | Path], raw_dir, source: Source,
                          segmentation: Mapping, out) -> Path:
    """Fig. 1: a :data:`CROP_MM` square of the test image of :func:`choose_region_image` around
    :func:`region_centre` (clusters by ``segmentation['cluster']``): the image, the ground truth, then each
    variant's segmentation (``masks``: convolution -> npz) over the ground truth."""
    name = choose_region_image(scores)
    mammogram = _read_one(raw_dir, source, name)
    rule = ClusterRule.from_section(segmentation["cluster"])
    centre, what = region_centre(mammogram.mask, source.pixel_mm, rule)
    box = crop_box(centre, side_px(CROP_MM, source.pixel_mm), mammogram.image.shape)
    fig = Figure(figsize=(3.0 * (2 + len(masks)), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 2 + len(masks)))
    _show_crop(axes[0], mammogram.image, box, "image")
    _show_crop(axes[1], mammogram.image, box, "ground truth")
    draw_mask_contour(axes[1], mammogram.mask[box], TRUTH, linewidths=0.8)
    for ax, (convolution, path) in zip(axes[2:], masks.items()):
        predicted = read_predicted_mask(path, name, mammogram.image.shape)
        _show_crop(ax, mammogram.image, box, f"{convolution} convolutions\n(Dice "
                                             f"{_variant_dice(scores, name, convolution):.2f} on the whole image)")
        draw_mask_contour(ax, mammogram.mask[box], TRUTH, linewidths=0.6)
        draw_mask_contour(ax, predicted[box], PREDICTED, linewidths=0.8)
    found = int(scores.loc[scores["image"].astype(str) == name, "detected_calcifications"].sum())
    fig.suptitle(f"{name}: {CROP_MM:g} mm around {what};\nthe test image with the most calcifications detected "
                 f"({found}, summed over the variants)", fontsize=9)
    legend_below(fig, [line_entry(TRUTH, "ground truth"), line_entry(PREDICTED, "segmented")], columns=2)
    return save_figure(fig, out)


# ---------------------------------------------------------------- Fig. 7: false detections at the border

def border_distance_mm(breast: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Each pixel's distance in mm to the breast's edge: inside the breast to the nearest background pixel,
    outside it to the nearest breast pixel; infinite everywhere when the image has no edge (all breast or none).
    The image's own border is no edge: the breast may run on beyond it."""
    breast = np.asarray(breast, dtype=bool)
    if breast.all() or not breast.any():
        return np.full(breast.shape, np.inf)
    inside, outside = ndi.distance_transform_edt(breast), ndi.distance_transform_edt(~breast)
    return np.where(breast, inside, outside) * float(pixel_mm)


def false_detections(predicted: np.ndarray, truth: np.ndarray, match_px: float) -> np.ndarray:
    """(k, 2) centroids (row, col) of the predicted calcifications that match no true one
    (:func:`~medrepro.studies.microcalc.scoring.match_calcifications`)."""
    from medrepro.studies.microcalc.scoring import match_calcifications

    found = label_calcifications(predicted)
    _, matched = match_calcifications(label_calcifications(truth), found, match_px)
    return found.centroids[~matched].reshape(-1, 2)


def near_border(points: np.ndarray, distance_mm: np.ndarray, border_mm: float = BORDER_MM) -> np.ndarray:
    """(k,) bool: which points (row, col) lie within ``border_mm`` of the breast's edge (their pixel's
    :func:`border_distance_mm`)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    pixels = np.clip(np.floor(points + 0.5).astype(np.int64), 0, np.array(distance_mm.shape) - 1)
    return distance_mm[pixels[:, 0], pixels[:, 1]] <= border_mm


def border_false_positives(predicted: np.ndarray, truth: np.ndarray, breast: np.ndarray, pixel_mm: float,
                           match_px: float, border_mm: float = BORDER_MM) -> np.ndarray:
    """(k, 2) centroids of the false detections (:func:`false_detections`) within ``border_mm`` of the breast's
    edge (:func:`near_border`)."""
    false = false_detections(predicted, truth, match_px)
    return false[near_border(false, border_distance_mm(breast, pixel_mm), border_mm)]


def densest(points: np.ndarray, side: float) -> tuple[float, float]:
    """The point with the most others in the ``side`` x ``side`` square around it, i.e. in a crop of that side
    centred on it (ties: the first)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    if not len(points):
        raise ValueError("no point to choose from")
    near = (np.abs(points[:, None, :] - points[None, :, :]) <= side / 2).all(axis=2).sum(axis=1)
    return tuple(float(v) for v in points[int(np.argmax(near))])


@dataclass(frozen=True, eq=False)
class Detections:
    """One (image, variant)'s false detections: their centroids ``false`` (k, 2) and which lie ``at_border``."""

    image: str
    convolution: str
    false: np.ndarray
    at_border: np.ndarray

    @property
    def border(self) -> np.ndarray:
        """The centroids of the false detections at the border."""
        return self.false[self.at_border]


def choose_border_case(candidates: Sequence[Detections]) -> tuple[Detections, bool]:
    """The (image, variant) with the most false detections at the border, and True; when none has any, the one
    with the most false detections anywhere, and False. Ties: the first image name, then the first in
    ``candidates`` (the variants' order)."""
    if not candidates:
        raise DataError(None, "no test image was segmented")
    def best(count) -> Detections:
        return candidates[min(range(len(candidates)), key=lambda k: (-count(candidates[k]), candidates[k].image, k))]

    chosen = best(lambda c: int(c.at_border.sum()))
    if chosen.at_border.any():
        return chosen, True
    return best(lambda c: len(c.false)), False


def border_detections(scores: pd.DataFrame, masks: Mapping[str, str | Path], raw_dir, source: Source,
                      match_px: float, border_mm: float = BORDER_MM) -> list[Detections]:
    """The false detections of every variant (``masks``: convolution -> npz) on every image of ``scores``, images
    by name, each image read once and its breast found as the segmentation found it
    (:func:`~medrepro.studies.microcalc.patches.breast_mask`)."""
    names = sorted(scores["image"].astype(str).unique())
    found = []
    for mammogram in read_mammograms(raw_dir, source, names):
        distance = border_distance_mm(breast_mask(mammogram.image, mammogram.source), source.pixel_mm)
        for convolution, path in masks.items():
            false = false_detections(read_predicted_mask(path, mammogram.name, mammogram.image.shape),
                                     mammogram.mask, match_px)
            found.append(Detections(mammogram.name, convolution, false, near_border(false, distance, border_mm)))
    return sorted(found, key=lambda d: d.image)  # stable: the variants keep their order


def _border_rule(case: Detections, at_border: bool) -> str:
    if at_border:
        return (f"the most false detections within {BORDER_MM:g} mm of the breast's edge ({len(case.border)}), "
                f"{CROP_MM:g} mm around the densest")
    return (f"no false detection lies within {BORDER_MM:g} mm of the breast's edge; the image with the most false "
            f"detections ({len(case.false)})")


def _show_whole(ax, image: np.ndarray, breast: np.ndarray, box, title: str) -> None:
    """The whole image (shrunk for display) with the breast's edge and the crop's box."""
    shown = shrink_for_display(image, WHOLE_SIDE)
    rows, cols = shown.shape[0] / image.shape[0], shown.shape[1] / image.shape[1]
    show_image(ax, shown, vmin=float(shown.min()), vmax=float(shown.max()) + 1e-6)
    draw_mask_contour(ax, shrink_for_display(breast.astype(np.uint8), WHOLE_SIDE, labels=True), BORDER,
                      linewidths=0.6)
    draw_box(ax, (cols * box[1].start, rows * box[0].start, cols * box[1].stop, rows * box[0].stop), FALSE,
             linewidth=1.0)
    ax.set_title(title, fontsize=8)


def plot_border_failures(scores: pd.DataFrame, masks: Mapping[str, str | Path], raw_dir, source: Source,
                         segmentation: Mapping, out) -> Path:
    """Fig. 7: the (image, variant) of :func:`choose_border_case` over :func:`border_detections` (matching within
    ``segmentation['match_px']``), :data:`CROP_MM` around the densest of its false detections at the border (or,
    when none is, of all its false detections; the image's centre when it has none): the whole image, and the crop
    with the breast's edge, the truth, the segmentation and those false detections circled."""
    if scores.empty or not masks:
        raise DataError(None, "no test image was segmented")
    case, at_border = choose_border_case(border_detections(scores, masks, raw_dir, source,
                                                           float(segmentation["match_px"])))
    shown = case.border if at_border else case.false
    mammogram = _read_one(raw_dir, source, case.image)
    breast = breast_mask(mammogram.image, mammogram.source)
    predicted = read_predicted_mask(masks[case.convolution], case.image, mammogram.image.shape)
    side = side_px(CROP_MM, source.pixel_mm)
    centre = densest(shown, side) if len(shown) else (mammogram.image.shape[0] / 2, mammogram.image.shape[1] / 2)
    box = crop_box(centre, side, mammogram.image.shape)
    fig = Figure(figsize=(9.0, 4.4), layout="constrained")
    whole, crop = fig.subplots(1, 2)
    _show_whole(whole, mammogram.image, breast, box, f"{case.image} ({case.convolution} convolutions)")
    _show_crop(crop, mammogram.image, box, f"{CROP_MM:g} mm around the densest false detections")
    draw_mask_contour(crop, breast[box], BORDER, linewidths=0.8)
    draw_mask_contour(crop, mammogram.mask[box], TRUTH, linewidths=0.6)
    draw_mask_contour(crop, predicted[box], PREDICTED, linewidths=0.6)
    _scatter_circles(crop, shown, (box[0].start, box[1].start), size=150)
    _keep_view(crop, box)
    fig.suptitle(f"False detections at the breast border:\n{_border_rule(case, at_border)}", fontsize=9)
    circled = "false detection near the edge" if at_border else "false detection"
    legend_below(fig, [line_entry(BORDER, "breast's edge (Otsu)"), line_entry(TRUTH, "ground truth"),
                       line_entry(PREDICTED, "segmented"), marker_entry(FALSE, circled, filled=False)], columns=4)
    return save_figure(fig, out)
