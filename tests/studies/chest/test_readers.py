"""Native readers and converters of JSRT (+SCR), Montgomery and Shenzhen.

Fixtures are written with independent code (numpy ``tofile('>u2')`` and PIL)
wherever the readers' own writers could hide a symmetric mistake.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medrepro.errors import ConfigError, DataError
from medrepro.data.io import png
from medrepro.studies.chest.readers import convert as chest, jsrt, montgomery, shenzhen

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- helpers


def write_img_independently(path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    values.astype(">u2").tofile(path)


def write_gif(path, mask: np.ndarray, values=(0, 255)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, values[1], values[0]).astype(np.uint8)).save(path, format="GIF")


def write_png(path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode == "RGB":
        img = Image.fromarray(np.repeat(array[..., None], 3, axis=2))
    elif mode == "P":
        img = img.convert("P")
    img.save(path, format="PNG")


def box(shape, rows, cols) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def centroid_col(labels: np.ndarray, value: int) -> float:
    return float(np.nonzero(labels == value)[1].mean())


# ---------------------------------------------------------------- PNG / GIF helpers


@pytest.mark.parametrize("mode", ["L", "P", "RGB"])
def test_read_grey_8bit_modes_agree(tmp_path, mode):
    grey = RNG.integers(0, 256, (20, 30)).astype(np.uint8)
    path = tmp_path / f"x_{mode}.png"
    if mode == "P":  # explicit grey palette, index = level
        img = Image.frombytes("P", (30, 20), grey.tobytes())
        img.putpalette([v for level in range(256) for v in (level, level, level)])
        img.save(path)
    else:
        write_png(path, grey, mode)
    assert Image.open(path).mode == mode
    np.testing.assert_array_equal(png.read_grey(path), grey)


def test_read_grey_16bit_and_normalisation(tmp_path):
    twelve = RNG.integers(0, 4096, (16, 16)).astype(np.uint16)
    twelve[0, 0] = 4095
    write_png(tmp_path / "a.png", twelve)
    read = png.read_grey(tmp_path / "a.png")
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, twelve)
    np.testing.assert_allclose(png.normalise_grey(read), twelve / 4095.0, rtol=1e-6)
    full = twelve.astype(np.uint32) * 16
    full[0, 0] = 65535
    np.testing.assert_allclose(png.normalise_grey(full.astype(np.uint16)), full / 65535.0, rtol=1e-6)
    eight = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_allclose(png.normalise_grey(eight), [[0.0, 1.0]])


def test_rgb_with_different_channels_is_rejected(tmp_path):
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour image") as err:
        png.read_grey(tmp_path / "colour.png")
    assert "colour.png" in str(err.value)


def test_rgb_with_tiny_channel_differences_is_averaged(tmp_path):
    rgb = np.full((4, 4, 3), 100, dtype=np.uint8)
    rgb[..., 2] = 103
    Image.fromarray(rgb).save(tmp_path / "nearly.png")
    np.testing.assert_array_equal(png.read_grey(tmp_path / "nearly.png"), np.full((4, 4), 101))


def test_unreadable_png_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="cannot read PNG") as err:
        png.read_grey(bad)
    assert str(bad) in str(err.value)


def test_mask_values_other_than_binary_are_named(tmp_path):
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4], mask[5, 5] = 255, 128
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"unexpected values \[128\]"):
        png.read_binary_mask(tmp_path / "m.png")
    zero_one = (mask == 255).astype(np.uint8)
    Image.fromarray(zero_one).save(tmp_path / "z.png")
    np.testing.assert_array_equal(png.read_binary_mask(tmp_path / "z.png"), zero_one > 0)


def test_writers_round_trip(tmp_path):
    grey = RNG.integers(0, 256, (12, 9)).astype(np.uint8)
    for mode in ("L", "P", "RGB"):
        png.write_grey_png(tmp_path / f"{mode}.png", grey, mode=mode)
        assert Image.open(tmp_path / f"{mode}.png").mode == mode
        np.testing.assert_array_equal(png.read_grey(tmp_path / f"{mode}.png"), grey)
    mask = grey > 128
    png.write_mask_gif(tmp_path / "m.gif", mask)
    png.write_mask_png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(png.read_binary_mask(tmp_path / "m.gif"), mask)
    np.testing.assert_array_equal(png.read_binary_mask(tmp_path / "m.png"), mask)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


# ---------------------------------------------------------------- JSRT raw images


@pytest.fixture(scope="module")
def raw12() -> np.ndarray:
    values = RNG.integers(0, 4096, jsrt.JSRT_SHAPE).astype(np.uint16)
    values[0, 0], values[0, 1] = 0, 4095
    return values


def test_read_jsrt_matches_independent_big_endian_file(tmp_path, raw12):
    path = tmp_path / "JPCLN001.IMG"
    write_img_independently(path, raw12)
    assert path.stat().st_size == 8_388_608
    np.testing.assert_array_equal(jsrt.read_jsrt_image(path), raw12)


def test_write_jsrt_is_byte_identical_to_big_endian_uint16(tmp_path, raw12):
    ours, theirs = tmp_path / "a.IMG", tmp_path / "b.IMG"
    jsrt.write_jsrt_image(ours, raw12)
    write_img_independently(theirs, raw12)
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("n_bytes", [1000, 8_388_606, 8_388_610, 1024 * 1024 * 2])
def test_truncated_or_wrong_size_jsrt_is_rejected(tmp_path, n_bytes):
    path = tmp_path / "JPCNN002.IMG"
    path.write_bytes(b"\x00" * n_bytes)
    with pytest.raises(DataError) as err:
        jsrt.read_jsrt_image(path)
    assert f"expected 8388608 bytes (2048x2048 big-endian uint16), got {n_bytes}" in str(err.value)
    assert str(path) in str(err.value)


def test_jsrt_values_above_12_bits_are_rejected(tmp_path, raw12):
    over = raw12.copy()
    over[100, 200] = 4096
    path = tmp_path / "JPCLN003.IMG"
    write_img_independently(path, over)
    with pytest.raises(DataError, match="exceed the 12-bit maximum 4095") as err:
        jsrt.read_jsrt_image(path)
    assert "JPCLN003.IMG" in str(err.value)


def test_little_endian_jsrt_is_caught_by_the_range_check(tmp_path, raw12):
    path = tmp_path / "JPCLN004.IMG"
    raw12.astype("<u2").tofile(path)
    with pytest.raises(DataError, match="wrong byte order"):
        jsrt.read_jsrt_image(path)


def test_write_jsrt_rejects_bad_arrays_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match="12-bit"):
        jsrt.write_jsrt_image(tmp_path / "x.IMG", np.full(jsrt.JSRT_SHAPE, 5000, dtype=np.uint16))
    with pytest.raises(DataError, match="2048"):
        jsrt.write_jsrt_image(tmp_path / "x.IMG", np.zeros((10, 10), dtype=np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_raw_to_display_block_mean_and_inversion():
    raw = np.zeros((4, 4), dtype=np.uint16)
    raw[:2, :2] = [[0, 4095], [0, 4095]]  # mean 2047.5 -> 0.5
    raw[:2, 2:] = 4095  # fully dark -> 0
    raw[2:, :2] = 0  # no attenuation signal -> 1
    raw[2:, 2:] = [[1000, 2000], [3000, 4000]]
    expected = 1 - np.array([[2047.5, 4095], [0, 2500]]) / 4095
    np.testing.assert_allclose(jsrt.raw_to_display(raw), expected, rtol=1e-6)


def test_scr_fold_is_odd_even():
    assert jsrt.scr_fold("JPCLN001") == "fold1"
    assert jsrt.scr_fold("JPCNN002") == "fold2"
    expected = "/r/scratch/fold1/masks/left lung/JPCLN153.gif"
    assert jsrt.scr_mask_path("/r", "JPCLN153", "left lung").as_posix() == expected


# ---------------------------------------------------------------- JSRT conversion


def make_jsrt_tree(root, names=("JPCLN001", "JPCNN002"), with_tables=True):
    """Raw images + SCR masks written with numpy/PIL, with known geometry."""
    images, scr = root / "images", root / "scr"
    shape = jsrt.SCR_SHAPE
    right = box(shape, (200, 800), (100, 450))  # patient's right lung = image left
    left = box(shape, (200, 800), (580, 920))
    heart = box(shape, (550, 850), (380, 700))  # overlaps both lungs' medial borders
    for k, name in enumerate(names):
        raw = np.full(jsrt.JSRT_SHAPE, 3000 + k, dtype=np.uint16)
        raw[:1024, :] = 1000  # upper half denser (lower raw value)
        write_img_independently(images / f"{name}.IMG", raw)
        fold = "fold1" if int(name[-3:]) % 2 else "fold2"
        for organ, mask in (("right lung", right), ("left lung", left), ("heart", heart),
                            ("left clavicle", box(shape, (50, 90), (600, 900)))):
            write_gif(scr / "scratch" / fold / "masks" / organ / f"{name}.gif", mask)
    if with_tables:
        (images / "CLNDAT_EN.txt").write_text(
            "JPCLN001.IMG\t3\t15\t53\tmale\t1634\t692\tmalignant\tl.upper lobe\tlung cancer\t\textra\n"
        )
        (images / "CNNDAT_EN.TXT").write_text("JPCNN002.IMG\t47\tfemale\n\n")
    return images, scr, {"right": right, "left": left, "heart": heart}


def test_convert_jsrt_labels_spacing_and_image(tmp_path):
    images, scr, masks = make_jsrt_tree(tmp_path)
    subjects = jsrt.convert_jsrt(images, scr)
    assert [s.name for s in subjects] == ["JPCLN001", "JPCNN002"]
    s = subjects[0]
    assert s.image.shape == s.labels.shape == (1024, 1024)
    assert s.image.dtype == np.float32 and s.labels.dtype == np.uint8
    assert s.spacing == (0.35, 0.35)
    np.testing.assert_allclose(s.image[:512], 1 - 1000 / 4095, rtol=1e-6)  # inverted: dense is bright
    np.testing.assert_allclose(s.image[512:], 1 - 3000 / 4095, rtol=1e-6)
    expected = np.zeros((1024, 1024), dtype=np.uint8)
    expected[masks["right"]], expected[masks["left"]], expected[masks["heart"]] = 1, 2, 3
    np.testing.assert_array_equal(s.labels, expected)
    assert centroid_col(s.labels, 1) < centroid_col(s.labels, 2)  # right lung on the image's left
    assert set(np.unique(s.labels)) == {0, 1, 2, 3}  # clavicles ignored


def test_convert_jsrt_clinical_tables_are_lenient(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path)
    nodule, normal = jsrt.convert_jsrt(images, scr)
    assert nodule.meta["nodule"] is True and normal.meta["nodule"] is False
    assert nodule.meta["sex"] == "M" and nodule.meta["age"] == 53
    assert (nodule.meta["nodule_x"], nodule.meta["nodule_y"], nodule.meta["nodule_size_mm"]) == (1634, 692, 15)
    assert nodule.meta["location"] == "l.upper lobe" and nodule.meta["diagnosis"] == "lung cancer extra"
    assert normal.meta["sex"] == "F" and normal.meta["age"] == 47 and normal.meta["diagnosis"] is None


def test_convert_jsrt_without_tables_and_by_name(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, with_tables=False)
    (subject,) = jsrt.convert_jsrt(images, scr, names=["JPCNN002.IMG"])
    assert subject.name == "JPCNN002" and subject.meta == {"nodule": False}
    with pytest.raises(DataError, match="JPCLN099"):
        jsrt.convert_jsrt(images, scr, names=["JPCLN099"])


def test_jsrt_mask_in_the_other_fold_is_found(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, names=("JPCLN001",))
    fold1, fold2 = scr / "scratch" / "fold1", scr / "scratch" / "fold2"
    fold1.rename(fold2)
    assert jsrt.convert_jsrt(images, scr)[0].labels.max() == 3


def test_missing_scr_mask_names_the_expected_file(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, names=("JPCLN001",))
    (scr / "scratch" / "fold1" / "masks" / "heart" / "JPCLN001.gif").unlink()
    with pytest.raises(DataError, match="heart mask for JPCLN001 not found") as err:
        jsrt.convert_jsrt(images, scr)
    assert "fold1/masks/heart/JPCLN001.gif" in str(err.value)


def test_scr_mask_of_wrong_size_names_both_sizes(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, names=("JPCLN001",))
    path = scr / "scratch" / "fold1" / "masks" / "left lung" / "JPCLN001.gif"
    write_gif(path, np.zeros((512, 500), dtype=bool))
    with pytest.raises(DataError, match=r"mask is 500 x 512 \(w x h\), image is 1024 x 1024") as err:
        jsrt.convert_jsrt(images, scr)
    assert "JPCLN001.gif" in str(err.value)


def test_scr_mask_with_unexpected_values(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, names=("JPCLN001",))
    path = scr / "scratch" / "fold1" / "masks" / "heart" / "JPCLN001.gif"
    mask = np.zeros(jsrt.SCR_SHAPE, dtype=np.uint8)
    mask[10:20, 10:20], mask[30:40, 30:40] = 255, 7
    path.unlink()
    Image.fromarray(mask).save(path, format="GIF")
    with pytest.raises(DataError, match=r"unexpected values \[7\]") as err:
        jsrt.convert_jsrt(images, scr)
    assert "heart/JPCLN001.gif" in str(err.value)


def test_unreadable_gif_names_the_file(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, names=("JPCLN001",))
    path = scr / "scratch" / "fold1" / "masks" / "right lung" / "JPCLN001.gif"
    path.write_bytes(b"GIF89a" + b"\x00" * 20)
    with pytest.raises(DataError, match="cannot read GIF") as err:
        jsrt.convert_jsrt(images, scr)
    assert str(path) in str(err.value)


def test_missing_jsrt_dataset(tmp_path):
    with pytest.raises(DataError, match=r"no JSRT images \(\*.IMG\) found"):
        jsrt.convert_jsrt(tmp_path / "nowhere", tmp_path / "scr")


# ---------------------------------------------------------------- Montgomery


def make_montgomery_tree(root, bit_depth=8, shape=(60, 50)):
    base = root / "MontgomerySet"
    image = RNG.integers(0, 256 if bit_depth == 8 else 4096, shape).astype(np.uint8 if bit_depth == 8 else np.uint16)
    image_left = box(shape, (10, 50), (3, 20))
    image_right = box(shape, (10, 50), (28, 46))
    for name in ("MCUCXR_0001_0", "MCUCXR_0104_1"):
        write_png(base / "CXR_png" / f"{name}.png", image)
        write_png(base / "ManualMask" / "leftMask" / f"{name}.png", image_left.astype(np.uint8) * 255)
        write_png(base / "ManualMask" / "rightMask" / f"{name}.png", image_right.astype(np.uint8) * 255)
    (base / "ClinicalReadings").mkdir(parents=True)
    (base / "ClinicalReadings" / "MCUCXR_0001_0.txt").write_text("Patient's Sex: F\nPatient's Age: 027Y\nnormal\n")
    (base / "ClinicalReadings" / "MCUCXR_0104_1.txt").write_text(
        "Patient's Sex: M\r\nPatient's Age: 045Y\r\nright upper lobe cavity\r\n"
    )
    return image, image_left, image_right


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_convert_montgomery(tmp_path, bit_depth):
    image, image_left, image_right = make_montgomery_tree(tmp_path, bit_depth)
    normal, tb = montgomery.convert_montgomery(tmp_path, spacing_mm=0.0875)
    assert normal.spacing == (0.0875, 0.0875)
    np.testing.assert_allclose(normal.image, image / (255.0 if bit_depth == 8 else 4095.0), rtol=1e-6)
    assert normal.image.dtype == np.float32
    # leftMask = image-left lung = patient's right = label 1
    np.testing.assert_array_equal(normal.labels == 1, image_left)
    np.testing.assert_array_equal(normal.labels == 2, image_right)
    assert normal.meta == {"tb": 0, "sex": "F", "age": 27.0, "findings": "normal"}
    assert tb.meta == {"tb": 1, "sex": "M", "age": 45.0, "findings": "right upper lobe cavity"}


def test_montgomery_unknown_spacing_and_root_variants(tmp_path):
    make_montgomery_tree(tmp_path)
    subjects = montgomery.convert_montgomery(tmp_path / "MontgomerySet", spacing_mm=None)
    assert [s.spacing for s in subjects] == [None, None]


def test_montgomery_mask_size_mismatch_names_both_sizes(tmp_path):
    make_montgomery_tree(tmp_path)
    bad = tmp_path / "MontgomerySet" / "ManualMask" / "rightMask" / "MCUCXR_0001_0.png"
    write_png(bad, np.zeros((61, 50), dtype=np.uint8))
    with pytest.raises(DataError, match=r"mask is 50 x 61 \(w x h\), image is 50 x 60 \(w x h\)") as err:
        montgomery.convert_montgomery(tmp_path, 0.0875)
    assert str(bad) in str(err.value)


def test_montgomery_mask_with_unexpected_labels(tmp_path):
    make_montgomery_tree(tmp_path)
    bad = tmp_path / "MontgomerySet" / "ManualMask" / "leftMask" / "MCUCXR_0104_1.png"
    values = np.zeros((60, 50), dtype=np.uint8)
    values[:5], values[5:10] = 255, 2
    write_png(bad, values)
    with pytest.raises(DataError, match=r"unexpected values \[2\]") as err:
        montgomery.convert_montgomery(tmp_path, 0.0875)
    assert "MCUCXR_0104_1.png" in str(err.value)


def test_montgomery_unreadable_png_and_missing_mask(tmp_path):
    make_montgomery_tree(tmp_path)
    image = tmp_path / "MontgomerySet" / "CXR_png" / "MCUCXR_0001_0.png"
    image.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="cannot read PNG") as err:
        montgomery.convert_montgomery(tmp_path, 0.0875)
    assert str(image) in str(err.value)
    (tmp_path / "MontgomerySet" / "ManualMask" / "rightMask" / "MCUCXR_0104_1.png").unlink()
    with pytest.raises(DataError, match="rightMask mask for MCUCXR_0104_1 not found"):
        montgomery.convert_montgomery(tmp_path, 0.0875, names=["MCUCXR_0104_1"])


def test_missing_montgomery_dataset(tmp_path):
    with pytest.raises(DataError, match="no Montgomery images"):
        montgomery.convert_montgomery(tmp_path, 0.0875)


@pytest.mark.parametrize(
    "text, sex, age",
    [
        ("male 35yrs", "M", 35), ("Female 27yr", "F", 27), ("femal 40 yrs", "F", 40), ("male35yrs", "M", 35),
        ("MALE 1 yrs", "M", 1), ("female 8 months", "F", 0.67), ("fmale 61yrs", "F", 61), ("male", "M", None),
        ("", None, None),
    ],
)
def test_reading_first_line_variants(text, sex, age):
    parsed = shenzhen.parse_shenzhen_reading(text + "\nnormal\n")
    assert parsed["sex"] == sex and parsed["age"] == age
    assert parsed["findings"] == ("normal" if text else None)


def test_age_strings():
    assert montgomery.parse_age_years("027Y") == 27
    assert montgomery.parse_age_years("006M") == 0.5
    assert montgomery.parse_age_years("unknown") is None


# ---------------------------------------------------------------- Shenzhen lung split


def two_lungs(shape=(100, 120), offset=0):
    right = box(shape, (20, 80), (10 + offset, 45 + offset))
    left = box(shape, (25, 85), (60 + offset, 95 + offset))
    return right, left


def test_split_separate_lungs():
    right, left = two_lungs()
    labels = shenzhen.split_lungs(right | left)
    np.testing.assert_array_equal(labels == 1, right)
    np.testing.assert_array_equal(labels == 2, left)


def test_split_off_centre_patient_uses_centre_of_mass_not_image_half():
    right, left = two_lungs(shape=(100, 200), offset=80)  # both lungs in the image's right half
    labels = shenzhen.split_lungs(right | left)
    np.testing.assert_array_equal(labels == 1, right)
    np.testing.assert_array_equal(labels == 2, left)


def test_split_touching_lungs_cuts_at_the_bridge():
    right, left = two_lungs()
    mask = right | left
    mask[48:52, 45:60] = True  # thin bridge: one connected component
    labels = shenzhen.split_lungs(mask)
    assert set(np.unique(labels)) == {0, 1, 2}
    cols1, cols2 = np.nonzero(labels == 1)[1], np.nonzero(labels == 2)[1]
    assert cols1.max() < cols2.min()
    assert 45 <= cols1.max() <= 60  # the cut lies inside the bridge
    assert (labels[right] == 1).all() and (labels[left] == 2).all()


def test_split_single_blob_cuts_at_centre_of_mass():
    mask = box((50, 100), (10, 40), (20, 80))  # one rectangle, uniform columns
    labels = shenzhen.split_lungs(mask)
    cols1, cols2 = np.nonzero(labels == 1)[1], np.nonzero(labels == 2)[1]
    assert cols1.max() + 1 == cols2.min()
    assert abs(cols1.max() - 49.5) <= 1


def test_split_small_specks_follow_their_side():
    right, left = two_lungs()
    mask = right | left
    mask[90, 5] = mask[5, 110] = True
    labels = shenzhen.split_lungs(mask)
    assert labels[90, 5] == 1 and labels[5, 110] == 2


def test_split_empty_mask_is_an_error():
    with pytest.raises(DataError, match="empty"):
        shenzhen.split_lungs(np.zeros((5, 5), bool), source="x_mask.png")


# ---------------------------------------------------------------- Shenzhen conversion


def make_shenzhen_tree(root, shape=(64, 80)):
    base, masks = root / "ChinaSet_AllFiles", root / "shcxr-lung-mask" / "mask"
    grey = RNG.integers(0, 256, shape).astype(np.uint8)
    right, left = two_lungs(shape=shape)
    for name, mode in (("CHNCXR_0001_0", "P"), ("CHNCXR_0002_0", "RGB"), ("CHNCXR_0327_1", "L")):
        png.write_grey_png(base / "CXR_png" / f"{name}.png", grey, mode=mode)
        (base / "ClinicalReadings").mkdir(parents=True, exist_ok=True)
        (base / "ClinicalReadings" / f"{name}.txt").write_text("male 35yrs\nnormal\n")
    for name in ("CHNCXR_0001_0", "CHNCXR_0327_1"):  # CHNCXR_0002_0 has no mask
        write_png(masks / f"{name}_mask.png", ((right | left) * 255).astype(np.uint8))
    return grey, right, left


def test_convert_shenzhen_only_images_with_masks(tmp_path, caplog):
    grey, right, left = make_shenzhen_tree(tmp_path)
    with caplog.at_level("INFO"):
        subjects = shenzhen.convert_shenzhen(tmp_path, tmp_path / "shcxr-lung-mask")
    assert [s.name for s in subjects] == ["CHNCXR_0001_0", "CHNCXR_0327_1"]
    assert "converting 2 of 3 images" in caplog.text
    for s in subjects:
        np.testing.assert_allclose(s.image, grey / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(s.labels == 1, right)
        np.testing.assert_array_equal(s.labels == 2, left)
        assert s.spacing is None and s.meta["sex"] == "M" and s.meta["age"] == 35
    assert [s.meta["tb"] for s in subjects] == [0, 1]
    assert shenzhen.shenzhen_mask_coverage(tmp_path, tmp_path / "shcxr-lung-mask") == (
        ["CHNCXR_0001_0", "CHNCXR_0327_1"], ["CHNCXR_0002_0"])


def test_shenzhen_size_mismatch_and_missing_masks(tmp_path):
    make_shenzhen_tree(tmp_path)
    bad = tmp_path / "shcxr-lung-mask" / "mask" / "CHNCXR_0327_1_mask.png"
    write_png(bad, np.zeros((32, 40), dtype=np.uint8))
    with pytest.raises(DataError, match=r"mask is 40 x 32 \(w x h\), image is 80 x 64 \(w x h\)") as err:
        shenzhen.convert_shenzhen(tmp_path, tmp_path / "shcxr-lung-mask")
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match="no lung masks"):
        shenzhen.convert_shenzhen(tmp_path, tmp_path / "elsewhere")


def test_missing_shenzhen_dataset(tmp_path):
    with pytest.raises(DataError, match="no Shenzhen images"):
        shenzhen.convert_shenzhen(tmp_path, tmp_path)


# ---------------------------------------------------------------- dispatcher


def test_chest_dispatcher(tmp_path):
    assert chest.CHEST_DATASETS == ("JSRT", "Montgomery", "Shenzhen")
    assert [chest.n_classes(d) for d in chest.CHEST_DATASETS] == [4, 3, 3]
    with pytest.raises(ConfigError):
        chest.n_classes("NIH")
    make_montgomery_tree(tmp_path / "mont")
    assert len(chest.convert_dataset("Montgomery", tmp_path / "mont", 0.0875)) == 2
    make_shenzhen_tree(tmp_path / "shen")
    assert len(chest.convert_dataset("Shenzhen", tmp_path / "shen", None)) == 2
    with pytest.raises(ConfigError, match="fixed at 0.175"):
        chest.convert_dataset("JSRT", tmp_path, 0.2)


def test_non_jsrt_name_is_named(tmp_path):
    images, scr, _ = make_jsrt_tree(tmp_path, names=("JPCLN001",))
    (images / "JPCLN001.IMG").rename(images / "SCAN01.IMG")
    with pytest.raises(DataError, match="not a JSRT image name") as err:
        jsrt.convert_jsrt(images, scr)
    assert "SCAN01.IMG" in str(err.value)
