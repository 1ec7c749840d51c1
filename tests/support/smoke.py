"""Checks a study's smoke test makes of the suite's smoke run."""

from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_figures(results: Path, names) -> None:
    """Each named figure is a PNG under the run's figures/."""
    for name in names:
        png = results / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == PNG_SIGNATURE, name
