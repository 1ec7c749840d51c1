"""The elastix parameter maps the AC-RegNet authors published for JSRT.

``similarity`` pre-aligns every image to a reference; ``bspline`` is the
deformable "SimpleElastix" baseline. The files live in ``elastix/`` beside
this module; the pipeline's configuration is applied on top with
:func:`medrepro.spatial.elastix.with_overrides`.
"""

from __future__ import annotations

from pathlib import Path

from medrepro.spatial.elastix import ParameterMap, load_parameter_map

PUBLISHED_MAPS = ("similarity", "bspline")
ELASTIX_DIR = Path(__file__).resolve().parent / "elastix"


def published_map(name: str) -> ParameterMap:
    """The authors' parameter map ``name`` (one of :data:`PUBLISHED_MAPS`)."""
    if name not in PUBLISHED_MAPS:
        raise ValueError(f"unknown published elastix map {name!r}; expected one of {', '.join(PUBLISHED_MAPS)}")
    return load_parameter_map(ELASTIX_DIR / f"{name}.txt")
