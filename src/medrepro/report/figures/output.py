"""Writing a figure: the layout frozen to rounded positions, then an atomic 150-dpi PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from medrepro.data.atomic import atomic_path

DPI = 150
LAYOUT_DECIMALS = 4  # axes positions, in figure fractions, once the layout engine has run


def freeze_layout(fig: Figure, decimals: int = LAYOUT_DECIMALS) -> None:
    """Run the figure's layout engine once, then pin every axes at its position rounded to ``decimals``.

    The constrained-layout solver can land a few units in the last place apart
    from one process to the next; that moves anti-aliased edges and changes a
    few pixels of the PNG. Rounded positions (1e-4 of the figure: a fraction
    of a pixel) give the same bytes every time.
    """
    if fig.get_layout_engine() is None:
        return
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.get_axes():
        box = ax.get_position(original=True)
        ax.set_position([round(value, decimals) for value in (box.x0, box.y0, box.width, box.height)])


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``out`` (150 dpi) atomically, with a frozen layout, and return the path."""
    out = Path(out)
    freeze_layout(fig)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return out


def panel_height(shape: tuple[int, int], panel_width: float) -> float:
    """Inches an image of ``shape`` (rows, columns) needs when drawn ``panel_width`` inches wide."""
    height, width = shape[-2:]
    return panel_width * height / width
