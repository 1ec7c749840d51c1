"""Training settings for the tests' short runs: on the CPU, one thread, no progress bar."""

from pathlib import Path

from medrepro.nn.training import TrainingSettings


def settings_for(folder: Path, name: str = "run", **values) -> TrainingSettings:
    """Settings whose checkpoint, loss log and model file are ``<folder>/<name>.ckpt``, ``.losses.csv`` and
    ``.pt``; ``values`` give the rest (``steps`` at least) and may override the CPU, the thread and the bar."""
    run = {"device": "cpu", "threads": 1, "progress": False, **values}
    return TrainingSettings(checkpoint_path=folder / f"{name}.ckpt", log_csv=folder / f"{name}.losses.csv",
                            out_path=folder / f"{name}.pt", **run)
