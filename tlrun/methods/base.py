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
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from tlrun.errors import OracleRefused, TlrunError
from tlrun.methods.components.diagnostics import diagnostics_embedding
from tlrun.scenarios import ClassDescriptions, TrainingData


class Reporter(Protocol):
    """Where a method sends its progress (an MLflow run, in practice)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log scalar metrics, optionally at a step (an iteration or epoch)."""

    def target_predictions(self, predictions: np.ndarray, step: int) -> None:
        """Report current predictions for ``TrainingData.target``, in its order.

        The runner turns them into ``target_acc`` at ``step`` when it can match them to evaluation labels (in
        ``da`` the training target *is* the test target). The method gets nothing back: it never sees the labels
        nor any number computed from them.
        """

    def oracle_accuracy(self, predictions: np.ndarray) -> float | None:
        """The target accuracy of ``predictions`` (``None`` when the training target is not the test target), for
        oracle model selection only: any run but an oracle run (``trainer.select=oracle``) raises
        :class:`~tlrun.errors.OracleRefused`."""

    def held_out_oracle_accuracy(self, predict: Callable[[Any], np.ndarray]) -> float | None:
        """``dg``: the accuracy of ``predict`` on the share of the test domain an oracle chooses by, which the
        reporter holds (the method never sees those samples); ``None`` when there is none. Oracle runs only, as
        :meth:`oracle_accuracy`."""

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
            :mod:`tlrun.methods.components.selection`): ``last`` keeps the final weights.
        diagnostics: ``None``, or the map (``pca`` or ``tsne``) of the figure deep methods log beside the
            before/after proxy A-distance (:mod:`tlrun.methods.components.diagnostics`); the ``diagnostics`` setting
            (``True``, ``False``, a map's name) is read into it.
        checkpoint: where a deep method writes a resumable checkpoint after every epoch (``None``: none).
        resume_from: a checkpoint written so by an interrupted run, to continue training from.
        callbacks: Lightning callbacks the runner adds to a deep method's ``Trainer`` (the supervision of the DDP
            processes it starts, :mod:`tlrun.runner.ddp`).
    """

    reporter: Reporter
    device: str = "cpu"
    seed: int = 0
    trainer: dict[str, Any] = field(default_factory=dict)
    lightning_logger: Callable[[], Any] | None = None
    select: str = "last"
    diagnostics: str | None = None
    checkpoint: Path | None = None
    resume_from: Path | None = None
    callbacks: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.diagnostics = diagnostics_embedding(self.diagnostics)  # the setting as written: True means pca


class Method(ABC):
    """A transfer method: ``fit`` on training data, then ``predict`` labels."""

    #: The labels ``fit`` ended with for ``data.target``, in its order, computed by the fitted state as
    #: ``predict(data.target.X)`` computes them; ``None`` where ``fit`` keeps none. The runner scores these instead
    #: of predicting the same samples again (for 1-NN at 100,000 samples a pass costs minutes).
    fitted_target_labels: np.ndarray | None = None
    #: Whether the last output of the method's classifier is the unknown class of open-set DA (OSBP); the others
    #: answer unknown by the runner's rule (:func:`tlrun.metrics.open_set_labels`).
    predicts_unknown: bool = False

    @abstractmethod
    def fit(self, data: TrainingData, context: RunContext) -> None:
        """Train on ``data`` (never on evaluation labels)."""

    @abstractmethod
    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        """Predicted labels (int64, ``0..C-1``) for samples of the kind the method was trained on."""

    def predict_scores(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray | None:
        """Per-class scores ``(n, C)`` whose row-wise argmax is :meth:`predict` (probabilities where the method
        has them); ``None`` for a method without scores (1-NN, clusterings)."""
        return None


class ZeroShotMethod(Method):
    """A zero-shot method scores samples against classes it may never have seen, through their descriptions.

    Each class ``y`` is represented by a signature vector ``s_y``: by default its attribute vector, minus the
    seen classes' mean signature when ``center_signatures`` (set from the training classes in ``fit``), scaled to
    unit length (label-embedding methods override :meth:`signatures`). ``predict`` labels among the seen
    (training) classes; the evaluation calls :meth:`class_scores` with the descriptions of the unseen classes
    (ZSL) or of every class (GZSL), and subtracts :attr:`calibration` from the seen classes' scores (calibrated
    stacking, Chao et al., 2016).
    """

    #: GZSL calibrated stacking: the constant subtracted from the seen classes' scores.
    calibration: float = 0.0
    #: The seen classes' mean raw signature, subtracted from every signature (``None``: no centering).
    signature_mean: np.ndarray | None = None

    def class_vectors(self, classes: ClassDescriptions) -> np.ndarray:
        """The raw side information of ``classes``, ``(len(classes), a)``: their attribute vectors."""
        if classes.attributes is None:
            raise TlrunError(
                f"{type(self).__name__} describes classes by their attributes, and this dataset has none; use a "
                "label-embedding method (method=devise), which embeds the class names"
            )
        return np.asarray(classes.attributes, dtype=np.float64)

    def keep_signature_settings(self, center_signatures: bool, calibration: float) -> None:
        """The constructor's part: whether signatures are centred on the seen classes', and the GZSL calibration;
        the seen classes' signatures are set by :meth:`fit_signatures`."""
        self.center_signatures = bool(center_signatures)
        self.calibration = float(calibration)
        self._seen_signatures: np.ndarray | None = None

    def fit_signatures(self, data: TrainingData) -> None:
        """``fit``'s part: the seen classes' signatures (:meth:`remember_seen`), kept for :meth:`class_scores`."""
        self._seen_signatures = self.remember_seen(data.seen_classes, self.center_signatures)

    def remember_seen(self, seen: ClassDescriptions | None, center: bool) -> np.ndarray:
        """Called by ``fit``: checks that the scenario described the seen classes, sets :attr:`signature_mean`
        when ``center``, and returns the seen classes' signatures."""
        if seen is None:
            raise ValueError(f"{type(self).__name__} needs class descriptions: run it in scenario zeroshot")
        self.signature_mean = self.class_vectors(seen).mean(axis=0) if center else None
        return self.signatures(seen)

    def signatures(self, classes: ClassDescriptions) -> np.ndarray:
        """``s_y = (v_y − mean) / ‖v_y − mean‖`` for the raw vectors ``v_y`` of :meth:`class_vectors`."""
        vectors = self.class_vectors(classes)
        if self.signature_mean is not None:
            vectors = vectors - self.signature_mean
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    @abstractmethod
    def class_scores(self, X: np.ndarray | tuple[str, ...], classes: ClassDescriptions) -> np.ndarray:
        """Compatibility scores ``F(x, y)``, ``(n, len(classes))``: higher means more likely."""


class NullReporter:
    """A reporter that drops everything: for using methods as a library, outside a tracked run."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def target_predictions(self, predictions: np.ndarray, step: int) -> None:
        return None

    def oracle_accuracy(self, predictions: np.ndarray) -> float | None:
        raise OracleRefused("a method used outside a tracked run has no target labels to select by")

    def held_out_oracle_accuracy(self, predict: Callable[[Any], np.ndarray]) -> float | None:
        return self.oracle_accuracy(np.zeros(0))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        pass
