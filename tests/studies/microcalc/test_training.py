"""Training the Detector and the Segmentator from a patch database: files, validation, resume, loading, labels.

The database is tiny (11 x 11 patches of twelve 72 x 64 images with bright spots) and the networks narrow, so a run
of a few dozen steps takes well under a second on one thread.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.errors import ConfigError, DataError
from medrepro.nn.training.checkpoint import load_torch, save_torch_atomic
from medrepro.studies.microcalc import networks, patchdb, patches, training
from medrepro.studies.microcalc.patchdb import ExtractionSettings, Mammogram, PatchDatabase
from medrepro.studies.microcalc.patches import C1, C4
from support import training as support_training
from support.interrupt import Interrupted, kill_at

SIZE, STEPS, LR = 11, 40, 0.03
EXTRACTION = ExtractionSettings(patch_size=SIZE, sampling=patches.CandidateSampling(30, 8, 40),
                                held_out={"val": 48, "test": 24}, seed=3)
ARCHITECTURE = dict(widths=(4, 4, 8, 8, 8, 8), hidden=8, dropout=0.5)
# Validation every 2 steps, the rate halved after 2 validations without improvement, a stop after 4: at this rate
# the validation loss soon stalls, so that both act within the run.
settings_for = partial(support_training.settings_for, name="seg", steps=STEPS, batch_size=16, lr=LR, seed=4,
                       checkpoint_every=5, log_every=3, val_every=2, plateau_patience=2, early_stopping_patience=4)
pytestmark = pytest.mark.usefixtures("restore_thread_count")


def mammogram(index: int, shape=(72, 64)) -> Mammogram:
    """A bright half-disc breast on a dark background with five calcifications of 4-9 pixels."""
    rng = np.random.default_rng(index)
    r, c = np.mgrid[:shape[0], :shape[1]]
    breast = ((r - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + (c / (shape[1] * 0.85)) ** 2 <= 1
    image = np.where(breast, 0.5, 0.05) + rng.normal(0, 0.02, shape)
    mask = np.zeros(shape, dtype=bool)
    for row, col in zip(rng.integers(18, 50, 5), rng.integers(8, 36, 5)):
        mask[row:row + rng.integers(2, 4), col:col + rng.integers(2, 4)] = True
    image[mask] = 0.9
    return Mammogram(f"case{index:02d}", image.astype(np.float32), mask, f"raw/case{index:02d}.png", f"{index:064x}",
                     digital=True)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp("patchdb") / "patches.sqlite"
    names = [f"case{i:02d}" for i in range(12)]
    split = patches.split_images(names, seed=1)
    patchdb.build_patch_database(path, (mammogram(i) for i in range(12)), split, EXTRACTION)
    return path


@pytest.fixture(scope="module")
def straight(database, tmp_path_factory):
    """An uninterrupted Segmentator run, and its summary."""
    run = settings_for(tmp_path_factory.mktemp("straight"))
    return run, training.train_network(database, "segmentator", "same", run, **ARCHITECTURE)


def test_training_writes_the_model_and_the_loss_log(straight, database):
    run, summary = straight
    saved = load_torch(run.out_path)
    assert saved["kind"] == "microcalc_segmentator"
    with PatchDatabase(database) as db:
        fingerprint = training.database_fingerprint(db)
    assert saved["config"] == {
        "label": "segmentator", "variant": "same", "patch": SIZE, "widths": [4, 4, 8, 8, 8, 8], "hidden": 8,
        "dropout": 0.5, "batch_size": 16, "lr": LR, "seed": 4, "spread": {"C1": 1.0, "C2": 1.0, "C3": 1.0, "C4": 1.0},
        "augment": True, "database_sha256": fingerprint, "val_every": 2, "plateau_patience": 2,
        "plateau_factor": 0.5, "early_stopping_patience": 4, "steps": STEPS}
    log = pd.read_csv(run.log_csv)
    assert list(log.columns) == [*training.LOG_COLUMNS, "lr"]
    val, train = log.query("split == 'val'"), log.query("split == 'train'")
    last = summary["stopped_at_step"] or STEPS
    assert val["step"].tolist() == list(range(2, last + 1, 2)) and train["step"].max() == last
    assert train[training.CLASS_ACCURACIES].isna().all().all() and val[training.CLASS_ACCURACIES].notna().all().all()
    assert val[["accuracy", *training.CLASS_ACCURACIES]].stack().between(0, 1).all()
    assert train["lr"].iloc[0] == LR and (np.diff(train["lr"]) <= 0).all() and summary["final_lr"] < LR
    assert 0 < summary["sampling_share"] < 1 and summary["timed_steps"] == summary["steps_run"] - 1
    assert summary["sampling_seconds_per_step"] < summary["timed_step_seconds"]


def test_the_published_weights_score_the_best_validation_row(straight, database):
    """The model file holds the best validation's weights; scored again they give that row's numbers, the
    per-class accuracies exactly."""
    run, summary = straight
    model, config = training.load_network(run.out_path, "segmentator")
    assert isinstance(model, networks.Segmentator) and not model.training and config["label"] == "segmentator"
    row = pd.read_csv(run.log_csv).query("split == 'val' and step == @summary['best_step']").iloc[0]
    assert row["total"] == summary["best_val"]
    with PatchDatabase(database) as db:
        held_out = db.patch_set("val")
    probability = training.predict(model, held_out.pixels)
    assert probability.shape == (48,) and ((probability >= 0) & (probability <= 1)).all()
    correct = (probability > 0.5) == held_out.labels("segmentator").astype(bool)
    assert row["accuracy"] == pytest.approx(correct.mean(), abs=1e-6)
    for c in patches.CLASSES:
        assert row[f"accuracy_C{c}"] == pytest.approx(correct[held_out.classes == c].mean(), abs=1e-9)
    logits = model(torch.from_numpy(held_out.pixels))
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(held_out.segmentator)).item()
    assert row["total"] == pytest.approx(expected, rel=1e-5)
    assert np.allclose(training.predict(model, held_out.pixels[:, 0], batch_size=7), probability, atol=1e-6)


def test_resume_after_an_interruption_gives_identical_files(straight, database, tmp_path):
    uninterrupted = straight[0]
    kill = max(6, (straight[1]["stopped_at_step"] or STEPS) - 3)  # a few steps before the end
    run = settings_for(tmp_path)
    with pytest.raises(Interrupted):
        training.train_network(database, "segmentator", "same", run.replace(callback=kill_at(kill)), **ARCHITECTURE)
    assert run.checkpoint_path.exists() and not run.out_path.exists()
    torch.manual_seed(99)
    summary = training.train_network(database, "segmentator", "same", run, **ARCHITECTURE)
    assert summary["resumed_from_step"] == kill // 5 * 5
    assert summary["stopped_at_step"] == straight[1]["stopped_at_step"]
    assert run.out_path.read_bytes() == uninterrupted.out_path.read_bytes()
    assert run.log_csv.read_bytes() == uninterrupted.log_csv.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.losses.csv", "seg.pt"]


def test_a_checkpoint_of_another_run_is_not_resumed(database, tmp_path):
    run = settings_for(tmp_path, steps=8, checkpoint_every=4)
    with pytest.raises(Interrupted):
        training.train_network(database, "segmentator", "same", run.replace(callback=kill_at(5)), **ARCHITECTURE)
    with pytest.warns(UserWarning, match="another configuration.*dropout: checkpoint 0.5 vs now 0.25"):
        summary = training.train_network(database, "segmentator", "same", run, **{**ARCHITECTURE, "dropout": 0.25})
    assert summary["resumed_from_step"] == 0


def test_the_label_decides_which_patches_count_positive(database, tmp_path, monkeypatch):
    drawn = []

    def recording(batch, device):
        drawn.append((batch.classes, batch.labels))
        return real(batch, device)

    real = training.training_batch
    monkeypatch.setattr(training, "training_batch", recording)
    for label, positive in (("detector", lambda c: c != C4), ("segmentator", lambda c: c == C1)):
        drawn.clear()
        run = settings_for(tmp_path / label, steps=3)
        training.train_network(database, label, "same", run, **ARCHITECTURE)
        assert len(drawn) == 3
        for classes, labels in drawn:
            assert np.array_equal(labels, positive(classes).astype(int)) and labels.sum() == 8
        model, _ = training.load_network(run.out_path)
        assert type(model) is training.NETWORKS[label]
    with PatchDatabase(database) as db:
        held_out = db.patch_set("val")
    for label, positive in (("detector", held_out.classes != C4), ("segmentator", held_out.classes == C1)):
        labels = training.validation_set(held_out, label, torch.device("cpu")).batch(slice(None))[1]
        assert np.array_equal(labels.numpy(), positive.astype(int))


def test_a_file_of_another_kind_is_refused(straight, tmp_path):
    other = tmp_path / "other.pt"
    save_torch_atomic({"kind": "tissue_classifier", "config": {}, "state_dict": {}}, other)
    with pytest.raises(DataError, match="not a microcalcification network.*'tissue_classifier'"):
        training.load_network(other)
    with pytest.raises(DataError, match="not a detector.*'microcalc_segmentator'"):
        training.load_network(straight[0].out_path, "detector")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(DataError, match="cannot read microcalcification network"):
        training.load_network(tmp_path / "junk.pt")


def test_a_variant_the_patches_are_too_small_for_is_refused(database, tmp_path):
    with pytest.raises(ConfigError, match="too small for the 'valid' variant"):
        training.train_network(database, "detector", "valid", settings_for(tmp_path), **ARCHITECTURE)
    with pytest.raises(ConfigError, match="neither 'same' nor 'valid'"):
        training.train_network(database, "detector", "full", settings_for(tmp_path), **ARCHITECTURE)
    with pytest.raises(ConfigError, match="neither 'detector' nor 'segmentator'"):
        training.train_network(database, "classifier", "same", settings_for(tmp_path), **ARCHITECTURE)
    assert not list(tmp_path.iterdir())


def test_class_weights_turn_batch_means_into_per_class_accuracies():
    classes = np.array([1, 1, 2, 4, 4, 4])
    weights = training.class_weights(classes)
    assert np.isnan(weights[2]).all()  # no C3 in the set
    correct = np.array([1, 0, 1, 1, 1, 0], dtype=float)
    batches = [slice(0, 4), slice(4, 6)]
    means = [(correct[b] * weights[:, b]).mean(axis=1) * (b.stop - b.start) for b in batches]
    assert np.allclose(sum(means)[[0, 1, 3]] / len(classes), [0.5, 1.0, 2 / 3])


def test_the_paper_schedule_fills_in_only_what_the_settings_leave_open(tmp_path):
    filled = training.with_paper_schedule(settings_for(tmp_path, plateau_patience=None, early_stopping_patience=7))
    assert (filled.plateau_patience, filled.early_stopping_patience) == (training.PLATEAU_PATIENCE, 7)
