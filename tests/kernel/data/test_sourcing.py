"""The kernel's dataset sourcing with a study-free dataset description."""

from pathlib import Path

import pytest

from medrepro.data import sourcing
from medrepro.errors import ConfigError, DataError

PARTS = (
    sourcing.Source(what="toy scans", urls=("https://example.org/toy",), access="public", automatic=True,
                    put_under="scans", expect="*.txt"),
    sourcing.Source(what="toy masks", urls=("https://example.org/masks",), access="login required",
                    automatic=False, put_under=".", expect="masks/*.txt"),
)


def check_toy_layout(raw_root: Path) -> dict:
    scans = sorted((raw_root / "scans").glob("*.txt"))
    if not scans:
        raise DataError(raw_root / "scans", "no scans. " + sourcing.instructions(TOY, raw_root, (0,)))
    return {"images": len(scans)}


def download_toy(raw_root: Path) -> Path:
    (raw_root / "scans").mkdir(parents=True, exist_ok=True)
    (raw_root / "scans" / "a.txt").write_text("fetched")
    return raw_root


TOY = sourcing.Dataset("toy-kernel-test", PARTS, check_toy_layout, download_toy)


def test_registered_datasets_are_found_by_name_and_unknown_names_are_config_errors():
    assert sourcing.register(TOY) is TOY
    assert sourcing.dataset("toy-kernel-test") is TOY and sourcing.dataset(TOY) is TOY
    assert sourcing.register(sourcing.Dataset("toy-kernel-test", PARTS, check_toy_layout)) is not None  # same parts
    with pytest.raises(ValueError, match="other sources"):
        sourcing.register(sourcing.Dataset("toy-kernel-test", PARTS[:1], check_toy_layout))
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*toy-kernel-test"):
        sourcing.dataset("nope")


def test_instructions_say_what_from_where_and_where_to_put_it(tmp_path):
    text = sourcing.instructions(TOY, tmp_path)
    assert f"put it under {tmp_path / 'scans'}/" in text and "https://example.org/toy" in text
    assert "'download' mode" in text.split("Download the toy masks")[0]  # only the automatic part offers it
    assert f"put it under {tmp_path}/ so that it holds masks/*.txt." in text


def test_obtain_records_then_verifies_and_download_uses_the_dataset_function(tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(DataError, match="no scans. Download the toy scans"):
        sourcing.obtain(TOY, raw, tmp_path / "m.sha256", mode="verify")
    summary = sourcing.obtain(TOY, raw, tmp_path / "m.sha256", mode="download")
    assert summary["dataset"] == "toy-kernel-test" and summary["images"] == 1 and summary["files"] == 1
    assert "recorded the digests" in summary["message"]
    assert "verified 1 files" in sourcing.obtain(TOY, raw, tmp_path / "m.sha256", mode="verify")["message"]
    (raw / "scans" / "a.txt").write_text("changed")
    with pytest.raises(DataError, match="sha256 mismatch"):
        sourcing.obtain(TOY, raw, tmp_path / "m.sha256", mode="verify")


def test_a_dataset_without_a_download_function_says_how_to_get_it(tmp_path):
    manual = sourcing.Dataset("toy-manual", PARTS[1:], check_toy_layout)
    with pytest.raises(DataError, match="cannot be downloaded automatically. Download the toy masks"):
        sourcing.fetch(manual, tmp_path)
