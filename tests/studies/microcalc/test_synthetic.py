"""The synthetic INbreast: its native files read back, seeded bytes, and the paper's hard cases really there."""

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from medrepro.data import sourcing
from medrepro.errors import ConfigError, DataError
from medrepro.studies.microcalc import datasets
from medrepro.studies.microcalc.readers import DIGITAL, FILM, inbreast
from medrepro.studies.microcalc.synthetic import TRUTH_FILE, generate_inbreast

SIZE, PIXEL = (200, 150), 0.2   # 4 x 3 cm at 0.2 mm: small enough for a fast test, large enough for clusters
CALCIFICATIONS = ("cluster", "isolated", "near_skin")
CM2_RADIUS_MM = 10 / math.sqrt(math.pi)  # a disc of 1 cm^2


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("inbreast") / "raw"
    truth = generate_inbreast(root, n_images=4, seed=3, image_size=SIZE, pixel_mm=PIXEL)
    records = {record.name: record for record in inbreast.read_inbreast(root, point_radius_px=1)}
    return root, truth, records


def digest(root) -> str:
    return hashlib.sha256((root / "MANIFEST.sha256").read_bytes()).hexdigest()


def calcifications(truth: pd.DataFrame) -> pd.DataFrame:
    return truth[truth["structure"].isin(CALCIFICATIONS)]


def test_the_stand_in_reads_back_as_inbreast(stand_in):
    root, truth, records = stand_in
    assert sourcing.check_layout("INbreast", root) == {"images": 4, "annotations": 3, "calcification_images": 3}
    assert (root / inbreast.TABLE_FILE).read_text().endswith(";;;;;;;\n")  # the published file's empty tail
    assert {r.image.shape for r in records.values()} == {SIZE}
    assert {r.spacing_mm for r in records.values()} == {(PIXEL, PIXEL)}
    assert {r.acquisition for r in records.values()} == {DIGITAL, FILM}
    for record in records.values():
        assert record.max_value == (4095 if record.digitised else 16383)
        rows = calcifications(truth[truth["file_name"] == record.name])
        assert record.annotated == (len(rows) > 0) and set(truth.loc[truth["file_name"] == record.name,
                                                                     "acquisition"]) <= {record.acquisition}
        # every calcification is annotated where it is drawn (x read as the column, y as the row)
        assert record.mask[np.round(rows["centre_row"]).astype(int), np.round(rows["centre_col"]).astype(int)].all()
    assert set(calcifications(truth)["annotation"]) == {"point", "contour"}


def test_calcifications_are_bright_where_the_truth_puts_them(stand_in):
    _, truth, records = stand_in
    large = calcifications(truth)[calcifications(truth)["diameter_mm"] >= 0.5]
    assert len(large) >= 3
    for _, row in large.iterrows():
        image = records[row["file_name"]].image.astype(float)
        r, c = int(round(row["centre_row"])), int(round(row["centre_col"]))
        ring = np.concatenate([image[r - 6, c - 6:c + 7], image[r + 6, c - 6:c + 7], image[r - 5:r + 6, c - 6],
                               image[r - 5:r + 6, c + 6]])
        assert image[r, c] > np.median(ring)


def test_same_seed_same_bytes_whatever_the_workers_other_seed_other_bytes(stand_in, tmp_path):
    root, truth, _ = stand_in
    again = generate_inbreast(tmp_path / "again", n_images=4, seed=3, image_size=SIZE, pixel_mm=PIXEL, workers=2)
    assert digest(tmp_path / "again") == digest(root) and (tmp_path / "again" / TRUTH_FILE).is_file()
    pd.testing.assert_frame_equal(again, truth)
    generate_inbreast(tmp_path / "other", n_images=4, seed=4, image_size=SIZE, pixel_mm=PIXEL)
    assert digest(tmp_path / "other") != digest(root)


def test_calcifications_are_0_1_to_1_mm_and_drawn_that_size(stand_in):
    rows = calcifications(stand_in[1])
    assert rows["diameter_mm"].between(0.1, 1.0).all() and rows["diameter_mm"].min() < 0.2
    assert rows["diameter_mm"].max() > 0.6
    area_mm2 = rows["pixels"] * PIXEL ** 2
    assert (rows["pixels"] >= 1).all() and (area_mm2 <= np.pi * (rows["diameter_mm"] / 2 + PIXEL) ** 2).all()


def test_clusters_isolated_calcifications_and_the_skin_line(stand_in):
    truth = stand_in[1]
    dense_clusters = 0
    for name, image_rows in calcifications(truth).groupby("file_name"):
        where = image_rows[["centre_row", "centre_col"]].to_numpy() * PIXEL
        tree = cKDTree(where)
        neighbours = np.array([len(tree.query_ball_point(p, CM2_RADIUS_MM)) for p in where])
        clustered = (image_rows["structure"] == "cluster").to_numpy()
        dense_clusters += int((neighbours[clustered] > 5).any())  # more than 5 per cm^2, the paper's definition
        nearest = tree.query(where, k=2)[0][:, 1] if len(where) > 1 else np.array([np.inf])
        assert (nearest[~clustered] >= 9.9).all()  # isolated and near-skin ones stand alone
    assert dense_clusters >= 2
    skin = truth.loc[truth["structure"] == "near_skin", "skin_distance_mm"]
    assert len(skin) >= 2 and skin.between(0.0, 3.5).all()
    assert (calcifications(truth)["skin_distance_mm"] > 0).all()  # all inside the breast


def centre_line(row) -> tuple[np.ndarray, np.ndarray]:
    """A vessel's centre line (row, col) from the truth table, resampled 20 times finer, and its normals."""
    coarse = np.array([[float(v) for v in point.split()] for point in row["path_px"].split(";")])
    t = np.linspace(0, len(coarse) - 1, 20 * len(coarse))
    path = np.column_stack([np.interp(t, np.arange(len(coarse)), coarse[:, i]) for i in range(2)])
    tangent = np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return path, np.column_stack([-tangent[:, 1], tangent[:, 0]])


def test_vessels_are_unannotated_tram_tracks(stand_in):
    _, truth, records = stand_in
    vessels = truth[truth["structure"] == "vascular"]
    assert len(vessels) >= 2 and (vessels["annotation"] == "none").all()
    assert vessels["length_mm"].between(12, 30).all() and vessels["diameter_mm"].between(0.1, 0.25).all()
    for _, row in vessels.iterrows():
        record = records[row["file_name"]]
        path, normal = centre_line(row)
        half = row["separation_mm"] / 2 / PIXEL
        marked = np.argwhere(record.mask)
        if len(marked):  # no calcification label on a vessel
            assert cKDTree(path).query(marked)[0].min() > half + (row["diameter_mm"] + PIXEL) / PIXEL
        image = record.image.astype(float)
        along = lambda offset: ndi.map_coordinates(image, (path + offset * normal).T, order=1).mean()  # noqa: E731
        for side in (-1, 1):  # each wall a bright line: above the lumen's centre and the tissue outside it
            assert along(side * half) > (along(0.0) + along(side * (half + 3))) / 2


def test_digitised_films_are_noisier_than_digital_images(stand_in):
    noise = {DIGITAL: [], FILM: []}
    for record in stand_in[2].values():
        image = record.image.astype(float) / record.max_value
        background = image < 0.02
        steps = np.abs(np.diff(image, axis=1))[background[:, 1:] & background[:, :-1]]
        noise[record.acquisition].append(np.median(steps))
    assert min(noise[FILM]) > 2 * max(noise[DIGITAL])


def test_dense_and_fatty_breasts(stand_in):
    acr = [int(row["ACR"]) for row in inbreast.read_table(stand_in[0] / inbreast.TABLE_FILE)]
    assert min(acr) <= 2 and max(acr) >= 3


def test_bad_arguments_a_used_folder_and_a_missing_copy_are_refused(tmp_path, stand_in):
    with pytest.raises(ConfigError, match="n_images"):
        generate_inbreast(tmp_path / "a", n_images=0, seed=0)
    with pytest.raises(ConfigError, match="pixel_mm"):
        generate_inbreast(tmp_path / "b", n_images=1, seed=0, pixel_mm=1.0)
    with pytest.raises(ConfigError, match="image_size"):
        generate_inbreast(tmp_path / "c", n_images=1, seed=0, image_size=(50, 40), pixel_mm=0.1)
    with pytest.raises(ConfigError, match="film_fraction"):
        generate_inbreast(tmp_path / "d", n_images=1, seed=0, film_fraction=1.5)
    with pytest.raises(DataError, match="not an empty directory"):
        generate_inbreast(stand_in[0], n_images=1, seed=0)
    with pytest.raises(DataError, match="on request from the authors") as caught:
        datasets.check_layout(tmp_path / "nothing")
    assert caught.value.path.endswith(inbreast.TABLE_FILE)
