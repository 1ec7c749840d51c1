"""Preparing the mammography pairs: canvas, orientation, resampling, breast regions, splits and the pairs file.

Conventions checked here are those of :mod:`medrepro.studies.mammo_registration.preprocess`:
boxes are (x1, y1, x2, y2) in pixel-edge coordinates (x = column, far edge
exclusive); a mirrored view has its chest wall at the right edge; the fitted
image sits against the canvas's top and right edges, so a box's x moves by
the column offset. Expected values are worked out by hand (or with NumPy) in
each test, not with the module's own helpers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from medrepro.errors import ConfigError, DataError
from medrepro.shared import breast_phantom
from medrepro.shared.dicom import write_mammogram
from medrepro.studies.mammo_registration.preprocess import (
    ARRAYS, SPLITS, Canvas, breast_region, fitted_shape, load_pairs, mirror_box, place_on_canvas, prepare,
    resample_area, scale_box, split_patients, working_view, write_prepared)
from medrepro.studies.mammo_registration.steps import development_views
from medrepro.studies.mammo_registration.synthetic import TRUTH_COLUMNS, TRUTH_FILE, generate_cbis_ddsm

# The synthetic collection and the canvas it is prepared on. 160 x 96 images on a 64 x 48 canvas: the rows
# limit the scale (64 / 160 = 0.4), so the fitted image is 64 x round(96 * 0.4) = 64 x 38 and sits 48 - 38 = 10
# columns from the left edge.
ORIGINAL = (160, 96)
LONGEST_SIDE, ASPECT = 64, 0.75
FITTED, OFFSET = (64, 38), 10


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# ----------------------------------------------------------------------------------------- canvas and fitting


@pytest.mark.parametrize("longest_side, aspect, expected", [
    (600, 0.6, (600, 360)),
    (64, 0.75, (64, 48)),
    (32, 1.0, (32, 32)),
    (32, 0.2, (32, 8)),      # round(6.4) = 6 columns is raised to the floor of 8
    (100, 0.45, (100, 45)),
])
def test_canvas_from_config(longest_side, aspect, expected):
    canvas = Canvas.from_config(longest_side, aspect)
    assert canvas.shape == expected and (canvas.rows, canvas.cols) == expected


@pytest.mark.parametrize("longest_side, aspect", [(31, 0.6), (0, 0.6), (600, 0.19), (600, 1.01), (600, 0.0)])
def test_canvas_rejects_bad_values(longest_side, aspect):
    with pytest.raises(ConfigError):
        Canvas.from_config(longest_side, aspect)


@pytest.mark.parametrize("shape, canvas, expected", [
    ((160, 96), Canvas(64, 48), (64, 38)),       # rows limit: 0.4
    ((100, 100), Canvas(64, 48), (48, 48)),      # columns limit: 0.48
    ((3000, 1800), Canvas(600, 360), (600, 360)),  # the paper's aspect fills the canvas
    ((4000, 10), Canvas(40, 30), (40, 1)),       # a sliver keeps at least one column
])
def test_fitted_shape_by_hand(shape, canvas, expected):
    assert fitted_shape(shape, canvas) == expected


@pytest.mark.parametrize("shape", [(160, 96), (97, 131), (5000, 3000), (33, 1000), (1000, 33), (64, 48)])
def test_fitted_shape_fits_and_keeps_the_aspect(shape):
    canvas = Canvas(64, 48)
    rows, cols = fitted_shape(shape, canvas)
    assert rows <= canvas.rows and cols <= canvas.cols
    assert rows == canvas.rows or cols == canvas.cols  # as large as fits: one side touches the canvas
    # Each side is within half a pixel of the exact scaled length.
    scale = min(canvas.rows / shape[0], canvas.cols / shape[1])
    assert abs(rows - shape[0] * scale) <= 0.5 + 1e-9 or rows == 1
    assert abs(cols - shape[1] * scale) <= 0.5 + 1e-9 or cols == 1


def test_scale_box_by_hand():
    box = scale_box([10, 20, 30, 60], from_shape=(200, 100), to_shape=(50, 40))
    # x scales by 40 / 100 = 0.4, y by 50 / 200 = 0.25
    np.testing.assert_allclose(box, [4.0, 5.0, 12.0, 15.0])
    assert box.dtype == np.float64


def test_mirror_box_by_hand_and_twice_is_identity():
    box = np.array([10.0, 20.0, 30.0, 60.0])
    mirrored = mirror_box(box, 100)
    np.testing.assert_allclose(mirrored, [70.0, 20.0, 90.0, 60.0])
    np.testing.assert_allclose(mirror_box(mirrored, 100), box)
    # A box spanning the whole width stays the whole width.
    np.testing.assert_allclose(mirror_box([0, 0, 100, 5], 100), [0, 0, 100, 5])


def test_mirror_box_matches_flipping_a_mask():
    mask = np.zeros((8, 11), dtype=bool)
    mask[2:5, 1:4] = True  # box (1, 2, 4, 5)
    flipped = mask[:, ::-1]
    columns = np.flatnonzero(flipped.any(axis=0))
    rows = np.flatnonzero(flipped.any(axis=1))
    expected = [columns[0], rows[0], columns[-1] + 1, rows[-1] + 1]
    np.testing.assert_allclose(mirror_box([1, 2, 4, 5], 11), expected)


def test_place_on_canvas_against_top_and_right_edges():
    image = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    placed, offset = place_on_canvas(image, Canvas(5, 4))
    expected = np.zeros((5, 4), dtype=np.float32)
    expected[0:3, 2:4] = image
    assert offset == 2 and placed.dtype == np.float32
    np.testing.assert_array_equal(placed, expected)


def test_place_on_canvas_full_size_and_too_large():
    image = np.ones((5, 4), dtype=np.float32)
    placed, offset = place_on_canvas(image, Canvas(5, 4))
    assert offset == 0 and placed.all()
    with pytest.raises(ValueError):
        place_on_canvas(np.ones((6, 4)), Canvas(5, 4))
    with pytest.raises(ValueError):
        place_on_canvas(np.ones((5, 5)), Canvas(5, 4))


# ----------------------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("size", [(7, 5), (40, 24), (13, 29)])
def test_resample_area_keeps_a_constant_image(size):
    image = np.full((61, 37), 0.37, dtype=np.float32)
    out = resample_area(image, size)
    assert out.shape == size and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.37, rtol=1e-6)


def test_resample_area_with_integer_factor_is_block_mean():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(12, 20))
    out = resample_area(image, (4, 5))  # blocks of 3 rows x 4 columns
    expected = image.reshape(4, 3, 5, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.mean() == pytest.approx(image.mean(), rel=1e-6)


def test_resample_area_of_a_block_image():
    image = np.kron(np.array([[0.0, 1.0], [0.5, 0.25]]), np.ones((6, 4)))  # 12 x 8 in four blocks
    out = resample_area(image, (4, 4))
    np.testing.assert_allclose(out, np.kron(np.array([[0.0, 1.0], [0.5, 0.25]]), np.ones((2, 2))), atol=1e-7)
    assert out.mean() == pytest.approx(image.mean())


# ------------------------------------------------------------------------------------------------ working view


def synthetic_film(path, photometric: str = "MONOCHROME2") -> None:
    """A 100 x 60 12-bit film: tissue grey 0.2 everywhere, a bright rectangle over the box (10, 20, 26, 40)."""
    values = np.full((100, 60), 819, dtype=np.uint16)  # 819 / 4095 = 0.2
    values[20:40, 10:26] = 4095
    stored = 4095 - values if photometric == "MONOCHROME1" else values
    write_mammogram(path, stored.astype(np.uint16), photometric=photometric, bits_stored=12, PatientID="P",
                    SeriesDescription="full mammogram images")


@pytest.mark.parametrize("side, mirror_side, photometric", [
    ("RIGHT", "LEFT", "MONOCHROME2"),
    ("LEFT", "LEFT", "MONOCHROME2"),
    ("LEFT", None, "MONOCHROME2"),
    ("RIGHT", "RIGHT", "MONOCHROME1"),
])
def test_working_view_moves_image_and_box_together(tmp_path, side, mirror_side, photometric):
    path = tmp_path / "film.dcm"
    synthetic_film(path, photometric)
    canvas = Canvas(50, 40)  # scale min(50/100, 40/60) = 0.5: fitted 50 x 30, offset 10
    view = working_view(path, [10, 20, 26, 40], side, canvas, mirror_side)
    mirrored = side == mirror_side
    # By hand: mirroring maps x to 60 - x, halving to x / 2, placing adds 10 columns.
    x1, x2 = (60 - 26, 60 - 10) if mirrored else (10, 26)
    box = np.array([x1 / 2 + 10, 20 / 2, x2 / 2 + 10, 40 / 2])
    expected = np.zeros((50, 40), dtype=np.float32)
    expected[:, 10:] = 0.2
    expected[10:20, int(box[0]):int(box[2])] = 1.0
    assert view.mirrored == mirrored and view.fitted_shape == (50, 30) and view.column_offset == 10
    np.testing.assert_allclose(view.box, box)
    np.testing.assert_allclose(view.image, expected, atol=1e-6)
    # the bright pixels lie exactly inside the box
    rows, cols = np.nonzero(view.image > 0.5)
    assert cols.min() >= box[0] and cols.max() + 1 <= box[2] and rows.min() >= box[1] and rows.max() + 1 <= box[3]
    assert view.region.shape == (50, 40) and view.region[:, 10:].all() and not view.region[:, :10].any()


# --------------------------------------------------------------------------------------------- breast region


@pytest.fixture(scope="module")
def phantom_views():
    """CC and MLO views of three phantom breasts with the default film effects (grain, borders, labels)."""
    views = []
    for seed in (0, 2, 4):
        rng = np.random.default_rng(seed)
        breast = breast_phantom.make_breast(rng)
        views.append(breast_phantom.project_cc(breast, rng, (240, 144)))
        views.append(breast_phantom.project_mlo(breast, rng, (240, 144)))
    return views


def test_breast_region_matches_the_phantom_tissue(phantom_views):
    for view in phantom_views:
        region = breast_region(view.image)
        assert region.dtype == bool and region.shape == view.image.shape
        assert dice(region, view.breast_mask | view.muscle_mask) > 0.95, view.params["view"]
        label = view.params["film"].get("label")
        if label is not None:  # the label card is a separate bright object: left out
            r1, c1, r2, c2 = label
            assert not region[r1:r2, c1:c2].any()


def test_chest_wall_edge_of_a_phantom_is_tissue(phantom_views):
    """The premise of mirroring: a right breast's tissue touches the right edge, a left one's the left edge."""
    for view in phantom_views:
        tissue = view.breast_mask | view.muscle_mask
        edge = -1 if view.params["laterality"] == "R" else 0
        assert tissue[:, edge].any() and not tissue[:, -1 - edge].any()


def test_breast_region_of_a_constant_image_is_empty():
    for value in (0.0, 0.6, 1.0):
        region = breast_region(np.full((40, 30), value, dtype=np.float32))
        assert region.dtype == bool and not region.any()


def test_breast_region_drops_a_separate_label_and_fills_holes():
    rows, cols = np.mgrid[:60, :40]
    disc = (rows - 30) ** 2 + (cols - 40) ** 2 < 20 ** 2  # a half disc against the right edge
    hole = (rows - 30) ** 2 + (cols - 32) ** 2 < 3 ** 2
    image = np.where(disc, 0.5, 0.02)
    image[hole] = 0.02
    image[3:9, 2:12] = 0.9  # the label, far from the tissue
    region = breast_region(image)
    assert not region[3:9, 2:12].any()
    assert region[hole].all()
    # the light smoothing may move the edge by a pixel or two, not more
    assert region[ndi.binary_erosion(disc, iterations=1)].all()
    assert not region[~ndi.binary_dilation(disc, iterations=2)].any()


# ---------------------------------------------------------------------------------------------------- splits


def test_split_patients_is_deterministic_and_covers_each_patient_once():
    patients = [f"P_{i:03d}" for i in range(20)]
    first = split_patients(patients, 0.25, seed=3)
    assert split_patients(list(reversed(patients)) + patients[:5], 0.25, seed=3) == first  # order, repeats
    assert sorted(first) == patients and set(first.values()) == {"train", "val"}
    assert sum(v == "val" for v in first.values()) == 5
    assert any(split_patients(patients, 0.25, seed=s) != first for s in range(4, 10))


@pytest.mark.parametrize("n, fraction, n_val", [(2, 0.25, 1), (3, 0.1, 1), (2, 0.9, 1), (10, 0.34, 3),
                                                 (10, 0.96, 9)])
def test_split_patients_fraction_with_at_least_one_on_each_side(n, fraction, n_val):
    split = split_patients([f"P{i}" for i in range(n)], fraction, seed=0)
    assert sum(v == "val" for v in split.values()) == n_val
    assert sum(v == "train" for v in split.values()) == n - n_val


def test_split_patients_errors():
    with pytest.raises(DataError):
        split_patients(["P1"], 0.25, seed=0)
    with pytest.raises(DataError):
        split_patients(["P1", "P1"], 0.25, seed=0)
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError):
            split_patients(["P1", "P2", "P3"], fraction, seed=0)


# ----------------------------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("cbis") / "raw"
    generate_cbis_ddsm(root, n_patients=6, seed=0, image_size=ORIGINAL, test_fraction=0.35)
    return root


def prepare_on(root, **changes):
    arguments = dict(longest_side=LONGEST_SIDE, aspect=ASPECT, pairing_rule="abnormality_id", val_fraction=0.25,
                     seed=0, progress=False)
    arguments.update(changes)
    return prepare(root, **arguments)


@pytest.fixture(scope="module")
def prepared(collection):
    return prepare_on(collection)


@pytest.fixture(scope="module")
def truth(collection):
    table = pd.read_csv(collection / TRUTH_FILE, dtype={"patient_id": str})
    assert list(table.columns) == TRUTH_COLUMNS
    return table


def test_prepared_arrays_shapes_and_types(prepared):
    arrays, n = prepared.arrays, len(prepared.table)
    assert set(arrays) == set(ARRAYS) and n >= 4
    for view in ("cc", "mlo"):
        assert arrays[view].shape == (n, LONGEST_SIDE, 48) and arrays[view].dtype == np.float32
        assert arrays[view].min() >= 0.0 and arrays[view].max() <= 1.0
        assert arrays[f"{view}_region"].shape == (n, LONGEST_SIDE, 48) and arrays[f"{view}_region"].dtype == bool
        assert arrays[f"{view}_box"].shape == (n, 4) and arrays[f"{view}_box"].dtype == np.float32
    assert arrays["pair"].dtype.kind == "U" and arrays["split"].dtype.kind == "U"
    assert list(arrays["pair"]) == list(prepared.table["pair"]) and len(set(arrays["pair"])) == n
    assert set(arrays["split"]) == set(SPLITS)
    summary = prepared.summary
    assert summary["canvas"] == [LONGEST_SIDE, 48] and summary["pairs"] == n
    assert sum(summary[f"{s}_pairs"] for s in SPLITS) == n
    assert all(summary[f"{s}_pairs"] == int((arrays["split"] == s).sum()) for s in SPLITS)


def test_splits_follow_patients_and_the_official_test_cases(prepared, truth):
    table = prepared.table
    assert table.groupby("patient_id")["split"].nunique().max() == 1  # a patient sits in one split
    official = truth.drop_duplicates("patient_id").set_index("patient_id")["split"]
    for patient, split in table.groupby("patient_id")["split"].first().items():
        assert (split == "test") == (official[patient] == "Test")


def test_boxes_lie_inside_the_placed_image(prepared):
    for view in ("cc", "mlo"):
        box = prepared.arrays[f"{view}_box"]
        assert (box[:, 0] >= OFFSET).all() and (box[:, 2] <= 48).all()
        assert (box[:, 1] >= 0).all() and (box[:, 3] <= LONGEST_SIDE).all()
        assert (box[:, 2] > box[:, 0]).all() and (box[:, 3] > box[:, 1]).all()


def test_left_breasts_are_mirrored_and_every_chest_wall_is_on_the_right(prepared):
    table, arrays = prepared.table, prepared.arrays
    assert set(table["side"]) == {"LEFT", "RIGHT"}  # the collection has both, so both branches run
    for view in ("cc", "mlo"):
        assert (table[f"{view}_mirrored"] == (table["side"] == "LEFT")).all()
        images, regions = arrays[view], arrays[f"{view}_region"]
        assert (images[:, :, :OFFSET] == 0).all()  # air left of the placed image
        assert regions[:, :, -1].any(axis=1).all()  # tissue reaches the right (chest-wall) edge
        # MONOCHROME1 films are read inverted: the tissue is brighter than what surrounds it
        for image, region in zip(images, regions):
            assert image[region].mean() > image[~region].mean() + 0.1


def test_true_lesion_centres_land_in_the_working_boxes(prepared, truth):
    """The synthetic truth's projected centres, carried by hand through mirror, scale and offset."""
    table = prepared.table.reset_index(drop=True)
    matched = table.merge(truth, left_on=["patient_id", "side", "cc_abnormality_id"],
                          right_on=["patient_id", "side", "abnormality_id"], validate="one_to_one")
    assert len(matched) == len(table)
    assert (matched["mlo_abnormality_id"] == matched["cc_abnormality_id"]).all()
    rows, cols = ORIGINAL
    sx, sy = FITTED[1] / cols, FITTED[0] / rows
    for view in ("cc", "mlo"):
        assert (matched[f"{view}_rows"] == rows).all() and (matched[f"{view}_columns"] == cols).all()
        x, y = matched[f"{view}_centre_x"].to_numpy(), matched[f"{view}_centre_y"].to_numpy()
        x = np.where(matched["side"] == "LEFT", cols - x, x)
        x, y = x * sx + OFFSET, y * sy
        box = matched[[f"{view}_work_{c}" for c in ("x1", "y1", "x2", "y2")]].to_numpy()
        assert ((box[:, 0] <= x) & (x <= box[:, 2]) & (box[:, 1] <= y) & (y <= box[:, 3])).all(), view
        # the same position is tissue in the working image's region: image and box moved together
        index = matched.index.to_numpy()
        regions = prepared.arrays[f"{view}_region"][index]
        assert regions[np.arange(len(index)), y.astype(int), x.astype(int)].all(), view
        # the table's working box is the array's
        np.testing.assert_allclose(prepared.arrays[f"{view}_box"][index], box, rtol=1e-6)


def test_mirroring_flips_image_and_box_together(collection, prepared):
    plain = prepare_on(collection, mirror_side=None)
    assert not plain.table[["cc_mirrored", "mlo_mirrored"]].any().any()
    left = np.flatnonzero(prepared.table["side"] == "LEFT")
    right = np.flatnonzero(prepared.table["side"] == "RIGHT")
    for view in ("cc", "mlo"):
        mirrored_images, plain_images = prepared.arrays[view], plain.arrays[view]
        np.testing.assert_array_equal(mirrored_images[right], plain_images[right])
        flipped = plain_images[left][:, :, OFFSET:][:, :, ::-1]
        np.testing.assert_allclose(mirrored_images[left][:, :, OFFSET:], flipped, atol=1e-6)
        for i in left:
            plain_box = plain.arrays[f"{view}_box"][i].astype(np.float64)
            by_hand = [FITTED[1] - (plain_box[2] - OFFSET) + OFFSET, plain_box[1],
                       FITTED[1] - (plain_box[0] - OFFSET) + OFFSET, plain_box[3]]
            np.testing.assert_allclose(prepared.arrays[f"{view}_box"][i], by_hand, rtol=1e-5)


def test_prepare_rejects_an_unknown_mirror_side(collection):
    with pytest.raises(ConfigError):
        prepare_on(collection, mirror_side="left")


# -------------------------------------------------------------------------------------- the pairs file


def test_write_and_load_round_trip_and_split_filter(prepared, tmp_path):
    npz, csv = tmp_path / "pairs.npz", tmp_path / "pairs.csv"
    write_prepared(prepared, npz, csv)
    loaded = load_pairs(npz)
    assert set(loaded) == set(ARRAYS)
    for name in ARRAYS:
        assert loaded[name].dtype == prepared.arrays[name].dtype, name
        np.testing.assert_array_equal(loaded[name], prepared.arrays[name])
    table = pd.read_csv(csv, dtype={"patient_id": str})
    assert list(table["pair"]) == list(prepared.table["pair"]) and list(table.columns) == list(prepared.table.columns)
    for split in SPLITS:
        part = load_pairs(npz, split)
        keep = prepared.arrays["split"] == split
        assert (part["split"] == split).all() and len(part["pair"]) == keep.sum()
        for name in ARRAYS:
            np.testing.assert_array_equal(part[name], prepared.arrays[name][keep])
    assert sorted(tmp_path.iterdir()) == [csv, npz]  # no temporary files left behind
    with pytest.raises(ValueError):
        load_pairs(npz, "training")


def test_load_pairs_missing_file_and_missing_split(prepared, tmp_path):
    with pytest.raises(DataError, match="prepare step") as error:
        load_pairs(tmp_path / "absent.npz")
    assert error.value.path == str(tmp_path / "absent.npz")
    only_train = {name: value[prepared.arrays["split"] == "train"] for name, value in prepared.arrays.items()}
    np.savez(tmp_path / "train_only.npz", **only_train)
    with pytest.raises(DataError, match="'test'"):
        load_pairs(tmp_path / "train_only.npz", "test")


def test_load_pairs_file_without_an_array_is_a_data_error(prepared, tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, **{name: value for name, value in prepared.arrays.items() if name != "mlo_box"})
    with pytest.raises(DataError) as error:
        load_pairs(path)
    assert error.value.path == str(path)


def test_load_pairs_garbage_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "pairs.npz"
    path.write_bytes(b"not an archive at all " * 8)
    with pytest.raises(DataError) as error:
        load_pairs(path)
    assert error.value.path == str(path)


def damaged(data: bytes, damage: str) -> bytes:
    """A file cut in half, emptied, or with 200 bytes inverted a third of the way in (a bad CRC)."""
    if damage == "truncated":
        return data[: len(data) // 2]
    if damage == "empty":
        return b""
    start = len(data) // 3
    return data[:start] + bytes(b ^ 0xFF for b in data[start:start + 200]) + data[start + 200:]


@pytest.mark.parametrize("damage", ["truncated", "empty", "scrambled"])
def test_load_pairs_truncated_empty_or_scrambled_file_is_a_data_error(prepared, tmp_path, damage):
    whole = tmp_path / "whole.npz"
    write_prepared(prepared, whole, tmp_path / "pairs.csv")
    path = tmp_path / "pairs.npz"
    path.write_bytes(damaged(whole.read_bytes(), damage))
    with pytest.raises(DataError) as error:
        load_pairs(path)
    assert error.value.path == str(path)


# ------------------------------------------------------------------------------- the detector's views


def test_development_views_are_distinct_views_with_all_their_boxes():
    rng = np.random.default_rng(0)
    names = ["p1", "p2", "p3", "p4"]
    cc_files, mlo_files = ["A", "A", "B", "C"], ["M1", "M2", "M3", "M4"]
    pairs = {
        "pair": np.array(names), "split": np.array(["train", "train", "train", "val"]),
        "cc": rng.uniform(size=(4, 6, 5)).astype(np.float32), "mlo": rng.uniform(size=(4, 6, 5)).astype(np.float32),
        "cc_box": np.array([[0, 0, 2, 2], [1, 1, 3, 4], [2, 2, 4, 5], [0, 1, 1, 2]], dtype=np.float32),
        "mlo_box": np.array([[0, 0, 1, 1], [1, 0, 2, 3], [3, 3, 5, 6], [0, 0, 5, 6]], dtype=np.float32),
    }
    # the table lists the pairs in another order: views are found by pair name, not by row
    table = pd.DataFrame({"pair": names, "cc_image_file": cc_files, "mlo_image_file": mlo_files}).iloc[[2, 0, 3, 1]]

    images, boxes = development_views(pairs, table, "train")
    # in the order first met: A (pair 1), M1, M2, B, M3; pair 4 is in val
    expected_images = [pairs["cc"][0], pairs["mlo"][0], pairs["mlo"][1], pairs["cc"][2], pairs["mlo"][2]]
    expected_boxes = [pairs["cc_box"][[0, 1]], pairs["mlo_box"][[0]], pairs["mlo_box"][[1]], pairs["cc_box"][[2]],
                      pairs["mlo_box"][[2]]]
    assert images.shape == (5, 6, 5) and len(boxes) == 5
    np.testing.assert_array_equal(images, np.stack(expected_images))
    for got, expected in zip(boxes, expected_boxes):
        assert {tuple(b) for b in got} == {tuple(b) for b in expected} and len(got) == len(expected)

    val_images, val_boxes = development_views(pairs, table, "val")
    assert len(val_images) == 2
    np.testing.assert_array_equal(val_boxes[0], pairs["cc_box"][[3]])


def test_development_views_keep_one_copy_of_a_repeated_box():
    pairs = {
        "pair": np.array(["p1", "p2"]), "split": np.array(["train", "train"]),
        "cc": np.zeros((2, 4, 4), dtype=np.float32), "mlo": np.ones((2, 4, 4), dtype=np.float32),
        "cc_box": np.array([[0, 0, 2, 2], [0, 0, 2, 2]], dtype=np.float32),
        "mlo_box": np.array([[1, 1, 2, 2], [0, 0, 3, 3]], dtype=np.float32),
    }
    table = pd.DataFrame({"pair": ["p1", "p2"], "cc_image_file": ["A", "A"], "mlo_image_file": ["M", "M"]})
    images, boxes = development_views(pairs, table, "train")
    assert len(images) == 2
    np.testing.assert_array_equal(boxes[0], [[0, 0, 2, 2]])
    assert {tuple(b) for b in boxes[1]} == {(1, 1, 2, 2), (0, 0, 3, 3)}
