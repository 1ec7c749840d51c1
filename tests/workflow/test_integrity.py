"""Checksums that bite, through the workflow: an edited raw file stops the next run before it starts.

One synthetic JSRT set is made and verified (the obtain step alone, seconds); then a raw file is edited.
"""

import hashlib
import shlex
import subprocess
import sys

from medrepro.provenance.pinning import MANIFEST_FILE, read_manifest

from conftest import REPO, snakemake


def plan(results, *extra):
    target = f"{results}/chest/JSRT/raw_manifest.sha256"
    return snakemake("--cores", "2", "--configfile", "config/smoke.yaml", "--config", f"results_dir={results}",
                     *extra, "--", target, timeout=300)


def test_an_edited_raw_file_stops_the_next_run_until_it_is_repinned(tmp_path):
    results = tmp_path / "results"
    made = plan(results)
    assert made.returncode == 0, made.stderr[-3000:]
    raw = results / "raw" / "JSRT"
    verified = results / "chest" / "JSRT" / "raw_manifest.sha256"
    assert verified.read_text() == (raw / MANIFEST_FILE).read_text()

    for path in (raw / "images").iterdir():  # a touch changes no content: nothing to do, nothing to stop
        path.touch()
    touched = plan(results, "-n")
    assert touched.returncode == 0 and "Nothing to be done" in touched.stdout + touched.stderr

    image = raw / "images" / "JPCLN001.IMG"
    data = bytearray(image.read_bytes())
    data[1000] ^= 0xFF
    image.write_bytes(bytes(data))
    expected = read_manifest(raw / MANIFEST_FILE)["images/JPCLN001.IMG"]
    actual = hashlib.sha256(bytes(data)).hexdigest()

    for extra in (("-n",), ("--forcerun", "chest_obtain")):
        stopped = plan(results, *extra)
        assert stopped.returncode != 0
        lines = [line for line in stopped.stderr.splitlines() if "sha256 mismatch" in line]
        assert len(lines) == 1 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
        (line,) = lines
        assert line.startswith(f"{image}: sha256 mismatch: expected {expected}, actual {actual}")
        assert verified.exists() and (raw / MANIFEST_FILE).is_file()  # nothing re-pinned, nothing removed

    command = shlex.split(line.split("re-pin: ", 1)[1].split(";")[0])
    assert command[:4] == ["medrepro", "data", "repin", "JSRT"] and command[-2] == "--reason"
    command[-1] = "deliberate edit in a test"
    repinned = subprocess.run([sys.executable, "-m", "medrepro.pipeline.cli", *command[1:]], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    assert repinned.returncode == 0, repinned.stderr
    assert f"changed images/JPCLN001.IMG: {expected} -> {actual}" in repinned.stdout
    assert "reason deliberate edit in a test" in (raw / "MANIFEST.log").read_text()
    assert not verified.exists()  # so that the obtain step verifies the re-pinned data, and all after it reruns

    rerun = plan(results)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_manifest(verified)["images/JPCLN001.IMG"] == actual
    again = plan(results, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
