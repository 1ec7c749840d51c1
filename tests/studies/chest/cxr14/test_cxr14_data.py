"""ChestX-ray14: label table reader, image checks, published files and the synthetic stand-in."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medrepro.data import sourcing as obtain
from medrepro.studies.chest.cxr14 import synthetic as gen
from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.cxr14 import dataset as cxr14

HEADER_LINE = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
    "00000003_000.png,Hernia|Infiltration|Pleural_Thickening,0,3,74,F,AP,2500,2048,0.168,0.168",
    "00000002_000.png,No Finding,0,2,80,M,PA,2500,2048,0.171,0.171",
]
NAMES = [row.split(",")[0] for row in ROWS]
SEED = 5
N_IMAGES, SIZE, POOR = 12, 256, 0.25


def write_table(path, rows=ROWS, header=HEADER_LINE, ending=""):
    path.write_text("".join(f"{line}{ending}\n" for line in [header, *rows]))
    return path


def make_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # the checks look at names only
    return folder


# ---------------------------------------------------------------- label table


def test_reads_the_real_format_in_file_order(tmp_path):
    table = cxr14.read_label_table(write_table(tmp_path / cxr14.LABEL_TABLE))
    assert tuple(table.columns) == cxr14.HEADER and len(cxr14.HEADER) == 11
    assert list(table["Image Index"]) == NAMES
    assert table.loc[2, "Finding Labels"] == "Hernia|Infiltration|Pleural_Thickening"
    assert table["Patient ID"].tolist() == [1, 1, 3, 2]
    assert table.loc[0, "OriginalImage[Width"] == 2682 and table.loc[0, "Height]"] == 2749
    assert cxr14.findings(table.loc[1, "Finding Labels"]) == {"Cardiomegaly", "Emphysema"}
    assert cxr14.findings(cxr14.NO_FINDING) == frozenset()


def test_reads_gzip_and_the_2017_trailing_comma(tmp_path):
    text = tmp_path / "plain.csv"
    write_table(text, ending=",")
    packed = tmp_path / "Data_Entry_2017.csv.gz"
    packed.write_bytes(gzip.compress(text.read_bytes()))
    table = cxr14.read_label_table(packed)
    assert tuple(table.columns) == cxr14.HEADER and len(table) == len(ROWS)


@pytest.mark.parametrize(
    "rows, header, expected",
    [
        (ROWS, "Image Index,Labels,Patient ID", "missing columns Finding Labels"),
        (ROWS + [ROWS[0]], HEADER_LINE, "00000001_000.png"),
        ([ROWS[0].replace("00000001_000.png", "1_000.png")], HEADER_LINE, "'1_000.png'"),
        ([ROWS[0].replace("Cardiomegaly", "Cardiomegaly|Pleural Thickening")], HEADER_LINE, "'Pleural Thickening'"),
        ([ROWS[0].replace("Cardiomegaly", "")], HEADER_LINE, "empty Finding Labels"),
        ([ROWS[0].replace("Cardiomegaly", "No Finding|Mass")], HEADER_LINE, "combined with findings"),
    ],
    ids=["missing-columns", "duplicate", "bad-name", "unknown-label", "empty-label", "no-finding-mixed"],
)
def test_malformed_tables_name_the_file_and_the_problem(tmp_path, rows, header, expected):
    path = write_table(tmp_path / "broken_entry.csv", rows, header)
    with pytest.raises(DataError) as err:
        cxr14.read_label_table(path)
    assert "broken_entry.csv" in str(err.value) and expected in str(err.value)


def test_duplicates_are_listed_once_each(tmp_path):
    path = write_table(tmp_path / "dup.csv", ROWS + ROWS[:2] + ROWS[:1])
    with pytest.raises(DataError, match="2 image names occur more than once: 00000001_000.png, 00000001_001.png$"):
        cxr14.read_label_table(path)


def test_missing_table_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="label table not found"):
        cxr14.read_label_table(tmp_path / "nowhere.csv")


def test_has_finding_matches_whole_labels_only():
    labels = pd.Series(
        ["Cardiomegaly", "Effusion|Cardiomegaly|Mass", "Effusion", "Cardiomegaly_Mild|Mass", "No Finding"]
    )
    assert cxr14.has_finding(labels, "Cardiomegaly").tolist() == [True, True, False, False, False]
    assert cxr14.has_finding(labels, "Mass").tolist() == [False, True, False, True, False]
    assert cxr14.has_finding(labels, cxr14.NO_FINDING).tolist() == [False, False, False, False, True]
    with pytest.raises(ConfigError, match="Pleural Thickening"):
        cxr14.has_finding(labels, "Pleural Thickening")


# ---------------------------------------------------------------- images


def test_check_images_accepts_a_complete_folder(tmp_path):
    path = write_table(tmp_path / cxr14.LABEL_TABLE)
    images = make_images(tmp_path / "images", NAMES)
    (images / ".00000001_000.png.tmp.png").write_bytes(b"")  # an atomic writer's leftover is not an image
    assert cxr14.check_images(cxr14.read_label_table(path), images, path) == len(NAMES)


def test_missing_images_are_named_with_their_count(tmp_path):
    rows = [f"{i:08d}_000.png,No Finding,0,{i},40,F,PA,2500,2048,0.168,0.168" for i in range(1, 9)]
    path = write_table(tmp_path / cxr14.LABEL_TABLE, rows)
    images = make_images(tmp_path / "images", ["00000001_000.png"])
    with pytest.raises(DataError) as err:
        cxr14.check_images(cxr14.read_label_table(path), images, path)
    message = str(err.value)
    assert "7 of the 8 images" in message and str(path) in message
    assert "00000002_000.png" in message and "00000006_000.png" in message and "and 2 more" in message
    assert "00000007_000.png" not in message


def test_unknown_image_files_are_named(tmp_path):
    path = write_table(tmp_path / cxr14.LABEL_TABLE)
    images = make_images(tmp_path / "images", NAMES + ["00000009_000.png"])
    with pytest.raises(DataError) as err:
        cxr14.check_images(cxr14.read_label_table(path), images, path)
    assert "1 image files are not listed" in str(err.value) and "00000009_000.png" in str(err.value)
    assert str(path) in str(err.value)


def test_multichannel_images_give_channel_zero(tmp_path):
    red = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    rgb = np.stack([red, np.zeros_like(red), np.full_like(red, 255)], axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.concatenate([rgb, np.full_like(red, 255)[..., None]], axis=2)).save(tmp_path / "rgba.png")
    Image.fromarray(red).save(tmp_path / "grey.png")
    for name in ("rgb.png", "rgba.png", "grey.png"):
        image = cxr14.read_cxr14_image(tmp_path / name)
        assert image.dtype == np.float32 and image.shape == (64, 64)
        np.testing.assert_allclose(image, red / 255.0, atol=1e-6)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "00000001_000.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="00000001_000.png"):
        cxr14.read_cxr14_image(tmp_path / "00000001_000.png")
    with pytest.raises(DataError, match="file not found"):
        cxr14.read_cxr14_image(tmp_path / "00000002_000.png")


# ---------------------------------------------------------------- published files and real data


def test_the_published_table_loads():
    table = cxr14.read_label_table(cxr14.published_path(cxr14.PUBLISHED_TABLE))
    assert len(table) == 112_120 and tuple(table.columns) == cxr14.HEADER
    assert table["Patient ID"].nunique() == 30_805
    assert int(cxr14.has_finding(table["Finding Labels"], "Cardiomegaly").sum()) == 2_776
    assert int(cxr14.has_finding(table["Finding Labels"], cxr14.NO_FINDING).sum()) == 60_361


def test_published_files_are_the_recorded_ones():
    digests = {
        cxr14.PUBLISHED_TABLE: "9d4de640ee4f760215d8be98376b20387ca52f9c6b4d1b727cb588fb82f40b80",
        cxr14.PUBLISHED_RCA_DICE: "988a96041d4882d677e01107b8cff75b16e50c8f9992b16492cf123f256be177",
    }
    readme = cxr14.published_path("README.md").read_text()
    for name, digest in digests.items():
        assert obtain.sha256_file(cxr14.published_path(name)) == digest
        assert name in readme and digest in readme


def test_missing_published_file_is_a_data_error():
    with pytest.raises(DataError, match="resources/published"):
        cxr14.published_path("no-such-table.csv")


def test_layout_check_says_what_to_download(tmp_path):
    with pytest.raises(DataError) as err:
        cxr14.check_layout(tmp_path)
    assert cxr14.BOX_URL in str(err.value) and "images_012.tar.gz" in str(err.value)
    assert cxr14.ARCHIVE_MD5["images_007.tar.gz"] in str(err.value)
    write_table(tmp_path / cxr14.LABEL_TABLE)
    with pytest.raises(DataError, match="no ChestX-ray14 images"):
        cxr14.check_layout(tmp_path)
    make_images(tmp_path / "images", NAMES[:3])
    with pytest.raises(DataError, match=r"1 of the 4 images .* are missing: 00000002_000.png\. Download"):
        cxr14.check_layout(tmp_path)
    make_images(tmp_path / "images", NAMES[3:])
    assert cxr14.check_layout(tmp_path) == {"images": 4, "patients": 3, "no_finding": 1}


def test_archive_md5(tmp_path, monkeypatch):
    archive = tmp_path / "images_001.tar.gz"
    archive.write_bytes(b"twelve archives of radiographs")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(cxr14.ARCHIVE_MD5, "images_001.tar.gz", digest)
    assert cxr14.verify_archive_md5(archive) == digest
    monkeypatch.setitem(cxr14.ARCHIVE_MD5, "images_001.tar.gz", "0" * 32)
    with pytest.raises(DataError) as err:
        cxr14.verify_archive_md5(archive)
    assert str(archive) in str(err.value) and "0" * 32 in str(err.value) and digest in str(err.value)
    stray = tmp_path / "images_013.tar.gz"
    stray.write_bytes(b"")
    with pytest.raises(DataError, match="not a ChestX-ray14 image archive"):
        cxr14.verify_archive_md5(stray)


def test_published_md5s_are_complete():
    assert list(cxr14.ARCHIVE_MD5) == [f"images_{i:03d}.tar.gz" for i in range(1, 13)]
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in cxr14.ARCHIVE_MD5.values())


# ---------------------------------------------------------------- synthetic stand-in


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr14") / "raw"
    return root, gen.generate_cxr14(root, N_IMAGES, SEED, poor_fraction=POOR, image_size=SIZE)


def test_synthetic_layout(generated):
    root, truth = generated
    names = sorted(p.name for p in (root / cxr14.IMAGES_DIR).iterdir())
    assert names == list(truth["image_index"]) and len(names) == N_IMAGES
    assert all(pd.Series(names).str.fullmatch(cxr14.IMAGE_NAME_PATTERN))
    for name in names[:3]:
        with Image.open(root / cxr14.IMAGES_DIR / name) as img:
            assert img.format == "PNG" and img.mode == "L" and img.size == (SIZE, SIZE)
    for extra in (cxr14.LABEL_TABLE, gen.TRUTH_FILE, obtain.MANIFEST_FILE):
        assert (root / extra).is_file()
    assert obtain.verify_manifest(root, root / obtain.MANIFEST_FILE) == N_IMAGES + 2


def test_synthetic_table_is_in_the_real_format(generated):
    root, _ = generated
    raw = (root / cxr14.LABEL_TABLE).read_bytes()
    assert raw.startswith(HEADER_LINE.encode() + b"\n") and b"\r" not in raw and raw.endswith(b"\n")
    assert all(line.count(",") == 10 for line in raw.decode().splitlines())
    table = cxr14.read_label_table(root / cxr14.LABEL_TABLE)
    assert cxr14.check_images(table, root / cxr14.IMAGES_DIR, root / cxr14.LABEL_TABLE) == N_IMAGES
    assert cxr14.check_layout(root)["images"] == N_IMAGES
    assert set(table["Patient Gender"]) <= {"M", "F"} and set(table["View Position"]) <= {"PA", "AP"}
    assert table["Patient Age"].between(0, 95).all()
    for patient, rows in table.groupby("Patient ID"):
        assert rows["Follow-up #"].tolist() == list(range(len(rows)))
        assert all(name.startswith(f"{patient:08d}_") for name in rows["Image Index"])
        assert rows["Patient Age"].is_monotonic_increasing and rows["Patient Gender"].nunique() == 1


def test_cardiomegaly_label_follows_the_phantom(generated):
    root, truth = generated
    table = cxr14.read_label_table(root / cxr14.LABEL_TABLE)
    merged = table.merge(truth, left_on="Image Index", right_on="image_index", validate="one_to_one")
    labelled = cxr14.has_finding(merged["Finding Labels"], "Cardiomegaly")
    assert (labelled == (merged["ctr"] > 0.5)).all() and (labelled == merged["cardiomegaly"]).all()
    assert (merged["Finding Labels"] == merged["finding_labels"]).all()
    assert merged.groupby("Patient ID")["ctr"].nunique().eq(1).all()  # one heart per patient


def test_poor_fraction_and_degradations(generated):
    _, truth = generated
    poor = truth[truth["quality"] == gen.POOR]
    assert len(poor) == round(N_IMAGES * POOR)
    assert poor["degradation"].is_unique and set(poor["degradation"]) <= set(gen.DEGRADATIONS)
    assert (truth.loc[truth["quality"] == gen.GOOD, "degradation"] == gen.NO_DEGRADATION).all()
    good = truth[truth["quality"] == gen.GOOD]
    assert good["rotation_deg"].abs().max() <= 5 and (good["lung_visible_fraction"] > 0.97).all()


def test_every_degradation_kind(tmp_path):
    truth = gen.generate_cxr14(tmp_path / "raw", 5, SEED, poor_fraction=1.0, image_size=128).set_index("degradation")
    assert sorted(truth.index) == sorted(gen.DEGRADATIONS)
    assert 20 <= abs(truth.loc["rotated", "rotation_deg"]) <= 35
    assert truth.loc["cropped", "lung_visible_fraction"] < 0.9 and truth.loc["cropped", "scale"] > 1.3


def test_photometric_degradations_change_the_image():
    patient = gen.Patient.sample(1, SEED, SIZE)
    image = gen.render_image(patient.subject)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    np.testing.assert_allclose(gen.degrade_image(image, "inverted", rng()), 1 - image, atol=1e-6)
    noisy = gen.degrade_image(image, "low_dose", rng())
    assert np.diff(noisy, axis=1).std() > 5 * np.diff(image, axis=1).std()
    collimated = gen.degrade_image(image, "collimated", rng())
    assert collimated[:8, :8].mean() > 0.8 and collimated[-8:, -8:].mean() > 0.8
    assert np.array_equal(collimated[SIZE // 2, SIZE // 2], image[SIZE // 2, SIZE // 2])


def test_synthetic_is_deterministic(generated, tmp_path):
    root, truth = generated
    again = gen.generate_cxr14(tmp_path / "again", N_IMAGES, SEED, poor_fraction=POOR, image_size=SIZE)
    pd.testing.assert_frame_equal(truth, again)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "again" / path.relative_to(root)).read_bytes(), path
    other = gen.generate_cxr14(tmp_path / "other", 2, SEED + 1, poor_fraction=POOR, image_size=SIZE)
    first = other.loc[0, "image_index"]
    assert first == "00000001_000.png"
    assert (tmp_path / "other" / "images" / first).read_bytes() != (root / "images" / first).read_bytes()


def test_generator_replaces_its_own_output_but_not_real_data(tmp_path):
    real = tmp_path / "real"
    make_images(real / "images", ["00000001_000.png"])
    with pytest.raises(DataError, match="refusing to replace"):
        gen.generate_cxr14(real, 2, SEED, image_size=64)
    assert (real / "images" / "00000001_000.png").is_file()
    synthetic = tmp_path / "synthetic"
    gen.generate_cxr14(synthetic, 3, SEED, image_size=64)
    gen.generate_cxr14(synthetic, 2, SEED, image_size=64)
    assert len(list((synthetic / "images").iterdir())) == 2


@pytest.mark.parametrize(
    "kwargs", [{"n_images": 0}, {"poor_fraction": 1.5}, {"image_size": 32}, {"image_size": 100.5}]
)
def test_generator_settings_are_checked(tmp_path, kwargs):
    settings = {"n_images": 2, "seed": SEED, "poor_fraction": 0.2, "image_size": 64, **kwargs}
    with pytest.raises(ConfigError):
        gen.generate_cxr14(tmp_path / "raw", **settings)
    assert not (tmp_path / "raw").exists()
