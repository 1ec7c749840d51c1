"""Synthetic stand-ins: native layout, determinism, truth consistency, read-back through the converters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.studies.chest import synthetic as sc
from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.readers import convert as chest, jsrt
from medrepro.studies.chest.synthetic_figure import plot_synthetic_examples

SEED = 11
SMALL = {"JSRT": (3, None), "Montgomery": (3, (245, 201)), "Shenzhen": (7, (200, 200))}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Each dataset generated once (JSRT files are 8 MB, so only 3 subjects)."""
    root = tmp_path_factory.mktemp("raw")
    truth = {}
    for dataset, (n, size) in SMALL.items():
        truth[dataset] = sc.generate_dataset(dataset, root / dataset, n, SEED, image_size=size)
    return root, truth


@pytest.fixture(scope="module")
def converted(raw):
    root, _ = raw
    return {d: {s.name: s for s in chest.convert_dataset(d, root / d, None)} for d in chest.CHEST_DATASETS}


def test_names_follow_the_real_naming_and_proportions():
    jsrt_names = sc.subject_names("JSRT", 247)
    assert sum(a for _, a in jsrt_names) == 154 and jsrt_names[0] == ("JPCLN001", True)
    assert ("JPCNN093", False) in jsrt_names
    mont = sc.subject_names("Montgomery", 138)
    assert sum(a for _, a in mont) == 58 and mont[0][0] == "MCUCXR_0001_0" and mont[-1][0].endswith("_1")
    shen = sc.subject_names("Shenzhen", 662)
    assert sum(a for _, a in shen) == 336 and shen[-1][0] == "CHNCXR_0662_1"


def test_native_layout(raw):
    root, truth = raw
    j = root / "JSRT"
    names = list(truth["JSRT"]["name"])
    assert names == ["JPCLN001", "JPCLN002", "JPCNN001"]
    for name in names:
        assert (j / "images" / f"{name}.IMG").stat().st_size == 8_388_608
        for organ in ("right lung", "left lung", "heart"):
            gif = jsrt.scr_mask_path(j / "scr", name, organ)
            with Image.open(gif) as img:
                assert img.format == "GIF" and img.size == (1024, 1024)
    assert (j / "images" / "CLNDAT_EN.txt").is_file() and (j / "images" / "CNNDAT_EN.TXT").is_file()
    m = root / "Montgomery" / "MontgomerySet"
    for name in truth["Montgomery"]["name"]:
        for sub in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask"):
            with Image.open(m / sub / f"{name}.png") as img:
                assert img.size == (201, 245) and img.mode == "L"
        assert (m / "ClinicalReadings" / f"{name}.txt").read_text().startswith("Patient's Sex: ")
    s = root / "Shenzhen"
    shen = truth["Shenzhen"]
    for row in shen.itertuples():
        with Image.open(s / "ChinaSet_AllFiles" / "CXR_png" / f"{row.name}.png") as img:
            assert img.mode == row.png_mode and img.size == (row.width, row.height)
        assert (s / "shcxr-lung-mask" / "mask" / f"{row.name}_mask.png").is_file() == row.has_mask
    assert 0 < shen["has_mask"].sum() < len(shen)  # part of the set lacks masks, like the real release
    assert ((shen["height"] - 200).abs() <= 16).all() and shen["height"].nunique() > 1
    for dataset in SMALL:
        assert (root / dataset / sc.TRUTH_FILE).is_file() and (root / dataset / sc.MANIFEST_FILE).is_file()


def test_generation_is_deterministic(raw, tmp_path):
    root, truth = raw
    for dataset in ("Montgomery", "Shenzhen"):
        n, size = SMALL[dataset]
        again = sc.generate_dataset(dataset, tmp_path / dataset, n, SEED, image_size=size)
        assert (tmp_path / dataset / sc.MANIFEST_FILE).read_text() == (root / dataset / sc.MANIFEST_FILE).read_text()
        pd.testing.assert_frame_equal(again, truth[dataset])
    other = sc.generate_dataset("Montgomery", tmp_path / "other", 3, SEED + 1, image_size=SMALL["Montgomery"][1])
    assert not other["ctr"].equals(truth["Montgomery"]["ctr"])


def test_jsrt_subject_is_the_same_whatever_the_cohort_size(raw):
    root, _ = raw
    subject = sc.sample_subject("JSRT", "JPCLN001", True, SEED)
    raw_values = np.rint((1.0 - (0.05 + 0.9 * sc.render_image(subject))) * 4095).astype(np.uint16)
    np.testing.assert_array_equal(raw_values, jsrt.read_jsrt_image(root / "JSRT" / "images" / "JPCLN001.IMG"))


def test_converters_read_everything_the_generator_writes(raw, converted):
    _, truth = raw
    for dataset, table in truth.items():
        subjects = converted[dataset]
        assert set(subjects) == set(table.loc[table["has_mask"], "name"])
        for row in table[table["has_mask"]].itertuples():
            s = subjects[row.name]
            expected_labels = {0, 1, 2, 3} if dataset == "JSRT" else {0, 1, 2}
            assert set(np.unique(s.labels)) == expected_labels
            assert 0.0 <= s.image.min() and s.image.max() <= 1.0 and s.image.std() > 0.05
            assert s.meta["sex"] == row.sex and s.meta["age"] == row.age
            flag = "nodule" if dataset == "JSRT" else "tb"
            assert int(s.meta[flag]) == getattr(row, flag)
            # patient's right lung (label 1) lies on the image's left
            assert np.nonzero(s.labels == 1)[1].mean() < np.nonzero(s.labels == 2)[1].mean()
            if dataset != "JSRT":
                assert s.image.shape == (row.height, row.width)


def test_jsrt_truth_matches_the_masks(raw, converted):
    _, truth = raw
    for row in truth["JSRT"].itertuples():
        labels = converted["JSRT"][row.name].labels
        heart_cols = np.nonzero(labels == 3)[1]
        lung_cols = np.nonzero((labels == 1) | (labels == 2))[1]
        measured = (heart_cols.max() - heart_cols.min() + 1) / (lung_cols.max() - lung_cols.min() + 1)
        assert measured == pytest.approx(row.ctr, abs=0.03)  # pose rotation changes widths slightly
        if row.nodule:  # the nodule centre (2048 grid) lies in a lung on the 1024 masks
            assert labels[int(row.nodule_y) // 2, int(row.nodule_x) // 2] in (1, 2)
            meta = converted["JSRT"][row.name].meta
            assert (meta["nodule_x"], meta["nodule_y"]) == (row.nodule_x, row.nodule_y)


def test_cardiomegaly_fraction_over_a_larger_sample():
    names = sc.subject_names("JSRT", 300)
    ctr = np.array([sc.sample_subject("JSRT", n, a, 3).ctr for n, a in names])
    assert 0.09 <= (ctr > 0.5).mean() <= 0.22
    assert 0.40 <= ctr.mean() <= 0.48


def test_pose_varies_within_the_documented_ranges():
    poses = [sc.sample_subject("Montgomery", f"MCUCXR_{i:04d}_0", False, 0).placement.pose for i in range(1, 80)]
    rotation = np.array([p.rotation_deg for p in poses])
    scale = np.array([p.scale for p in poses])
    assert np.abs(rotation).max() <= 5 and rotation.std() > 1
    assert scale.min() >= 0.92 and scale.max() <= 1.08 and scale.std() > 0.03


def test_jsrt_size_is_fixed_and_bad_arguments():
    with pytest.raises(ConfigError, match="2048"):
        sc.generate_dataset("JSRT", "/nonexistent", 1, 0, image_size=(512, 512))
    with pytest.raises(ConfigError, match="unknown chest dataset"):
        sc.generate_dataset("NIH", "/nonexistent", 1, 0)
    with pytest.raises(ConfigError, match="at least 1"):
        sc.generate_dataset("Montgomery", "/nonexistent", 0, 0)


def test_catmull_rom_passes_through_its_control_points():
    points = np.array([[0.0, 0.0], [1.0, 0.2], [1.5, 1.0], [0.3, 1.2]])
    closed = sc.closed_curve(points, per_segment=5)
    np.testing.assert_allclose(closed[::5], points)
    opened = sc.open_curve(points, per_segment=5)
    np.testing.assert_allclose(opened[::5], points)


def test_synthetic_figure(raw, tmp_path):
    root, _ = raw
    out = plot_synthetic_examples({d: root / d for d in SMALL}, tmp_path / "fig" / "synthetic.png", n_per_dataset=2)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 400
    assert not [p for p in (tmp_path / "fig").iterdir() if p.name.startswith(".")]


def test_generator_refuses_to_replace_a_directory_it_did_not_write(tmp_path):
    real = tmp_path / "JSRT"
    (real / "images").mkdir(parents=True)
    (real / "images" / "JPCLN001.IMG").write_bytes(b"precious")
    with pytest.raises(DataError, match="refusing to replace"):
        sc.generate_dataset("Montgomery", real, 1, 0, image_size=(64, 64))
    assert (real / "images" / "JPCLN001.IMG").read_bytes() == b"precious"
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(DataError, match="is a link"):
        sc.generate_dataset("Montgomery", link, 1, 0, image_size=(64, 64))
