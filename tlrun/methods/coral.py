"""CORAL: correlation alignment (Sun, Feng & Saenko, AAAI 2016, "Return of frustratingly easy domain adaptation").

CORAL aligns the second-order statistics of the source to the target's. It looks for the linear map ``A`` that
minimises ``‖Aᵀ C_s A − C_t‖²_F``; with regularised covariances ``Ĉ_s`` and ``Ĉ_t`` the solution whitens the
source and re-colours it with the target covariance::

    A = Ĉ_s^{-1/2} Ĉ_t^{1/2},      x_s ↦ x_sᵀ A

(symmetric matrix functions, from ``eigh``), so that ``Aᵀ Ĉ_s A = Ĉ_t`` exactly: the regularised source
covariance becomes the regularised target covariance. The classifier is trained on the re-coloured source and
applied to the target features unchanged. ``C`` is the sample covariance (``n − 1`` denominator), as MATLAB's
``cov``.

The paper regularises with ``Ĉ = C + I`` (``shrinkage=absolute``, ``regularization`` = 1), meant for standardised
features. Whatever the features' scale, ``shrinkage=trace`` (the default) adds ``r · (tr C / d) · I``, the
identity scaled by the mean variance, so the transform does not depend on the features' unit: on features of
tiny variance the paper's ``+ I`` would swamp both covariances and re-colour nothing, on features of large
variance it would barely regularise. On standardised features (unit variances) the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tlrun.losses.discrepancy import coral_loss, covariance
from tlrun.methods.components.classifiers import DEFAULT_CLASSIFIER_OPTIONS
from tlrun.methods.no_adaptation import SourceClassifier
from tlrun.methods.settings import check_coral


def symmetric_power(S: torch.Tensor, power: float) -> torch.Tensor:
    """``S^power`` of a symmetric positive-definite matrix: ``V diag(w^power) Vᵀ`` from ``eigh``."""
    eigenvalues, vectors = torch.linalg.eigh((S + S.T) / 2)
    return (vectors * eigenvalues**power) @ vectors.T


class CORAL(SourceClassifier):
    """Correlation alignment, then the classifier on the re-coloured source.

    Args:
        regularization: ``r``, the multiple of ``I`` (``absolute``) or of ``(tr C / d) I`` (``trace``) added to
            each covariance.
        shrinkage: ``trace`` (scale-free, the default) or ``absolute`` (the paper's ``+ I``).
        classifier: the classifier's name (see :mod:`tlrun.methods.components.classifiers`); the paper uses a
            linear SVM.
        classifier_options: keyword arguments per classifier (e.g. ``{"linear_svm": {"C": 1e-4}}``).

    Logs ``coral_loss_before`` and ``coral_loss_after`` (``‖C_s − C_t‖²_F / 4d²`` of the source before and after
    the transform) at ``step=0``.
    """

    def __init__(
        self,
        regularization: float = 1.0,
        shrinkage: str = "trace",
        classifier: str = "1nn",
        classifier_options: Mapping[str, Any] | None = DEFAULT_CLASSIFIER_OPTIONS,
    ) -> None:
        check_coral(type(self).__name__, regularization=regularization, shrinkage=shrinkage)
        super().__init__(classifier=classifier, classifier_options=classifier_options)
        self.regularization = regularization
        self.shrinkage = shrinkage

    def regularized(self, C: torch.Tensor) -> torch.Tensor:
        """``Ĉ = C + r I`` (``absolute``) or ``C + r (tr C / d) I`` (``trace``)."""
        scale = torch.trace(C) / C.shape[0] if self.shrinkage == "trace" else 1.0
        return C + self.regularization * scale * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)

    def alignment(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``A = Ĉ_s^{-1/2} Ĉ_t^{1/2}`` (``d × d``)."""
        whiten = symmetric_power(self.regularized(covariance(source)), -0.5)
        recolor = symmetric_power(self.regularized(covariance(target)), 0.5)
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
