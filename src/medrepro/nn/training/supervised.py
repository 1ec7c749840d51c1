"""The one training entry every trainer uses, in the manner of MONAI's ``SupervisedTrainer``.

A trainer hands in what is its own: the network, how a step's batch is
drawn, its loss and its validation set. :class:`SupervisedTrainer` does the
rest the same way for all: the thread count, the device, seeding before the
network is built, placing it, the optimiser, the optimisation step,
validation as means over the set, and the resumable loop of
:func:`medrepro.nn.training.loop.run_resumable_training` (logging, checkpoints,
resume, the final files).

Unlike MONAI's trainer, batches come from no data loader: ``prepare_batch``
draws each step's batch with the run's seeded generator, whose state the
checkpoints carry, so a resumed run draws the batches an uninterrupted one
would.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from medrepro.nn.device import place, resolve_device, seed_everything
from medrepro.nn.modules import count_parameters
from medrepro.nn.training.loop import TrainingSettings, run_resumable_training

Batch = Any
Loss = Callable[[nn.Module, Batch], Mapping[str, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class ValidationSet:
    """A fixed set of ``size`` items scored ``batch_size`` at a time; ``batch(chunk)`` gives a slice's items."""

    size: int
    batch: Callable[[slice], Batch]
    batch_size: int


class SupervisedTrainer:
    """One training run: :meth:`build` the network, then :meth:`run` it.

    ``steps_per_epoch`` is the trainer's epoch, used where ``settings`` give
    none (``settings.val_every`` defaults to once per epoch); :attr:`settings`
    holds the values in effect, which a trainer records in its configuration.
    """

    def __init__(self, settings: TrainingSettings, *, steps_per_epoch: int):
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings = settings.with_default_epoch(steps_per_epoch)
        self.device = resolve_device(settings.device)
        self.network: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def build(self, network: Callable[[], nn.Module],
              optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam) -> nn.Module:
        """The network ``network()`` makes once the run's seed is set (its initial weights follow from the seed),
        placed on the run's device, with ``optimizer`` over its parameters at the settings' learning rate."""
        seed_everything(self.settings.seed)
        self.network = place(network(), self.device)
        self.optimizer = optimizer(self.network.parameters(), lr=self.settings.lr)
        return self.network

    def run(self, *, prepare_batch: Callable[[np.random.Generator], Batch], loss: Loss, config: dict, kind: str,
            log_columns: list[str], validation: ValidationSet | None = None, generator: str = "batches",
            desc: str = "train") -> dict:
        """Train the built network; returns the loop's summary with ``device``, ``n_parameters`` and ``config``.

        Each step draws ``prepare_batch(rng)``, with ``rng`` the run's
        generator (seeded by the settings' seed, checkpointed as
        ``generator``), and takes one optimiser step on the ``"total"`` of
        ``loss(network, batch)``; every term is logged. A validation row holds
        each term's mean over ``validation``. ``config``, ``kind`` and the
        checkpoint, resume and file semantics are those of
        :func:`~medrepro.nn.training.loop.run_resumable_training`, as are the
        settings' plateau schedule and early stopping, which follow the mean
        ``total`` over ``validation``.
        """
        network, optimizer, settings = self._built(), self.optimizer, self.settings
        rng = np.random.default_rng(settings.seed)

        def train_step(step: int) -> dict[str, float]:
            terms = loss(network, prepare_batch(rng))
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            return _as_floats(terms)

        validate = None if validation is None else (lambda: validation_means(network, loss, validation))
        summary = run_resumable_training(
            settings, model=network, optimizer=optimizer, config=config, generators={generator: rng},
            train_step=train_step, validate=validate, steps_per_epoch=settings.steps_per_epoch,
            val_every=settings.val_every, log_columns=log_columns, kind=kind, desc=desc,
        )
        summary.update(device=str(self.device), n_parameters=count_parameters(network), config=config)
        return summary

    def _built(self) -> nn.Module:
        if self.network is None:
            raise RuntimeError("build the network before running the trainer")
        return self.network


def validation_means(network: nn.Module, loss: Loss, validation: ValidationSet) -> dict[str, float]:
    """Each loss term's mean over the validation set: batch values weighted by their number of items."""
    sums: dict[str, float] = {}
    for start in range(0, validation.size, validation.batch_size):
        chunk = slice(start, min(start + validation.batch_size, validation.size))
        count = chunk.stop - chunk.start
        for name, value in _as_floats(loss(network, validation.batch(chunk))).items():
            sums[name] = sums.get(name, 0.0) + value * count
    return {name: value / validation.size for name, value in sums.items()}


def _as_floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            for name, value in terms.items()}
