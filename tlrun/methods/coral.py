"""CORAL: correlation alignment (Sun, Feng & Saenko, AAAI 2016, "Return of frustratingly easy domain adaptation").

CORAL aligns the second-order statistics of the source to the target's. It looks for the linear map ``A`` that
minimises ``‖Aᵀ C_s A − C_t‖²_F``; with regularised covariances ``Ĉ_s`` and ``Ĉ_t`` the solution whitens the
source and re-colours it with the target covariance::

    A = Ĉ_s^{-1/2} Ĉ_t^{1/2},      x_s ↦ x_sᵀ A

(symmetric matrix functions, from ``eigh``), so that ``Aᵀ Ĉ_s A = Ĉ_t`` exactly: the regularised source
covariance becomes the regularised target covariance. The classifier is trained on the re-coloured source and
applied to the target features unchanged. ``C`` is the sample covariance (``n − 1`` denominator), as MATLAB's
``cov``.

Covariance estimate (``shrinkage``):

- ``ledoit_wolf`` (the default): Ledoit & Wolf's shrinkage of the correlation matrix, rescaled to the features'
  variances, ``Ĉ = D [(1 − ρ) R + ρ (tr R / d) I] D`` with ``D`` the features' standard deviations (1 for a constant
  feature), ``R`` the covariance of the standardised features (``n`` denominator) and ``ρ`` Ledoit–Wolf's
  closed-form estimate of the shrinkage that minimises the expected ``‖Ĉ − Σ‖²_F``: read from the features alone, free
  of the features' unit. This is the estimate of skada's ``CORALAdapter(reg="auto")``, so the two libraries give the
  same transform.
- ``trace``: ``Ĉ = C + r (tr C / d) I``, the identity scaled by the mean variance.
- ``absolute``: the paper's ``Ĉ = C + r I`` (``regularization`` = r = 1), meant for standardised features: on
  features of tiny variance it swamps both covariances and re-colours nothing. On standardised features ``trace``
  and ``absolute`` agree.

``center`` (default on) subtracts each domain's own mean before the map, so the source's re-coloured features and the
target's share their origin (a first-moment alignment CORAL's second-order one leaves out; skada does the same; the
paper's code maps the uncentred features: ``center=false``, as the CORAL reproduction sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tlrun.losses.discrepancy import coral_loss, covariance
from tlrun.methods.base import RunContext
from tlrun.methods.components.classifiers import DEFAULT_CLASSIFIER_OPTIONS
from tlrun.methods.no_adaptation import SourceClassifier
from tlrun.methods.settings import check_coral


def symmetric_power(S: torch.Tensor, power: float) -> torch.Tensor:
    """``S^power`` of a symmetric positive-definite matrix: ``V diag(w^power) Vᵀ`` from ``eigh``."""
    eigenvalues, vectors = torch.linalg.eigh((S + S.T) / 2)
    return (vectors * eigenvalues**power) @ vectors.T


def ledoit_wolf_covariance(X: torch.Tensor) -> torch.Tensor:
    """Ledoit–Wolf shrunk covariance of the rows of ``X`` on the correlation scale, rescaled to the variances.

    With ``Z`` the standardised rows (population deviations; a constant feature is divided by 1),
    ``R = ZᵀZ / n``, ``μ = tr R / d``, ``δ² = ‖R − μI‖²_F / d``, ``β² = min(δ², Σ_k ‖z_k z_kᵀ − R‖²_F / (d n²))``
    (Ledoit & Wolf, 2004), ``ρ = β² / δ²`` and ``Ĉ = D [(1 − ρ) R + ρ μ I] D``: scikit-learn's ``ledoit_wolf`` of
    ``Z``, rescaled by the deviations ``D`` (as skada's CORAL estimates it).
    """
    n, d = X.shape
    centered = X - X.mean(dim=0, keepdim=True)
    deviations = centered.pow(2).mean(dim=0).sqrt()
    constant = deviations <= 10 * torch.finfo(X.dtype).eps * X.abs().amax(dim=0)  # rounding noise of a constant column
    deviations = torch.where(constant, torch.ones_like(deviations), deviations)
    centered = torch.where(constant, torch.zeros_like(centered), centered)
    Z = centered / deviations
    R = Z.T @ Z / n
    mu = torch.trace(R) / d
    R_norm = (R * R).sum()  # ‖R‖²_F
    delta = (R_norm - d * mu**2) / d
    beta = ((Z * Z).sum(dim=1).pow(2).sum() / n - R_norm) / (d * n)  # Σ_k ‖z_k‖⁴ = Σ_k ‖z_k z_kᵀ‖²_F
    zero = torch.zeros((), dtype=X.dtype, device=X.device)
    rho = torch.clamp(torch.minimum(beta, delta) / delta, min=0.0) if d > 1 and float(delta) > 0 else zero
    shrunk = (1 - rho) * R + rho * mu * torch.eye(d, dtype=X.dtype, device=X.device)
    return deviations[:, None] * shrunk * deviations[None, :]


class CORAL(SourceClassifier):
    """Correlation alignment, then the classifier on the re-coloured source.

    Args:
        regularization: ``r``, the multiple of ``I`` (``absolute``) or of ``(tr C / d) I`` (``trace``) added to
            each covariance (``ledoit_wolf`` estimates its own shrinkage and does not read it).
        shrinkage: ``ledoit_wolf`` (the default), ``trace`` or ``absolute`` (the paper's ``+ I``).
        center: subtract each domain's mean before the map (the target's at prediction too).
        classifier: the classifier's name (see :mod:`tlrun.methods.components.classifiers`); the paper uses a
            linear SVM.
        classifier_options: keyword arguments per classifier (e.g. ``{"linear_svm": {"C": 1e-4}}``).

    Logs ``coral_loss_before`` and ``coral_loss_after`` (``‖C_s − C_t‖²_F / 4d²`` of the source before and after
    the transform) at ``step=0``.
    """

    def __init__(
        self,
        regularization: float = 1.0,
        shrinkage: str = "ledoit_wolf",
        center: bool = True,
        classifier: str = "1nn",
        classifier_options: Mapping[str, Any] | None = DEFAULT_CLASSIFIER_OPTIONS,
    ) -> None:
        check_coral(type(self).__name__, regularization=regularization, shrinkage=shrinkage, center=center)
        super().__init__(classifier=classifier, classifier_options=classifier_options)
        self.regularization = regularization
        self.shrinkage = shrinkage
        self.center = center

    def estimate(self, X: torch.Tensor) -> torch.Tensor:
        """``Ĉ`` of the rows of ``X``, by :attr:`shrinkage` (see the module docstring)."""
        if self.shrinkage == "ledoit_wolf":
            return ledoit_wolf_covariance(X)
        C = covariance(X)
        scale = torch.trace(C) / C.shape[0] if self.shrinkage == "trace" else 1.0
        return C + self.regularization * scale * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)

    def alignment(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``A = Ĉ_s^{-1/2} Ĉ_t^{1/2}`` (``d × d``)."""
        return symmetric_power(self.estimate(source), -0.5) @ symmetric_power(self.estimate(target), 0.5)

    def centered(self, X: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return X - mean if self.center else X

    def training_set(
        self, source: torch.Tensor, target: torch.Tensor, context: RunContext
    ) -> tuple[torch.Tensor, np.ndarray | None, dict[str, float]]:
        self._target_mean = target.mean(dim=0)
        recolored = self.centered(source, source.mean(dim=0)) @ self.alignment(source, target)
        metrics = {
            "coral_loss_before": float(coral_loss(source, target)),
            "coral_loss_after": float(coral_loss(recolored, target)),
        }
        return recolored, None, metrics

    def test_features(self, X: torch.Tensor) -> torch.Tensor:
        return self.centered(X, self._target_mean)
