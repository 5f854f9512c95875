"""Shared machinery of the MMD subspace methods (TCA, JDA): kernels, MMD matrices, the generalized eigensolver.

The problem
-----------
Stack the ``n = n_s + n_t`` source and target samples as the rows of ``X``. With a kernel matrix ``K`` (``n × n``),
TCA and JDA look for ``k`` coefficient vectors ``A = [a_1 … a_k]`` (``n × k``) that solve::

    min_A  tr(Aᵀ K M Kᵀ A) + λ ‖A‖²_F      subject to   Aᵀ K H Kᵀ A = I

where ``H = I − 11ᵀ/n`` centres the data (the constraint keeps the embedding's variance) and ``M`` is the MMD
matrix: ``tr(Aᵀ K M Kᵀ A)`` is the squared distance between the means of the embedded source and target (and, in
JDA, of every class). The embedding of the samples is ``Z = Kᵀ A`` (one row a sample). The Lagrangian gives the
generalized eigenproblem ``(K M Kᵀ + λI) a = φ K H Kᵀ a``; the solution keeps the ``k`` smallest ``φ``.

The *primal* form replaces ``K`` by the data itself (``A`` is ``d × k``, a projection of the inputs,
``Z = X A``).

All three forms are one problem in a *feature map* ``F`` (``n × q``, one row a sample): ``F = X`` (primal,
``q = d``), ``F = K`` (kernel, ``q = n``), or, for the linear kernel, the exact ``q = r`` reduction below. The
coefficient vectors ``b`` live in ``R^q`` with ``‖b‖ = ‖a‖``, and ``Z = F B``.

Where the speed is
------------------
- ``M`` is a sum of at most ``C + 1`` rank-one terms ``e eᵀ`` (marginal + one per pseudo-labelled class), kept as
  its factor ``E`` (``n × p``, ``M = E Eᵀ``): ``Fᵀ M F = (FᵀE)(FᵀE)ᵀ`` costs ``O(n q p)`` and ``‖M‖_F = ‖EᵀE‖_F``.
  No ``n × n`` matrix ``M`` or ``H`` is formed.
- The linear kernel ``K = X Xᵀ`` has rank ``r ≤ min(n, d)``. With the thin SVD ``X = U S Vᵀ``, ``λ > 0`` forces
  every eigenvector of finite ``φ`` into the span of ``U`` (the component ``a⊥`` outside it satisfies
  ``λ a⊥ = 0``), so ``a = U b`` and the ``n × n`` problem becomes, exactly, the ``r × r`` one with
  ``F = K U = U S² = X (V S)``. The SVD is computed once per fit from the eigendecomposition of the smaller
  Gram matrix and reused by every iteration; out-of-sample samples map by ``f(x) = x V S``.
- The regularised side ``λI + Fᵀ M F = λI + Q Qᵀ`` (``Q = FᵀE``, ``q × p``) is positive definite and the identity
  plus rank ``p``: a thin SVD ``Q = V_Q Σ W_Qᵀ`` gives its symmetric inverse square root in closed form,
  ``R = λ^{-1/2} I + V_Q [(λ + Σ²)^{-1/2} − λ^{-1/2}] V_Qᵀ`` (this plays the role of a Cholesky factor, at
  ``O(q p²)`` instead of ``O(q³)``). The pencil is then the symmetric eigenproblem
  ``R (Fᵀ H F) R w = μ w`` with ``μ = 1/φ``: one ``torch.linalg.eigh`` in float64 on the run's device, no
  general (non-symmetric) ``eig``. ``b = R w / √μ`` satisfies the constraint ``bᵀ Fᵀ H F b = 1``.
- ``Fᵀ H F = FᵀF − (Fᵀ1)(Fᵀ1)ᵀ/n`` does not change across JDA's iterations: computed once. In the reduced
  linear basis ``FᵀF = S⁴``, so it is diagonal minus rank one, without the ``O(n r²)`` product.
- What remains is the dense ``r × r`` ``eigh`` of every iteration (about 3/4 of a JDA fit at ``r = 800``). Its
  cost is the tridiagonal reduction: LAPACK's subset driver (``syevr``, only the ``k`` wanted eigenpairs) was
  measured no faster in a JDA fit on 2 CPU cores, so the solver keeps the one torch path for every device.

The published code returns the eigenvectors as MATLAB's ``eigs`` does, scaled to unit 2-norm, not to the
constraint; the scaling changes the 1-NN distances of the embedding, so :meth:`SubspaceSolution.unit_norm`
reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol

import numpy as np
import torch

from tlrun.classifiers import as_float64
from tlrun.losses.discrepancy import squared_distances
from tlrun.methods.settings import check_kernel

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l2_normalize_rows(X: torch.Tensor) -> torch.Tensor:
    """Every row divided by its Euclidean norm (an all-zero row stays zero)."""
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    return X / torch.where(norms > 0, norms, torch.ones_like(norms))


def linear_kernel(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``k(x, y) = xᵀy`` between the rows of ``X`` and ``Y``."""
    return X @ Y.T


def rbf_kernel(X: torch.Tensor, Y: torch.Tensor, gamma: float) -> torch.Tensor:
    """``k(x, y) = exp(−γ ‖x − y‖²)`` between the rows of ``X`` and ``Y``."""
    return torch.exp(-gamma * squared_distances(X, Y))


class FeatureMap(Protocol):
    """``x ↦ f(x) ∈ R^q``: the rows of ``F`` for training samples, and the same map for new samples."""

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """``f`` of every row of ``X`` (``m × q``)."""

    def centered_gram(self, features: torch.Tensor) -> torch.Tensor:
        """``Fᵀ H F`` of the training samples' features ``F = transform(training)``."""


class PrimalMap:
    """The primal form: ``f(x) = x``; the coefficients project the inputs directly (``q = d``)."""

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        return X

    def centered_gram(self, features: torch.Tensor) -> torch.Tensor:
        return centered_gram(features)


class KernelMap:
    """The kernel form: ``f(x) = [k(x, x_1) … k(x, x_n)]`` against the training samples (``q = n``)."""

    def __init__(self, training: torch.Tensor, kernel: Kernel) -> None:
        self.training = training
        self.kernel = kernel

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        return self.kernel(X, self.training)

    def centered_gram(self, features: torch.Tensor) -> torch.Tensor:
        return centered_gram(features)


class ReducedLinearKernelMap:
    """The linear kernel ``K = X Xᵀ`` reduced exactly to its rank ``r``: ``f(x) = x V S`` (``q = r``).

    ``X = U S Vᵀ`` is the thin SVD of the training samples, from the eigendecomposition of the smaller of
    ``XᵀX = V S² Vᵀ`` (when ``n ≥ d``, then ``V S`` directly) and ``X Xᵀ = U S² Uᵀ`` (then ``V S = Xᵀ U``).
    Singular values with ``s² ≤ max(n, d) · ε · s²_max`` are dropped as numerically zero. For a training sample,
    ``f(x_i) = (U S²)_i = (K U)_i``: the kernel row expressed in the basis ``U``, whose orthonormality keeps
    ``‖a‖ = ‖U b‖ = ‖b‖``, and ``FᵀF = S² UᵀU S² = S⁴`` is diagonal.
    """

    def __init__(self, training: torch.Tensor) -> None:
        n, d = training.shape
        if n >= d:
            squared_singular, V = torch.linalg.eigh(training.T @ training)
            keep = self._numerically_nonzero(squared_singular, n, d)
            self.basis = V[:, keep] * squared_singular[keep].sqrt()
        else:
            squared_singular, U = torch.linalg.eigh(training @ training.T)
            keep = self._numerically_nonzero(squared_singular, n, d)
            self.basis = training.T @ U[:, keep]
        self.squared_singular = squared_singular[keep]

    @staticmethod
    def _numerically_nonzero(squared_singular: torch.Tensor, n: int, d: int) -> torch.Tensor:
        threshold = squared_singular.max().clamp_min(0.0) * max(n, d) * torch.finfo(squared_singular.dtype).eps
        return squared_singular > threshold

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.basis

    def centered_gram(self, features: torch.Tensor) -> torch.Tensor:
        """``S⁴ − ggᵀ/n`` (``g = Fᵀ1``): diagonal minus rank one, without the ``O(n r²)`` product ``FᵀF``."""
        return centered_gram(features, gram=torch.diag(self.squared_singular**2))


def make_feature_map(kernel: str, training: torch.Tensor, gamma: float) -> FeatureMap:
    """The feature map of ``kernel`` (``primal``, ``linear`` or ``rbf`` with width ``gamma``) on ``training``."""
    check_kernel(kernel)
    if kernel == "primal":
        return PrimalMap()
    if kernel == "linear":
        return ReducedLinearKernelMap(training)
    return KernelMap(training, partial(rbf_kernel, gamma=gamma))


def mmd_factor(
    source_labels: np.ndarray,
    n_target: int,
    num_classes: int,
    target_pseudo_labels: np.ndarray | None,
    device: str | torch.device,
) -> torch.Tensor:
    """The factor ``E`` (``n × p``) of the MMD matrix ``M = E Eᵀ``, scaled so that ``‖M‖_F = 1``.

    Samples are ordered source first, then target. The columns are:

    - the marginal term ``√C · e_0``, ``e_0 = [1/n_s … 1/n_s, −1/n_t … −1/n_t]``: ``e_0ᵀ Z`` is the difference
      of the domain means. The weight ``C`` (the number of classes) balances it against the ``C``
      class-conditional terms, as in the JDA authors' released code (required to reproduce their numbers);
      it cancels out in the marginal-only case.
    - with pseudo-labels, for each class ``c`` present in both domains, ``e_c`` with ``1/n_s^c`` on the source
      samples of class ``c`` and ``−1/n_t^c`` on the target samples pseudo-labelled ``c``. A class no target
      sample is pseudo-labelled with adds nothing.

    ``‖E Eᵀ‖_F = ‖EᵀE‖_F`` is computed on the ``p × p`` side.
    """
    source_labels = np.asarray(source_labels)
    n_source = len(source_labels)
    marginal = np.concatenate([np.full(n_source, 1.0 / n_source), np.full(n_target, -1.0 / n_target)])
    columns = [np.sqrt(num_classes) * marginal]
    if target_pseudo_labels is not None:
        for label in range(num_classes):
            in_source = source_labels == label
            in_target = np.asarray(target_pseudo_labels) == label
            if in_source.any() and in_target.any():
                columns.append(np.concatenate([in_source / in_source.sum(), in_target / -in_target.sum()]))
    factor = as_float64(np.stack(columns, axis=1), device)
    frobenius = torch.linalg.matrix_norm(factor.T @ factor)
    return factor / frobenius.sqrt()


def mmd_of(embedding: torch.Tensor, factor: torch.Tensor) -> float:
    """``tr(Zᵀ M Z) = ‖Eᵀ Z‖²_F``: the MMD the matrix ``M = E Eᵀ`` measures between the rows of ``Z``."""
    return float(torch.linalg.matrix_norm(factor.T @ embedding) ** 2)


def centered_gram(features: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
    """``Fᵀ H F = FᵀF − (Fᵀ1)(Fᵀ1)ᵀ / n`` (``H = I − 11ᵀ/n``), without forming ``H``; ``gram``: ``FᵀF`` if known."""
    if gram is None:
        gram = features.T @ features
    column_sums = features.sum(dim=0)
    centered = gram - torch.outer(column_sums, column_sums) / len(features)
    return (centered + centered.T) / 2


@dataclass(frozen=True)
class SubspaceSolution:
    """The ``k`` eigenvectors of the smallest ``φ`` of ``(Fᵀ M F + λI) b = φ Fᵀ H F b``.

    Attributes:
        coefficients: ``q × k``, scaled to the constraint ``Bᵀ (Fᵀ H F) B = I``, columns by increasing ``φ``.
        eigenvalues: the ``k`` values ``φ`` (increasing); ``φ_j = b_jᵀ(Fᵀ M F)b_j + λ‖b_j‖²`` under the constraint.
    """

    coefficients: torch.Tensor
    eigenvalues: torch.Tensor

    def unit_norm(self) -> torch.Tensor:
        """The coefficients with each column scaled to unit 2-norm, as MATLAB's ``eigs`` returns them."""
        return self.coefficients / torch.linalg.vector_norm(self.coefficients, dim=0, keepdim=True)


def solve_mmd_subspace(
    features: torch.Tensor,
    factor: torch.Tensor,
    lamb: float,
    dim: int,
    centered: torch.Tensor | None = None,
    at_most: bool = False,
) -> SubspaceSolution:
    """Solve ``min_B tr(Bᵀ Fᵀ M F B) + λ‖B‖²_F`` s.t. ``Bᵀ Fᵀ H F B = I`` for ``dim`` columns.

    Args:
        features: ``F`` (``n × q``), one row a sample.
        factor: ``E`` (``n × p``) with ``M = E Eᵀ`` (see :func:`mmd_factor`).
        lamb: ``λ > 0``.
        dim: ``k``, the number of eigenvectors.
        centered: ``Fᵀ H F`` when already computed (it does not depend on ``M``).
        at_most: when ``dim`` exceeds the number of directions of non-zero centred variance, return that many
            columns instead of raising.

    The symmetric-definite reduction (see the module docstring): with ``R = (λI + QQᵀ)^{-1/2}``, ``Q = FᵀE``,
    the largest eigenpairs ``(μ, w)`` of ``R Fᵀ H F R`` give ``b = R w / √μ`` and ``φ = 1/μ``.

    Raises:
        ValueError: when ``dim`` exceeds the number of directions of non-zero centred variance (unless
            ``at_most``).
    """
    if lamb <= 0:
        raise ValueError(f"lamb must be > 0 (got {lamb})")
    if centered is None:
        centered = centered_gram(features)
    q = centered.shape[0]
    if dim < 1 or (dim > q and not at_most):
        raise ValueError(f"dim must be between 1 and {q}, the dimension of the problem (got {dim})")
    mmd_side = (factor.T @ features).T  # FᵀE: about twice as fast as features.T @ factor (row-major F)
    basis, singular, _ = torch.linalg.svd(mmd_side, full_matrices=False)
    isotropic = lamb**-0.5
    correction = (lamb + singular**2) ** -0.5 - isotropic

    def inverse_sqrt_times(Y: torch.Tensor) -> torch.Tensor:
        """``R Y`` with ``R = λ^{-1/2} I + V_Q diag(correction) V_Qᵀ``."""
        return isotropic * Y + basis @ (correction[:, None] * (basis.T @ Y))

    half = inverse_sqrt_times(centered)
    whitened = inverse_sqrt_times(half.T)
    mu, vectors = torch.linalg.eigh((whitened + whitened.T) / 2)
    rank = int((mu > mu[-1].abs() * q * torch.finfo(mu.dtype).eps).sum())
    if dim > rank and not at_most:
        raise ValueError(
            f"dim={dim} exceeds the {rank} directions in which the centred data vary; lower dim to at most {rank}"
        )
    used = min(dim, rank)
    mu, vectors = mu[-used:].flip(0), vectors[:, -used:].flip(1)
    coefficients = inverse_sqrt_times(vectors) / mu.sqrt()
    return SubspaceSolution(coefficients=coefficients, eigenvalues=1.0 / mu)
