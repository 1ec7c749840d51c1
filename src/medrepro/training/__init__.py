"""Training: checkpoints and model files (:mod:`.checkpoint`), the shared resumable loop and its settings (:mod:`.loop`)."""

from medrepro.training.loop import TrainingSettings, run_resumable_training

__all__ = ["TrainingSettings", "run_resumable_training"]
