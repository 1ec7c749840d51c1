"""The original DDSM's files: .ics headers, chain-coded .OVERLAY outlines, optical density, case folders."""

import math

import numpy as np
import pytest

from medrepro.errors import DataError
from medrepro.studies.mammo_tissue.readers import ddsm

ICS = """ics_version 1.0
filename D-4606-1
DATE_OF_STUDY 16 11 1993
PATIENT_AGE 52
FILM
FILM_TYPE REGULAR
DENSITY 2
DATE_DIGITIZED 6 4 1999
DIGITIZER HOWTEK 43.5
SEQUENCE
LEFT_CC LINES 6841 PIXELS_PER_LINE 3901 BITS_PER_PIXEL 12 RESOLUTION 43.5 OVERLAY
LEFT_MLO LINES 6931 PIXELS_PER_LINE 3931 BITS_PER_PIXEL 12 RESOLUTION 43.5 OVERLAY
RIGHT_CC LINES 6781 PIXELS_PER_LINE 3781 BITS_PER_PIXEL 12 RESOLUTION 43.5 NON_OVERLAY
RIGHT_MLO LINES 6901 PIXELS_PER_LINE 3811 BITS_PER_PIXEL 12 RESOLUTION 43.5 NON_OVERLAY
"""


# ------------------------------------------------------------------ .ics
def test_ics_header_gives_rows_from_lines_and_columns_from_pixels_per_line(tmp_path):
    path = tmp_path / "D-4606-1.ics"
    path.write_text(ICS)
    header = ddsm.parse_ics(path)
    assert header.name == "D-4606-1" and header.site == "D" and header.digitizer_key == "HOWTEK_ISMD"
    left_cc = header.views["LEFT_CC"]
    assert (left_cc.rows, left_cc.cols, left_cc.bits, left_cc.resolution_um) == (6841, 3901, 12, 43.5)
    assert left_cc.overlay and not header.views["RIGHT_CC"].overlay
    assert header.fields["PATIENT_AGE"] == "52" and header.file_stem() == "D_4606_1"


def test_ics_written_for_the_stand_in_reads_back(tmp_path):
    views = [ddsm.ViewHeader("RIGHT_MLO", 600, 400, 16, 42.0, True), ddsm.ViewHeader("LEFT_CC", 580, 390, 16, 42.0,
                                                                                      False)]
    path = tmp_path / "A-0001-1.ics"
    path.write_text(ddsm.format_ics("A-0001-1", "DBA 21", views, {"PATIENT_AGE": "60"}))
    header = ddsm.parse_ics(path)
    assert header.views == {v.view: v for v in views} and header.digitizer_key == "DBA"


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(" PIXELS_PER_LINE 3901", ""), "view LEFT_CC lacks PIXELS_PER_LINE"),
    (lambda t: t.replace("LINES 6841", "LINES six"), "not a number"),
    (lambda t: t.replace("DIGITIZER HOWTEK 43.5", "DIGITIZER KODAK 99"), "unknown digitiser 'KODAK 99'"),
    (lambda t: t.replace("filename D-4606-1\n", ""), "no valid 'filename' line"),
    (lambda t: t.replace("filename D-4606-1", "filename B-4606-1"), "HOWTEK digitiser at site 'B'"),
])
def test_a_broken_ics_names_the_file_and_the_problem(tmp_path, edit, message):
    path = tmp_path / "case.ics"
    path.write_text(edit(ICS))
    with pytest.raises(DataError, match=message) as info:
        ddsm.parse_ics(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ chain codes
def test_chain_codes_step_up_then_clockwise_with_x_the_column():
    # a hand-drawn 3 x 3 square traced clockwise from its top-left pixel (2, 2): right, right, down, down,
    # left, left, up, up
    square = ddsm.chain_outline(2, 2, [2, 2, 4, 4, 6, 6, 0, 0])
    assert square.tolist() == [[2, 2], [3, 2], [4, 2], [4, 3], [4, 4], [3, 4], [2, 4], [2, 3], [2, 2]]
    # a diamond from its top (5, 1): down-right, down-left, up-left, up-right
    diamond = ddsm.chain_outline(5, 1, [3, 5, 7, 1])
    assert diamond.tolist() == [[5, 1], [6, 2], [5, 3], [4, 2], [5, 1]]
    assert ddsm.chain_codes(square) == [2, 2, 4, 4, 6, 6, 0, 0]


def test_an_outline_fills_the_hand_drawn_region():
    drawn = ["........",
             "..####..",
             "..####..",
             "..####..",
             "........"]
    expected = np.array([[c == "#" for c in row] for row in drawn])
    outline = ddsm.chain_outline(2, 1, [2, 2, 2, 4, 4, 6, 6, 6, 0, 0])
    assert np.array_equal(ddsm.outline_mask(outline, expected.shape), expected)


OVERLAY = """TOTAL_ABNORMALITIES 2
ABNORMALITY 1
LESION_TYPE MASS SHAPE IRREGULAR MARGINS SPICULATED
ASSESSMENT 4
SUBTLETY 3
PATHOLOGY MALIGNANT
TOTAL_OUTLINES 2
BOUNDARY
10 10 2 2 2 4 4 4 6 6 6 0 0 0 #
CORE
11 11 2 4 6 0 #
ABNORMALITY 2
LESION_TYPE CALCIFICATION TYPE PLEOMORPHIC DISTRIBUTION CLUSTERED
LESION_TYPE MASS SHAPE ROUND MARGINS CIRCUMSCRIBED
ASSESSMENT 2
SUBTLETY 5
PATHOLOGY BENIGN
TOTAL_OUTLINES 1
BOUNDARY
18 1 0 0 0 2 2 4 4 4 6 6 #
"""


def test_overlay_abnormalities_with_their_outlines_and_border_clipping(tmp_path):
    path = tmp_path / "D_4606_1.LEFT_CC.OVERLAY"
    path.write_text(OVERLAY)
    first, second = ddsm.parse_overlay(path, shape=(20, 20))
    assert (first.assessment, first.subtlety, first.pathology, first.is_mass) == (4, 3, "MALIGNANT", True)
    assert [o.kind for o in first.outlines] == ["BOUNDARY", "CORE"] and first.boundary.clipped == 0
    assert first.boundary.points[:4].tolist() == [[10, 10], [11, 10], [12, 10], [13, 10]]
    assert second.is_calcification and second.is_mass and second.pathology == "BENIGN"
    # the second outline runs up to row -2 and out to column 20 of a 20-column image: those 7 vertices move onto
    # the border and are counted
    assert second.boundary.clipped == 7
    assert second.boundary.points[:, 1].min() == 0 and second.boundary.points[:, 0].max() == 19
    assert ddsm.format_overlay([first]).startswith("TOTAL_ABNORMALITIES 1\nABNORMALITY 1\nLESION_TYPE MASS")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("0 0 0 #", "0 0 9 #"), "direction outside 0-7"),
    (lambda t: t.replace("0 0 0 #", "0 0 0"), "does not end with '#'"),
    (lambda t: t.replace("10 10 2 2 2", "90 90 2 2 2"), "wholly outside the 20 x 20 image"),
    (lambda t: t.replace("TOTAL_ABNORMALITIES 2", "TOTAL_ABNORMALITIES 3"), "says 3, the file holds 2"),
    (lambda t: t.replace("ASSESSMENT 4\n", ""), "abnormality 1 has no ASSESSMENT"),
])
def test_a_broken_overlay_names_the_file_and_the_problem(tmp_path, edit, message):
    path = tmp_path / "case.OVERLAY"
    path.write_text(edit(OVERLAY))
    with pytest.raises(DataError, match=message) as info:
        ddsm.parse_overlay(path, shape=(20, 20))
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ optical density
GREY = np.array([100, 1000, 2000, 3000, 4000], dtype=np.uint16)
PUBLISHED = {  # written out from the sources, independently of the module's table
    ("calibration", "DBA"): lambda gl: (math.log10(gl) - 4.80662) / -1.07553,
    ("calibration", "HOWTEK_MGH"): lambda gl: 3.789 - 0.00094568 * gl,
    ("calibration", "HOWTEK_ISMD"): lambda gl: 3.96604095240593 - 0.00099055807612 * gl,
    ("calibration", "LUMISYS"): lambda gl: (gl - 4096.99) / -1009.01,
    ("viewer", "DBA"): lambda gl: 4.26700423014133 - 0.90303289757264 * math.log10(gl),
    ("viewer", "HOWTEK_MGH"): lambda gl: 3.78928997845071 - 0.00094568009377 * gl,
    ("viewer", "LUMISYS"): lambda gl: 4.05977749300340 - 0.00099080941710 * gl,
}


@pytest.mark.parametrize("constants, digitizer", sorted(PUBLISHED))
def test_optical_density_follows_the_published_formulas(constants, digitizer):
    grey = GREY * 16 if digitizer == "DBA" else GREY  # the DBA is a 16-bit scanner
    expected = np.clip([PUBLISHED[constants, digitizer](float(g)) for g in grey], 0.05, 3.6)
    np.testing.assert_allclose(ddsm.optical_density(grey, digitizer, constants), expected, rtol=1e-6)


@pytest.mark.parametrize("digitizer, bits", [("DBA", 16), ("HOWTEK_MGH", 12), ("HOWTEK_ISMD", 12), ("LUMISYS", 12)])
def test_grey_levels_written_for_a_density_read_back_as_that_density(digitizer, bits):
    density = np.linspace(0.2, 3.0, 29)
    grey = ddsm.grey_level(density, digitizer, bits=bits)
    back = ddsm.optical_density(grey, digitizer)
    one_level = np.abs(ddsm.optical_density(grey + 1, digitizer) - back)  # the density step of one grey level
    assert np.all(np.abs(back - density) <= one_level / 2 + 1e-6)


# ------------------------------------------------------------------ tracing a region for the stand-in's overlays
@pytest.mark.parametrize("drawn", [
    ["#"],
    ["###",
     "###"],
    [".#.",
     "###",
     ".#."],
    ["##...",
     "###..",
     ".####",
     "..#.."],
    ["#....",
     ".#...",
     "..###"],
])
def test_a_traced_boundary_chain_codes_back_to_its_region(drawn):
    mask = np.array([[c == "#" for c in row] for row in drawn])
    padded = np.pad(mask, 2)
    path = ddsm.trace_boundary(padded)
    assert path[0].tolist() == path[-1].tolist() or len(path) == 1  # closed
    codes = ddsm.chain_codes(path)
    again = ddsm.chain_outline(int(path[0][0]), int(path[0][1]), codes)
    assert np.array_equal(ddsm.outline_mask(again, padded.shape), padded)


def test_tracing_starts_at_the_top_left_pixel_and_runs_clockwise():
    mask = np.zeros((6, 6), bool)
    mask[1:4, 2:5] = True
    path = ddsm.trace_boundary(mask)
    assert path[0].tolist() == [2, 1] and path[1].tolist() == [3, 1]  # first step to the right: clockwise
    assert ddsm.chain_codes(path) == [2, 2, 4, 4, 6, 6, 0, 0]


# ------------------------------------------------------------------ LJPEG
def test_ljpeg_round_trip_at_12_and_16_bits(tmp_path):
    from medrepro.studies.mammo_tissue.readers.ljpeg import read_ljpeg, write_ljpeg

    rng = np.random.default_rng(0)
    for bits in (12, 16):
        image = (ndi_smooth(rng, (60, 40)) * (2 ** bits - 1)).astype(np.uint16)
        write_ljpeg(tmp_path / f"v{bits}.LJPEG", image, bits)
        assert np.array_equal(read_ljpeg(tmp_path / f"v{bits}.LJPEG", 60, 40, bits), image)


def ndi_smooth(rng, shape):
    """A textured image in 0..1 (structure a plane does not fit)."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2)
    return (field - field.min()) / (field.max() - field.min())


def test_an_ljpeg_whose_header_swaps_width_and_height_reads_in_the_ics_size(tmp_path):
    from medrepro.studies.mammo_tissue.readers.ljpeg import read_ljpeg, write_ljpeg

    image = (ndi_smooth(np.random.default_rng(1), (30, 50)) * 4000).astype(np.uint16)
    write_ljpeg(tmp_path / "v.LJPEG", image.reshape(50, 30), 12)  # encoded in rows of the wrong length
    assert np.array_equal(read_ljpeg(tmp_path / "v.LJPEG", 30, 50, 12), image)


@pytest.mark.parametrize("problem, message", [
    ("truncated", "not a readable lossless JPEG"),
    ("ramp", "smooth ramp"),
    ("range", "beyond the 12-bit range"),
    ("size", "the case's .ics gives 40 x 40"),
])
def test_a_bad_ljpeg_names_the_file_and_the_problem(tmp_path, problem, message):
    from medrepro.studies.mammo_tissue.readers.ljpeg import read_ljpeg, write_ljpeg

    rows, cols, bits = 30, 50, 12
    image = (ndi_smooth(np.random.default_rng(2), (rows, cols)) * 4000).astype(np.uint16)
    path = tmp_path / "v.LJPEG"
    if problem == "ramp":  # what the PVRG encoder's bug decodes to: a smooth gradient
        image = (np.add.outer(np.arange(rows) * 40, np.arange(cols) * 20) + 100).astype(np.uint16)
    if problem == "range":
        image[0, 0] = 5000
        write_ljpeg(path, image, 16)
    else:
        write_ljpeg(path, image, bits)
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    expected = (40, 40) if problem == "size" else (rows, cols)
    with pytest.raises(DataError, match=message) as info:
        read_ljpeg(path, *expected, bits)
    assert str(path) in str(info.value)
