"""Pins of raw data: changes are caught with both digests, cheaply, and accepted only by an explicit re-pin."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from medrepro.provenance import hashing, pinning

from medrepro.data import sourcing
from medrepro.pipeline.cli import main as cli_main
from medrepro.errors import DataError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


NL = b"\n"
SCAN_A, SCAN_B, SCAN_C, TABLE = b"scan a\n", b"scan b\n", b"scan c\n", b"name\na\nb\n"
CORRECTED = b"scan a, corrected\n"


def make_copy(root: Path) -> Path:
    """A small dataset copy: two scans in a subfolder and a table."""
    (root / "scans").mkdir(parents=True)
    (root / "scans" / "a.txt").write_bytes(SCAN_A)
    (root / "scans" / "b.txt").write_bytes(SCAN_B)
    (root / "table.csv").write_bytes(TABLE)
    return root


def check_layout(raw_root: Path) -> dict:
    scans = sorted((raw_root / "scans").glob("*.txt"))
    if not scans:
        raise DataError(raw_root / "scans", "no scans")
    return {"images": len(scans)}


TOY = sourcing.register(sourcing.Dataset("toy-pinning-test", (), check_layout))


@pytest.fixture
def pinned(tmp_path):
    """A copy pinned at its first use, as the obtain step does; (raw directory, pin)."""
    raw = make_copy(tmp_path / "copy")
    pin = tmp_path / "pins" / "toy.sha256"
    assert pinning.pin_first_use("toy", raw, pin) == 3
    return raw, pin


def startup(raw, pin, made_by_rule=False):
    return pinning.check_before_run("toy", raw, pin, made_by_rule=made_by_rule, verified_copy="out/manifest.sha256")


# ---------------------------------------------------------------- what the check catches


def test_pin_is_a_sha256sum_manifest_of_every_file(pinned):
    raw, pin = pinned
    assert pinning.read_manifest(pin) == {"scans/a.txt": sha(SCAN_A), "scans/b.txt": sha(SCAN_B),
                                          "table.csv": sha(TABLE)}
    if shutil.which("sha256sum"):
        result = subprocess.run(["sha256sum", "-c", "--strict", str(pin)], cwd=raw, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    assert startup(raw, pin) == 3


def test_an_edited_file_is_named_with_both_digests_and_the_repin_command(pinned):
    raw, pin = pinned
    (raw / "scans" / "a.txt").write_bytes(b"scan A\n")  # same size: only its mtime gives it away
    with pytest.raises(DataError) as err:
        startup(raw, pin)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{raw / 'scans' / 'a.txt'}: sha256 mismatch")
    assert f"expected {sha(SCAN_A)}, actual {sha(b'scan A' + NL)}" in message
    assert f"medrepro data repin toy --raw-dir {raw} --pin {pin} --verified-copy out/manifest.sha256" in message
    assert "delete" not in message  # a user's copy is not remade by the workflow


def test_a_missing_file_is_named_with_its_pinned_digest(pinned):
    raw, pin = pinned
    (raw / "table.csv").unlink()
    with pytest.raises(DataError, match=f"table.csv: missing: expected sha256 {sha(TABLE)}, actual none"):
        startup(raw, pin)


def test_an_added_file_is_named_with_its_digest_and_more_changes_are_counted(pinned):
    raw, pin = pinned
    (raw / "scans" / "c.txt").write_bytes(SCAN_C)
    (raw / "scans" / "b.txt").unlink()
    with pytest.raises(DataError) as err:
        startup(raw, pin)
    message = str(err.value)
    assert "b.txt: missing" in message and "1 more file differs" in message  # sorted by path: b before c
    (raw / "scans" / "b.txt").write_bytes(SCAN_B)
    with pytest.raises(DataError, match=f"c.txt: added since pinning: expected no file, actual sha256 "
                                        f"{sha(SCAN_C)}"):
        startup(raw, pin)


def test_hidden_files_and_the_pin_itself_are_not_part_of_the_data(tmp_path):
    raw = make_copy(tmp_path / "raw")
    pinning.write_manifest(raw, raw / pinning.MANIFEST_FILE)  # a generator's pin, inside the directory
    (raw / ".snakemake_timestamp").write_text("")
    (raw / ".cache").mkdir()
    (raw / ".cache" / "x").write_text("x")
    assert startup(raw, raw / pinning.MANIFEST_FILE, made_by_rule=True) == 3
    cache = pinning.stat_cache_path(raw / pinning.MANIFEST_FILE)
    assert cache.is_file() and raw not in cache.parents  # never inside the raw directory (a rule's output)
    assert not [p.name for p in raw.iterdir() if p.name.endswith(".tsv")]


# ---------------------------------------------------------------- the stat cache


def test_touch_without_change_passes_and_rehashes_only_that_file(pinned, monkeypatch):
    raw, pin = pinned
    hashed = []
    real = pinning.sha256_file
    monkeypatch.setattr(pinning, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    assert startup(raw, pin) == 3 and hashed == []  # the first use cached every file's state
    touched = raw / "scans" / "b.txt"
    later = touched.stat().st_mtime_ns + 5_000_000_000
    os.utime(touched, ns=(later, later))
    assert startup(raw, pin) == 3 and hashed == ["b.txt"]
    cache = pinning._read_stat_cache(pin)
    assert cache["scans/b.txt"] == (7, later, sha(SCAN_B))
    assert startup(raw, pin) == 3 and hashed == ["b.txt"]  # the cache now holds the new state


def test_a_damaged_stat_cache_only_costs_hashing(pinned):
    raw, pin = pinned
    pinning.stat_cache_path(pin).write_text("garbage\n")
    assert startup(raw, pin) == 3
    assert set(pinning._read_stat_cache(pin)) == {"scans/a.txt", "scans/b.txt", "table.csv"}


def test_the_obtain_step_hashes_every_file_whatever_the_cache_says(pinned):
    raw, pin = pinned
    path = raw / "scans" / "a.txt"
    stat = path.stat()
    path.write_bytes(b"scan X\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, old mtime: invisible to a stat check
    assert startup(raw, pin) == 3
    hashing._memo.clear()  # the obtain step runs in a process of its own
    with pytest.raises(DataError, match="a.txt: sha256 mismatch"):
        pinning.verify(raw, pin, thorough=True)


# ---------------------------------------------------------------- the startup check's other cases


def test_startup_check_skips_what_is_not_pinned_and_stops_on_a_vanished_copy(tmp_path, pinned):
    raw, pin = pinned
    assert startup(None, pin) is None  # no copy configured: the config check reports it
    assert startup(tmp_path / "not_yet", tmp_path / "pins" / "other.sha256") is None  # never pinned
    assert startup(tmp_path / "remade", pin, made_by_rule=True) is None  # a rule makes it again
    with pytest.raises(DataError, match=f"copy of toy pinned in {pin} is missing"):
        startup(tmp_path / "moved", pin)
    generated = make_copy(tmp_path / "generated")  # a generated directory without its manifest
    with pytest.raises(DataError, match=f"delete {generated} and the workflow makes it again"):
        startup(generated, generated / pinning.MANIFEST_FILE, made_by_rule=True)


# ---------------------------------------------------------------- the obtain step


def test_first_obtain_pins_a_copy_and_a_forced_obtain_never_repins_a_change(tmp_path, caplog):
    raw = make_copy(tmp_path / "copy")
    pins = tmp_path / "provenance" / "pins"
    out = tmp_path / "results" / "raw_manifest.sha256"
    with caplog.at_level("INFO", logger="medrepro.data.sourcing"):
        first = sourcing.obtain(TOY, raw, out, mode="verify", pins_dir=pins)
    pin = pins / "toy-pinning-test.sha256"
    assert first["pin"] == str(pin) and f"first use: pinned 3 files in {pin}" in caplog.text
    assert out.read_text() == pin.read_text()
    assert "first use: pinned 3 files of toy-pinning-test" in pinning.log_path(pin).read_text()
    pinned_text = pin.read_text()

    (raw / "table.csv").write_bytes(TABLE + b"c" + NL)
    out.unlink()  # what a forced rerun does to the step's output before the step runs
    with pytest.raises(DataError) as err:
        sourcing.obtain(TOY, raw, out, mode="verify", pins_dir=pins)
    assert f"expected {sha(TABLE)}, actual {sha(TABLE + b'c' + NL)}" in str(err.value)
    assert f"--verified-copy {out}" in str(err.value)
    assert pin.read_text() == pinned_text and not out.exists()
    assert "re-pinned" not in pinning.log_path(pin).read_text()


def test_a_copy_with_its_own_manifest_is_checked_against_it_before_pinning(tmp_path):
    raw = make_copy(tmp_path / "copy")
    pinning.write_manifest(raw, raw / pinning.MANIFEST_FILE)
    (raw / "scans" / "b.txt").write_bytes(b"scan B\n")
    with pytest.raises(DataError, match=f"b.txt: sha256 mismatch.*listed in {raw / pinning.MANIFEST_FILE}"):
        sourcing.obtain(TOY, raw, tmp_path / "out.sha256", mode="verify", pins_dir=tmp_path / "pins")
    assert not (tmp_path / "pins" / "toy-pinning-test.sha256").exists()


# ---------------------------------------------------------------- re-pinning


def test_repin_shows_and_logs_every_difference_then_the_check_passes(pinned, tmp_path):
    raw, pin = pinned
    verified = tmp_path / "results" / "raw_manifest.sha256"
    verified.parent.mkdir()
    verified.write_text(pin.read_text())
    (raw / "scans" / "a.txt").write_bytes(CORRECTED)
    (raw / "table.csv").unlink()
    (raw / "scans" / "c.txt").write_bytes(SCAN_C)
    shown = []
    found = pinning.repin("toy", raw, pin, reason="corrected scan a", verified_copies=[verified], echo=shown.append)
    assert [(d.kind, d.path) for d in found] == [("changed", "scans/a.txt"), ("added", "scans/c.txt"),
                                                 ("missing", "table.csv")]
    text = "\n".join(shown)
    assert f"changed scans/a.txt: {sha(SCAN_A)} -> {sha(CORRECTED)}" in text
    assert f"added scans/c.txt: - -> {sha(SCAN_C)}" in text
    assert f"removed table.csv: {sha(TABLE)} -> -" in text
    log = pinning.log_path(pin).read_text().splitlines()
    assert "re-pinned 3 files of toy" in log[-4] and "reason corrected scan a" in log[-4] and "user " in log[-4]
    assert "(1 changed, 1 removed, 1 added)" in log[-4] and log[-3:] == [f"  {line.strip()}" for line in shown[:3]]
    assert not verified.exists()  # the workflow verifies again and remakes what came from the old data
    assert pinning.read_manifest(pin) == {"scans/a.txt": sha(CORRECTED), "scans/b.txt": sha(SCAN_B),
                                          "scans/c.txt": sha(SCAN_C)}
    assert startup(raw, pin) == 3


def test_repin_without_differences_changes_nothing(pinned):
    raw, pin = pinned
    before = (pin.read_text(), pinning.log_path(pin).read_text())
    shown = []
    assert pinning.repin("toy", raw, pin, echo=shown.append) == []
    assert "nothing to re-pin" in shown[0] and (pin.read_text(), pinning.log_path(pin).read_text()) == before


def test_repin_on_the_command_line(pinned, capsys):
    raw, pin = pinned
    (raw / "scans" / "b.txt").write_bytes(b"scan b, v2\n")
    assert cli_main(["data", "repin", "toy", "--raw-dir", str(raw), "--pin", str(pin), "--reason", "v2"]) == 0
    out = capsys.readouterr().out
    assert "changed scans/b.txt" in out and f"logged in {pinning.log_path(pin)}" in out
    assert startup(raw, pin) == 3
    assert cli_main(["data", "repin", "toy", "--raw-dir", str(raw / "nope"), "--pin", str(pin)]) == 2
    assert "nope: no such directory" in capsys.readouterr().err
