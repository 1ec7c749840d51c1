"""The kernel's figure helpers on real arrays: atomic PNGs with a frozen layout, images and slices, contours,
boxes, overlays and points where their pixels are, loss curves from loss logs, distributions."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgba
from matplotlib.figure import Figure

from medrepro.errors import DataError
from medrepro.report.figures import (
    LAYOUT_DECIMALS, OTHER_LABEL_COLOUR, PALETTE, Histogram, assign_colours, draw_box, draw_box_plots, draw_boxes,
    draw_contours, draw_heatmap, draw_histograms, draw_label_overlay, draw_loss_curves, draw_mask_contour,
    draw_points, draw_quadrilateral, draw_tint, epoch_means, fit_view, freeze_layout, group_runs, legend_below,
    line_entry, panel_height, patch_entry, pixel_extent, save_figure, show_composite, show_image, show_slice,
    shrink_for_display, split_entries, step_values, volume_slice,
)
from medrepro.nn.training.loop import read_loss_log, write_loss_log


def constrained_figure() -> Figure:
    fig = Figure(figsize=(5, 3), layout="constrained")
    for sub, title in zip(fig.subfigures(1, 2), ("left", "right")):
        axes = sub.subplots(2, 1)
        labels = np.zeros((16, 16), np.uint8)
        labels[4:12, 3:9] = 1
        show_image(axes[0], np.linspace(0, 1, 256).reshape(16, 16))
        draw_contours(axes[0], labels, {1: "#1f77b4"})
        axes[1].plot([0, 1], [1, 0], label="line")
        axes[1].set_ylabel("a long y label")
        sub.suptitle(title)
    return fig


def test_freeze_layout_keeps_the_constrained_positions_rounded():
    reference = constrained_figure()
    reference.draw_without_rendering()
    expected = [ax.get_position(original=True).bounds for ax in reference.get_axes()]
    fig = constrained_figure()
    freeze_layout(fig)
    assert fig.get_layout_engine() is None or type(fig.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"
    for ax, bounds in zip(fig.get_axes(), expected):
        got = ax.get_position(original=True).bounds
        np.testing.assert_allclose(got, bounds, atol=0.5 * 10 ** -LAYOUT_DECIMALS + 1e-12)
        np.testing.assert_allclose(np.round(got, LAYOUT_DECIMALS), got, atol=1e-9)


def test_save_figure_writes_a_png_and_equal_figures_give_equal_bytes(tmp_path):
    a = save_figure(constrained_figure(), tmp_path / "a.png")
    b = save_figure(constrained_figure(), tmp_path / "b.png")
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_a_figure_without_a_layout_engine_is_left_alone(tmp_path):
    fig = Figure(figsize=(2, 2))
    ax = fig.subplots()
    before = ax.get_position().bounds
    freeze_layout(fig)
    assert ax.get_position().bounds == before


# ----------------------------------------------------------------------------- atomic output


def test_a_failed_save_keeps_the_previous_figure_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    out = save_figure(constrained_figure(), tmp_path / "fig.png")
    before = out.read_bytes()
    broken = constrained_figure()

    def write_half_then_fail(path, **kwargs):
        Path(path).write_bytes(before[: len(before) // 2])
        raise RuntimeError("disk full")

    monkeypatch.setattr(broken, "savefig", write_half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(broken, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


# ----------------------------------------------------------------------------- images and what is drawn on them

SIDE = 40


def pixel_figure(side: int = SIDE):
    """A figure of ``side`` x ``side`` pixels whose one axes fills it: one data unit is one pixel, one point too."""
    fig = Figure(figsize=(side / 72, side / 72), dpi=72)
    ax = fig.add_axes((0, 0, 1, 1))
    show_image(ax, np.zeros((side, side)))
    return fig, ax


def rendered(fig) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(int)


def test_images_are_shown_with_pixel_edges_at_integers():
    fig = Figure()
    ax = fig.subplots()
    shown = show_image(ax, np.zeros((6, 10)))
    assert shown.get_extent() == [0, 10, 6, 0]
    assert pixel_extent((6, 10, 3)) == (0, 10, 6, 0)
    assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0
    with pytest.raises(ValueError, match="shape"):
        show_image(ax, np.zeros((2, 3, 4, 5)))


def test_a_contour_around_a_square_mask_runs_along_its_border():
    mask = np.zeros((16, 16), bool)
    mask[4:12, 3:9] = True  # rows 4..11, columns 3..8: pixel edges x in [3, 9], y in [4, 12]
    fig = Figure()
    contour = draw_mask_contour(fig.subplots(), mask, "red")
    points = np.concatenate(contour.allsegs[0])
    x, y = points[:, 0], points[:, 1]
    assert (x.min(), x.max(), y.min(), y.max()) == (3.0, 9.0, 4.0, 12.0)
    on_border = np.isclose(x, 3) | np.isclose(x, 9) | np.isclose(y, 4) | np.isclose(y, 12)
    assert on_border.all()


def test_contours_skip_the_background_and_masks_without_an_edge():
    labels = np.zeros((12, 12), np.uint8)
    labels[2:5, 2:5] = 1
    labels[6:10, 6:10] = 7  # a label the colour map does not list
    ax = Figure().subplots()
    draw_contours(ax, labels, {1: "#1f77b4"})
    colours = [tuple(c.get_edgecolor()[0][:3]) for c in ax.collections]
    assert len(colours) == 2 and np.allclose(colours[0], to_rgba("#1f77b4")[:3])
    assert np.allclose(colours[1], to_rgba(OTHER_LABEL_COLOUR)[:3])
    assert draw_mask_contour(ax, np.zeros((4, 4)), "red") is None
    assert draw_mask_contour(ax, np.ones((4, 4)), "red") is None


def test_a_box_is_drawn_at_its_pixel_coordinates():
    fig, ax = pixel_figure()
    patch = draw_box(ax, np.array([10, 5, 30, 20]), "#ff0000", linewidth=1.0)
    assert patch.get_xy() == (10.0, 5.0) and (patch.get_width(), patch.get_height()) == (20.0, 15.0)
    image = rendered(fig)
    red = (image[..., 0] > 60) & (image[..., 1] < 40)
    assert red[12, 9:11].any() and red[12, 29:31].any()  # left and right sides, rows inside the box
    assert red[4:6, 20].any() and red[19:21, 20].any()  # top and bottom sides
    for row, col in ((12, 20), (12, 5), (12, 35), (2, 20), (25, 20)):
        assert not red[row, col], (row, col)
    assert len(draw_boxes(ax, np.array([[0, 0, 1, 1], [2, 2, 3, 3]]), "blue")) == 2


def test_quadrilaterals_and_points_keep_their_coordinates():
    ax = Figure().subplots()
    corners = np.array([[1.0, 2.0], [5.0, 2.5], [4.0, 7.0], [0.5, 6.0]])
    polygon = draw_quadrilateral(ax, corners, "blue")
    np.testing.assert_allclose(polygon.get_xy()[:4], corners)
    landmarks = draw_points(ax, [[2.5, 3.5], [7.5, 1.5]], "yellow", label="landmarks")
    np.testing.assert_allclose(landmarks.get_offsets(), [[2.5, 3.5], [7.5, 1.5]])
    assert landmarks.get_label() == "landmarks"


def test_label_overlays_and_tints_colour_only_their_pixels():
    fig, ax = pixel_figure(8)
    labels = np.zeros((8, 8), np.uint8)
    labels[:4, :4] = 1
    draw_label_overlay(ax, labels, {1: "#00ff00"}, alpha=1.0)
    image = rendered(fig)
    assert image[1, 1, 1] > 200 and image[1, 1, 0] < 50
    assert image[6, 6].max() < 50  # the background stays transparent over the black image
    fig, ax = pixel_figure(8)
    weight = np.zeros((8, 8))
    weight[:, 4:] = 1.0
    draw_tint(ax, weight, (1.0, 0.0, 0.0), alpha=1.0)
    image = rendered(fig)
    assert image[3, 6, 0] > 200 and image[3, 1, 0] < 50


def test_a_heatmap_comes_with_a_labelled_colour_bar():
    fig = Figure(layout="constrained")
    ax = fig.subplots()
    show_image(ax, np.zeros((8, 8)))
    bar = draw_heatmap(ax, np.linspace(0, 1, 64).reshape(8, 8), "saliency")
    assert bar.ax.get_ylabel() == "saliency"
    with pytest.raises(ValueError, match="2-D"):
        draw_heatmap(ax, np.zeros((2, 8, 8)), "x")


def test_a_composite_shows_the_fixed_image_magenta_and_the_moving_one_green():
    ax = Figure().subplots()
    fixed, moving = np.zeros((4, 4)), np.ones((4, 4))
    fixed[0, 0] = 1.0
    shown = show_composite(ax, fixed, moving)
    rgb = shown.get_array()
    np.testing.assert_array_equal(rgb[0, 0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(rgb[1, 1], [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="one shape"):
        show_composite(ax, fixed, np.ones((3, 4)))


def test_volume_slices_are_taken_along_the_asked_axis():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    np.testing.assert_array_equal(volume_slice(volume), volume[2])
    np.testing.assert_array_equal(volume_slice(volume, axis=1), volume[:, 2, :])
    np.testing.assert_array_equal(volume_slice(volume, axis=2, index=5), volume[:, :, 5])
    np.testing.assert_array_equal(volume_slice(volume, axis=-1, index=0), volume[:, :, 0])
    ax = Figure().subplots()
    shown = show_slice(ax, volume / volume.max(), axis=1, index=3)
    assert shown.get_array().shape == (4, 6) and shown.get_extent() == [0, 6, 4, 0]
    with pytest.raises(ValueError, match="outside"):
        volume_slice(volume, axis=0, index=4)
    with pytest.raises(ValueError, match="axis"):
        volume_slice(volume, axis=3)
    with pytest.raises(ValueError, match="3-D"):
        volume_slice(volume[0])


def test_fit_view_shows_the_image_and_points_but_not_wild_ones():
    ax = Figure().subplots()
    fit_view(ax, (10, 20))
    assert ax.get_xlim() == (0, 20) and ax.get_ylim() == (10, 0)
    fit_view(ax, (10, 20), [[-5.0, 3.0], [1e6, 12.0]])
    x0, x1 = ax.get_xlim()
    assert x0 == pytest.approx(-5.0 - 0.4) and x1 == pytest.approx(40.0 + 0.4)
    assert ax.get_ylim() == (pytest.approx(12.2), 0)


def test_shrink_for_display_keeps_labels_and_small_images():
    labels = np.zeros((100, 50), np.uint8)
    labels[:, 25:] = 3
    small = shrink_for_display(labels, 40, labels=True)
    assert small.shape == (40, 20) and set(np.unique(small)) == {0, 3}
    image = np.full((100, 50), 0.25, np.float32)
    assert shrink_for_display(image, 40).shape == (40, 20)
    assert shrink_for_display(image, 200) is image


# ----------------------------------------------------------------------------- colours and legends


def test_assign_colours_keeps_fixed_colours_and_hands_out_the_palette_in_turn():
    colours = assign_colours(["b", "x", "a", "y"], fixed={"a": "#000000"}, palette=("#111111", "#222222"))
    assert colours == {"b": "#111111", "x": "#222222", "a": "#000000", "y": "#111111"}
    assert assign_colours(["m", "n"]) == {"m": PALETTE[0], "n": PALETTE[1]}


def test_legend_below_fits_its_columns_to_the_entries():
    fig = Figure(layout="constrained")
    fig.subplots()
    legend_below(fig, [line_entry("red", "one"), patch_entry("blue", "two", alpha=0.4)], columns=5)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["one", "two"]
    assert legend._ncols == 2


def test_marker_entry_shows_a_marker_without_a_line():
    from medrepro.report.figures import marker_entry

    filled, hollow = marker_entry("red", "point"), marker_entry("gold", "ring", marker="s", filled=False)
    assert (filled.get_marker(), filled.get_linestyle(), filled.get_label()) == ("o", "None", "point")
    assert filled.get_markerfacecolor() == "red" and hollow.get_markerfacecolor() == "none"
    assert hollow.get_marker() == "s" and hollow.get_markeredgecolor() == "gold"


def test_panel_height_follows_the_aspect_ratio():
    assert panel_height((64, 40), 2.0) == pytest.approx(3.2)
    assert panel_height((3, 64, 40), 2.0) == pytest.approx(3.2)


# ----------------------------------------------------------------------------- loss logs and curves

LOG_COLUMNS = ["step", "epoch", "split", "total", "mse", "giou_loss"]


def loss_rows(seed: int, steps: int = 12) -> list[dict]:
    """Rows as the training loop logs them: validation rows lack a term, no row logs ``giou_loss``."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(1, steps + 1):
        epoch = (step - 1) // 4 + 1
        mse = float(rng.uniform(0.1, 1.0)) / step
        rows.append({"step": step, "epoch": epoch, "split": "train", "total": mse + 1 / 3, "mse": mse})
        if step % 4 == 0:
            rows.append({"step": step, "epoch": epoch, "split": "val", "total": 2.0 / step})
    return rows


def test_reading_a_loss_log_gives_back_what_was_written(tmp_path):
    logs = {}
    for seed in (0, 1, 2):
        path = tmp_path / f"seed{seed}" / "model.losses.csv"
        write_loss_log(loss_rows(seed), path, LOG_COLUMNS)
        logs[seed] = read_loss_log(path)
        expected = pd.DataFrame(loss_rows(seed), columns=LOG_COLUMNS).astype(
            {"total": float, "mse": float, "giou_loss": float})
        pd.testing.assert_frame_equal(logs[seed], expected)
        assert logs[seed]["step"].dtype == np.int64 and logs[seed]["epoch"].dtype == np.int64
        assert logs[seed]["giou_loss"].isna().all()
        assert logs[seed].loc[logs[seed]["split"] == "val", "mse"].isna().all()
    assert not logs[0].equals(logs[1])


def test_reading_a_bad_loss_log_names_the_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_loss_log(tmp_path / "absent.losses.csv")
    (tmp_path / "no_epoch.csv").write_text("step,split,total\n1,train,0.5\n")
    with pytest.raises(DataError, match="epoch"):
        read_loss_log(tmp_path / "no_epoch.csv")
    (tmp_path / "text.csv").write_text("step,epoch,split,total\n1,1,train,lots\n")
    with pytest.raises(DataError, match="not a number"):
        read_loss_log(tmp_path / "text.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        read_loss_log(tmp_path / "empty.csv")


def test_epoch_means_by_hand():
    log = pd.DataFrame({
        "epoch": [1, 1, 2, 2, 1, 2], "split": ["train"] * 4 + ["val"] * 2,
        "mse": [1.0, 3.0, 2.0, np.nan, 5.0, 6.0],
    })
    means = epoch_means(log, "mse")
    assert means["train"].to_dict() == {1: 2.0, 2: 2.0}
    assert means["val"].to_dict() == {1: 5.0, 2: 6.0}
    assert epoch_means(log, "giou_loss") == {}


def test_step_values_smooth_training_rows_only():
    steps = np.arange(1, 101)
    log = pd.DataFrame({"step": np.concatenate([steps, steps[::50]]), "split": ["train"] * 100 + ["val"] * 2,
                        "total": np.concatenate([np.where(steps % 2, 1.0, 3.0), [7.0, 9.0]])})
    curves = step_values(log, "total")
    np.testing.assert_allclose(curves["train"].to_numpy()[1:], 2.0)  # a window of two averages the zigzag
    assert curves["val"].to_dict() == {1: 7.0, 51: 9.0}
    assert step_values(log, "mse") == {}


def _lines_by_colour(ax) -> dict[str, list]:
    lines: dict[str, list] = {}
    for line in ax.get_lines():
        lines.setdefault(to_hex(line.get_color()), []).append(line)
    return lines


def test_loss_curves_draw_every_seed_of_a_method_in_its_colour(tmp_path):
    for seed in (0, 1, 2):
        write_loss_log(loss_rows(seed), tmp_path / f"a_seed{seed}.csv", LOG_COLUMNS)
    write_loss_log(loss_rows(5), tmp_path / "b_seed0.csv", LOG_COLUMNS)
    logs = {(path.stem.split("_")[0], int(path.stem[-1])): read_loss_log(path) for path in sorted(tmp_path.iterdir())}
    runs = group_runs(logs, by=lambda key: key[0])
    assert {method: len(r) for method, r in runs.items()} == {"a": 3, "b": 1}
    colours = {"a": "#1f77b4", "b": "#ff7f0e"}

    ax = Figure().subplots()
    draw_loss_curves(ax, runs, colours, "total", per="step")
    lines = _lines_by_colour(ax)
    assert len(lines["#1f77b4"]) == 6 and len(lines["#ff7f0e"]) == 2  # (train, val) per seed
    train = [line for line in lines["#1f77b4"] if line.get_linestyle() == "-"]
    assert [line.get_alpha() for line in train] == [1.0, 0.4, 0.4]  # the first seed solid
    assert {line.get_marker() for line in train} == {"None"}  # smoothed training rows: no markers
    assert {line.get_marker() for line in lines["#1f77b4"] if line.get_linestyle() == "--"} == {"o"}
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "total"

    ax = Figure().subplots()
    draw_loss_curves(ax, runs, colours, "mse", per="epoch", seed_mean=True, ylabel="MSE")
    lines = _lines_by_colour(ax)
    assert len(lines["#1f77b4"]) == 4 and len(lines["#ff7f0e"]) == 1  # no validation MSE logged
    mean = lines["#1f77b4"][-1]
    assert [line.get_alpha() for line in lines["#1f77b4"]] == [0.4, 0.4, 0.4, 1.0]
    expected = pd.concat([epoch_means(log, "mse")["train"] for log in runs["a"]], axis=1).mean(axis=1)
    np.testing.assert_allclose(mean.get_ydata(), expected.to_numpy())
    np.testing.assert_array_equal(mean.get_xdata(), [1, 2, 3])
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "MSE"

    ax = Figure().subplots()
    draw_loss_curves(ax, runs, colours, "giou_loss", per="epoch")
    assert ax.get_lines() == []
    with pytest.raises(ValueError, match="per"):
        draw_loss_curves(ax, runs, colours, per="batch")


def test_loss_curves_use_a_log_axis_only_for_a_positive_loss_over_decades():
    def scale(values) -> str:
        ax = Figure().subplots()
        log = pd.DataFrame({"step": np.arange(1, len(values) + 1), "split": "val", "total": values})
        draw_loss_curves(ax, {"m": [log]}, {"m": "red"})
        return ax.get_yscale()

    assert scale([10.0, 3.0, 0.5]) == "log"
    assert scale([2.0, 1.5, 1.0]) == "linear"
    assert scale([0.5, -0.2, -0.6]) == "linear"


def test_split_entries_name_the_line_styles():
    entries = split_entries()
    assert [(e.get_label(), e.get_linestyle()) for e in entries] == [("training", "-"), ("validation", "--")]


# ----------------------------------------------------------------------------- distributions


def test_box_plots_have_one_box_and_one_dot_per_score():
    ax = Figure().subplots()
    groups = {"A": np.array([0.8, 0.9, np.nan]), "B": np.array([0.5, 0.6, 0.7, 0.65])}
    draw_box_plots(ax, groups, "Dice", np.random.default_rng(0))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"]
    assert [len(c.get_offsets()) for c in ax.collections] == [2, 4]
    offsets = ax.collections[1].get_offsets()
    assert np.all(np.abs(offsets[:, 0] - 2) <= 0.15)
    assert ax.get_ylabel() == "Dice"


def test_histograms_count_outside_values_in_the_edge_bins():
    ax = Figure().subplots()
    bins = np.linspace(0.0, 2.0, 5)
    draw_histograms(ax, [Histogram("filled", np.array([-1.0, 0.1, 3.0]), "green", filled=True),
                         Histogram("outline", np.array([1.2, 1.3]), "red", weights=np.array([0.5, 0.5]))],
                    bins, xlabel="loss", ylabel="pairs")
    filled, outline = ax.patches
    heights = filled.get_path().vertices[:, 1]
    assert heights.max() == 2.0  # -1 and 0.1 in the first bin, 3 in the last
    assert outline.get_path().vertices[:, 1].max() == 1.0
    assert filled.get_zorder() < outline.get_zorder()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("loss", "pairs")
    assert [t.get_text() for t in ax.legend().get_texts()] == ["filled", "outline"]
