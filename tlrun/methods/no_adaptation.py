"""No adaptation: the classifier trained on the source features alone, applied to the target (the papers'
baseline row). It is also the base of the methods that only change what the classifier trains on (CORAL
re-colours the source, KMM re-weights it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tlrun.config import as_dicts
from tlrun.methods.base import Method, RunContext
from tlrun.methods.components.classifiers import DEFAULT_CLASSIFIER_OPTIONS, as_float64, make_classifier
from tlrun.methods.settings import check_source_classifier
from tlrun.scenarios import Labeled, TrainingData


class SourceClassifier(Method):
    """A classifier trained on the labeled source, as :meth:`training_set` prepares it, applied as is to any
    sample.

    Args:
        classifier: the classifier's name (see :mod:`tlrun.methods.components.classifiers`).
        classifier_options: keyword arguments per classifier (e.g. ``{"logreg": {"C": 1.0}}``).

    ``fit`` reports the target predictions once, at ``step=0`` (kept as ``fitted_target_labels``), and logs what
    :meth:`training_set` measured.
    """

    def __init__(self, classifier: str, classifier_options: dict[str, Any] | None = None) -> None:
        check_source_classifier(type(self).__name__, classifier=classifier, classifier_options=classifier_options)
        self.classifier = classifier
        self.classifier_options = as_dicts(classifier_options)

    def training_set(
        self, source: torch.Tensor, target: torch.Tensor, context: RunContext
    ) -> tuple[torch.Tensor, np.ndarray | None, dict[str, float]]:
        """What the classifier trains on: the source samples as given, their weights (``None``: uniform), and
        metrics worth logging. Subclasses adapt the source to the target here (with the run's ``context``)."""
        return source, None, {}

    def fit(self, data: TrainingData, context: RunContext) -> None:
        if not isinstance(data.source, Labeled):
            raise ValueError(f"{type(self).__name__} needs a labeled source")
        self._device = torch.device(context.device)
        source = as_float64(data.source.X, self._device)
        target = as_float64(data.target.X, self._device)
        samples, weights, metrics = self.training_set(source, target, context)
        labels = np.asarray(data.source.y)
        if isinstance(data.target, Labeled):  # finetune: the labeled target samples join the training set
            samples = torch.cat([samples, target])
            labels = np.concatenate([labels, np.asarray(data.target.y)])
            weights = None if weights is None else np.concatenate([weights, np.ones(len(target))])
        self._classifier = make_classifier(self.classifier, device=self._device, options=self.classifier_options,
                                           seed=context.seed, num_classes=data.num_classes)
        self._classifier.fit(samples, labels, sample_weight=weights)
        if metrics:
            context.reporter.log_metrics(metrics, step=0)
        self.fitted_target_labels = self._classifier.predict(self.test_features(target))
        context.reporter.target_predictions(self.fitted_target_labels, step=0)

    def test_features(self, X: torch.Tensor) -> torch.Tensor:
        """What the classifier reads of a sample to label (subclasses may map it as the fit did)."""
        return X

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        return self._classifier.predict(self.test_features(as_float64(X, self._device)))

    def predict_scores(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray | None:
        return self._classifier.scores(self.test_features(as_float64(X, self._device)))


class NoAdaptation(SourceClassifier):
    """The classifier on the source features, without adaptation (default: 1-NN, as in the JDA paper's table).

    In ``finetune`` the labeled target samples are pooled with the source: the plain supervised baseline.
    """

    def __init__(
        self, classifier: str = "1nn", classifier_options: Mapping[str, Any] | None = DEFAULT_CLASSIFIER_OPTIONS
    ) -> None:
        super().__init__(classifier=classifier, classifier_options=classifier_options)
