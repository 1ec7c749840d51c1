"""The learning rate halved on a validation plateau, and early stopping: when they act, what they publish, that a
resumed run decides as an uninterrupted one, and that with both off nothing changes.

A linear model is trained by SGD on batches drawn by a named generator. Its validation loss is scripted by step
(:data:`SCRIPT`), so that plateaus and the best validation fall where the tests say; the weights still depend on
every rate the schedule sets.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.nn.training import TrainingSettings, run_resumable_training
from medrepro.nn.training.checkpoint import load_checkpoint, load_torch
from medrepro.nn.training.loop import ValidationWatch
from support.interrupt import Interrupted, kill_at
from support.training import settings_for

COLUMNS = ["step", "epoch", "split", "total"]
STEPS, VAL_EVERY, LR = 24, 2, 0.1
# Validation loss by step. Plateau patience 2: halved at 8 (6, 8 no better than 4) and at 14 (12, 14 no better
# than 10), and again at 18 (16, 18), where early stopping with patience 4 ends the run (12 ... 18 no better than 10).
SCRIPT = {2: 5.0, 4: 4.0, 6: 4.5, 8: 4.2, 10: 3.0, 12: 3.5, 14: 3.4, 16: 3.6, 18: 3.1, 20: 3.9, 22: 3.8, 24: 3.7}
BOTH = {"plateau_patience": 2, "early_stopping_patience": 4}


class Toy:
    """A linear model, its SGD optimiser and batches; ``weights[step]`` holds its state after each step."""

    def __init__(self, seed: int = 0):
        data = np.random.default_rng(seed)
        self.inputs = torch.from_numpy(data.normal(size=(32, 3)).astype(np.float32))
        self.targets = self.inputs @ torch.tensor([[1.0], [-2.0], [0.5]])
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.batches = np.random.default_rng(seed + 1)
        self.step = 0
        self.weights: dict[int, dict] = {}

    def train_step(self, step: int) -> dict[str, float]:
        self.step = step
        rows = torch.from_numpy(self.batches.integers(0, len(self.inputs), 4))
        loss = torch.nn.functional.mse_loss(self.model(self.inputs[rows]), self.targets[rows])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.weights[step] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return {"total": loss.item()}

    def validate(self) -> dict[str, float]:
        return {"total": SCRIPT[self.step]}


def settings(folder, **values) -> TrainingSettings:
    return settings_for(folder, "toy", **{"steps": STEPS, "lr": LR, "checkpoint_every": 3, "log_every": 4, **values})


def train(run: TrainingSettings, toy: Toy | None = None) -> tuple[dict, Toy]:
    toy = toy or Toy()
    summary = run_resumable_training(
        run, model=toy.model, optimizer=toy.optimizer, config={"toy": 1}, generators={"batches": toy.batches},
        train_step=toy.train_step, validate=toy.validate, steps_per_epoch=4, val_every=VAL_EVERY,
        log_columns=COLUMNS, kind="Toy")
    return summary, toy


@pytest.fixture(scope="module")
def both_on(tmp_path_factory):
    """An uninterrupted run with the schedule and early stopping."""
    run = settings(tmp_path_factory.mktemp("both"), **BOTH)
    summary, toy = train(run)
    return run, summary, toy


def test_the_rate_is_halved_at_the_patience_th_validation_without_improvement(tmp_path):
    run = settings(tmp_path, plateau_patience=2)
    summary, _ = train(run)
    log = pd.read_csv(run.log_csv)
    assert list(log.columns) == [*COLUMNS, "lr"]
    train_rows = log.query("split == 'train'")
    # each train row gives the rate of its last step: halved after the validations at 8, 14, 18 and 22, each
    # the second in a row no better than 10's (or than 4's, for 8) since the best or the last halving
    assert dict(zip(train_rows["step"], train_rows["lr"])) == {
        4: LR, 8: LR, 12: LR / 2, 16: LR / 4, 20: LR / 8, 24: LR / 16}
    assert log.query("split == 'val'")["lr"].isna().all()
    assert summary["final_lr"] == LR / 16 and summary["stopped_at_step"] is None
    assert (summary["best_step"], summary["best_val"]) == (10, 3.0)
    saved = load_torch(run.out_path)
    assert set(saved) == {"kind", "config", "state_dict"}  # no early stopping: the last weights, as ever
    assert saved["config"] == {"toy": 1, "val_every": VAL_EVERY, "plateau_patience": 2, "plateau_factor": 0.5,
                               "steps": STEPS}


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_the_schedule_is_torchs_reduce_on_plateau_with_one_validation_less_patience(patience):
    losses = 1 / np.arange(1, 61) + np.random.default_rng(patience).normal(0, 0.05, 60)  # noise on a slow fall
    ours, theirs = (torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0) for _ in range(2))
    watch = ValidationWatch(patience, 0.5, None)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, factor=0.5, patience=patience - 1, threshold=0,
                                                           eps=0)  # torch ignores changes below eps
    rates = []
    for step, loss in enumerate(losses, start=1):
        watch.observe(step, float(loss), torch.nn.Linear(1, 1), ours)
        scheduler.step(float(loss))
        rates.append((ours.param_groups[0]["lr"], theirs.param_groups[0]["lr"]))
    assert all(a == b for a, b in rates)
    assert len({a for a, _ in rates}) > 2  # the sequence did plateau, more than once


def test_early_stopping_ends_at_the_validation_that_exhausts_its_patience(both_on):
    run, summary, toy = both_on
    assert summary["stopped_at_step"] == 18 and summary["steps_run"] == 18 and summary["steps"] == STEPS
    assert (summary["best_step"], summary["best_val"]) == (10, 3.0)
    assert summary["final_lr"] == LR / 8  # halved at 8, 14 and at 18, the stopping validation
    log = pd.read_csv(run.log_csv)
    assert log["step"].max() == 18
    # the steps since the last train row (17, 18) get one of their own, before the last validation row
    assert log.tail(3)[["step", "split"]].values.tolist() == [[16, "val"], [18, "train"], [18, "val"]]
    assert log.query("split == 'val'")["total"].tolist() == [SCRIPT[s] for s in range(2, 19, 2)]
    assert log.query("split == 'train'")["lr"].tolist() == [LR, LR, LR / 2, LR / 4, LR / 4]


def test_early_stopping_publishes_the_best_validations_weights(both_on):
    run, summary, toy = both_on
    saved = load_torch(run.out_path)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in toy.weights[10].items())
    assert not all(torch.equal(saved["state_dict"][k], v) for k, v in toy.weights[18].items())
    assert saved["early_stopping"] == {"best_step": 10, "best_val": 3.0, "stopped_at_step": 18}
    assert saved["config"] == {"toy": 1, "val_every": VAL_EVERY, "plateau_patience": 2, "plateau_factor": 0.5,
                               "early_stopping_patience": 4, "steps": STEPS}
    assert not run.checkpoint_path.exists()


def test_a_run_that_never_stops_publishes_the_best_weights_too(tmp_path):
    run = settings(tmp_path, early_stopping_patience=50)
    summary, toy = train(run)
    assert summary["stopped_at_step"] is None and summary["steps_run"] == STEPS
    saved = load_torch(run.out_path)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in toy.weights[10].items())
    assert "lr" not in pd.read_csv(run.log_csv).columns  # no schedule, no rate column


@pytest.mark.parametrize("kill_step", [7, 13, 17])
def test_a_resumed_run_decides_as_an_uninterrupted_one(both_on, tmp_path, kill_step):
    """Killed before the first halving, after it and the best (step 10), and two validations before stopping:
    the rate, the counters and the best weights come back from the checkpoint."""
    uninterrupted = both_on[0]
    run = settings(tmp_path, **BOTH)
    with pytest.raises(Interrupted):
        train(run.replace(callback=kill_at(kill_step)))
    checkpoint = load_checkpoint(run.checkpoint_path)
    assert checkpoint["step"] == kill_step // 3 * 3
    torch.manual_seed(99)
    summary, _ = train(run)
    assert summary["resumed_from_step"] == checkpoint["step"] and summary["stopped_at_step"] == 18
    assert run.out_path.read_bytes() == uninterrupted.out_path.read_bytes()
    assert run.log_csv.read_bytes() == uninterrupted.log_csv.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.losses.csv", "toy.pt"]


def test_the_watchs_state_rides_in_the_checkpoint(tmp_path):
    run = settings(tmp_path, **BOTH)
    with pytest.raises(Interrupted):
        train(run.replace(callback=kill_at(13)))
    checkpoint = load_checkpoint(run.checkpoint_path)  # step 12: halved at 8, best at 10, one validation since
    state = checkpoint["extra"]["validation_watch"]
    assert {k: state[k] for k in ("best", "best_step", "since_best", "since_change")} == {
        "best": 3.0, "best_step": 10, "since_best": 1, "since_change": 1}
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == LR / 2
    assert set(state["best_weights"]) == {"weight", "bias"}


def test_a_checkpoint_under_another_patience_is_not_resumed(tmp_path):
    run = settings(tmp_path, **BOTH)
    with pytest.raises(Interrupted):
        train(run.replace(callback=kill_at(13)))
    with pytest.warns(UserWarning, match="another configuration.*early_stopping_patience: checkpoint 4 vs now 5"):
        summary, _ = train(run.replace(early_stopping_patience=5))
    assert summary["resumed_from_step"] == 0


def test_with_both_off_the_run_is_the_one_whose_settings_leave_them_unset(tmp_path):
    unset = settings(tmp_path / "unset")
    summary, _ = train(unset)
    off = settings(tmp_path / "off", plateau_patience=None, plateau_factor=0.5, early_stopping_patience=None)
    off_summary, _ = train(off)
    assert off.out_path.read_bytes() == unset.out_path.read_bytes()
    assert off.log_csv.read_bytes() == unset.log_csv.read_bytes()
    saved = load_torch(unset.out_path)
    assert set(saved) == {"kind", "config", "state_dict"} and saved["config"] == {"toy": 1, "steps": STEPS}
    assert list(pd.read_csv(unset.log_csv).columns) == COLUMNS
    assert not {"best_val", "best_step", "stopped_at_step", "final_lr"} & set(summary) and summary.keys() == \
        off_summary.keys()
    with pytest.raises(Interrupted):
        train(settings(tmp_path / "killed").replace(callback=kill_at(4)))
    assert set(load_checkpoint(tmp_path / "killed" / "toy.ckpt")["extra"]) == {"window_sums", "window_count"}


def test_a_watch_that_never_acts_changes_the_records_alone(tmp_path):
    """Patience beyond the run: the same weights and losses as a run without the watch, validating first and
    logging second as it must to flush a stopping run's last train row."""
    plain = settings(tmp_path / "plain")
    train(plain)
    watched = settings(tmp_path / "watched", plateau_patience=100)
    train(watched)
    assert all(torch.equal(load_torch(plain.out_path)["state_dict"][k], v)
               for k, v in load_torch(watched.out_path)["state_dict"].items())
    pd.testing.assert_frame_equal(pd.read_csv(watched.log_csv).drop(columns="lr"), pd.read_csv(plain.log_csv))


def test_the_schedule_and_stopping_need_a_validation_loss_and_sensible_settings(tmp_path):
    toy = Toy()
    common = dict(model=toy.model, optimizer=toy.optimizer, config={}, generators={"batches": toy.batches},
                  train_step=toy.train_step, steps_per_epoch=4, val_every=2, log_columns=COLUMNS, kind="Toy")
    with pytest.raises(ValueError, match="give a validation set"):
        run_resumable_training(settings(tmp_path, plateau_patience=2), validate=None, **common)
    with pytest.raises(ValueError, match="gives no 'total'.*accuracy"):
        run_resumable_training(settings(tmp_path, early_stopping_patience=2),
                               validate=lambda: {"accuracy": 1.0}, **common)
    for bad, message in (({"plateau_patience": 0}, "plateau_patience must be at least 1"),
                         ({"early_stopping_patience": -1}, "early_stopping_patience must be at least 1"),
                         ({"plateau_patience": 2, "plateau_factor": 1.0}, "between 0 and 1")):
        with pytest.raises(ValueError, match=message):
            run_resumable_training(settings(tmp_path, **bad), validate=toy.validate, **common)
    assert not list(tmp_path.iterdir())


def test_a_config_section_sets_the_schedule_and_early_stopping():
    section = {"steps": 6, "plateau_patience": 3, "plateau_factor": 0.25, "early_stopping_patience": 9}
    run = TrainingSettings.from_section(section, checkpoint_path="c.ckpt", log_csv="l.csv", out_path="m.pt")
    assert (run.plateau_patience, run.plateau_factor, run.early_stopping_patience) == (3, 0.25, 9)
    default = TrainingSettings.from_section({"steps": 6}, checkpoint_path="c.ckpt", log_csv="l.csv", out_path="m.pt")
    assert (default.plateau_patience, default.plateau_factor, default.early_stopping_patience) == (None, 0.5, None)
    assert ValidationWatch.from_settings(default) is None
    assert math.isinf(ValidationWatch.from_settings(run).best)


def test_the_step_schedule_is_torchs_step_lr_and_a_resumed_run_follows_it(tmp_path):
    run = settings(tmp_path / "whole", lr_step_every=5, lr_step_factor=0.5)
    _, whole = train(run)
    log = pd.read_csv(run.log_csv).query("split == 'train'")
    reference = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1)], lr=LR), step_size=5, gamma=0.5)
    expected = {}
    for step in range(1, STEPS + 1):
        expected[step] = reference.get_last_lr()[0]
        reference.optimizer.step()
        reference.step()
    assert dict(zip(log["step"], log["lr"])) == {s: pytest.approx(expected[s]) for s in log["step"]}
    resumed = settings(tmp_path / "resumed", lr_step_every=5, lr_step_factor=0.5)
    with pytest.raises(Interrupted):
        train(resumed.replace(callback=kill_at(7)))
    _, again = train(resumed)
    assert all(torch.equal(whole.weights[STEPS][k], again.weights[STEPS][k]) for k in whole.weights[STEPS])
    with pytest.raises(ValueError, match="either the plateau schedule or the step schedule"):
        train(settings(tmp_path / "both", lr_step_every=5, plateau_patience=2))
