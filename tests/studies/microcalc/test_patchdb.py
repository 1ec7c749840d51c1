"""The patch database: written atomically, refused when unfinished, split by image; balanced, augmented
minibatches drawn from it that keep every patch's class."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import textwrap

import numpy as np
import pytest

from medrepro.errors import ConfigError, DataError
from medrepro.studies.microcalc import patchdb, patches
from medrepro.studies.microcalc.patchdb import BalancedSampler, ExtractionSettings, Mammogram, PatchDatabase
from medrepro.studies.microcalc.patches import C1, C2, C3, C4, Labelling

SIZE = 11
SETTINGS = ExtractionSettings(patch_size=SIZE, sampling=patches.CandidateSampling(30, 8, 40),
                              held_out={"val": 36, "test": 24}, seed=5)


def mammogram(index: int, shape=(90, 80)) -> Mammogram:
    """A bright half-ellipse breast on a dark background with six calcifications of 4-16 pixels."""
    rng = np.random.default_rng(index)
    r, c = np.mgrid[:shape[0], :shape[1]]
    breast = ((r - shape[0] / 2) / (shape[0] * 0.42)) ** 2 + (c / (shape[1] * 0.8)) ** 2 <= 1
    image = np.where(breast, 0.5, 0.05) + rng.normal(0, 0.02, shape)
    mask = np.zeros(shape, dtype=bool)
    for row, col in zip(rng.integers(25, 65, 6), rng.integers(10, 45, 6)):
        mask[row:row + rng.integers(2, 5), col:col + rng.integers(2, 5)] = True
    image[mask] = 0.9
    return Mammogram(f"case{index:02d}", image.astype(np.float32), mask, f"raw/case{index:02d}.dcm", f"{index:064x}",
                     digital=index % 2 == 0, pixel_size=0.05, mask_source=f"raw/case{index:02d}_mask.png")


NAMES = [f"case{i:02d}" for i in range(14)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished database of 14 images, its path and its images' splits."""
    path = tmp_path_factory.mktemp("patchdb") / "patches.sqlite"
    split = patches.split_images(NAMES, seed=1)
    counts = patchdb.build_patch_database(path, (mammogram(i) for i in range(14)), split, SETTINGS)
    return path, split, counts


@pytest.fixture
def database(built):
    with PatchDatabase(built[0]) as db:
        yield db


def test_the_images_table_records_each_image_its_split_and_source(database, built):
    _, split, _ = built
    images = database.images()
    assert sorted(images["name"]) == NAMES
    assert dict(zip(images["name"], images["split"])) == split
    first = images.set_index("name").loc["case02"]
    assert first["source"] == "raw/case02.dcm" and first["sha256"] == f"{2:064x}" and first["digital"] == 1
    assert first["pixel_size"] == 0.05 and (first["height"], first["width"]) == (90, 80)
    assert images.set_index("name").loc["case03", "digital"] == 0


def test_no_image_has_patches_in_two_splits(database):
    connection = database.connection
    mixed = connection.execute('SELECT image_id FROM patches GROUP BY image_id HAVING COUNT(DISTINCT "set") > 1')
    assert mixed.fetchall() == []
    crossing = connection.execute('SELECT COUNT(*) FROM patches p JOIN images i ON p.image_id = i.id '
                                  'WHERE p."set" != i.split').fetchone()[0]
    assert crossing == 0
    per_split = dict(connection.execute('SELECT "set", COUNT(DISTINCT image_id) FROM patches GROUP BY "set"'))
    assert per_split == {"train": 12, "val": 1, "test": 1}


def test_the_held_out_sets_have_the_class_mix(database, built):
    counts = built[2]
    assert counts["val"] == {"C1": 18, "C2": 6, "C3": 6, "C4": 6}
    assert counts["test"] == {"C1": 12, "C2": 4, "C3": 4, "C4": 4}
    assert database.counts() == counts == database.meta["counts"]
    val = database.patch_set("val")
    assert val.pixels.shape == (36, 1, SIZE, SIZE) and val.pixels.dtype == np.float32
    assert np.array_equal(val.labels("detector"), (val.classes != C4).astype(int))
    assert np.array_equal(val.labels("segmentator"), (val.classes == C1).astype(int))


def test_stored_patches_are_the_image_windows_with_their_classes_and_labels(database):
    rows = database.connection.execute('SELECT p.id, i.name, p.row, p.col, p.size, p.class, p.detector, '
                                       'p.segmentator FROM patches p JOIN images i ON p.image_id = i.id').fetchall()
    half = SIZE // 2
    checked = 0
    for patch_id, name, row, col, size, cls, detector, segmentator in rows[::25]:
        source = mammogram(NAMES.index(name))
        assert size == SIZE
        assert cls == patches.class_map(source.mask, SIZE)[row, col]
        assert (detector, segmentator) == (int(cls != C4), int(cls == C1))
        window = source.image[row - half:row + half + 1, col - half:col + half + 1]
        assert np.array_equal(database.pixels([patch_id])[0], window)
        checked += 1
    assert checked > 20


def test_the_settings_and_the_completion_marker_are_in_the_meta_table(database):
    assert database.meta["complete"] is True
    assert database.meta["settings"]["patch_size"] == SIZE
    assert database.meta["settings"]["labelling"] == {"metric": "chebyshev", "band": [1.0, 3.0]}
    keys = [k for (k,) in database.connection.execute("SELECT key FROM meta")]
    assert "complete" in keys and "counts" in keys


def test_the_sampling_queries_have_their_indexes(database):
    indexes = {name for (name,) in database.connection.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"patches_by_set_class", "patches_by_image"} <= indexes
    plan = " ".join(str(row) for row in database.connection.execute(
        'EXPLAIN QUERY PLAN SELECT class, id FROM patches WHERE "set" = ? ORDER BY class, id', ("train",)))
    assert "patches_by_set_class" in plan


@pytest.mark.parametrize("label, expected", [
    ("detector", {C1: 1 / 6, C2: 1 / 6, C3: 1 / 6, C4: 1 / 2}),
    ("segmentator", {C1: 1 / 2, C2: 1 / 6, C3: 1 / 6, C4: 1 / 6}),
])
def test_minibatches_are_balanced_and_spread_over_the_classes(database, label, expected):
    sampler = BalancedSampler(database, label, batch_size=60)
    stored = dict(database.connection.execute('SELECT id, class FROM patches WHERE "set" = ?', ("train",)))
    rng = np.random.default_rng(0)
    draws = [sampler.draw(rng) for _ in range(400)]
    for draw in draws:
        assert draw.labels.sum() == 30  # as many positive as negative samples in every batch
        assert [stored[i] for i in draw.ids] == draw.classes.tolist()
        assert np.array_equal(draw.labels, patches.detector_label(draw.classes) if label == "detector"
                              else patches.segmentator_label(draw.classes))
    classes = np.concatenate([d.classes for d in draws])
    for c, share in expected.items():
        assert np.mean(classes == c) == pytest.approx(share, abs=0.01)
    codes = np.concatenate([d.codes for d in draws])
    assert np.bincount(codes, minlength=8) / len(codes) == pytest.approx(np.full(8, 1 / 8), abs=0.01)


def test_a_spread_weights_the_classes_of_each_half(database):
    sampler = BalancedSampler(database, "segmentator", batch_size=64, spread={C1: 1, C2: 2, C3: 1, C4: 1})
    classes = np.concatenate([sampler.draw(np.random.default_rng(k)).classes for k in range(200)])
    assert np.mean(classes == C2) == pytest.approx(0.25, abs=0.01)
    assert np.mean(classes == C1) == pytest.approx(0.5, abs=1e-12)


def test_every_source_of_pixels_gives_the_same_batches(database):
    modes = [BalancedSampler(database, "detector", batch_size=32, in_memory=True),
             BalancedSampler(database, "detector", batch_size=32, in_memory=False),
             BalancedSampler(database, "detector", batch_size=32, device="cpu")]
    assert [m.in_memory for m in modes] == [True, False, True]
    batches = [m(np.random.default_rng(7)) for m in modes]
    for batch in batches[1:]:
        assert np.array_equal(np.asarray(batch.pixels), batches[0].pixels)
        assert np.array_equal(batch.ids, batches[0].ids)
    assert batches[0].pixels.shape == (32, 1, SIZE, SIZE) and batches[0].pixels.dtype == np.float32


def test_sampled_pixels_are_the_stored_patches_turned_or_mirrored(database):
    batch = BalancedSampler(database, "segmentator", batch_size=64)(np.random.default_rng(3))
    stored = database.pixels(batch.ids)
    maps = [[np.array_equal(patchdb.dihedral(s, *m), b[0]) for m in patchdb.DIHEDRAL]
            for s, b in zip(stored, batch.pixels)]
    assert all(any(row) for row in maps)
    assert not all(row[0] for row in maps)  # not left as stored
    plain = BalancedSampler(database, "segmentator", batch_size=64, augment=False)(np.random.default_rng(3))
    assert np.array_equal(plain.pixels[:, 0], database.pixels(plain.ids))


@pytest.mark.parametrize("labelling", [Labelling("chebyshev"), Labelling("euclidean"), Labelling("euclidean", (2, 3))])
def test_turns_and_mirrors_keep_every_class(labelling):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(150):
        mask = rng.random((15, 15)) < rng.choice([0.0, 0.003, 0.01, 0.05])
        cls = patches.patch_class(mask, labelling)
        seen.add(cls)
        for turns, mirror in patchdb.DIHEDRAL:
            assert patches.patch_class(patchdb.dihedral(mask, turns, mirror), labelling) == cls
        augmented = patchdb.augment_dihedral(np.stack([mask] * 8), rng)
        assert [patches.patch_class(m, labelling) for m in augmented] == [cls] * 8
    assert seen == {C1, C2, C3, C4}


def test_the_eight_maps_are_distinct_and_their_index_matches_them():
    square = np.arange(25).reshape(5, 5)
    images = {patchdb.dihedral(square, *m).tobytes() for m in patchdb.DIHEDRAL}
    assert len(images) == 8
    index = patchdb.dihedral_index(5)
    for code, m in enumerate(patchdb.DIHEDRAL):
        assert np.array_equal(square.ravel()[index[code]], patchdb.dihedral(square, *m).ravel())


def test_the_sampler_cost_is_measured(database):
    assert 0 < patchdb.sampler_cost(BalancedSampler(database, "detector", batch_size=16), batches=3) < 1


def test_a_side_without_patches_is_refused(database):
    with pytest.raises(DataError, match="no positive segmentator samples"):
        BalancedSampler(database, "segmentator", spread={C1: 0, C2: 1, C3: 1, C4: 1})
    with pytest.raises(ConfigError, match="neither"):
        BalancedSampler(database, "classifier")


def test_a_failure_mid_write_leaves_no_database(tmp_path):
    target = tmp_path / "patches.sqlite"

    def failing():
        yield mammogram(0)
        yield mammogram(1)
        raise OSError("disk went away")

    split = patches.split_images(NAMES, seed=1)
    with pytest.raises(OSError, match="disk went away"):
        patchdb.build_patch_database(target, failing(), split, SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_an_image_with_no_breast_is_refused_and_leaves_no_database(tmp_path):
    target = tmp_path / "patches.sqlite"
    blank = Mammogram("case03", np.full((90, 80), 0.2, np.float32), np.zeros((90, 80), bool), "raw/case03.dcm",
                      "0" * 64, digital=True)
    images = [mammogram(0), blank]
    with pytest.raises(DataError, match="case03.*no breast"):
        patchdb.build_patch_database(target, images, patches.split_images(NAMES, seed=1), SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_images_without_a_split_or_with_a_misfitting_mask_are_refused(tmp_path):
    split = patches.split_images(NAMES, seed=1)
    stranger = Mammogram("elsewhere", *(lambda m: (m.image, m.mask))(mammogram(0)), "raw/x.dcm", "0" * 64, True)
    with pytest.raises(DataError, match="'elsewhere' has no split"):
        patchdb.build_patch_database(tmp_path / "a.sqlite", [stranger], split, SETTINGS)
    m = mammogram(0)
    skewed = Mammogram(m.name, m.image, m.mask[:, :-1], m.source, m.sha256, True)
    with pytest.raises(DataError, match="calcification mask is"):
        patchdb.build_patch_database(tmp_path / "b.sqlite", [skewed], split, SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_its_completion_marker_is_refused(built, tmp_path):
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(built[0].read_bytes())
    with sqlite3.connect(copy) as connection:
        connection.execute("DELETE FROM meta WHERE key = 'complete'")
    connection.close()
    with pytest.raises(DataError, match="incomplete.*delete it and rerun"):
        PatchDatabase(copy)


def test_files_that_are_no_finished_database_are_refused(tmp_path):
    with pytest.raises(DataError, match="run the patch extraction first"):
        PatchDatabase(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="delete it and rerun"):
        PatchDatabase(junk)
    schema_only = tmp_path / "schema_only.sqlite"
    with sqlite3.connect(schema_only) as connection:
        connection.executescript(patchdb.SCHEMA)
    connection.close()
    with pytest.raises(DataError, match="incomplete"):
        PatchDatabase(schema_only)


KILLED_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_patchdb import SETTINGS, NAMES, mammogram
from medrepro.studies.microcalc import patchdb, patches

def images():
    yield mammogram(0)
    yield mammogram(1)
    Path({ready!r}).write_text("writing")
    time.sleep(60)
    yield mammogram(2)

patchdb.build_patch_database({target!r}, images(), patches.split_images(NAMES, seed=1), SETTINGS)
"""


def test_a_killed_extraction_leaves_nothing_that_looks_finished(tmp_path):
    out = tmp_path / "out"
    target, ready = out / "patches.sqlite", tmp_path / "ready"
    script = KILLED_WRITER.format(tests=os.path.dirname(__file__), ready=str(ready), target=str(target))
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the writer did not start"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not target.exists()
    leftovers = list(out.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".patches.sqlite.")
    with pytest.raises(DataError, match="delete it and rerun"):
        PatchDatabase(leftovers[0])


def test_extraction_settings_from_a_config_section():
    settings = ExtractionSettings.from_section({"patch_size": 29, "labelling": {"metric": "euclidean", "band": [2, 3]},
                                                "sampling": {"positive_cap": 10}, "mix": {"C1": 1, "C4": 1},
                                                "held_out": {"val": 10, "test": 20}, "seed": 3})
    assert settings.labelling == Labelling("euclidean", (2.0, 3.0))
    assert settings.sampling.positive_cap == 10 and settings.mix == {1: 1.0, 4: 1.0}
    with pytest.raises(ConfigError, match="even"):
        ExtractionSettings(patch_size=48)
    with pytest.raises(ConfigError, match="held_out"):
        ExtractionSettings(held_out={"val": 10})


def test_spread_counts_add_up_and_are_exact_on_average():
    rng = np.random.default_rng(0)
    weights = {C1: 1.0, C2: 2.5, C3: 0.7}
    counts = [patchdb.spread_counts(7, weights, rng) for _ in range(20000)]
    assert all(sum(c.values()) == 7 for c in counts)
    mean = np.mean([[c[k] for k in weights] for c in counts], axis=0)
    assert mean == pytest.approx(7 * np.array([1.0, 2.5, 0.7]) / 4.2, abs=0.02)
