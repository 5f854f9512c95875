"""CORAL: correlation alignment (Sun, Feng & Saenko, AAAI 2016, "Return of frustratingly easy domain adaptation").

CORAL aligns the second-order statistics of the source to the target's. It looks for the linear map ``A`` that
minimises ``‖Aᵀ C_s A − C_t‖²_F``; with regularised covariances ``C_s + I`` and ``C_t + I`` the solution
whitens the source and re-colours it with the target covariance::

    A = (C_s + I)^{-1/2} (C_t + I)^{1/2},      x_s ↦ x_sᵀ A

(symmetric matrix functions, from ``eigh``), so that ``Aᵀ (C_s + I) A = C_t + I`` exactly: the regularised
source covariance becomes the regularised target covariance. The classifier is trained on the re-coloured source and applied to
the target features unchanged. ``C`` is the sample covariance (``n − 1`` denominator), as MATLAB's ``cov``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tlrun.classifiers import DEFAULT_CLASSIFIER_OPTIONS
from tlrun.losses.discrepancy import coral_loss, covariance
from tlrun.methods.no_adaptation import SourceClassifier
from tlrun.methods.settings import check_coral


def symmetric_power(S: torch.Tensor, power: float) -> torch.Tensor:
    """``S^power`` of a symmetric positive-definite matrix: ``V diag(w^power) Vᵀ`` from ``eigh``."""
    eigenvalues, vectors = torch.linalg.eigh((S + S.T) / 2)
    return (vectors * eigenvalues**power) @ vectors.T


class CORAL(SourceClassifier):
    """Correlation alignment, then the classifier on the re-coloured source.

    Args:
        regularization: the multiple of ``I`` added to both covariances (the paper's ``+ I``).
        classifier: the classifier's name (see :mod:`tlrun.classifiers`); the paper uses a linear SVM.
        classifier_options: keyword arguments per classifier (e.g. ``{"linear_svm": {"C": 1e-4}}``).

    Logs ``coral_loss_before`` and ``coral_loss_after`` (``‖C_s − C_t‖²_F / 4d²`` of the source before and after
    the transform) at ``step=0``.
    """

    def __init__(
        self,
        regularization: float = 1.0,
        classifier: str = "1nn",
        classifier_options: Mapping[str, Any] | None = DEFAULT_CLASSIFIER_OPTIONS,
    ) -> None:
        check_coral(type(self).__name__, regularization=regularization)
        super().__init__(classifier=classifier, classifier_options=classifier_options)
        self.regularization = regularization

    def alignment(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``A = (C_s + rI)^{-1/2} (C_t + rI)^{1/2}`` (``d × d``)."""
        identity = torch.eye(source.shape[1], dtype=source.dtype, device=source.device)
        whiten = symmetric_power(covariance(source) + self.regularization * identity, -0.5)
        recolor = symmetric_power(covariance(target) + self.regularization * identity, 0.5)
        return whiten @ recolor

    def training_set(
        self, source: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, np.ndarray | None, dict[str, float]]:
        recolored = source @ self.alignment(source, target)
        metrics = {
            "coral_loss_before": float(coral_loss(source, target)),
            "coral_loss_after": float(coral_loss(recolored, target)),
        }
        return recolored, None, metrics
