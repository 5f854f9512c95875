"""ESZSL: "embarrassingly simple" zero-shot learning (Romera-Paredes & Torr, ICML 2015), the closed-form baseline.

A bilinear compatibility ``F(x, y) = xᵀ V s_y`` between (standardised) features ``x`` and class signatures
``s_y`` (:meth:`~tlrun.methods.base.ZeroShotMethod.signatures`). ``V`` minimises, over the seen classes::

    ‖Xᵀ V S − Y‖²_F + γ ‖V S‖²_F + λ ‖Xᵀ V‖²_F + γλ ‖V‖²_F

with ``Y ∈ {−1, 1}`` one-vs-rest labels, in closed form: ``V = (X Xᵀ + γ I)⁻¹ X Y Sᵀ (S Sᵀ + λ I)⁻¹``
(:func:`~tlrun.losses.ranking.eszsl_weights`). A sample is labeled with the class whose signature scores highest
among the candidates (the unseen classes in ZSL, every class in GZSL).
"""

from __future__ import annotations

import numpy as np
import torch

from tlrun.losses.ranking import eszsl_weights
from tlrun.methods.base import RunContext, ZeroShotMethod
from tlrun.methods.components.classifiers import as_float64
from tlrun.methods.settings import check_eszsl
from tlrun.scenarios import ClassDescriptions, Labeled, TrainingData


class ESZSL(ZeroShotMethod):
    """Closed-form bilinear zero-shot learning.

    Args:
        gamma: ``γ``, the feature-side regulariser.
        lamb: ``λ``, the signature-side regulariser.
        standardize: z-score every feature with the training samples' mean and standard deviation.
        center_signatures: subtract the seen classes' mean signature before scaling to unit length.
        calibration: GZSL calibrated stacking constant (subtracted from the seen classes' scores).
    """

    def __init__(
        self, gamma: float = 1.0, lamb: float = 1.0, standardize: bool = True, center_signatures: bool = True,
        calibration: float = 0.0,
    ) -> None:
        check_eszsl(
            type(self).__name__, gamma=gamma, lamb=lamb, standardize=standardize, center_signatures=center_signatures,
            calibration=calibration,
        )
        self.gamma, self.lamb = float(gamma), float(lamb)
        self.standardize, self.center_signatures = bool(standardize), bool(center_signatures)
        self.calibration = float(calibration)

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        features = as_float64(X, self._device)
        return (features - self._mean) / self._scale

    def fit(self, data: TrainingData, context: RunContext) -> None:
        if not isinstance(data.source, Labeled):
            raise ValueError("ESZSL needs labeled seen-class samples")
        seen = self.remember_seen(data.seen_classes, self.center_signatures)
        self._device = torch.device(context.device)
        features = as_float64(data.source.X, self._device)
        self._mean = features.mean(dim=0) if self.standardize else torch.zeros_like(features[0])
        self._scale = features.std(dim=0) + 1e-3 if self.standardize else torch.ones_like(features[0])
        labels = torch.as_tensor(np.asarray(data.source.y), device=self._device)
        self._seen_signatures = as_float64(seen, self._device)
        self.V = eszsl_weights(self._inputs(data.source.X), labels, self._seen_signatures, self.gamma, self.lamb)
        train_scores = self._inputs(data.source.X) @ self.V @ self._seen_signatures.T
        context.reporter.log_metrics({"seen_train_acc": float((train_scores.argmax(1) == labels).double().mean())}, step=0)

    def class_scores(self, X: np.ndarray, classes: ClassDescriptions) -> np.ndarray:
        signatures = as_float64(self.signatures(classes), self._device)
        return (self._inputs(X) @ self.V @ signatures.T).cpu().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self._inputs(X) @ self.V @ self._seen_signatures.T).argmax(dim=1).cpu().numpy().astype(np.int64)
