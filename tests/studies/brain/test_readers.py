"""BraTS-Reg's files: landmark coordinates through the image's own geometry, the CSV convention, NIfTI
round trips, the case layout and the preprocessing's grid and landmark transport."""

import gzip
import struct

import numpy as np
import pytest

from medrepro.data.io.nifti import Geometry, read_volume, write_volume
from medrepro.errors import DataError
from medrepro.studies.brain.preprocess import normalise, pad_to, padded_shape, resample, working_grid
from medrepro.studies.brain.readers import brats_reg


def test_brats_geometry_gives_the_index_independent_codebases_use(tmp_path):
    """Under BraTS' affine, voxel index = (X, Y + 239, Z), sub-voxel, from the file's own geometry."""
    path = tmp_path / "BraTSReg_001_00_0000_t1ce.nii.gz"
    write_volume(path, np.zeros(brats_reg.NATIVE_SHAPE, np.int16), brats_reg.BRATS_GEOMETRY)
    _, geometry = read_volume(path)
    points = np.array([[114.8, -122.26, 88.18], [0.0, -239.0, 0.0], [239.0, 0.0, 154.0], [57.345, -0.5, 3.001]])
    expected = points + np.array([0.0, 239.0, 0.0])
    np.testing.assert_allclose(geometry.physical_to_index(points), expected, atol=1e-9)
    np.testing.assert_allclose(geometry.index_to_physical(expected), points, atol=1e-9)


def test_the_written_file_carries_brats_ras_affine(tmp_path):
    """The NIfTI's sform is BraTS' RAS affine: x_RAS = -i, y_RAS = 239 - j, z_RAS = k."""
    path = tmp_path / "v.nii.gz"
    write_volume(path, np.zeros((5, 240, 240), np.int16), brats_reg.BRATS_GEOMETRY)
    header = gzip.open(path).read(348)
    srow = np.array(struct.unpack("<12f", header[280:328])).reshape(3, 4)
    np.testing.assert_allclose(srow, [[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0]], atol=1e-6)


def test_an_oblique_anisotropic_geometry_maps_points_both_ways():
    angle = np.deg2rad(20)
    direction = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1)
    geometry = Geometry((0.9, 1.1, 2.5), (10.0, -20.0, 5.0), tuple(map(float, direction)))
    index = np.random.default_rng(0).uniform(0, 50, (7, 3))
    np.testing.assert_allclose(geometry.physical_to_index(geometry.index_to_physical(index)), index, atol=1e-9)


def test_landmark_csv_round_trips_with_two_decimals(tmp_path):
    path = tmp_path / "l.csv"
    points = np.array([[114.8, -122.26, 88.18], [-0.004, 3.0, 1.235]])
    brats_reg.write_landmarks(path, [2, 1], points)
    assert path.read_text().splitlines()[:2] == ["Landmark,X,Y,Z", "2,114.8,-122.26,88.18"]
    ids, read = brats_reg.read_landmarks(path)
    assert ids.tolist() == [1, 2]  # ascending
    np.testing.assert_allclose(read, np.round(points[::-1], 2), atol=1e-9)


def test_landmarks_in_voxels_keep_sub_voxel_precision_and_refuse_points_outside(tmp_path):
    path = tmp_path / "l.csv"
    brats_reg.write_landmarks(path, [1], [[10.25, -200.75, 3.5]])
    _, index = brats_reg.landmarks_in_voxels(path, brats_reg.BRATS_GEOMETRY, brats_reg.NATIVE_SHAPE)
    np.testing.assert_allclose(index, [[10.25, 38.25, 3.5]])
    brats_reg.write_landmarks(path, [1], [[10.0, 5.0, 3.0]])  # y index 244 > 239
    with pytest.raises(DataError, match="lies outside the volume"):
        brats_reg.landmarks_in_voxels(path, brats_reg.BRATS_GEOMETRY, brats_reg.NATIVE_SHAPE)


def test_a_truncated_gzipped_volume_is_refused(tmp_path):
    """ITK itself reads a cut .nii.gz and fills the rest with zeros."""
    path = tmp_path / "v.nii.gz"
    write_volume(path, np.random.default_rng(0).integers(0, 900, (20, 30, 30)).astype(np.int16),
                 brats_reg.BRATS_GEOMETRY)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated"):
        read_volume(path)


def test_volumes_round_trip_bytes_and_geometry(tmp_path):
    array = np.random.default_rng(1).integers(0, 3000, (7, 9, 11)).astype(np.int16)
    geometry = Geometry((2.0, 2.0, 3.0), (1.0, -16.0, 4.0))
    write_volume(tmp_path / "a.nii.gz", array, geometry)
    write_volume(tmp_path / "b.nii.gz", array, geometry)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()  # deterministic bytes
    read, read_geometry = read_volume(tmp_path / "a.nii.gz", dtype=np.int16)
    assert np.array_equal(read, array) and read_geometry == geometry


def test_the_case_layout_needs_every_modality_and_the_follow_ups_landmarks(tmp_path):
    folder = tmp_path / "BraTSReg_007"
    folder.mkdir()
    for stem in ("BraTSReg_007_00_0000", "BraTSReg_007_01_0123"):
        for modality in brats_reg.MODALITIES:
            (folder / f"{stem}_{modality}.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match="every case has the follow-up's landmarks"):
        brats_reg.index_case(folder)
    (folder / "BraTSReg_007_01_0123_landmarks.csv").write_text("Landmark,X,Y,Z\n1,1,1,1\n")
    case = brats_reg.index_case(folder)
    assert case.followup_time == "0123" and not case.has_baseline_landmarks  # a validation case
    (folder / "BraTSReg_007_01_0123_t2.nii.gz").unlink()
    with pytest.raises(DataError, match="missing follow-up modality t2"):
        brats_reg.index_case(folder)


def test_the_working_grid_keeps_the_native_corner_and_carries_landmarks():
    """4 mm voxels over a 1 mm grid: the first centre moves 1.5 mm; a physical point keeps its place."""
    shape, geometry = working_grid(brats_reg.NATIVE_SHAPE, brats_reg.BRATS_GEOMETRY, 4.0)
    assert shape == (39, 60, 60)
    np.testing.assert_allclose(geometry.origin, (1.5, -237.5, 1.5))
    native_index = np.array([[100.0, 50.0, 70.0]])
    physical = brats_reg.BRATS_GEOMETRY.index_to_physical(native_index)
    np.testing.assert_allclose(geometry.physical_to_index(physical), (native_index + 0.5) / 4 - 0.5)


def test_resampling_keeps_a_linear_ramp_where_it_is():
    """A ramp in x resampled from 1 mm to 2 mm reads the native value at each coarse centre (interior)."""
    native = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ramp = np.broadcast_to(np.arange(32, dtype=np.float32), (16, 24, 32)).copy()
    shape, coarse = working_grid(ramp.shape, native, 2.0)
    out = resample(ramp, native, shape, coarse)
    x = coarse.index_to_physical(np.c_[np.arange(shape[2]), np.zeros(shape[2]), np.zeros(shape[2])])[:, 0]
    np.testing.assert_allclose(out[4, 6, 2:-2], x[2:-2], atol=1e-3)


def test_normalisation_and_padding():
    volume = np.zeros((4, 5, 6), np.float32)
    volume[1:3, 1:4, 1:5] = np.linspace(100, 500, 24).reshape(2, 3, 4)
    scaled = normalise(volume)
    assert scaled[0].max() == 0 and np.isclose(np.percentile(scaled[volume != 0], 99), 1.0)
    assert padded_shape((39, 60, 60)) == (40, 64, 64)
    padded = pad_to(scaled[None], (8, 8, 8))
    assert padded.shape == (1, 8, 8, 8) and np.array_equal(padded[0, :4, :5, :6], scaled)
