"""Training: checkpoints and model files (:mod:`.checkpoint`), the resumable loop and its settings (:mod:`.loop`),
and the one entry every trainer uses on top of them (:mod:`.supervised`)."""

from medrepro.nn.training.loop import TrainingSettings, run_resumable_training
from medrepro.nn.training.supervised import SupervisedTrainer, ValidationSet

__all__ = ["TrainingSettings", "run_resumable_training", "SupervisedTrainer", "ValidationSet"]
