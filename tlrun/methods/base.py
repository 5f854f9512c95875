"""What every method implements, and what the runner hands it.

A method is built from its config (``conf/method/<name>.yaml``) by Hydra's ``_target_`` instantiation, then:

1. ``fit(data, context)`` trains on :class:`~tlrun.scenarios.TrainingData` only: the labels a scenario
   withholds are not in it. Progress goes through ``context.reporter``.
2. ``predict(X)`` labels any samples of the training inputs' kind; the runner measures ``target_acc`` and
   ``source_acc`` with it on data the method never saw labels of.

Two families share this interface:

- ``closed_form`` methods (TCA, JDA, CORAL, KMM, ...) receive arrays: when the dataset holds images, or a
  backbone other than ``identity`` is chosen, the runner first extracts features with the frozen backbone.
  They compute in torch (float64) on ``context.device``.
- ``deep`` methods (LightningModules) receive the backbone network at construction (``backbone=...``) and
  train it through a Lightning ``Trainer`` built from ``context.trainer`` and ``context.lightning_logger()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from tlrun.scenarios import TrainingData


class Reporter(Protocol):
    """Where a method sends its progress (an MLflow run, in practice)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log scalar metrics, optionally at a step (an iteration or epoch)."""

    def target_predictions(self, predictions: np.ndarray, step: int) -> float | None:
        """Report current predictions for ``TrainingData.target``, in its order.

        The runner turns them into ``target_acc`` at ``step`` when it can match them to evaluation labels (in
        ``da`` the training target *is* the test target) and returns that accuracy, which only oracle model
        selection may use; otherwise it returns ``None``. The method never sees the labels themselves.
        """

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib figure as an artifact of the run."""


@dataclass
class RunContext:
    """What the runner gives a method besides the data.

    Attributes:
        reporter: metric sink (see :class:`Reporter`).
        device: ``"cpu"`` or ``"cuda"``: where closed-form solvers compute.
        seed: the run's seed (already applied to python, numpy and torch).
        trainer: keyword arguments for ``pytorch_lightning.Trainer`` (from ``conf/trainer``).
        lightning_logger: builds a Lightning logger that writes into the current MLflow run.
        select: how a deep method chooses the epoch whose weights it keeps (``trainer.select``; see
            :mod:`tlrun.selection`): ``last`` keeps the final weights.
        diagnostics: whether deep methods log the before/after proxy A-distance and t-SNE figure.
    """

    reporter: Reporter
    device: str = "cpu"
    seed: int = 0
    trainer: dict[str, Any] = field(default_factory=dict)
    lightning_logger: Callable[[], Any] | None = None
    select: str = "last"
    diagnostics: bool = False


class Method(ABC):
    """A transfer method: ``fit`` on training data, then ``predict`` labels."""

    @abstractmethod
    def fit(self, data: TrainingData, context: RunContext) -> None:
        """Train on ``data`` (never on evaluation labels)."""

    @abstractmethod
    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        """Predicted labels (int64, ``0..C-1``) for samples of the kind the method was trained on."""


class NullReporter:
    """A reporter that drops everything: for using methods as a library, outside a tracked run."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def target_predictions(self, predictions: np.ndarray, step: int) -> None:
        return None

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        pass
