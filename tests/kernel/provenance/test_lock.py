"""The locked environment: the lock pins every package exactly, with hashes; the conda environments,
pyproject.toml's ranges, the Makefile's torch version and the installed packages all agree with it."""

import importlib.metadata
import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from medrepro.provenance import records as provenance
from medrepro.provenance.records import LOCK_FILE, locked_versions, normalise_package

from conftest import REPO

LOCK = REPO / LOCK_FILE


@pytest.fixture(scope="module")
def locked():
    return locked_versions(LOCK)


def makefile_torch_version() -> str:
    (version,) = re.findall(r"^TORCH_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    return version


def conda_pins(path):
    """(name, version) of every package a conda environment file names, conda and pip sections alike."""
    pins = []
    for entry in yaml.safe_load(path.read_text())["dependencies"]:
        for spec in entry["pip"] if isinstance(entry, dict) else [entry]:
            name, _, version = re.match(r"^([A-Za-z0-9._-]+)\s*(==|=)?\s*(\S*)$", spec).groups()
            pins.append((name, version))
    return pins


def test_the_lock_pins_every_package_exactly_with_hashes():
    text = LOCK.read_text()
    requirements = [line for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("#")]
    assert len(requirements) > 50
    for line in requirements:
        assert re.match(r"^[A-Za-z0-9._-]+==[^\s;]+ \\$", line), line  # name==version, hashes follow
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if not block.startswith("#"))


def test_torch_is_pinned_by_the_makefile_not_by_the_lock(locked):
    """torch's files, and so their hashes, differ by source (local wheel, CPU index, GPU index)."""
    assert "torch" not in locked
    assert "# torch" in LOCK.read_text()  # uv lists it as excluded
    assert re.fullmatch(r"\d+\.\d+\.\d+", makefile_torch_version())


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_conda_environments_pin_the_locked_versions(env, locked):
    versions = {**locked, "torch": makefile_torch_version()}
    for name, version in conda_pins(REPO / "envs" / env):
        if name == "python":
            assert version == "3.11", env
        elif name != "pip":
            assert version == versions[normalise_package(name)], (env, name, version)


def test_pyproject_ranges_admit_the_locked_versions(locked):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    versions = {**locked, "torch": makefile_torch_version()}
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(versions[normalise_package(requirement.name)]), spec


def test_the_installed_environment_is_the_locked_one(locked):
    installed = {normalise_package(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    differs = {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version}
    assert differs == {}
    assert installed["torch"].split("+")[0] == makefile_torch_version()


def test_every_provenance_record_names_the_lock(tmp_path):
    record = provenance.build_record(rule="r", wildcards={}, inputs=[], outputs=[], params={}, threads=1,
                                     resources={}, started="s", finished="f", log=[])
    assert record["lock"]["file"] == LOCK_FILE
    assert record["lock"]["sha256"] == provenance.sha256_file(LOCK)
    assert record["lock"]["installed_from"] == record["lock"]["sha256"]  # `make` installed this lock
    assert record["lock"]["differs"] == {}


def test_a_package_at_another_version_than_locked_is_named(tmp_path):
    (tmp_path / LOCK_FILE).write_text("numpy==0.0.1 \\\n    --hash=sha256:00\n")
    state = provenance.lock_state({"numpy": "2.0.0", "pandas": "3.0"}, repo_dir=tmp_path)
    assert state["differs"] == {"numpy": {"locked": "0.0.1", "installed": "2.0.0"}}
    assert provenance.lock_state({}, repo_dir=tmp_path / "elsewhere") is None
