"""A synthetic original DDSM, written in its native files from the shared 3-D breast model.

The stand-in lets the study run without the DDSM's 2,620 cases and keeps what makes the paper's problem hard:

* **Cases as the DDSM has them**: normals (no overlay), benigns, benigns without callback and cancers, each with
  a CC and an MLO view of both breasts (:mod:`medrepro.shared.breast_phantom`: compressed 3-D breasts with
  fibroglandular texture, ducts, vessels and the pectoral muscle). An abnormal case has one or two findings in
  one breast: masses (round, or spiculated with fine spicules) and clusters of calcification specks of 0.1-1 mm,
  that is one to a few native pixels, so that a coarser magnification genuinely loses them. Single and vascular
  calcifications are drawn in normal and abnormal breasts alike and never annotated: fine bright detail that is
  not a finding.
* **Native files**: per case ``cases/<type>/<volume>/case<NNNN>/`` with ``<L>-<NNNN>-1.ics``,
  ``<L>_<NNNN>_1.<VIEW>.LJPEG`` (lossless JPEG in the digitiser's raw grey levels: 16-bit DBA at MGH, 12-bit
  HOWTEK at MGH or ISMD, 12-bit LUMISYS at Wake Forest, converted from film optical density through the inverse
  of the configured published formulas) and ``.OVERLAY`` files for views with findings. One image in a few has
  width and height swapped in its LJPEG header, as some real files do.
* **Annotations drawn the way radiologists draw them**: loose outlines around each finding (a margin of 15-60 % of
  its size plus a random wobble), chain-coded, sometimes running past the image border; BI-RADS assessments by
  pathology (cancers 4-5, benign findings 2-4), with a few incomplete (0) and negative (1) assessments.
* **Digitisation artefacts that downsampling removes**: per-pixel scanner noise, a two-line banding of the
  scanner's lines, and sparse one-pixel dust specks as bright as calcifications.

Native pixels are ``pixel_mm`` (the DDSM's 42-50 microns in ``config/paper.yaml``; coarser in the default run,
with the crop, patch and stride scaled alike). ``synthetic_truth.csv`` holds what no reader may use: each
finding's kind, form and projected centre. ``MANIFEST.sha256`` covers every file. Everything random comes from
generators seeded by ``(seed, case number)``: the same arguments write the same bytes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from medrepro.data.atomic import write_csv, write_text
from medrepro.errors import ConfigError, DataError
from medrepro.pipeline.parallel import ordered_map
from medrepro.provenance.pinning import MANIFEST_FILE, write_manifest
from medrepro.shared import breast_phantom
from medrepro.studies.mammo_tissue.readers import ddsm
from medrepro.studies.mammo_tissue.readers.ljpeg import write_ljpeg

log = logging.getLogger(__name__)

TRUTH_FILE = "synthetic_truth.csv"
TRUTH_COLUMNS = ["case", "case_type", "view", "abnormality", "lesion_id", "kind", "form", "pathology", "assessment",
                 "centre_row", "centre_col", "lesion_pixels", "outline_pixels"]
VOLUME_PREFIX = {"normals": "normal", "benigns": "benign", "cancers": "cancer",
                 "benign_without_callbacks": "benign_without_callback"}
CASES_PER_VOLUME = 20
# The DDSM's scanners: site letter, the .ics DIGITIZER line, bits per pixel, resolution in microns.
SCANNERS = (("A", "DBA 21", 16, 42.0), ("A", "HOWTEK 43.5", 12, 43.5), ("B", "LUMISYS LASER", 12, 50.0),
            ("C", "LUMISYS LASER", 12, 50.0), ("D", "HOWTEK 43.5", 12, 43.5))
# Film optical density of unexposed tissue-free film and of the densest tissue, before per-case exposure.
OD_AIR, OD_DENSE = 3.3, 0.35
MARGIN_MM = 6.0           # film around the breast's bounding box
SWAPPED_HEADER_FRACTION = 0.05


@dataclass(frozen=True)
class Artefacts:
    """Digitisation artefacts, in optical density: per-pixel noise (sd), the two-line banding's amplitude, and
    dust specks (per million pixels, and their height)."""

    noise_sd: float = 0.02
    banding: float = 0.015
    dust_per_mpx: float = 40.0
    dust_height: float = 0.25


@dataclass(frozen=True)
class _Finding:
    kind: str           # mass or calcification (a cluster)
    pathology: str
    assessment: int
    spiculated: bool


# ---------------------------------------------------------------- arguments and cases
def _case_types(rng: np.random.Generator, n_cases: int, mix: dict[str, float]) -> list[str]:
    unknown = set(mix) - set(VOLUME_PREFIX)
    if unknown or not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ConfigError(f"synthetic DDSM: case_mix {mix!r} must give non-negative shares of "
                          f"{', '.join(VOLUME_PREFIX)}")
    total = sum(mix.values())
    counts = {t: int(round(n_cases * share / total)) for t, share in mix.items()}
    largest = max(counts, key=lambda t: mix[t])
    counts[largest] += n_cases - sum(counts.values())
    types = [t for t in ddsm.CASE_TYPES if t in counts for _ in range(max(counts[t], 0))]
    rng.shuffle(types)
    return types[:n_cases]


def _findings(rng: np.random.Generator, case_type: str) -> list[_Finding]:
    """One or two findings of one breast, by case type (their kinds, pathology and BI-RADS assessment)."""
    if case_type == "normals":
        return []
    found = []
    for _ in range(1 if rng.uniform() < 0.75 else 2):
        kind = "mass" if rng.uniform() < 0.5 else "calcification"
        if case_type == "cancers":
            pathology, assessment, spiculated = "MALIGNANT", int(rng.choice([4, 5])), rng.uniform() < 0.7
        elif case_type == "benigns":
            pathology, assessment, spiculated = "BENIGN", int(rng.choice([2, 3, 4], p=[0.35, 0.4, 0.25])), \
                rng.uniform() < 0.15
        else:
            pathology, assessment, spiculated = "BENIGN_WITHOUT_CALLBACK", int(rng.choice([2, 3])), False
        draw = rng.uniform()
        if draw < 0.04:
            assessment = 0   # incomplete: needs further imaging
        elif draw < 0.07 and pathology != "MALIGNANT":
            assessment = 1   # annotated, yet negative
        found.append(_Finding(kind, pathology, assessment, bool(spiculated)))
    return found


# ---------------------------------------------------------------- one breast, two views
def _view_shape(breast: breast_phantom.Breast, pixel_mm: float) -> tuple[int, int]:
    """Rows and columns that hold both views of ``breast`` at ``pixel_mm``, with film around it."""
    down, across = breast_phantom.breast_extent_mm(breast)
    margin = 2 * MARGIN_MM / pixel_mm
    return int(math.ceil(down / pixel_mm + margin)), int(math.ceil(across / pixel_mm + margin))


def _breast(rng: np.random.Generator, side: str, findings: list[_Finding], pixel_mm: float):
    """A breast with the findings (redrawn a few times until each shows on both views) and its CC and MLO."""
    masses = [f for f in findings if f.kind == "mass"]
    clusters = [f for f in findings if f.kind == "calcification"]
    spiculated = sum(f.spiculated for f in masses) / len(masses) if masses else 0.0
    for _ in range(6):
        breast = breast_phantom.make_breast(
            rng, laterality=side[0], n_masses=len(masses), n_clusters=len(clusters), spiculated_fraction=spiculated,
            n_single=int(rng.poisson(1.0)), n_vascular=int(rng.uniform() < 0.35))
        shape = _view_shape(breast, pixel_mm)
        views = {"CC": breast_phantom.project_cc(breast, rng, shape, pixel_mm=pixel_mm),
                 "MLO": breast_phantom.project_mlo(breast, rng, shape, pixel_mm=pixel_mm)}
        annotated = [lesion for lesion in breast.lesions if lesion.kind == "mass" or lesion.form == "cluster"]
        if all(views[v].lesion_masks[lesion.id].any() for v in views for lesion in annotated):
            break  # else drawn again; a finding still hidden on a view after the last draw is not annotated there
    ordered = sorted(annotated, key=lambda lesion: lesion.id)
    by_kind = {"mass": iter(masses), "calcification": iter(clusters)}
    return breast, views, [(lesion, next(by_kind[lesion.kind])) for lesion in ordered]


def _loose_outline(rng: np.random.Generator, lesion_mask: np.ndarray, pixel_mm: float) -> np.ndarray:
    """A radiologist's outline around a finding: its region grown by 15-60 % of its size plus a few pixels,
    with a smooth wobble, traced on a canvas that lets it run past the image border; (x, y) in the image."""
    pad = 40
    mask = np.pad(lesion_mask, pad)
    radius = math.sqrt(mask.sum() / math.pi)
    margin = rng.uniform(0.15, 0.6) * radius + rng.uniform(1.0, 3.0) / max(pixel_mm / 0.2, 0.25)
    distance = ndi.distance_transform_edt(~mask)
    wobble = ndi.gaussian_filter(rng.standard_normal(mask.shape), max(radius / 2, 2.0))
    wobble *= 0.35 * margin / max(float(np.abs(wobble).max()), 1e-9)
    grown = (distance <= margin + wobble).astype(np.float32)
    region = ndi.binary_fill_holes(ndi.gaussian_filter(grown, max(radius / 3, 2.0)) > 0.5)  # a hand's smooth line
    labels, _ = ndi.label(region)
    region = labels == labels[tuple(np.argwhere(mask)[0])]
    return ddsm.trace_boundary(region) - pad


def _density_to_grey(rng: np.random.Generator, image: np.ndarray, digitizer: str, bits: int, constants: str,
                     artefacts: Artefacts) -> np.ndarray:
    """Film density (0 air .. 1 dense) to the digitiser's raw grey levels, with the scanner's artefacts."""
    exposure = rng.uniform(-0.15, 0.15)
    od = OD_AIR + exposure - image * (OD_AIR - OD_DENSE)
    od += artefacts.noise_sd * rng.standard_normal(image.shape)
    od += artefacts.banding * np.where(np.arange(image.shape[0]) % 2 == 0, 1.0, -1.0)[:, None]
    n_dust = rng.poisson(artefacts.dust_per_mpx * image.size / 1e6)
    rows, cols = rng.integers(0, image.shape[0], n_dust), rng.integers(0, image.shape[1], n_dust)
    od[rows, cols] -= artefacts.dust_height * rng.uniform(0.5, 1.5, n_dust)  # bright: less density on film
    return ddsm.grey_level(od, digitizer, constants, bits)


# ---------------------------------------------------------------- one case
def _case(root: Path, seed: int, number: int, case_type: str, volume: str, pixel_mm: float, constants: str,
          artefacts: Artefacts) -> list[dict]:
    rng = np.random.default_rng([seed, number])
    site, digitizer_line, bits, resolution = SCANNERS[int(rng.integers(len(SCANNERS)))]
    name = f"{site}-{number:04d}-1"
    digitizer = ddsm.digitizer_key(digitizer_line, site)
    folder = root / "cases" / case_type / volume / f"case{number:04d}"
    findings = _findings(rng, case_type)
    sick_side = "LEFT" if rng.uniform() < 0.5 else "RIGHT"
    headers, truth = [], []
    for side in ("LEFT", "RIGHT"):
        breast, views, annotated = _breast(rng, side, findings if side == sick_side else [], pixel_mm)
        for projection, view in views.items():
            view_name = f"{side}_{projection}"
            abnormalities = []
            for lesion, finding in annotated:
                if not view.lesion_masks[lesion.id].any():
                    continue
                outline = _loose_outline(rng, view.lesion_masks[lesion.id], pixel_mm)
                outlines = [ddsm.Outline("BOUNDARY", outline)]
                if finding.kind == "mass" and rng.uniform() < 0.2:
                    outlines.append(ddsm.Outline("CORE", ddsm.trace_boundary(view.lesion_masks[lesion.id])))
                number_in_view = len(abnormalities) + 1
                abnormalities.append(ddsm.Abnormality(
                    number=number_in_view, lesion_types=[_lesion_type(rng, finding)], assessment=finding.assessment,
                    subtlety=int(rng.integers(1, 6)), pathology=finding.pathology, outlines=outlines))
                row, col = view.lesion_centres_px[lesion.id]
                truth.append({"case": name, "case_type": case_type, "view": view_name, "abnormality": number_in_view,
                              "lesion_id": lesion.id, "kind": finding.kind, "form": lesion.form,
                              "pathology": finding.pathology, "assessment": finding.assessment,
                              "centre_row": row, "centre_col": col,
                              "lesion_pixels": int(view.lesion_masks[lesion.id].sum()),
                              "outline_pixels": int(ddsm.outline_mask(outline, view.image.shape).sum())})
            grey = _density_to_grey(rng, view.image, digitizer, bits, constants, artefacts)
            image_path = folder / f"{name.replace('-', '_')}.{view_name}.LJPEG"
            # Some real files were encoded with width and height swapped: the same pixel stream, in rows of the
            # wrong length, so their header gives the transposed shape.
            swapped = rng.uniform() < SWAPPED_HEADER_FRACTION
            write_ljpeg(image_path, grey.reshape(grey.shape[::-1]) if swapped else grey, bits)
            if abnormalities:
                write_text(image_path.with_suffix(".OVERLAY"), ddsm.format_overlay(abnormalities))
            headers.append(ddsm.ViewHeader(view_name, grey.shape[0], grey.shape[1], bits, resolution,
                                           bool(abnormalities)))
    fields = {"DATE_OF_STUDY": f"{int(rng.integers(1, 29))} {int(rng.integers(1, 13))} {int(rng.integers(1988, 1999))}",
              "PATIENT_AGE": str(int(rng.integers(35, 85))), "FILM": "", "FILM_TYPE": "REGULAR",
              "DENSITY": str(int(rng.integers(1, 5))), "DATE_DIGITIZED": f"{int(rng.integers(1, 29))} "
                                                                       f"{int(rng.integers(1, 13))} 1999"}
    write_text(folder / f"{name}.ics", ddsm.format_ics(name, digitizer_line, sorted(headers, key=lambda h: h.view),
                                                       fields))
    return truth


def _case_of(arguments: tuple) -> list[dict]:
    return _case(*arguments)


def _lesion_type(rng: np.random.Generator, finding: _Finding) -> str:
    if finding.kind == "mass":
        shape = "IRREGULAR" if finding.spiculated else str(rng.choice(["ROUND", "OVAL", "LOBULATED"]))
        margins = "SPICULATED" if finding.spiculated else str(rng.choice(["CIRCUMSCRIBED", "ILL_DEFINED",
                                                                          "OBSCURED"]))
        return f"MASS SHAPE {shape} MARGINS {margins}"
    kind = "PLEOMORPHIC" if finding.pathology == "MALIGNANT" else str(rng.choice(["PUNCTATE", "AMORPHOUS"]))
    return f"CALCIFICATION TYPE {kind} DISTRIBUTION CLUSTERED"


# ---------------------------------------------------------------- the dataset
def generate_ddsm(raw_root: str | Path, *, n_cases: int, seed: int, pixel_mm: float,
                  case_mix: dict[str, float] | None = None, constants: str = "calibration",
                  artefacts: Artefacts = Artefacts(), workers: int = 1) -> pd.DataFrame:
    """Write a synthetic DDSM of ``n_cases`` cases into the empty directory ``raw_root``; the truth table.

    ``pixel_mm`` is the native pixel; ``case_mix`` the shares of each case type (default: 40 % normals, 25 %
    benigns, 10 % benigns without callback, 25 % cancers); ``constants`` the optical-density formulas whose
    inverse gives the grey levels; ``workers`` processes write cases side by side (each case draws from its own
    generator, so the bytes do not depend on them). Write through :func:`medrepro.data.atomic.atomic_dir` to
    publish it whole.
    """
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise ConfigError(f"synthetic DDSM: n_cases={n_cases!r} must be a whole number >= 1")
    if not 0.02 <= float(pixel_mm) <= 1.0:
        raise ConfigError(f"synthetic DDSM: pixel_mm={pixel_mm!r} must lie in [0.02, 1]")
    raw_root = Path(raw_root)
    if raw_root.exists() and (not raw_root.is_dir() or any(raw_root.iterdir())):
        raise DataError(raw_root, "is not an empty directory; write the synthetic DDSM into an empty one")
    mix = case_mix or {"normals": 0.4, "benigns": 0.25, "benign_without_callbacks": 0.1, "cancers": 0.25}
    types = _case_types(np.random.default_rng(int(seed)), int(n_cases), mix)
    jobs, seen = [], {t: 0 for t in VOLUME_PREFIX}
    for index, case_type in enumerate(types):
        volume = f"{VOLUME_PREFIX[case_type]}_{seen[case_type] // CASES_PER_VOLUME + 1:02d}"
        seen[case_type] += 1
        jobs.append((raw_root, int(seed), 1001 + index, case_type, volume, float(pixel_mm), constants, artefacts))
    truth = [row for rows in ordered_map(_case_of, jobs, workers, desc="synthetic DDSM cases") for row in rows]
    table = pd.DataFrame(truth, columns=TRUTH_COLUMNS)
    write_csv(raw_root / TRUTH_FILE, table, float_format="%.4f")
    write_manifest(raw_root, raw_root / MANIFEST_FILE)
    log.info("wrote a synthetic DDSM of %d cases (%d annotated findings on %d views) to %s", n_cases,
             table[["case", "abnormality", "view"]].drop_duplicates().shape[0], 4 * n_cases, raw_root)
    return table
