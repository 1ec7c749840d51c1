"""Training loops: smoke, determinism, checkpoint/resume, inference helpers."""

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.errors import DataError
from medrepro.nn.losses import ncc_loss
from medrepro.studies.chest.autoencoder import load_autoencoder, train_autoencoder
from medrepro.nn.training.checkpoint import load_checkpoint, load_torch
from medrepro.studies.chest.inference import load_registration_model, register_batch, warp_images, warp_label_maps
from medrepro.studies.chest.registration import sample_pairs, train_registration, validation_pairs
from medrepro.nn.training import TrainingSettings
from support.interrupt import Interrupted, kill_at

SIZE, N_CLASSES = 32, 4


def synthetic_chests(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 'lungs' and a 'heart' with random placement; image intensity follows the labels."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:SIZE, :SIZE]
    images = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    labels = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        dy, dx = rng.uniform(-3, 3, 2)
        for label, (cy, cx, ry, rx) in ((1, (15, 9, 9, 4)), (2, (15, 23, 9, 4)), (3, (21, 16, 4, 4))):
            scale = rng.uniform(0.85, 1.15)
            inside = ((ys - cy - dy) / (ry * scale)) ** 2 + ((xs - cx - dx) / (rx * scale)) ** 2 < 1
            labels[i][inside] = label
        images[i] = np.where(labels[i] == 0, 0.8, np.where(labels[i] == 3, 0.6, 0.2))
        images[i] += rng.normal(0, 0.02, (SIZE, SIZE)).astype(np.float32)
    return images, labels


SETTINGS_FIELDS = {f.name for f in dataclasses.fields(TrainingSettings)}


def fit(trainer, *args, **kwargs):
    """Call a trainer with flat keyword arguments: the shared ones go into its TrainingSettings."""
    settings = TrainingSettings(**{k: v for k, v in kwargs.items() if k in SETTINGS_FIELDS})
    return trainer(*args, settings, **{k: v for k, v in kwargs.items() if k not in SETTINGS_FIELDS})




@pytest.fixture(scope="module")
def data():
    return synthetic_chests(10, seed=0)


@pytest.fixture(scope="module")
def autoencoder_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ae")
    _, labels = data
    summary = fit(
        train_autoencoder,         labels[:8], N_CLASSES, steps=40, batch_size=8, lr=1e-2, noise_p=0.1, seed=0, device="cpu",
        checkpoint_path=out / "ae.ckpt", log_csv=out / "ae.losses.csv", out_path=out / "ae.pt",
        checkpoint_every=10, val_labels=labels[8:], progress=False, steps_per_epoch=10,
    )
    return out, summary


def registration_kwargs(tmp_path, autoencoder_path, **overrides):
    kwargs = dict(
        method="AC-RegNet", n_classes=N_CLASSES, autoencoder_path=autoencoder_path, steps=6, batch_size=4,
        seed=3, device="cpu", checkpoint_path=tmp_path / "reg.ckpt", log_csv=tmp_path / "reg.losses.csv",
        out_path=tmp_path / "reg.pt", checkpoint_every=2, progress=False, steps_per_epoch=4,
    )
    kwargs.update(overrides)
    return kwargs


def weights(path) -> dict:
    return load_torch(path)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def first_last_mean(log: pd.DataFrame, column: str, k: int = 5) -> tuple[float, float]:
    train = log[log["split"] == "train"][column].to_numpy()
    return train[:k].mean(), train[-k:].mean()


def test_autoencoder_training_reduces_loss_and_writes_outputs(autoencoder_run):
    out, summary = autoencoder_run
    log = pd.read_csv(out / "ae.losses.csv")
    assert list(log.columns) == ["step", "epoch", "split", "total", "ce"]
    assert (log["split"] == "train").sum() == 40 and (log["split"] == "val").sum() == 4
    first, last = first_last_mean(log, "ce")
    assert last < 0.7 * first
    assert not (out / "ae.ckpt").exists()
    model = load_autoencoder(out / "ae.pt")
    assert model.config["n_classes"] == N_CLASSES and model.config["size"] == SIZE
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert summary["steps_run"] == 40 and summary["final_val"]["step"] == 40


def test_regnet_training_improves_alignment(data, tmp_path):
    images, labels = data
    summary = fit(train_registration, images, labels, **registration_kwargs(
        tmp_path, None, method="RegNet", steps=30, batch_size=8, checkpoint_every=100, steps_per_epoch=10,
        val_images=images, val_labels=labels, val_every=15, val_pairs=32))
    log = pd.read_csv(tmp_path / "reg.losses.csv")
    assert list(log.columns) == ["step", "epoch", "split", "total", "ncc", "tv", "ce", "ae"]
    assert log["ce"].isna().all() and log["ae"].isna().all()
    # Fixed validation pairs: the trained network aligns them better than no registration.
    moving, fixed = validation_pairs(len(images), 32, seed=3)
    unregistered = ncc_loss(torch.from_numpy(images[moving])[:, None], torch.from_numpy(images[fixed])[:, None])
    val = log[log["split"] == "val"]
    assert val["step"].tolist() == [15, 30]
    assert val["ncc"].iloc[-1] < float(unregistered) - 0.02
    assert val["total"].iloc[-1] < val["total"].iloc[0]
    assert summary["final_val"]["ncc"] == pytest.approx(val["ncc"].iloc[-1])
    model = load_registration_model(tmp_path / "reg.pt")
    assert model.config["method"] == "RegNet" and not model.training


def test_acregnet_logs_all_terms_and_validation(data, autoencoder_run, tmp_path):
    images, labels = data
    summary = fit(train_registration, images[:8], labels[:8], **registration_kwargs(
        tmp_path, autoencoder_run[0] / "ae.pt", val_images=images[8:], val_labels=labels[8:], log_every=2))
    log = pd.read_csv(tmp_path / "reg.losses.csv")
    train, val = log[log["split"] == "train"], log[log["split"] == "val"]
    assert train["step"].tolist() == [2, 4, 6] and val["step"].tolist() == [4, 6]
    assert train["epoch"].tolist() == [1, 1, 2]
    assert log[["total", "ncc", "tv", "ce", "ae"]].notna().all().all()
    assert summary["final_val"]["step"] == 6


def test_same_seed_gives_identical_weights(data, autoencoder_run, tmp_path):
    images, labels = data
    ae = autoencoder_run[0] / "ae.pt"
    fit(train_registration, images, labels, **registration_kwargs(tmp_path / "a", ae, steps=3))
    fit(train_registration, images, labels, **registration_kwargs(tmp_path / "b", ae, steps=3))
    assert_same_weights(weights(tmp_path / "a" / "reg.pt"), weights(tmp_path / "b" / "reg.pt"))
    fit(train_registration, images, labels, **registration_kwargs(tmp_path / "c", ae, steps=3, seed=4))
    assert not torch.equal(weights(tmp_path / "a" / "reg.pt")["out_conv.weight"],
                           weights(tmp_path / "c" / "reg.pt")["out_conv.weight"])


def test_registration_resume_equals_uninterrupted(data, autoencoder_run, tmp_path):
    images, labels = data
    ae = autoencoder_run[0] / "ae.pt"
    val = dict(val_images=images[8:], val_labels=labels[8:])
    fit(train_registration, images[:8], labels[:8], **registration_kwargs(tmp_path / "straight", ae, steps=7, **val))

    run = registration_kwargs(tmp_path / "resumed", ae, steps=7, checkpoint_every=3, **val)
    with pytest.raises(Interrupted):
        fit(train_registration, images[:8], labels[:8], **run, callback=kill_at(5))
    assert load_checkpoint(run["checkpoint_path"])["step"] == 3  # steps 4 and 5 are lost and redone
    assert not run["out_path"].exists()
    summary = fit(train_registration, images[:8], labels[:8], **run)
    assert summary["resumed_from_step"] == 3 and summary["steps_run"] == 4
    assert not run["checkpoint_path"].exists()
    assert_same_weights(weights(tmp_path / "straight" / "reg.pt"), weights(run["out_path"]))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "straight" / "reg.losses.csv"),
                                  pd.read_csv(run["log_csv"]))


def test_autoencoder_resume_equals_uninterrupted(data, tmp_path):
    _, labels = data
    common = dict(steps=7, batch_size=4, lr=1e-3, noise_p=0.2, seed=1, device="cpu", progress=False,
                  checkpoint_every=2, log_every=3)

    def paths(name):
        return dict(checkpoint_path=tmp_path / name / "ae.ckpt", log_csv=tmp_path / name / "ae.csv",
                    out_path=tmp_path / name / "ae.pt")

    fit(train_autoencoder, labels, N_CLASSES, **common, **paths("straight"))
    with pytest.raises(Interrupted):
        fit(train_autoencoder, labels, N_CLASSES, **common, **paths("resumed"), callback=kill_at(5))
    assert load_checkpoint(tmp_path / "resumed" / "ae.ckpt")["step"] == 4  # mid log window
    fit(train_autoencoder, labels, N_CLASSES, **common, **paths("resumed"))
    assert_same_weights(weights(tmp_path / "straight" / "ae.pt"), weights(tmp_path / "resumed" / "ae.pt"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "straight" / "ae.csv"),
                                  pd.read_csv(tmp_path / "resumed" / "ae.csv"))


def test_checkpoint_of_another_configuration_is_ignored(data, tmp_path):
    images, labels = data
    run = registration_kwargs(tmp_path / "run", None, method="RegNet", steps=4, lr=1e-3)
    with pytest.raises(Interrupted):
        fit(train_registration, images, labels, **run, callback=kill_at(3))
    changed = {**run, "lr": 5e-4}
    with pytest.warns(UserWarning, match="another configuration"):
        summary = fit(train_registration, images, labels, **changed)
    assert summary["resumed_from_step"] == 0
    fit(train_registration, images, labels, **registration_kwargs(tmp_path / "fresh", None, method="RegNet", steps=4,
                                                             lr=5e-4))
    assert_same_weights(weights(run["out_path"]), weights(tmp_path / "fresh" / "reg.pt"))


def test_inference_helpers(data, tmp_path):
    images, labels = data
    fit(train_registration, images, labels, **registration_kwargs(tmp_path, None, method="RegNet", steps=1))
    model = load_registration_model(tmp_path / "reg.pt")
    displacement = register_batch(model, images[:5], images[5:], batch_size=2)
    assert displacement.shape == (5, 2, SIZE, SIZE) and displacement.dtype == np.float32
    np.testing.assert_allclose(displacement[1:3], register_batch(model, images[1:3], images[6:8], batch_size=8),
                               atol=1e-5)
    zero = np.zeros_like(displacement)
    np.testing.assert_array_equal(warp_label_maps(labels[:5], zero, N_CLASSES), labels[:5])
    np.testing.assert_allclose(warp_images(images[:5], zero), images[:5], atol=1e-5)
    warped = warp_label_maps(labels[:5], displacement, N_CLASSES, batch_size=2)
    assert warped.dtype == np.uint8 and warped.max() < N_CLASSES


def test_pair_sampling_draws_distinct_subjects():
    moving, fixed = sample_pairs(np.random.default_rng(0), 5, 10_000)
    assert (moving != fixed).all()
    counts = np.bincount(moving * 5 + fixed, minlength=25).reshape(5, 5)
    off_diagonal = counts[~np.eye(5, dtype=bool)]
    assert off_diagonal.min() > 0.8 * 10_000 / 20


def test_bad_inputs_are_rejected(data, autoencoder_run, tmp_path):
    images, labels = data
    with pytest.raises(ValueError, match="autoencoder_path"):
        fit(train_registration, images, labels, **registration_kwargs(tmp_path, None))
    with pytest.raises(DataError, match="outside 0..2"):
        fit(train_registration, images, labels, **registration_kwargs(tmp_path, None, method="RegNet", n_classes=3),
                           source="prealigned.npz")
    with pytest.raises(DataError, match="divisible by 8"):
        fit(train_autoencoder, labels[:, :30, :30], N_CLASSES, steps=1, checkpoint_path=tmp_path / "c",
                          log_csv=tmp_path / "l", out_path=tmp_path / "o", device="cpu")
    with pytest.raises(DataError, match="differ in shape"):
        fit(train_registration, images[:, :24, :24], labels, **registration_kwargs(tmp_path, None, method="RegNet"))
    with pytest.raises(DataError, match="autoencoder was trained"):
        fit(train_registration, images, labels, **registration_kwargs(tmp_path, autoencoder_run[0] / "ae.pt",
                                                                 n_classes=5))
    with pytest.raises(DataError, match="not a registration model"):
        load_registration_model(autoencoder_run[0] / "ae.pt")
    with pytest.raises(DataError, match="not found"):
        load_autoencoder(tmp_path / "missing.pt")


def test_progress_bar_written_to_a_log_file_is_plain_ascii(tmp_path):
    """A cluster job killed mid-line cuts its log at any byte: an ASCII bar keeps it valid text."""
    code = ("from medrepro.pipeline.progress import progress_bar\n"
            "for _ in progress_bar(range(50), desc='train', mininterval=0): pass\n")
    log = tmp_path / "job.log"
    with open(log, "wb") as stderr:
        subprocess.run([sys.executable, "-c", code], stderr=stderr, check=True, timeout=60)
    data = log.read_bytes()
    assert b"50/50" in data and b"train" in data and data.isascii(), data
