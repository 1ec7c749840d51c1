"""Interrupting a training run at a chosen step, as a kill would (through TrainingSettings.callback)."""


class Interrupted(Exception):
    pass


def kill_at(step_to_kill: int):
    """A training callback that raises :class:`Interrupted` after step ``step_to_kill``."""

    def callback(step, terms):
        if step == step_to_kill:
            raise Interrupted(step)

    return callback
