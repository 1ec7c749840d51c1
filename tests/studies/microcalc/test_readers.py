"""INbreast and mask-folder readers, the masks painted from INbreast's points and contours, and resampling."""

import plistlib

import numpy as np
import pytest

from medrepro.data.io.png import write_grey_png, write_mask_png
from medrepro.errors import ConfigError, DataError
from medrepro.shared.dicom import write_mammogram
from medrepro.studies.microcalc.readers import DIGITAL, FILM, CalcificationImage, inbreast, masks_dir
from medrepro.studies.microcalc.resample import (
    output_shape, resample_image, resample_mask, resample_record)

KEY = "0123456789abcdef"


def picture(text: str) -> np.ndarray:
    """A hand-drawn mask: ``#`` set, ``.`` clear, one line per row."""
    return np.array([[c == "#" for c in line.strip()] for line in text.strip().splitlines()])


def roi(name, *points):
    return inbreast.Roi(0, name, np.array(points, dtype=float).reshape(-1, 2))


def write_image(root, name, pixels, side="R", view="CC", **tags):
    tags.setdefault("PixelSpacing", ["0.07", "0.07"])
    path = root / inbreast.DICOM_DIR / inbreast.dicom_file_name(name, KEY, side, view)
    write_mammogram(path, pixels, bits_stored=14, PatientID=f"p{name}", Laterality=side, ViewPosition=view,
                    **tags)
    return path


def table_row(name, side="R", view="CC"):
    return {"Patient ID": "removed", "Patient age": "removed", "Laterality": side, "View": view,
            "Acquisition date": "201001", "File Name": name, "ACR": "2", "Bi-Rads": "4a"}


def small_inbreast(root, rois=None, pixels=None):
    """One image of 6 rows x 10 columns, with ``rois`` (name, points) in its XML."""
    pixels = np.arange(60, dtype=np.uint16).reshape(6, 10) * 100 if pixels is None else pixels
    write_image(root, "20586908", pixels, view="MLO")
    inbreast.write_table(root / inbreast.TABLE_FILE, [table_row("20586908", view="MLO")], trailing_empty_rows=2)
    if rois is not None:
        inbreast.write_rois(root / inbreast.XML_DIR / "20586908.xml", rois, pixel_mm=0.07)
    return pixels


# ------------------------------------------------------------------ painting


def test_a_point_is_a_disc_of_the_radius_around_it():
    mask = np.zeros((7, 7), bool)
    inbreast.paint_disc(mask, x=3, y=3, radius_px=2)
    assert np.array_equal(mask, picture("""
        .......
        ...#...
        ..###..
        .#####.
        ..###..
        ...#...
        .......
    """))


def test_a_disc_smaller_than_a_pixel_marks_the_pixel_holding_the_point():
    mask = np.zeros((7, 7), bool)
    inbreast.paint_disc(mask, x=2.4, y=4.6, radius_px=0.0)
    assert np.argwhere(mask).tolist() == [[5, 2]]


def test_a_contour_is_filled_with_its_outline():
    triangle = np.zeros((7, 7), bool)
    inbreast.paint_polygon(triangle, np.array([(1, 1), (5, 1), (1, 5)], float))
    assert np.array_equal(triangle, picture("""
        .......
        .#####.
        .####..
        .###...
        .##....
        .#.....
        .......
    """))
    square = np.zeros((6, 7), bool)
    inbreast.paint_polygon(square, np.array([(2, 1), (5, 1), (5, 4), (2, 4)], float))
    assert np.array_equal(square, picture("""
        .......
        ..####.
        ..####.
        ..####.
        ..####.
        .......
    """))


def test_a_contour_one_pixel_thin_keeps_its_pixels():
    mask = np.zeros((3, 7), bool)
    inbreast.paint_polygon(mask, np.array([(1, 1), (5, 1), (3, 1.2)], float))
    assert np.argwhere(mask).tolist() == [[1, c] for c in range(1, 6)]


def test_x_is_the_column_and_y_the_row():
    mask = inbreast.calcification_mask([roi("Calcification", (8, 2))], (5, 12), point_radius_px=0)
    assert np.argwhere(mask).tolist() == [[2, 8]]


def test_one_or_two_points_are_points_more_are_a_contour_other_names_are_not_painted():
    rois = [roi("Calcification", (2, 2)), roi("calcification ", (7, 2), (9, 2)),
            roi("Calcification", (1, 5), (4, 5), (4, 7), (1, 7)), roi("Cluster", (0, 0), (9, 0), (9, 8)),
            roi("Mass", (5, 5))]
    mask = inbreast.calcification_mask(rois, (9, 11), point_radius_px=1)
    expected = np.zeros((9, 11), bool)
    for x, y in ((2, 2), (7, 2), (9, 2)):
        inbreast.paint_disc(expected, x, y, 1)
    expected[5:8, 1:5] = True
    assert np.array_equal(mask, expected)


# ------------------------------------------------------------------ annotation files


def test_rois_written_as_inbreast_plists_read_back(tmp_path):
    path = tmp_path / "a.xml"
    contour = np.array([[10.25, 3.5], [12.0, 3.75], [11.0, 6.125]])
    inbreast.write_rois(path, [("Calcification", np.array([[1797.76, 2091.59]])), ("Cluster", contour)], 0.07)
    document = plistlib.loads(path.read_bytes())
    assert document["Images"][0]["ROIs"][0]["Point_px"] == ["(1797.760000, 2091.590000)"]
    rois = inbreast.read_rois(path)
    assert [(r.index, r.name, r.is_calcification) for r in rois] == [(0, "Calcification", True),
                                                                    (1, "Cluster", False)]
    assert np.allclose(rois[0].points, [[1797.76, 2091.59]]) and np.allclose(rois[1].points, contour)


def test_point_strings_with_a_z_component_and_spaces_parse():
    assert inbreast.parse_point(" ( 1.5e2 ,-2 , 0.0 ) ", None, 0) == (150.0, -2.0)


# ------------------------------------------------------------------ a copy of INbreast


def test_inbreast_round_trip(tmp_path):
    rois = [("Calcification", np.array([[3.0, 1.0]])), ("Calcification", np.array([[6, 2], [8, 2], [8, 4]])),
            ("Mass", np.array([[0, 0], [9, 0], [9, 5]]))]
    pixels = small_inbreast(tmp_path, rois)
    write_image(tmp_path, "20587054", np.full((4, 5), 7, np.uint16), side="L", ConversionType="DF")
    write_image(tmp_path / "unlisted", "1", np.zeros((2, 2), np.uint16))
    inbreast.write_table(tmp_path / inbreast.TABLE_FILE, [table_row("20586908", view="MLO"),
                                                          table_row("20587054", side="L")], trailing_empty_rows=1)
    first, second = list(inbreast.read_inbreast(tmp_path, point_radius_px=1))
    assert first.name == "20586908" and np.array_equal(first.image, pixels) and first.max_value == 2 ** 14 - 1
    assert first.spacing_mm == (0.07, 0.07) and first.acquisition == DIGITAL and not first.digitised
    assert (first.laterality, first.view, first.annotated) == ("R", "MLO", True)
    expected = np.zeros((6, 10), bool)
    inbreast.paint_disc(expected, 3, 1, 1)
    inbreast.paint_polygon(expected, np.array([[6, 2], [8, 2], [8, 4]], float))
    assert np.array_equal(first.mask, expected)
    assert [p.name for p in first.sources] == [f"20586908_{KEY}_MG_R_ML_ANON.dcm", "20586908.xml", "INbreast.csv"]
    assert second.acquisition == FILM and second.digitised and not second.annotated and not second.mask.any()


def test_the_release_folder_and_a_dicom_without_pixel_spacing(tmp_path):
    release = tmp_path / "INbreast Release 1.0"
    write_image(release, "22678622", np.ones((3, 4), np.uint16), PixelSpacing="")
    inbreast.write_table(release / inbreast.TABLE_FILE, [table_row("22678622")])
    record = next(inbreast.read_inbreast(tmp_path, pixel_mm=0.07))
    assert record.spacing_mm == (0.07, 0.07) and record.image.shape == (3, 4)
    write_image(release, "22678622", np.ones((3, 4), np.uint16), PixelSpacing="", ImagerPixelSpacing=["0.1", "0.1"])
    assert next(inbreast.read_inbreast(tmp_path)).spacing_mm == (0.1, 0.1)


@pytest.mark.parametrize("rois, message", [
    ([("Calcification", np.zeros((0, 2)))], "ROI 0 \\(Calcification\\) has no points"),
    ([("Mass", np.array([[1, 1]])), ("Calcification", np.array([[10.0, 2.0]]))],
     "ROI 1 \\(Calcification\\): point \\(10.000000, 2.000000\\) lies outside the image of 10 columns x 6 rows"),
    ([("Calcification", np.array([[2.0, 6.2]]))], "lies outside the image"),
])
def test_bad_rois_name_the_file(tmp_path, rois, message):
    small_inbreast(tmp_path, rois)
    entry = inbreast.index_inbreast(tmp_path)[0]
    with pytest.raises(DataError, match=message) as caught:
        inbreast.read_inbreast_image(entry)
    assert caught.value.path == str(tmp_path / inbreast.XML_DIR / "20586908.xml")


def test_a_transposed_point_is_outside_a_wide_image(tmp_path):
    small_inbreast(tmp_path, [("Calcification", np.array([[8.0, 1.0]]))])
    assert inbreast.read_inbreast_image(inbreast.index_inbreast(tmp_path)[0], point_radius_px=0).mask[1, 8]
    small_inbreast(tmp_path, [("Calcification", np.array([[1.0, 8.0]]))])
    with pytest.raises(DataError, match="outside"):
        inbreast.read_inbreast_image(inbreast.index_inbreast(tmp_path)[0])


@pytest.mark.parametrize("text, message", [
    ("<?xml version='1.0'?><plist version='1.0'><dict><key>Images</key><array>", "not a valid XML property list"),
    ("not xml at all", "not a valid XML property list"),
    (plistlib.dumps({"Patients": []}).decode(), "no 'Images' array"),
    (plistlib.dumps({"Images": [{"ROIs": [{"Name": "Calcification", "Point_px": ["1797.7 2091.5"]}]}]}).decode(),
     "ROI 0: point '1797.7 2091.5' is not"),
])
def test_an_annotation_file_that_does_not_parse_is_named(tmp_path, text, message):
    small_inbreast(tmp_path)
    path = tmp_path / inbreast.XML_DIR / "20586908.xml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        inbreast.read_inbreast_image(inbreast.index_inbreast(tmp_path)[0])
    assert caught.value.path == str(path)


def test_a_truncated_dicom_is_named(tmp_path):
    small_inbreast(tmp_path)
    path = inbreast.index_inbreast(tmp_path)[0].dicom
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated") as caught:
        next(inbreast.read_inbreast(tmp_path))
    assert caught.value.path == str(path)


def test_an_image_listed_without_its_dicom_is_an_error(tmp_path):
    small_inbreast(tmp_path)
    inbreast.write_table(tmp_path / inbreast.TABLE_FILE, [table_row("20586908", view="MLO"), table_row("24055274")])
    with pytest.raises(DataError, match="INbreast.csv line 3 lists File Name 24055274") as caught:
        inbreast.index_inbreast(tmp_path)
    assert "24055274_<16 hex>_MG_R_CC_ANON.dcm" in caught.value.path


@pytest.mark.parametrize("row, message", [
    ({"Laterality": "L"}, "the file name says R MLO, INbreast.csv line 2 says L MLO"),
    ({"View": "LM"}, "View 'LM' is not CC or MLO"),
    ({"File Name": ""}, "line 2 has data but no File Name"),
])
def test_table_rows_that_contradict_the_files_are_errors(tmp_path, row, message):
    small_inbreast(tmp_path)
    inbreast.write_table(tmp_path / inbreast.TABLE_FILE, [{**table_row("20586908", view="MLO"), **row}])
    with pytest.raises(DataError, match=message):
        inbreast.index_inbreast(tmp_path)


def test_a_dicom_name_off_the_published_pattern_is_an_error(tmp_path):
    small_inbreast(tmp_path)
    (tmp_path / inbreast.DICOM_DIR / "20586908.dcm").write_bytes(b"")
    with pytest.raises(DataError, match="not an INbreast DICOM name"):
        inbreast.index_inbreast(tmp_path)


# ------------------------------------------------------------------ a folder of images and masks


def test_masks_dir_round_trip_with_dicom_and_png(tmp_path):
    dicom = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    write_mammogram(tmp_path / "a.dcm", dicom, bits_stored=12, PixelSpacing=["0.05", "0.05"], ConversionType="DF",
                    Laterality="L", ViewPosition="CC")
    png = np.arange(15, dtype=np.uint8).reshape(5, 3)
    write_grey_png(tmp_path / "b.png", png)
    masks = {"a": np.eye(3, 4, dtype=bool), "b": np.zeros((5, 3), bool)}
    masks["b"][4, 2] = True
    for stem, mask in masks.items():
        write_mask_png(tmp_path / f"{stem}_mask.png", mask)
    masks_dir.write_table(tmp_path / masks_dir.TABLE_FILE, [("b.png", 0.1, "digital")])
    a, b = masks_dir.read_masks_dir(tmp_path)
    assert np.array_equal(a.image, dicom) and a.max_value == 4095 and a.spacing_mm == (0.05, 0.05)
    assert (a.acquisition, a.laterality, a.view, a.annotated) == (FILM, "L", "CC", True)
    assert np.array_equal(a.mask, masks["a"]) and [p.name for p in a.sources] == ["a.dcm", "a_mask.png"]
    assert np.array_equal(b.image, png) and b.max_value == 255 and b.spacing_mm == (0.1, 0.1)
    assert b.acquisition == DIGITAL and np.array_equal(b.mask, masks["b"])
    assert [p.name for p in b.sources] == ["b.png", "b_mask.png", "images.csv"]


def test_a_mask_whose_size_differs_from_its_image_is_named(tmp_path):
    write_grey_png(tmp_path / "c.png", np.zeros((5, 3), np.uint8))
    write_mask_png(tmp_path / "c_mask.png", np.zeros((3, 5), bool))
    with pytest.raises(DataError, match="image/mask size mismatch") as caught:
        list(masks_dir.read_masks_dir(tmp_path, pixel_mm=0.1, acquisition="film"))
    assert caught.value.path == str(tmp_path / "c_mask.png")


def test_masks_dir_missing_parts_and_values_are_errors(tmp_path):
    write_grey_png(tmp_path / "c.png", np.zeros((5, 3), np.uint8))
    with pytest.raises(DataError, match="missing: the mask of c.png"):
        masks_dir.index_masks_dir(tmp_path)
    write_mask_png(tmp_path / "c_mask.png", np.zeros((5, 3), bool))
    write_mask_png(tmp_path / "d_mask.png", np.zeros((5, 3), bool))
    with pytest.raises(DataError, match="a mask without its image"):
        masks_dir.index_masks_dir(tmp_path)
    (tmp_path / "d_mask.png").unlink()
    with pytest.raises(DataError, match="no pixel size"):
        list(masks_dir.read_masks_dir(tmp_path, acquisition="digital"))
    with pytest.raises(DataError, match="digital or digitised film"):
        list(masks_dir.read_masks_dir(tmp_path, pixel_mm=0.1))
    masks_dir.write_table(tmp_path / masks_dir.TABLE_FILE, [("e.png", 0.1, "film")])
    with pytest.raises(DataError, match="lists images that are not in"):
        masks_dir.index_masks_dir(tmp_path)
    masks_dir.write_table(tmp_path / masks_dir.TABLE_FILE, [("c.png", 0.1, "paper")])
    with pytest.raises(DataError, match="acquisition 'paper' is not one of digital, film"):
        masks_dir.index_masks_dir(tmp_path)


def test_a_table_that_contradicts_the_dicom_is_an_error(tmp_path):
    write_mammogram(tmp_path / "a.dcm", np.zeros((3, 4), np.uint16), PixelSpacing=["0.05", "0.05"],
                    ConversionType="DF")
    write_mask_png(tmp_path / "a_mask.png", np.zeros((3, 4), bool))
    masks_dir.write_table(tmp_path / masks_dir.TABLE_FILE, [("a.dcm", 0.07, None)])
    with pytest.raises(DataError, match="gives pixel_mm 0.07, the DICOM 0.05 x 0.05 mm"):
        list(masks_dir.read_masks_dir(tmp_path))
    masks_dir.write_table(tmp_path / masks_dir.TABLE_FILE, [("a.dcm", None, "digital")])
    with pytest.raises(DataError, match="says digital, the DICOM's ConversionType says digitised film"):
        list(masks_dir.read_masks_dir(tmp_path))


# ------------------------------------------------------------------ resampling


def scattered_specks(shape, n, seed=0) -> np.ndarray:
    """Single-pixel calcifications, some touching, anywhere up to the borders."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = True
    mask[0, 0] = mask[-1, -1] = True
    return mask


@pytest.mark.parametrize("spacing", [(0.05, 0.05), (0.07, 0.07), (0.1, 0.1), (0.042, 0.042), (0.07, 0.03)])
def test_resampling_keeps_every_calcification(spacing):
    mask = scattered_specks((53, 41), 40)
    out = resample_mask(mask, spacing, 0.05)
    assert out.shape == output_shape(mask.shape, spacing, 0.05)
    rows, cols = np.nonzero(mask)
    # the output pixel holding each input calcification pixel's centre is calcification
    out_rows = np.floor((rows + 0.5) * spacing[0] / 0.05).astype(int)
    out_cols = np.floor((cols + 0.5) * spacing[1] / 0.05).astype(int)
    assert out[out_rows, out_cols].all()
    assert out.sum() <= mask.sum() * np.ceil(spacing[0] / 0.05 + 1) * np.ceil(spacing[1] / 0.05 + 1)


def test_resampling_at_the_same_pixel_size_is_the_identity():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 2 ** 14, (30, 20)).astype(np.uint16)
    mask = scattered_specks((30, 20), 10)
    assert np.array_equal(resample_image(image, (0.05, 0.05)), image.astype(np.float32))
    assert np.array_equal(resample_mask(mask, (0.05, 0.05)), mask)
    record = CalcificationImage("x", image, 16383, (0.05, 0.05), DIGITAL, mask, True, "R", "CC", ())
    same = resample_record(record, 0.05)
    assert np.array_equal(same.image, image) and np.array_equal(same.mask, mask) and same.spacing_mm == (0.05, 0.05)


def test_image_resampling_averages_areas_and_interpolates_linearly():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    half = resample_image(image, (0.05, 0.05), 0.1)
    assert np.allclose(half, [[2.5, 4.5], [10.5, 12.5]])  # means of the 2 x 2 blocks
    ramp = np.tile(np.arange(6, dtype=np.float32) * 10, (3, 1))
    double = resample_image(ramp, (0.1, 0.1), 0.05)
    assert double.shape == (6, 12) and np.allclose(double[0, 1:-1], np.arange(10) * 5 + 2.5)
    third = resample_image(np.full((7, 7), 9.0), (0.07, 0.07), 0.1)  # 4.9 mm over 5 pixels of 0.1 mm
    assert third.shape == (5, 5) and np.allclose(third, 9.0)


def test_resample_record_at_the_papers_size(tmp_path):
    small_inbreast(tmp_path, [("Calcification", np.array([[9.0, 5.0]]))])
    record = resample_record(next(inbreast.read_inbreast(tmp_path, point_radius_px=0)))
    assert record.spacing_mm == (0.05, 0.05) and record.image.shape == record.mask.shape == (9, 14)
    assert record.image.dtype == np.float32 and record.mask[int(5.5 * 1.4), int(9.5 * 1.4)]
    with pytest.raises(ConfigError, match="pixel_mm"):
        resample_record(record, 0.0)
