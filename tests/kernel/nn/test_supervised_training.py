"""The one training entry (SupervisedTrainer) and settings built from a config section, on a tiny linear model."""

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.errors import ConfigError
from medrepro.nn.training import SupervisedTrainer, TrainingSettings, ValidationSet
from medrepro.nn.training.checkpoint import load_checkpoint, load_torch
from support.interrupt import Interrupted, kill_at
from support.training import settings_for

COLUMNS = ["step", "epoch", "split", "total", "mse"]
pytestmark = pytest.mark.usefixtures("restore_thread_count")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    inputs = torch.from_numpy(rng.normal(size=(20, 3)).astype(np.float32))
    return inputs, inputs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


def mse_loss(network, batch):
    inputs, targets = batch
    value = torch.nn.functional.mse_loss(network(inputs), targets)
    return {"total": value, "mse": value.detach()}


def train_linear(data, settings: TrainingSettings, validation_size: int = 5) -> tuple[dict, SupervisedTrainer]:
    """A linear model on batches of 4 rows drawn by the run's generator, validated on the last rows."""
    inputs, targets = data
    trainer = SupervisedTrainer(settings, steps_per_epoch=2)
    trainer.build(lambda: torch.nn.Linear(3, 1), optimizer=torch.optim.SGD)

    def prepare_batch(rng):
        rows = torch.from_numpy(rng.integers(0, len(inputs) - validation_size, 4))
        return inputs[rows], targets[rows]

    held_out = slice(len(inputs) - validation_size, None)
    validation = ValidationSet(validation_size, lambda chunk: (inputs[held_out][chunk], targets[held_out][chunk]), 2)
    summary = trainer.run(prepare_batch=prepare_batch, loss=mse_loss, validation=validation,
                          config={"model": "linear"}, kind="Linear", log_columns=COLUMNS)
    return summary, trainer


def linear_settings(folder, **values) -> TrainingSettings:
    return settings_for(folder, "linear", **{"steps": 5, "lr": 0.1, "seed": 2, "checkpoint_every": 2, **values})


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    settings = linear_settings(tmp_path_factory.mktemp("straight"))
    summary, trainer = train_linear(data, settings)
    return settings, summary, trainer


def test_a_run_trains_logs_and_writes_its_model_file(data, straight):
    settings, summary, trainer = straight
    saved = load_torch(settings.out_path)
    assert saved["kind"] == "Linear" and saved["config"] == {"model": "linear", "steps": 5}
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in trainer.network.state_dict().items())
    log = pd.read_csv(settings.log_csv)
    assert list(log.columns) == COLUMNS
    assert log.query("split == 'train'")["step"].tolist() == [1, 2, 3, 4, 5]
    assert log.query("split == 'train'")["epoch"].tolist() == [1, 1, 2, 2, 3]  # the trainer's 2-step epoch
    assert log.query("split == 'val'")["step"].tolist() == [2, 4, 5]  # once per epoch unless told, and at the end
    assert (log["total"] == log["mse"]).all()
    assert summary["device"] == "cpu" and summary["n_parameters"] == 4 and summary["config"] == {"model": "linear"}
    assert torch.get_num_threads() == 1


def test_validation_rows_are_means_over_the_whole_set(data, straight):
    """Batches of 2, 2 and 1 rows, weighted by their size: the mean squared error over the five rows."""
    settings, _, trainer = straight
    inputs, targets = data
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(trainer.network(inputs[-5:]), targets[-5:]).item()
    last = pd.read_csv(settings.log_csv).query("split == 'val'").iloc[-1]
    assert last["mse"] == pytest.approx(expected, rel=1e-6)


def test_an_interrupted_run_resumed_gives_the_same_bytes(data, straight, tmp_path):
    uninterrupted = straight[0]
    settings = linear_settings(tmp_path)
    with pytest.raises(Interrupted):
        train_linear(data, settings.replace(callback=kill_at(3)))
    assert load_checkpoint(settings.checkpoint_path)["step"] == 2 and not settings.out_path.exists()
    torch.manual_seed(99)  # the resumed run restores every random state it needs: none is left to chance
    summary, _ = train_linear(data, settings)
    assert summary["resumed_from_step"] == 2 and summary["steps_run"] == 3
    assert settings.out_path.read_bytes() == uninterrupted.out_path.read_bytes()
    assert settings.log_csv.read_bytes() == uninterrupted.log_csv.read_bytes()
    assert not settings.checkpoint_path.exists()


def test_the_network_is_built_from_the_seed(tmp_path):
    first = SupervisedTrainer(linear_settings(tmp_path), steps_per_epoch=1).build(lambda: torch.nn.Linear(3, 1))
    torch.rand(100)  # whatever ran before, the seed decides the initial weights
    second = SupervisedTrainer(linear_settings(tmp_path), steps_per_epoch=1).build(lambda: torch.nn.Linear(3, 1))
    other = SupervisedTrainer(linear_settings(tmp_path, seed=3), steps_per_epoch=1).build(
        lambda: torch.nn.Linear(3, 1))
    assert torch.equal(first.weight, second.weight) and not torch.equal(first.weight, other.weight)


def test_running_before_building_is_refused(tmp_path):
    trainer = SupervisedTrainer(linear_settings(tmp_path), steps_per_epoch=1)
    with pytest.raises(RuntimeError, match="build the network"):
        trainer.run(prepare_batch=lambda rng: None, loss=mse_loss, config={}, kind="Linear", log_columns=COLUMNS)


def test_the_trainers_epoch_applies_only_where_the_settings_give_none(tmp_path):
    assert SupervisedTrainer(linear_settings(tmp_path), steps_per_epoch=7).settings.val_every == 7
    given = SupervisedTrainer(linear_settings(tmp_path, steps_per_epoch=3), steps_per_epoch=7).settings
    assert (given.steps_per_epoch, given.val_every) == (3, 3)
    both = linear_settings(tmp_path, steps_per_epoch=3, val_every=5).with_default_epoch(7)
    assert (both.steps_per_epoch, both.val_every) == (3, 5)


# ---------------------------------------------------------------- settings from a config section


RUN = dict(checkpoint_path="c.ckpt", log_csv="l.csv", out_path="m.pt", seed=4, device="cpu", threads=1)


def test_a_section_gives_its_schedule_and_leaves_the_methods_keys_to_the_trainer():
    section = {"steps": 6, "batch_size": 2, "learning_rate": 1e-4, "steps_per_epoch": 3, "val_every": 3,
               "log_every": 2, "checkpoint_every": 3, "giou_weight": 1000}
    settings = TrainingSettings.from_section(section, method_keys=["giou_weight"], **RUN)
    assert settings == TrainingSettings(steps=6, batch_size=2, lr=1e-4, steps_per_epoch=3, val_every=3, log_every=2,
                                        checkpoint_every=3, **RUN)
    short = TrainingSettings.from_section({"steps": 5}, **RUN)
    assert (short.batch_size, short.steps_per_epoch, short.log_every) == (32, None, 1)  # the dataclass defaults


def test_an_unknown_section_key_is_refused_naming_it_and_the_keys_allowed():
    with pytest.raises(ConfigError) as error:
        TrainingSettings.from_section({"steps": 5, "stepz": 3, "noise_p": 0.1}, method_keys=["noise_p"], **RUN)
    assert str(error.value) == (
        "unknown training setting stepz; this training section takes steps, batch_size, learning_rate, "
        "steps_per_epoch, val_every, log_every, checkpoint_every, plateau_patience, plateau_factor, "
        "early_stopping_patience, lr_step_every, lr_step_factor, noise_p")
    with pytest.raises(ConfigError, match="unknown training setting lr, seed"):
        TrainingSettings.from_section({"steps": 5, "lr": 0.1, "seed": 1}, **RUN)  # the config spells learning_rate
    with pytest.raises(ConfigError, match="has no steps"):
        TrainingSettings.from_section({"batch_size": 2}, **RUN)
