"""The DICOM mammogram reader and writer (medrepro.shared.dicom) on generated files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEG2000Lossless

from medrepro.errors import DataError
from medrepro.shared.dicom import (FULL_MAMMOGRAM, ROI_MASK, deterministic_uid, dicom_shape, read_header,
                                   read_mammogram, write_mammogram)

TAGS = dict(PatientID="Mass-Training_P_00001_LEFT_CC", Laterality="L", ViewPosition="CC",
            SeriesDescription=FULL_MAMMOGRAM)


def ramp(shape=(6, 5), top=65535) -> np.ndarray:
    return np.linspace(0, top, shape[0] * shape[1]).round().astype(np.uint16).reshape(shape)


def rewrite(path, **changes) -> None:
    """Change header elements of a written file (to make files this reader must refuse)."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


# ---------------------------------------------------------------- round trips


def test_monochrome2_16_bit_round_trip_and_tags(tmp_path):
    pixels = ramp()
    path = tmp_path / "a.dcm"
    write_mammogram(path, pixels, **TAGS)
    read, info = read_mammogram(path)
    assert read.dtype == np.uint16 and np.array_equal(read, pixels)
    assert info["photometric"] == "MONOCHROME2" and not info["inverted"]
    assert (info["bits_allocated"], info["bits_stored"], info["max_value"]) == (16, 16, 65535)
    assert (info["rows"], info["columns"]) == (6, 5)
    assert info["patient_id"] == "Mass-Training_P_00001_LEFT_CC"
    assert (info["laterality"], info["view"], info["series_description"]) == ("L", "CC", FULL_MAMMOGRAM)
    assert info["transfer_syntax"] == "1.2.840.10008.1.2.1"  # explicit VR little endian
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"  # Part 10 preamble and prefix
    ds = pydicom.dcmread(path)
    assert ds.ImageLaterality == "L" and ds.Modality == "MG"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture, as CBIS-DDSM
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert UID(uid).is_valid


def test_written_file_reads_identically_in_simpleitk(tmp_path):
    """An independent DICOM reader (GDCM through SimpleITK) sees the same pixels."""
    pixels = ramp((7, 9), top=4095)
    path = tmp_path / "a.dcm"
    write_mammogram(path, pixels, bits_stored=12, **TAGS)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert np.array_equal(reference.reshape(pixels.shape), pixels)


def test_monochrome1_is_inverted_with_bits_stored(tmp_path):
    stored = np.array([[0, 100], [4095, 7]], np.uint16)
    path = tmp_path / "m1.dcm"
    write_mammogram(path, stored, photometric="MONOCHROME1", bits_stored=12, **TAGS)
    read, info = read_mammogram(path)
    # by hand: 4095 - value
    assert np.array_equal(read, np.array([[4095, 3995], [0, 4088]], np.uint16))
    assert info["inverted"] and info["photometric"] == "MONOCHROME1" and info["max_value"] == 4095


@pytest.mark.parametrize("photometric, expected", [("MONOCHROME2", [[0, 10, 255], [3, 4, 5]]),
                                                   ("MONOCHROME1", [[255, 245, 0], [252, 251, 250]])])
def test_8_bit_files(tmp_path, photometric, expected):
    stored = np.array([[0, 10, 255], [3, 4, 5]], np.uint8)  # odd byte count: padded on write
    path = tmp_path / "m8.dcm"
    write_mammogram(path, stored, photometric=photometric, **TAGS)
    read, info = read_mammogram(path)
    assert read.dtype == np.uint16 and np.array_equal(read, np.array(expected))
    assert (info["bits_allocated"], info["bits_stored"]) == (8, 8)


def test_same_call_same_bytes_and_uids_follow_the_name(tmp_path):
    pixels = ramp()
    write_mammogram(tmp_path / "a.dcm", pixels, **TAGS)
    write_mammogram(tmp_path / "b.dcm", pixels, **TAGS)
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    write_mammogram(tmp_path / "c.dcm", pixels, **{**TAGS, "SeriesDescription": ROI_MASK})
    a, c = read_mammogram(tmp_path / "a.dcm")[1], read_mammogram(tmp_path / "c.dcm")[1]
    assert a["series_uid"] != c["series_uid"] and a["sop_uid"] != c["sop_uid"]
    write_mammogram(tmp_path / "d.dcm", pixels, uid_key="seed 7", **TAGS)
    d = read_mammogram(tmp_path / "d.dcm")[1]
    assert d["study_uid"] == deterministic_uid("seed 7", "study")
    assert deterministic_uid("x") == deterministic_uid("x") != deterministic_uid("y")


def test_header_only_readers(tmp_path):
    path = tmp_path / "a.dcm"
    write_mammogram(path, ramp((11, 4)), **TAGS)
    assert dicom_shape(path) == (11, 4)
    assert read_header(path)["patient_id"] == TAGS["PatientID"]


def test_writer_refuses_what_it_cannot_store_and_leaves_nothing(tmp_path):
    path = tmp_path / "x.dcm"
    with pytest.raises(ValueError, match="uint8 or uint16"):
        write_mammogram(path, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        write_mammogram(path, np.zeros((2, 3, 3), np.uint16))
    with pytest.raises(ValueError, match="12 bits"):
        write_mammogram(path, np.full((2, 2), 5000, np.uint16), bits_stored=12)
    with pytest.raises(ValueError, match="NotAKeyword"):
        write_mammogram(path, np.zeros((2, 2), np.uint16), NotAKeyword="x")
    with pytest.raises(ValueError, match="photometric"):
        write_mammogram(path, np.zeros((2, 2), np.uint16), photometric="RGB")
    assert list(tmp_path.iterdir()) == []  # atomic: no file, no temporary left behind


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "PALETTE COLOR"])
def test_unsupported_photometric_interpretation(tmp_path, photometric):
    path = tmp_path / "colour.dcm"
    write_mammogram(path, ramp(), **TAGS)
    rewrite(path, PhotometricInterpretation=photometric)
    with pytest.raises(DataError, match=photometric) as error:
        read_mammogram(path)
    assert str(path) in str(error.value)


def test_colour_samples_are_refused(tmp_path):
    path = tmp_path / "rgb.dcm"
    write_mammogram(path, ramp(), **TAGS)
    rewrite(path, SamplesPerPixel=3)
    with pytest.raises(DataError, match="SamplesPerPixel 3") as error:
        read_mammogram(path)
    assert str(path) in str(error.value)


def test_32_bit_pixels_are_refused(tmp_path):
    path = tmp_path / "deep.dcm"
    write_mammogram(path, ramp(), **TAGS)
    rewrite(path, BitsAllocated=32, BitsStored=32, HighBit=31,
            PixelData=np.arange(30, dtype="<u4").tobytes())
    with pytest.raises(DataError, match="BitsAllocated 32") as error:
        read_mammogram(path)
    assert str(path) in str(error.value)


def test_signed_pixels_are_refused(tmp_path):
    path = tmp_path / "signed.dcm"
    write_mammogram(path, ramp(), **TAGS)
    rewrite(path, PixelRepresentation=1)
    with pytest.raises(DataError, match="signed") as error:
        read_mammogram(path)
    assert str(path) in str(error.value)


def test_compressed_transfer_syntax_without_a_usable_decoder(tmp_path):
    path = tmp_path / "j2k.dcm"
    write_mammogram(path, ramp(), **TAGS)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])  # a codestream header, then garbage
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError, match="compressed transfer syntax") as error:
        read_mammogram(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("keep", [-4, 300, 60])
def test_truncated_file(tmp_path, keep):
    """Cut in the pixel data, in the dataset's header, and inside the file meta header."""
    whole = tmp_path / "whole.dcm"
    write_mammogram(whole, ramp(), **TAGS)
    data = whole.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:keep])
    with pytest.raises(DataError) as error:
        read_mammogram(path)
    assert str(path) in str(error.value)


def test_not_a_dicom_file_and_a_missing_file(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("patient_id,breast_density\n" * 20)
    with pytest.raises(DataError, match="not a DICOM file") as error:
        read_mammogram(path)
    assert str(path) in str(error.value)
    with pytest.raises(DataError, match="not found") as error:
        read_mammogram(tmp_path / "absent.dcm")
    assert "absent.dcm" in str(error.value)
    with pytest.raises(DataError, match="not a DICOM file"):
        dicom_shape(path)
