"""Padding, resizing, reference choice, similarity pre-alignment, the B-spline
baseline, and the prealigned dataset file.

Resizing is checked against independent formulas (block means, block label
counts, scipy.ndimage.zoom); registrations use small phantoms, known
transforms built with scipy.ndimage, and reduced iterations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.prealigned import PrealignedSet, load_prealigned, save_prealigned
from medrepro.studies.chest.subjects import Subject
from medrepro.studies.chest.baseline import bspline_register_pairs
from medrepro.studies.chest.prealign import (
    choose_reference,
    lung_field_fraction,
    pad_to_square,
    prealign_images,
    prealign_subjects,
    resize_image,
    resize_labels,
    working_image,
)
from medrepro.spatial import elastix as E
from medrepro.studies.chest.parameters import published_map
from support.phantoms import make_phantom

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning")


# ------------------------------------------------------------------ helpers
def similarity_moved(image, labels, angle_deg, scale, shift):
    """Image and labels seen through a similarity about the centre (scipy resampling)."""
    a = np.deg2rad(angle_deg)
    forward = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    centre = (np.array(image.shape) - 1) / 2
    inverse = np.linalg.inv(forward)
    offset = centre - inverse @ (centre + np.asarray(shift, float))
    warp = lambda array, order: ndi.affine_transform(array, inverse, offset=offset, order=order, cval=0)
    return np.clip(warp(image, 3), 0, 1).astype(np.float32), warp(labels, 0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def block_majority(labels: np.ndarray, factor: int) -> np.ndarray:
    """Reference label downsampling: most frequent label per block, ties to the larger label."""
    n = labels.shape[0] // factor
    blocks = labels.reshape(n, factor, n, factor).transpose(0, 2, 1, 3).reshape(n, n, -1)
    counts = np.stack([(blocks == v).sum(-1) for v in range(int(labels.max()) + 1)], axis=-1)
    # argmax returns the first maximum; reversing the label axis makes ties go to the larger label
    return (counts.shape[-1] - 1 - np.argmax(counts[..., ::-1], axis=-1)).astype(np.uint8)


def valid_arrays(n: int = 3, size: int = 16) -> dict:
    rng = np.random.default_rng(0)
    return {
        "images": rng.random((n, size, size), dtype=np.float32),
        "labels": rng.integers(0, 4, (n, size, size), dtype=np.uint8),
        "names": np.array([f"s{i}" for i in range(n)]),
        "spacing": np.array([[0.5, 0.5]] * (n - 1) + [[np.nan, np.nan]]),
        "reference": "s0",
    }


# ------------------------------------------------------------- pad and resize
def test_pad_to_square_centres_and_fills_with_background():
    image = np.arange(40, dtype=np.float32).reshape(5, 8) + 1
    labels = np.full((5, 8), 2, dtype=np.uint8)
    padded, padded_labels = pad_to_square(image, labels)
    assert padded.shape == padded_labels.shape == (8, 8)
    np.testing.assert_array_equal(padded[1:6], image)  # 3 rows of padding: 1 above, 2 below
    assert padded[[0, 6, 7]].sum() == 0 and padded_labels[[0, 6, 7]].sum() == 0
    assert set(np.unique(padded_labels).tolist()) == {0, 2}
    tall, _ = pad_to_square(image.T, labels.T, fill=0.5)
    np.testing.assert_array_equal(tall[:, 1:6], image.T)
    assert np.all(tall[:, 0] == 0.5)
    same, same_labels = pad_to_square(image[:5, :5], labels[:5, :5])
    np.testing.assert_array_equal(same, image[:5, :5])
    with pytest.raises(ValueError):
        pad_to_square(image, labels[:4])


def test_resize_image_shrinks_by_area_and_grows_linearly():
    rng = np.random.default_rng(0)
    image = rng.random((12, 12))
    np.testing.assert_allclose(resize_image(image, 4), image.reshape(4, 3, 4, 3).mean(axis=(1, 3)), atol=1e-6)
    odd = resize_image(image, 5)  # non-integer factor: area weights keep the mean
    assert odd.dtype == np.float32 and odd.shape == (5, 5)
    assert odd.mean() == pytest.approx(image.mean(), abs=1e-6)
    grown = resize_image(image, 29)
    expected = ndi.zoom(image, 29 / 12, order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(grown, expected, atol=1e-6)
    np.testing.assert_array_equal(resize_image(image, 12), image.astype(np.float32))


def test_resize_labels_matches_block_majority_and_keeps_the_set():
    rng = np.random.default_rng(3)
    labels = np.kron(rng.integers(0, 4, (16, 16)), np.ones((2, 2), dtype=int)).astype(np.uint8)  # 32 x 32
    for factor in (2, 4, 8):
        np.testing.assert_array_equal(resize_labels(labels, 32 // factor), block_majority(labels, factor))
    sparse_set = np.where(labels == 2, 7, labels).astype(np.uint8)  # labels {0, 1, 3, 7}
    for size in (5, 13, 45, 64):
        resized = resize_labels(sparse_set, size)
        assert resized.dtype == np.uint8 and resized.shape == (size, size)
        assert set(np.unique(resized).tolist()) <= {0, 1, 3, 7}


def test_thin_structure_survives_label_downsampling():
    labels = np.zeros((64, 64), dtype=np.uint8)
    labels[:, 21:23] = 3  # 2 px wide: half of each 4 px output column
    small = resize_labels(labels, 16)
    assert np.all(small[:, 5] == 3) and small.sum() == 3 * 16
    subsampled = labels[::4, ::4]  # point sampling loses it entirely
    assert subsampled.sum() == 0


# ------------------------------------------------------------- reference choice
def _subject(name: str, lung_pixels: int, shape=(10, 10)) -> Subject:
    labels = np.zeros(shape, dtype=np.uint8)
    labels.flat[:lung_pixels] = 1 + np.arange(lung_pixels) % 2
    labels.flat[-5:] = 3  # heart does not count
    return Subject(name, np.zeros(shape, np.float32), labels, None)


def test_choose_reference_rules():
    subjects = [_subject("e", 50), _subject("b", 20), _subject("c", 30), _subject("a", 10), _subject("d", 40)]
    assert lung_field_fraction(subjects[0]) == pytest.approx(0.5)
    assert choose_reference(subjects) == "c"  # median lung share 0.3
    assert choose_reference(subjects, "median_area") == "c"
    assert choose_reference(subjects, "first") == "a"
    assert choose_reference(subjects, "d") == "d"
    with pytest.raises(ConfigError, match="zzz"):
        choose_reference(subjects, "zzz")
    with pytest.raises(ConfigError):
        choose_reference([], None)
    # even count: the median 0.25 lies halfway between b and c; the tie goes to the first name
    assert choose_reference(subjects[1:3]) == "b"
    # the share is taken of the padded square frame, 10 x 10 here
    assert lung_field_fraction(_subject("x", 25, shape=(5, 10))) == pytest.approx(0.25)


# ------------------------------------------------------------- pre-alignment
@pytest.fixture(scope="module")
def prealigned_run(tmp_path_factory):
    base_image, base_labels = make_phantom(96, seed=0)
    reference = Subject("ref", base_image[8:88], base_labels[8:88], (0.5, 0.5))  # 80 x 96
    moved_image, moved_labels = similarity_moved(base_image, base_labels, 4.0, 0.95, (3.0, -2.0))
    moved = Subject("moved", moved_image[:, 6:90], moved_labels[:, 6:90], (0.4, 0.4))  # 96 x 84
    other_image, other_labels = make_phantom(90, seed=1)
    other = Subject("other", other_image[:, 5:85], other_labels[:, 5:85], None)  # 90 x 80
    subjects = [moved, reference, other]
    pmap = E.with_overrides(published_map("similarity"), iterations=200, seed=0)
    log_dir = tmp_path_factory.mktemp("logs")
    arrays = prealign_subjects(subjects, "ref", out_size=48, work_size=64, parameter_map=pmap, threads=1,
                               log_dir=log_dir, progress=False)
    return subjects, arrays, log_dir


def test_prealign_output_format(prealigned_run):
    subjects, arrays, log_dir = prealigned_run
    assert set(arrays) == {"images", "labels", "names", "spacing", "reference"}
    assert arrays["images"].shape == arrays["labels"].shape == (3, 48, 48)
    assert arrays["images"].dtype == np.float32 and arrays["labels"].dtype == np.uint8
    assert arrays["images"].min() >= 0 and arrays["images"].max() <= 1
    assert arrays["names"].tolist() == ["moved", "ref", "other"] and arrays["reference"] == "ref"
    assert set(np.unique(arrays["labels"]).tolist()) <= {0, 1, 2, 3}
    # mm per pixel at 48 px: native spacing * padded side / 48
    np.testing.assert_allclose(arrays["spacing"][:2], [[0.4 * 96 / 48] * 2, [0.5 * 96 / 48] * 2])
    assert np.isnan(arrays["spacing"][2]).all()
    table = (log_dir / "similarity_parameters.csv").read_text().splitlines()
    assert table[0].startswith("name,") and len(table) == 4
    assert (log_dir / "moved" / "elastix.log").is_file()


def test_reference_is_only_padded_and_resized(prealigned_run):
    subjects, arrays, _ = prealigned_run
    image, labels = pad_to_square(subjects[1].image, subjects[1].labels)
    np.testing.assert_allclose(arrays["images"][1], resize_image(resize_image(image, 64), 48), atol=1e-6)
    np.testing.assert_array_equal(arrays["labels"][1], resize_labels(resize_labels(labels, 64), 48))


def test_prealign_brings_the_moved_copy_onto_the_reference(prealigned_run):
    _, arrays, _ = prealigned_run
    ref_labels, moved_labels = arrays["labels"][1], arrays["labels"][0]
    for label in (1, 2, 3):
        assert dice(moved_labels == label, ref_labels == label) > 0.9
    assert np.corrcoef(arrays["images"][0].ravel(), arrays["images"][1].ravel())[0, 1] > 0.95


def test_unlabelled_images_land_on_the_prealigned_grid(prealigned_run):
    """New images (no labels) pre-aligned onto the same reference match the labelled pipeline's result."""
    subjects, arrays, _ = prealigned_run
    reference = working_image(subjects[1].image, 64)
    pmap = E.with_overrides(published_map("similarity"), iterations=200, seed=0)
    images, rows = prealign_images([("moved", subjects[0].image), ("blank", np.zeros((70, 90), np.float32))],
                                   reference, out_size=48, work_size=64, parameter_map=pmap, threads=1,
                                   progress=False, total=2)
    assert images.shape == (2, 48, 48) and images.dtype == np.float32 and (images[1] == 0).all()
    assert np.corrcoef(images[0].ravel(), arrays["images"][0].ravel())[0, 1] > 0.99
    assert np.corrcoef(images[0].ravel(), arrays["images"][1].ravel())[0, 1] > 0.95
    assert [r["name"] for r in rows] == ["moved", "blank"]
    assert rows[0]["aligned"] and abs(rows[0]["angle_deg"]) > 1


def test_an_image_elastix_fails_on_is_kept_unaligned(monkeypatch):
    """One failing registration in a 1000-image shard must not stop it: the image is flagged instead."""
    def failing(*args, **kwargs):
        raise RuntimeError("itk::ExceptionObject: too many samples map outside moving image buffer")

    monkeypatch.setattr(E, "register", failing)
    image = np.linspace(0, 1, 40 * 40, dtype=np.float32).reshape(40, 40)
    images, rows = prealign_images([("bad", image)], working_image(image, 32), out_size=16, work_size=32,
                                   parameter_map={}, progress=False)
    assert not rows[0]["aligned"] and rows[0]["scale"] == 1.0
    np.testing.assert_allclose(images[0], resize_image(working_image(image, 32), 16), atol=1e-6)


def test_working_image_pads_then_resizes():
    image = np.ones((30, 60), np.float32)
    work = working_image(image, 20)
    assert work.shape == (20, 20) and work[:5].max() == 0 and work[10].min() == 1
    with pytest.raises(ValueError, match="2-D"):
        working_image(np.ones((2, 3, 4)), 20)


def test_prealign_at_native_size(prealigned_run):
    """work_size None registers the padded images at their own sizes (96 and 96 here)."""
    subjects, _, _ = prealigned_run
    pmap = E.with_overrides(published_map("similarity"), iterations=150, seed=0)
    arrays = prealign_subjects(subjects[:2], "ref", out_size=48, work_size=None, parameter_map=pmap,
                               threads=1, progress=False)
    for label in (1, 2, 3):
        assert dice(arrays["labels"][0] == label, arrays["labels"][1] == label) > 0.9


def test_progress_goes_to_stderr(prealigned_run, capsys):
    subjects, _, _ = prealigned_run
    prealign_subjects(subjects[1:2], "ref", out_size=32, work_size=64, progress=True)
    captured = capsys.readouterr()
    assert "similarity pre-alignment" in captured.err and captured.out == ""


def test_prealign_rejects_bad_configuration(prealigned_run):
    subjects, _, _ = prealigned_run
    with pytest.raises(ConfigError, match="nobody"):
        prealign_subjects(subjects, "nobody", out_size=48, progress=False)
    with pytest.raises(ConfigError, match="out_size"):
        prealign_subjects(subjects, "ref", out_size=0, progress=False)
    broken = Subject("broken", np.zeros((4, 5), np.float32), np.zeros((5, 4), np.uint8), None)
    with pytest.raises(DataError, match="broken"):
        prealign_subjects(subjects + [broken], "ref", out_size=48, progress=False)


def test_prealigned_file_round_trip(prealigned_run, tmp_path):
    _, arrays, _ = prealigned_run
    path = tmp_path / "prealigned.npz"
    save_prealigned(path, **arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["prealigned.npz"]  # no temp files left over
    loaded = load_prealigned(path)
    np.testing.assert_array_equal(loaded.images, arrays["images"])
    np.testing.assert_array_equal(loaded.labels, arrays["labels"])
    np.testing.assert_array_equal(loaded.spacing, arrays["spacing"])
    assert loaded.names.tolist() == arrays["names"].tolist() and loaded.reference == "ref"
    assert len(loaded) == 3 and loaded.size == 48 and loaded.index("other") == 2
    part = loaded.subset(["other", "moved"])
    assert isinstance(part, PrealignedSet) and part.names.tolist() == ["other", "moved"]
    np.testing.assert_array_equal(part.images[1], arrays["images"][0])
    assert part.index("moved") == 1
    with pytest.raises(KeyError, match="ref"):
        part.index("ref")


# --------------------------------------------------------- B-spline baseline
def test_bspline_baseline_undoes_a_smooth_deformation():
    size = 64
    image, labels = make_phantom(size, seed=2)
    r, c = np.mgrid[0:size, 0:size].astype(float)
    sample_at = [r + 2.5 * np.sin(2 * np.pi * c / size), c + 2.0 * np.sin(2 * np.pi * r / size)]
    moving = ndi.map_coordinates(image, sample_at, order=3, mode="constant").astype(np.float32)
    moving_labels = ndi.map_coordinates(labels, sample_at, order=0, mode="constant")
    images, label_maps = np.stack([image, moving]), np.stack([labels, moving_labels])
    pmap = E.with_overrides(published_map("bspline"), iterations=100, seed=0)

    warped_labels, warped_images, seconds = bspline_register_pairs(images, label_maps, [(1, 0), (0, 0)], pmap,
                                                                   threads=1, progress=False)
    assert warped_labels.shape == (2, size, size) and warped_labels.dtype == np.uint8
    assert warped_images.dtype == np.float32 and seconds.shape == (2,) and np.all(seconds > 0)
    assert set(np.unique(warped_labels).tolist()) <= {0, 1, 2, 3}
    for label in (1, 2, 3):
        before = dice(moving_labels == label, labels == label)
        after = dice(warped_labels[0] == label, labels == label)
        assert after > max(before + 0.05, 0.9), (label, before, after)
    assert np.corrcoef(warped_images[0].ravel(), image.ravel())[0, 1] > 0.99
    for label in (1, 2, 3):  # an image registered to itself stays put
        assert dice(warped_labels[1] == label, labels == label) > 0.98
    with pytest.raises(ValueError, match="outside"):
        bspline_register_pairs(images, label_maps, [(0, 2)], pmap, progress=False)


# --------------------------------------------------------- the prealigned file
def test_save_rejects_inconsistent_arrays(tmp_path):
    path = tmp_path / "bad.npz"
    arrays = valid_arrays()
    with pytest.raises(DataError, match="bad.npz.*labels shape"):
        save_prealigned(path, **{**arrays, "labels": arrays["labels"][:, :8]})
    with pytest.raises(DataError, match="duplicate"):
        save_prealigned(path, **{**arrays, "names": np.array(["a", "a", "b"])})
    with pytest.raises(DataError, match="0..1"):
        save_prealigned(path, **{**arrays, "images": arrays["images"] * 3})
    with pytest.raises(DataError, match="spacing"):
        save_prealigned(path, **{**arrays, "spacing": np.zeros((3, 2))})
    with pytest.raises(DataError, match="square"):
        save_prealigned(path, **{**arrays, "images": arrays["images"][:, :8], "labels": arrays["labels"][:, :8]})
    assert not path.exists()


def test_load_reports_malformed_files(tmp_path):
    missing_key = tmp_path / "missing_key.npz"
    arrays = valid_arrays()
    np.savez(missing_key, **{k: v for k, v in arrays.items() if k != "spacing"})
    with pytest.raises(DataError, match="missing_key.npz.*spacing"):
        load_prealigned(missing_key)

    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, **{**arrays, "spacing": np.ones((3, 3))})
    with pytest.raises(DataError, match="wrong_shape.npz.*spacing must be"):
        load_prealigned(wrong_shape)

    float_labels = tmp_path / "float_labels.npz"
    np.savez(float_labels, **{**arrays, "labels": arrays["labels"].astype(np.float32)})
    with pytest.raises(DataError, match="labels must be integers"):
        load_prealigned(float_labels)

    not_npz = tmp_path / "text.npz"
    not_npz.write_text("not an archive")
    with pytest.raises(DataError, match="text.npz"):
        load_prealigned(not_npz)

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**arrays, "names": np.array(["a", "b", "c"], dtype=object)})
    with pytest.raises(DataError, match="pickled.npz"):
        load_prealigned(pickled)

    with pytest.raises(DataError, match="absent.npz.*missing"):
        load_prealigned(tmp_path / "absent.npz")


def test_loaded_spacing_keeps_nan_for_unknown(tmp_path):
    path = tmp_path / "ok.npz"
    save_prealigned(path, **valid_arrays())
    loaded = load_prealigned(path)
    assert loaded.spacing.dtype == np.float64 and loaded.names.dtype.kind == "U"
    assert loaded.spacing[0].tolist() == [0.5, 0.5] and all(math.isnan(v) for v in loaded.spacing[2])
