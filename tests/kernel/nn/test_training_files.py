"""Training files: deterministic model files, checkpoints kept in pairs, nothing final before the run has finished.

The loop is driven here by a toy trainer that consumes every random source a
real one does (a named NumPy generator for batches, torch's generator for
dropout), so a resume that restored any state wrongly would change its weights.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.errors import DataError
from medrepro.nn.training import TrainingSettings, run_resumable_training
from medrepro.nn.training.checkpoint import (
    load_checkpoint, load_model, load_torch, previous_checkpoint_path, save_checkpoint, save_torch_atomic,
)
from medrepro.nn.training.loop import in_progress_log_path
from support.interrupt import Interrupted, kill_at

STEPS = 9
COLUMNS = ["step", "epoch", "split", "total"]


def test_equal_objects_give_equal_model_files(tmp_path):
    torch.manual_seed(0)
    payload = {"kind": "Test", "config": {"steps": 3}, "state_dict": torch.nn.Linear(4, 2).state_dict()}
    save_torch_atomic(payload, tmp_path / "a.pt")
    save_torch_atomic(payload, tmp_path / "sub" / "other-name.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "other-name.pt").read_bytes()
    loaded = load_torch(tmp_path / "a.pt")
    assert loaded["config"] == {"steps": 3}
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in payload["state_dict"].items())
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left behind


def _linear_file(path, kind="Linear"):
    torch.manual_seed(0)
    source = torch.nn.Linear(3, 2)
    save_torch_atomic({"kind": kind, "config": {"n_in": 3, "n_out": 2}, "state_dict": source.state_dict()}, path)
    return source


def _build_linear(config):
    return torch.nn.Linear(config["n_in"], config["n_out"])


def test_load_model_round_trips_a_network_on_the_cpu_in_eval_mode(tmp_path):
    source = _linear_file(tmp_path / "m.pt")
    model, config = load_model(tmp_path / "m.pt", kinds=("Other", "Linear"), build=_build_linear, what="linear model",
                               device="cpu")
    assert isinstance(model, torch.nn.Linear) and config == {"n_in": 3, "n_out": 2}
    assert not model.training
    assert all(p.device == torch.device("cpu") for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    x = torch.randn(4, 3)
    assert torch.equal(model(x), source(x))


def test_load_model_refuses_another_kind_naming_the_file(tmp_path):
    _linear_file(tmp_path / "other.pt", kind="Conv")
    with pytest.raises(DataError, match=r"not a linear model \(kind 'Conv'\); re-run its training") as caught:
        load_model(tmp_path / "other.pt", kinds="Linear", build=_build_linear, what="linear model")
    assert str(tmp_path / "other.pt") in str(caught.value)
    with pytest.raises(DataError, match=r"not an old model \(kind 'Conv'\)$"):
        load_model(tmp_path / "other.pt", kinds="Linear", build=_build_linear, what="old model", remedy=None)
    with pytest.raises(DataError, match="linear model not found"):
        load_model(tmp_path / "absent.pt", kinds="Linear", build=_build_linear, what="linear model")


def test_load_model_refuses_weights_that_do_not_fit(tmp_path):
    _linear_file(tmp_path / "m.pt")
    with pytest.raises(DataError, match="weights do not fit Linear") as caught:
        load_model(tmp_path / "m.pt", kinds="Linear", build=lambda _: torch.nn.Linear(5, 2), what="linear model",
                   fits="Linear")
    assert str(tmp_path / "m.pt") in str(caught.value)


# ------------------------------------------------------------------ a toy trainer on the shared loop


def settings(directory, **changes) -> TrainingSettings:
    return TrainingSettings(steps=STEPS, checkpoint_path=directory / "checkpoints" / "toy.ckpt",
                            log_csv=directory / "models" / "toy.losses.csv", out_path=directory / "models" / "toy.pt",
                            batch_size=4, seed=0, device="cpu", checkpoint_every=2, progress=False).replace(**changes)


def train_toy(run: TrainingSettings) -> dict:
    """A small regression network trained on batches drawn by a named generator, with dropout."""
    torch.manual_seed(run.seed)
    data_rng = np.random.default_rng(run.seed)
    inputs = torch.from_numpy(data_rng.normal(size=(64, 5)).astype(np.float32))
    targets = inputs @ torch.arange(1.0, 6.0)[:, None]
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    batches = np.random.default_rng(run.seed + 1)

    def train_step(step):
        rows = torch.from_numpy(batches.integers(0, len(inputs), run.batch_size))
        loss = torch.nn.functional.mse_loss(model(inputs[rows]), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"total": loss.item()}

    def validate():
        return {"total": torch.nn.functional.mse_loss(model(inputs), targets)}

    return run_resumable_training(
        run, model=model, optimizer=optimizer, config={"toy": 1, "batch_size": run.batch_size},
        generators={"batches": batches}, train_step=train_step, validate=validate, steps_per_epoch=4, val_every=3,
        log_columns=COLUMNS, kind="Toy",
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final model file and loss log of a run never interrupted."""
    run = settings(tmp_path_factory.mktemp("straight"))
    train_toy(run)
    return run.out_path.read_bytes(), run.log_csv.read_bytes()


def interrupted_run(directory, kill_step: int) -> TrainingSettings:
    run = settings(directory)
    with pytest.raises(Interrupted):
        train_toy(run.replace(callback=kill_at(kill_step)))
    return run


def assert_equals_uninterrupted(run: TrainingSettings, uninterrupted) -> None:
    model_bytes, log_bytes = uninterrupted
    assert run.out_path.read_bytes() == model_bytes  # same weights, same file
    assert run.log_csv.read_bytes() == log_bytes
    left = sorted(p.name for p in run.checkpoint_path.parent.iterdir())
    assert left == [], left  # checkpoints and the in-progress log are gone


def test_a_killed_run_leaves_nothing_at_its_final_paths(tmp_path):
    run = interrupted_run(tmp_path, kill_step=5)
    assert not run.out_path.exists() and not run.log_csv.exists()
    assert not run.log_csv.parent.exists() or not list(run.log_csv.parent.iterdir())
    # the log so far lies beside the checkpoint and is the checkpoint's history
    latest = load_checkpoint(run.checkpoint_path)
    assert latest["step"] == 4 and load_checkpoint(previous_checkpoint_path(run.checkpoint_path))["step"] == 2
    in_progress = pd.read_csv(in_progress_log_path(run.checkpoint_path))
    pd.testing.assert_frame_equal(in_progress, pd.DataFrame(latest["history"], columns=COLUMNS),
                                  check_dtype=False)
    assert in_progress.loc[in_progress["split"] == "train", "step"].tolist() == [1, 2, 3, 4]


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, uninterrupted):
    run = interrupted_run(tmp_path, kill_step=5)
    summary = train_toy(run)
    assert summary["resumed_from_step"] == 4 and summary["steps_run"] == STEPS - 4
    assert_equals_uninterrupted(run, uninterrupted)


def test_a_resumed_run_clears_what_a_killed_write_left_beside_its_checkpoints(tmp_path, uninterrupted):
    """A run killed while writing a checkpoint or its loss log (kill -9, scancel) leaves their hidden temporary
    siblings; the run that finishes removes them with the checkpoints."""
    run = interrupted_run(tmp_path, kill_step=5)
    folder = run.checkpoint_path.parent
    for name in (".toy.ckpt.3k1x9q_z.ckpt", ".toy.ckpt.losses.csv.a8b2c1d4.ckpt.losses.csv"):
        (folder / name).write_bytes(b"half")
    train_toy(run)
    assert_equals_uninterrupted(run, uninterrupted)  # nothing left in the checkpoint folder


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted):
    run = interrupted_run(tmp_path, kill_step=7)  # latest at step 6, previous at step 4
    data = run.checkpoint_path.read_bytes()
    run.checkpoint_path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning) as caught:
        summary = train_toy(run)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(run.checkpoint_path) in messages[0] and "\n" not in messages[0]
    assert str(previous_checkpoint_path(run.checkpoint_path)) in messages[0]
    assert summary["resumed_from_step"] == 4
    assert_equals_uninterrupted(run, uninterrupted)


def test_a_run_killed_between_the_two_renames_resumes_from_the_previous_checkpoint(tmp_path, uninterrupted):
    """Rotation moves the latest to .prev before the new one takes its place: a kill between leaves .prev only."""
    run = interrupted_run(tmp_path, kill_step=7)
    run.checkpoint_path.replace(previous_checkpoint_path(run.checkpoint_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is wrong: no warning
        summary = train_toy(run)
    assert summary["resumed_from_step"] == 6
    assert_equals_uninterrupted(run, uninterrupted)


def test_no_readable_checkpoint_gives_one_line_naming_the_files_to_delete(tmp_path):
    run = interrupted_run(tmp_path, kill_step=7)
    previous = previous_checkpoint_path(run.checkpoint_path)
    run.checkpoint_path.write_bytes(b"")
    previous.write_bytes(previous.read_bytes()[:100])
    with pytest.raises(DataError) as error:
        train_toy(run)
    message = str(error.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(f"cannot read the training checkpoint {run.checkpoint_path} (")
    assert f"nor the previous one {previous} (" in message and message.endswith(": delete both to train from scratch")
    assert run.checkpoint_path.exists() and previous.exists()  # nothing deleted behind the user's back
    assert not run.out_path.exists() and not run.log_csv.exists()


def test_a_lone_unreadable_checkpoint_names_only_itself(tmp_path):
    run = interrupted_run(tmp_path, kill_step=3)  # one checkpoint so far, at step 2
    assert not previous_checkpoint_path(run.checkpoint_path).exists()
    run.checkpoint_path.write_bytes(b"not a zip archive")
    with pytest.raises(DataError) as error:
        train_toy(run)
    assert str(error.value).startswith(f"{run.checkpoint_path}: cannot read training checkpoint (")
    assert str(error.value).endswith("; delete it to train from scratch") and ".prev" not in str(error.value)


def test_a_checkpoint_of_another_configuration_is_ignored(tmp_path, uninterrupted):
    run = interrupted_run(tmp_path, kill_step=5)
    with pytest.warns(UserWarning, match="another configuration"):
        train_toy(run.replace(batch_size=8))
    fresh = settings(tmp_path / "fresh", batch_size=8)
    train_toy(fresh)
    assert run.out_path.read_bytes() == fresh.out_path.read_bytes()


def test_checkpoints_rotate_and_unreadable_files_give_one_line(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "x.ckpt"
    for step in (1, 2, 3):
        save_checkpoint(path, model=model, optimizer=optimizer, step=step, epoch=1, config={}, history=[])
    assert load_checkpoint(path)["step"] == 3 and load_checkpoint(previous_checkpoint_path(path))["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt", "x.ckpt.prev"]
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: cannot read training checkpoint (") and "\n" not in message
    assert len(message) < len(str(path)) + 200
