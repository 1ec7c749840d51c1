"""Obtain step: checksums, manifests, layout errors that say what to download, offline downloads."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from medrepro.data import sourcing as ob
from medrepro.studies.chest import datasets as chest_datasets
from medrepro.studies.chest import synthetic as sc
from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.readers import jsrt


def make_tree(root):
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.txt").write_bytes(b"abc")
    (root / "with space").mkdir()
    (root / "with space" / "two.bin").write_bytes(bytes(range(256)) * 10)
    (root / ".partial.tmp").write_bytes(b"left over from a killed job")
    return root


def test_sha256_file_matches_the_known_digest(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")
    assert ob.sha256_file(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = tmp_path / "big"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 1024 * 1024 + 7))  # spans several read chunks
    assert ob.sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_manifest_is_sorted_complete_and_sha256sum_compatible(tmp_path):
    root = make_tree(tmp_path / "raw")
    manifest = root / ob.MANIFEST_FILE
    entries = ob.write_manifest(root, manifest)
    assert list(entries) == ["a/one.txt", "with space/two.bin"]  # hidden temp files and the manifest skipped
    lines = manifest.read_text().splitlines()
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])
    assert lines[0] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a/one.txt"
    if shutil.which("sha256sum"):
        result = subprocess.run(["sha256sum", "-c", "--quiet", ob.MANIFEST_FILE], cwd=root, capture_output=True)
        assert result.returncode == 0, result.stdout + result.stderr
    assert ob.verify_manifest(root, manifest) == 2


def test_checksum_mismatch_names_the_file_and_both_digests(tmp_path):
    root = make_tree(tmp_path / "raw")
    manifest = tmp_path / "manifest.sha256"
    entries = ob.write_manifest(root, manifest)
    (root / "with space" / "two.bin").write_bytes(b"changed")
    with pytest.raises(DataError) as err:
        ob.verify_manifest(root, manifest)
    message = str(err.value)
    assert "with space/two.bin" in message and "sha256 mismatch" in message
    assert entries["with space/two.bin"] in message and hashlib.sha256(b"changed").hexdigest() in message


def test_missing_file_is_named(tmp_path):
    root = make_tree(tmp_path / "raw")
    manifest = tmp_path / "manifest.sha256"
    ob.write_manifest(root, manifest)
    (root / "a" / "one.txt").unlink()
    with pytest.raises(DataError, match="but missing") as err:
        ob.verify_manifest(root, manifest)
    assert "a/one.txt" in str(err.value)


def test_malformed_manifest(tmp_path):
    (tmp_path / "m").write_text("not a digest line\n")
    with pytest.raises(DataError, match="line 1"):
        ob.verify_manifest(tmp_path, tmp_path / "m")


# ---------------------------------------------------------------- layout checks


def test_missing_jsrt_says_what_to_download_and_where(tmp_path):
    with pytest.raises(DataError) as err:
        ob.check_layout("JSRT", tmp_path)
    message = str(err.value)
    assert "no JSRT images (*.IMG)" in message
    assert "db.jsrt.or.jp" in message and "registration" in message
    assert f"put it under {tmp_path / 'images'}/" in message and "JPCLN001.IMG" in message


def test_missing_scr_masks_names_the_images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    np.zeros(jsrt.JSRT_SHAPE, dtype=">u2").tofile(images / "JPCLN001.IMG")
    with pytest.raises(DataError) as err:
        ob.check_layout("JSRT", tmp_path)
    message = str(err.value)
    assert "SCR masks missing" in message and "JPCLN001 (right lung" in message
    assert "scratch/fold1/masks/right lung/JPCLN001.gif" in message
    assert "isi.uu.nl" in message and f"put it under {tmp_path / 'scr'}/" in message


def test_wrong_size_jsrt_file_is_reported_by_the_layout_check(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "JPCNN001.IMG").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match=r"JPCNN001.IMG \(100 bytes\)"):
        ob.check_layout("JSRT", tmp_path)


def test_missing_nlm_sets_say_what_to_download_and_where(tmp_path):
    with pytest.raises(DataError) as err:
        ob.check_layout("Montgomery", tmp_path)
    assert "data.lhncbc.nlm.nih.gov" in str(err.value) and "MontgomerySet/CXR_png/*.png" in str(err.value)
    png_dir = tmp_path / "ChinaSet_AllFiles" / "CXR_png"
    png_dir.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png_dir / "CHNCXR_0001_0.png")
    with pytest.raises(DataError) as err:
        ob.check_layout("Shenzhen", tmp_path)
    message = str(err.value)
    assert "no lung masks" in message and "kaggle" in message.lower()
    assert f"put it under {tmp_path / 'shcxr-lung-mask'}/" in message


def test_unknown_dataset_and_mode(tmp_path):
    with pytest.raises(ConfigError):
        ob.check_layout("NIH", tmp_path)
    with pytest.raises(ConfigError):
        ob.obtain("JSRT", tmp_path, mode="guess")


# ---------------------------------------------------------------- downloads (file:// URLs, no network)


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "served" / "archive.bin"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(1).bytes(2_500_000))
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_with_the_right_checksum(tmp_path, source):
    target = tmp_path / "dl" / "archive.bin"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    assert ob.download(source.as_uri(), target, sha256=digest, md5=md5) == target
    assert target.read_bytes() == source.read_bytes()
    assert leftovers(target.parent) == ["archive.bin"]


@pytest.mark.parametrize("kind", ["sha256", "md5"])
def test_download_with_a_wrong_checksum_leaves_nothing(tmp_path, source, kind):
    target = tmp_path / "dl" / "archive.bin"
    with pytest.raises(DataError, match=f"{kind} mismatch for archive.bin") as err:
        ob.download(source.as_uri(), target, **{kind: "0" * (64 if kind == "sha256" else 32)})
    assert source.as_uri() in str(err.value)
    assert leftovers(target.parent) == []


def test_download_failure_is_a_clear_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "dl" / "x.zip"
    with pytest.raises(DataError, match="download failed"):
        ob.download((tmp_path / "does-not-exist.zip").as_uri(), target)
    assert leftovers(target.parent) == []


def test_download_nlm_unpacks_the_archive(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "NLM-MontgomeryCXRSet.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("MontgomerySet/CXR_png/MCUCXR_0001_0.png", b"png bytes")
        zf.writestr("__MACOSX/MontgomerySet/._junk", b"x")
    missing = (tmp_path / "served" / "missing.zip").as_uri()
    monkeypatch.setitem(chest_datasets.NLM_ARCHIVES, "Montgomery", (missing, archive.as_uri()))
    raw = tmp_path / "raw"
    chest_datasets.download_nlm("Montgomery", raw)
    assert (raw / "MontgomerySet" / "CXR_png" / "MCUCXR_0001_0.png").read_bytes() == b"png bytes"
    assert not (raw / "__MACOSX").exists()


def test_unsafe_archive_members_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", b"x")
    with pytest.raises(DataError, match="outside"):
        ob.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_registration_only_datasets_cannot_be_downloaded(tmp_path):
    with pytest.raises(DataError, match="cannot be downloaded automatically") as err:
        ob.obtain("JSRT", tmp_path, mode="download")
    assert "db.jsrt.or.jp" in str(err.value)


# ---------------------------------------------------------------- the obtain step


def test_obtain_synthetic_verifies_the_generator_manifest(tmp_path):
    raw = tmp_path / "Montgomery"
    sc.generate_dataset("Montgomery", raw, 2, seed=0, image_size=(120, 100))
    out = tmp_path / "chest" / "raw_manifest.sha256"
    summary = ob.obtain("Montgomery", raw, out, mode="synthetic")
    assert summary["images"] == 2 and summary["files"] == 2 * 4 + 1  # png, 2 masks, reading; truth table
    assert out.read_text() == (raw / ob.MANIFEST_FILE).read_text()  # the verified digests, for downstream
    mask = raw / "MontgomerySet" / "ManualMask" / "leftMask" / "MCUCXR_0001_0.png"
    mask.write_bytes(mask.read_bytes()[:-1] + b"\0")
    out.unlink()
    with pytest.raises(DataError, match="sha256 mismatch") as err:
        ob.obtain("Montgomery", raw, out, mode="synthetic")
    assert "leftMask/MCUCXR_0001_0.png" in str(err.value)
    assert not out.exists()
    with pytest.raises(DataError, match="generate the synthetic dataset first"):
        ob.obtain("Montgomery", tmp_path / "empty", mode="synthetic")


def test_obtain_verify_records_digests_then_verifies(tmp_path):
    raw = tmp_path / "Shenzhen"
    sc.generate_dataset("Shenzhen", raw, 3, seed=0, image_size=(96, 96))
    (raw / ob.MANIFEST_FILE).unlink()  # a user's copy arrives without a manifest
    manifest = tmp_path / "user-copy.sha256"
    first = ob.obtain("Shenzhen", raw, manifest, mode="verify")
    assert "recorded the digests" in first["message"] and manifest.is_file()
    second = ob.obtain("Shenzhen", raw, manifest, mode="verify")
    assert "verified" in second["message"] and second["files"] == first["files"]
    # pinned inside the raw directory: a fresh output manifest is verified against it
    (raw / ob.MANIFEST_FILE).write_text(manifest.read_text())
    manifest.unlink()
    third = ob.obtain("Shenzhen", raw, manifest, mode="verify")
    assert "verified" in third["message"] and manifest.read_text() == (raw / ob.MANIFEST_FILE).read_text()


def test_non_jsrt_files_are_named_by_the_layout_check(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "scan.img").write_bytes(b"\0" * jsrt.JSRT_BYTES)
    with pytest.raises(DataError, match="not JSRT image names .*scan.img"):
        ob.check_layout("JSRT", tmp_path)
