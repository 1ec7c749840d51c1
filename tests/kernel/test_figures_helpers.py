"""The kernel's figure helpers: atomic PNGs with a layout frozen to rounded positions."""

import numpy as np
from matplotlib.figure import Figure

from medrepro.figures import LAYOUT_DECIMALS, draw_contours, freeze_layout, save_figure, show_image


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
