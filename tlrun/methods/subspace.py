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

The ``rbf`` kernel at linear cost (Nyström; Williams & Seeger, NIPS 2001): with ``m`` landmark samples ``L``,
``K ≈ K̃ = Φ Φᵀ``, ``Φ = K_{nL} K_{LL}^{-1/2}`` (``n × m``). The kernel form with ``K̃`` is the linear kernel of the
inputs ``Φ``, so it is reduced exactly as the linear kernel is (below): ``F = Φ (V S)``, ``q ≤ m``, at
``O(n m²)``. With every sample a landmark, ``K̃ = K`` and the solution is the exact kernel's.

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
- The per-iteration dense ``r × r`` ``eigh`` (3/4 of a JDA fit at ``r = 800``) is replaced, for the reduced
  linear kernel, by Rayleigh–Ritz on a subspace built for the ``k`` wanted eigenvectors
  (:func:`solve_on_rational_subspace`). With ``C = Fᵀ H F = D − vvᵀ/n`` (``D = S⁴``, ``v = Fᵀ1``), every
  eigenvector is ``b = (φD − λI)^{-1} [Q, v] z``: entry ``j`` is rational in ``φ`` with its pole at ``λ/d_j``.
  The subspace is the coordinate vectors of the ``N`` largest ``d_j`` (poles among the wanted ``φ``) plus, on
  the other coordinates, ``(σ_i D − λI)^{-1} [Q, v]`` at ``J`` Zolotarev-optimal poles ``σ_i`` placed in the
  interval that interlacing guarantees to hold the wanted ``φ``: those entries are then captured to
  ``4 exp(−π² J / log(16κ))`` (``κ`` the cross-ratio of the two intervals of poles). On Office+Caltech10 this
  is ``N ≈ 145``, ``J ≈ 14`` blocks of ``p + 1 = 12``: a ~310-dimensional projected pencil of the same form,
  solved by the same dense path, instead of 800. The result is accepted only when every Ritz pair's
  residual is at the dense ``eigh``'s rounding level and an inertia count (Sylvester's law on the
  diagonal-plus-low-rank ``C − σA``, ``O(r p²)``) proves the ``k`` Ritz values are the ``k`` largest;
  otherwise (and for the primal and RBF forms) the dense ``eigh`` runs, so the result equals the dense one up
  to rounding in every case. The one ``eigh`` of full size left per fit is the reduction's (``d × d`` or
  ``n × n``).

The published code returns the eigenvectors as MATLAB's ``eigs`` does, scaled to unit 2-norm, not to the
constraint; the scaling changes the 1-NN distances of the embedding, so :meth:`SubspaceSolution.unit_norm`
reproduces it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from tlrun.losses.discrepancy import squared_distances
from tlrun.methods.components.classifiers import as_float64
from tlrun.methods.settings import AUTO_EXACT_LIMIT, approximates_kernel, check_kernel

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l2_normalize_rows(X: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Every row divided by its Euclidean norm (an all-zero row stays zero); ``in_place`` divides ``X`` itself."""
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    return X.div_(norms) if in_place else X / norms


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

    def centered_gram(self, features: torch.Tensor) -> torch.Tensor | DiagonalMinusRankOne:
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


def numerically_nonzero(eigenvalues: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """Which eigenvalues of a Gram matrix (of ``n`` rows and ``d`` columns) exceed ``max(n, d) · ε · λ_max``."""
    threshold = eigenvalues.max().clamp_min(0.0) * max(n, d) * torch.finfo(eigenvalues.dtype).eps
    return eigenvalues > threshold


class ReducedLinearKernelMap:
    """The linear kernel ``K = X Xᵀ`` reduced exactly to its rank ``r``: ``f(x) = x V S`` (``q = r``).

    ``X = U S Vᵀ`` is the thin SVD of the training samples, from the eigendecomposition of the smaller of
    ``XᵀX = V S² Vᵀ`` (when ``n ≥ d``, then ``V S`` directly) and ``X Xᵀ = U S² Uᵀ`` (then ``V S = Xᵀ U``).
    Singular values with ``s² ≤ max(n, d) · ε · s²_max`` are dropped as numerically zero. For a training sample,
    ``f(x_i) = (U S²)_i = (K U)_i``: the kernel row expressed in the basis ``U``, whose orthonormality keeps
    ``‖a‖ = ‖U b‖ = ‖b‖``, and ``FᵀF = S² UᵀU S² = S⁴`` is diagonal.
    """

    def __init__(self, training: torch.Tensor | None, gram: torch.Tensor | None = None, n: int | None = None) -> None:
        """From the training samples, or (when ``n ≥ d``) from their Gram matrix ``XᵀX`` and their number ``n``."""
        if gram is None and len(training) < training.shape[1]:
            n, d = training.shape
            squared_singular, U = torch.linalg.eigh(training @ training.T)
            keep = numerically_nonzero(squared_singular, n, d)
            self.basis = training.T @ U[:, keep]
        else:
            n, d = (n, len(gram)) if gram is not None else training.shape
            squared_singular, V = torch.linalg.eigh(training.T @ training if gram is None else gram)
            keep = numerically_nonzero(squared_singular, n, d)
            self.basis = V[:, keep] * squared_singular[keep].sqrt()
        self.squared_singular = squared_singular[keep]

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.basis

    def centered_gram(self, features: torch.Tensor) -> DiagonalMinusRankOne:
        """``S⁴ − ggᵀ/n`` (``g = Fᵀ1``): diagonal minus rank one, without the ``O(n r²)`` product ``FᵀF``."""
        return DiagonalMinusRankOne(self.squared_singular**2, features.sum(dim=0), len(features))


#: Rows per block when Nyström features are computed: the kernel's temporaries take ``NYSTROEM_BLOCK × m`` (64 MB per
#: matrix at 1,000 landmarks in float64) instead of ``n × m`` (1.6 GB each at 200,000 samples).
NYSTROEM_BLOCK = 8192


def drawn_rows(count: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices of ``range(n)`` drawn without replacement by ``generator``; all ``n`` in order when
    ``count ≥ n``."""
    return torch.randperm(n, generator=generator)[:count] if count < n else torch.arange(n)


class NystroemFeatures:
    """The Nyström feature map of a kernel through ``m`` landmarks ``L`` (rows): ``φ(x) = k(x, L) W``.

    ``W = U_L Λ_L^{-1/2}`` from ``K_{LL} = U_L Λ_L U_Lᵀ`` (eigenvalues at rounding level dropped:
    :func:`numerically_nonzero`), so that ``φ(x)ᵀφ(y)`` is ``k(x, L) K_{LL}^+ k(L, y)``, the kernel approximated
    through the landmarks (Williams & Seeger, NIPS 2001); exact between landmarks.
    """

    def __init__(self, landmarks: torch.Tensor, kernel: Kernel) -> None:
        self.landmarks = landmarks
        self.kernel = kernel
        values, vectors = torch.linalg.eigh(kernel(landmarks, landmarks))
        keep = numerically_nonzero(values, len(values), len(values))
        self.whitening = vectors[:, keep] / values[keep].sqrt()

    def blocks(self, X: torch.Tensor, projection: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """``φ(X_b)`` (times ``projection``, if given) for consecutive blocks ``X_b`` of :data:`NYSTROEM_BLOCK` rows:
        the kernel's temporaries stay at a block's size."""
        whitening = self.whitening if projection is None else self.whitening @ projection
        for block in X.split(NYSTROEM_BLOCK):
            yield self.kernel(block, self.landmarks) @ whitening

    def __call__(self, X: torch.Tensor, projection: torch.Tensor | None = None) -> torch.Tensor:
        """``φ`` of every row of ``X`` (``len(X) × m``, fewer columns where ``K_{LL}`` is singular), times
        ``projection`` if given, computed by blocks of rows into one matrix."""
        width = (self.whitening if projection is None else projection).shape[1]
        result = X.new_empty((len(X), width))
        for start, block in zip(range(0, len(X), NYSTROEM_BLOCK), self.blocks(X, projection)):
            result[start : start + len(block)] = block
        return result

    def gram(self, X: torch.Tensor) -> torch.Tensor:
        """``ΦᵀΦ`` of the rows of ``X`` (``m × m``), summed over blocks without holding ``Φ``."""
        return sum((block.T @ block for block in self.blocks(X)), start=X.new_zeros((self.whitening.shape[1],) * 2))


class NystroemMap:
    """A kernel approximated through ``m`` landmarks, reduced exactly to its rank: ``f(x) = φ(x) (V S)``.

    ``Φ``, the rows ``φ(x)`` of :class:`NystroemFeatures`, has ``Φ Φᵀ = K_{nL} K_{LL}^+ K_{Ln}``: the kernel form
    with that kernel is the linear kernel of ``Φ``, reduced by :class:`ReducedLinearKernelMap`. The landmarks are
    ``landmarks`` training samples drawn by ``generator`` (:func:`drawn_rows`; all of them when ``landmarks ≥ n``,
    which makes the kernel exact). With more samples than landmarks, ``Φ`` is never held: the reduction reads its
    Gram ``ΦᵀΦ`` (summed by blocks) and ``f`` is computed by blocks of rows, so that the map takes ``n × q`` memory.
    """

    def __init__(self, training: torch.Tensor, kernel: Kernel, landmarks: int, generator: torch.Generator) -> None:
        chosen = drawn_rows(landmarks, len(training), generator).to(training.device)
        self.features = NystroemFeatures(training[chosen], kernel)
        if len(training) >= self.features.whitening.shape[1]:
            self.reduced = ReducedLinearKernelMap(None, gram=self.features.gram(training), n=len(training))
        else:
            self.reduced = ReducedLinearKernelMap(self.features(training))

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        return self.features(X, projection=self.reduced.basis)

    def centered_gram(self, features: torch.Tensor) -> DiagonalMinusRankOne:
        return self.reduced.centered_gram(features)


def nystroem_landmarks(method: str, kernel: str, approx: str, rank: int, n_samples: int) -> int | None:
    """How many Nyström landmarks ``method`` uses for ``kernel`` on ``n_samples`` (source + target) under
    ``approx``: ``None`` for the exact kernel (see :func:`~tlrun.methods.settings.approximates_kernel`), else
    ``min(rank, n_samples)``; ``approx=auto`` says on stderr when it leaves the exact kernel."""
    if not approximates_kernel(kernel, approx, n_samples):
        return None
    landmarks = min(rank, n_samples)
    if approx == "auto":
        print(f"tlrun: {method}: kernel=rbf on {n_samples} samples (over {AUTO_EXACT_LIMIT}): a Nyström map of "
              f"{landmarks} landmarks (method.approx=none computes the exact kernel)", file=sys.stderr)
    return landmarks


def make_feature_map(
    kernel: str, training: torch.Tensor, gamma: float, landmarks: int | None = None, seed: int = 0
) -> FeatureMap:
    """The feature map of ``kernel`` (``primal``, ``linear`` or ``rbf`` with width ``gamma``) on ``training``;
    with ``landmarks``, the ``rbf`` kernel's Nyström map of that many landmarks, drawn with ``seed``."""
    check_kernel(kernel)
    if kernel == "primal":
        return PrimalMap()
    if kernel == "linear":
        return ReducedLinearKernelMap(training)
    rbf = partial(rbf_kernel, gamma=gamma)
    if landmarks is not None:
        return NystroemMap(training, rbf, landmarks, torch.Generator().manual_seed(seed))
    return KernelMap(training, rbf)


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


def centered_gram(features: torch.Tensor) -> torch.Tensor:
    """``Fᵀ H F = FᵀF − (Fᵀ1)(Fᵀ1)ᵀ / n`` (``H = I − 11ᵀ/n``), without forming ``H``."""
    column_sums = features.sum(dim=0)
    centered = features.T @ features - torch.outer(column_sums, column_sums) / len(features)
    return (centered + centered.T) / 2


@dataclass(frozen=True)
class DiagonalMinusRankOne:
    """``Fᵀ H F = diag(diagonal) − v vᵀ / n`` when ``FᵀF`` is diagonal (``v = Fᵀ1``, ``n`` samples).

    The reduced linear kernel's form (``FᵀF = S⁴``); :func:`solve_mmd_subspace` solves it without a dense
    ``q × q`` eigendecomposition (see :func:`solve_on_rational_subspace`).
    """

    diagonal: torch.Tensor
    column_sums: torch.Tensor
    n: int

    def dense(self) -> torch.Tensor:
        """The ``q × q`` matrix."""
        return torch.diag(self.diagonal) - torch.outer(self.column_sums, self.column_sums) / self.n

    def times(self, Y: torch.Tensor) -> torch.Tensor:
        """``(Fᵀ H F) Y`` in ``O(q m)`` for ``Y`` of ``m`` columns."""
        return self.diagonal[:, None] * Y - torch.outer(self.column_sums, self.column_sums @ Y) / self.n


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


def regularizer_inverse_sqrt(mmd_side: torch.Tensor, lamb: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``Y ↦ R Y`` with ``R = (λI + QQᵀ)^{-1/2} = λ^{-1/2} I + V_Q [(λ + Σ²)^{-1/2} − λ^{-1/2}] V_Qᵀ``.

    ``Q = V_Q Σ W_Qᵀ`` is the thin SVD of ``mmd_side`` (``q × p``); applying ``R`` costs ``O(q p m)`` for ``m``
    columns.
    """
    basis, singular, _ = torch.linalg.svd(mmd_side, full_matrices=False)
    isotropic = lamb**-0.5
    correction = (lamb + singular**2) ** -0.5 - isotropic
    return lambda Y: isotropic * Y + basis @ (correction[:, None] * (basis.T @ Y))


def _whitened_eigenpairs(
    centered: torch.Tensor, mmd_side: torch.Tensor, lamb: float
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Every eigenpair ``(μ, w)`` of ``R (Fᵀ H F) R`` by a dense ``eigh``, ``μ`` decreasing, and ``Y ↦ R Y``."""
    inverse_sqrt = regularizer_inverse_sqrt(mmd_side, lamb)
    half = inverse_sqrt(centered)
    whitened = inverse_sqrt(half.T)
    mu, vectors = torch.linalg.eigh((whitened + whitened.T) / 2)
    return mu.flip(0), vectors.flip(1), inverse_sqrt


def _rank_threshold(largest: torch.Tensor, q: int) -> torch.Tensor:
    """``μ`` at or below ``|μ_max| q ε`` counts as a direction of zero centred variance."""
    return largest.abs() * q * torch.finfo(largest.dtype).eps


def solve_mmd_subspace(
    features: torch.Tensor,
    factor: torch.Tensor,
    lamb: float,
    dim: int,
    centered: torch.Tensor | DiagonalMinusRankOne | None = None,
    at_most: bool = False,
) -> SubspaceSolution:
    """Solve ``min_B tr(Bᵀ Fᵀ M F B) + λ‖B‖²_F`` s.t. ``Bᵀ Fᵀ H F B = I`` for ``dim`` columns.

    Args:
        features: ``F`` (``n × q``), one row a sample.
        factor: ``E`` (``n × p``) with ``M = E Eᵀ`` (see :func:`mmd_factor`).
        lamb: ``λ > 0``.
        dim: ``k``, the number of eigenvectors.
        centered: ``Fᵀ H F`` when already computed (it does not depend on ``M``), dense or, for the reduced
            linear kernel, as :class:`DiagonalMinusRankOne`.
        at_most: when ``dim`` exceeds the number of directions of non-zero centred variance, return that many
            columns instead of raising.

    The symmetric-definite reduction (see the module docstring): with ``R = (λI + QQᵀ)^{-1/2}``, ``Q = FᵀE``,
    the largest eigenpairs ``(μ, w)`` of ``R Fᵀ H F R`` give ``b = R w / √μ`` and ``φ = 1/μ``. A
    :class:`DiagonalMinusRankOne` ``centered`` is solved by :func:`solve_on_rational_subspace` when its checks
    pass; otherwise, and for a dense ``centered``, by one dense ``eigh`` of ``R Fᵀ H F R``.

    Raises:
        ValueError: when ``dim`` exceeds the number of directions of non-zero centred variance (unless
            ``at_most``).
    """
    if lamb <= 0:
        raise ValueError(f"lamb must be > 0 (got {lamb})")
    if centered is None:
        centered = centered_gram(features)
    q = features.shape[1]
    if dim < 1 or (dim > q and not at_most):
        raise ValueError(f"dim must be between 1 and {q}, the dimension of the problem (got {dim})")
    mmd_side = (factor.T @ features).T  # FᵀE: about twice as fast as features.T @ factor (row-major F)
    if isinstance(centered, DiagonalMinusRankOne):
        solution = solve_on_rational_subspace(centered, mmd_side, lamb, dim)
        if solution is not None:
            return solution
        centered = centered.dense()
    mu, vectors, inverse_sqrt = _whitened_eigenpairs(centered, mmd_side, lamb)
    rank = int((mu > _rank_threshold(mu[0], q)).sum())
    if dim > rank and not at_most:
        raise ValueError(
            f"dim={dim} exceeds the {rank} directions in which the centred data vary; lower dim to at most {rank}"
        )
    used = min(dim, rank)
    mu = mu[:used]
    coefficients = inverse_sqrt(vectors[:, :used]) / mu.sqrt()
    return SubspaceSolution(coefficients=coefficients, eigenvalues=1.0 / mu)


ZOLOTAREV_TARGET = 1e-13
"""The bound ``4 exp(−π² J / log(16κ))`` on the rational approximation error that sets the number ``J`` of
poles; on the Office+Caltech10 problems the true error is about 10³ times smaller, at the dense ``eigh``'s
rounding level."""

RESIDUAL_TOLERANCE = 64 * torch.finfo(torch.float64).eps
"""Accepted ``‖W w − μ w‖`` of a Ritz pair (``W = R C R``, ``C = Fᵀ H F``, ``‖w‖ = 1``), relative to
``max(d)/λ ≥ ‖R‖²‖C‖``: the scale of the rounding errors in forming or applying ``W``, which bound the dense
``eigh``'s accuracy too (its own eigenpairs measure up to about ``20 ε`` on the Office+Caltech10 problems, where
``‖W‖ ≈ max(d)/λ``, and below ``ε`` on problems whose top direction the MMD term suppresses)."""

LARGEST_SUBSPACE_FRACTION = 2 / 3
"""The Rayleigh–Ritz subspace is used only when its dimension is at most this fraction of ``q``."""


def solve_on_rational_subspace(
    centered: DiagonalMinusRankOne, mmd_side: torch.Tensor, lamb: float, dim: int
) -> SubspaceSolution | None:
    """The solution of :func:`solve_mmd_subspace` by Rayleigh–Ritz on a small subspace, or ``None``.

    With ``C = Fᵀ H F = D − v vᵀ/n`` (``D = diag(d)``) and ``A = λI + QQᵀ``, an eigenpair ``A b = φ C b`` gives
    ``(φ D − λ I) b = Q(Qᵀb) + φ v (vᵀb)/n``, so ``b = (φ D − λ I)^{-1} P z`` with ``P = [Q, v]`` (``q × (p+1)``):
    entry ``j`` has a pole at ``φ = e_j = λ/d_j``. The ``k + 1`` smallest ``φ`` lie in ``[α, β]`` with
    ``α = e_(1)``, ``β = e_(k+p+2)`` (the ``e`` increasing; interlacing for the rank-one ``C − D`` and the
    rank-``p`` ``A − λI``). The subspace is:

    - the coordinate vectors of the ``N`` largest ``d_j`` (the poles among and next to the wanted ``φ``), and
    - on the other coordinates, whose ``e_j`` fill ``[γ, δ]`` beyond ``β``, the span of ``(σ_i D − λI)^{-1} P``
      at ``J`` poles ``σ_i ∈ [α, β]`` (:func:`zolotarev_poles`): it contains those entries of every wanted
      ``b`` up to Zolotarev's number ``Z_J ≤ 4 exp(−π² J / log(16κ))``, ``κ`` the cross-ratio of the two
      intervals. ``N`` minimises the dimension ``N + J (p+1)``, ``J`` from :data:`ZOLOTAREV_TARGET`.

    The projected pencil has the same form (diagonal block, rank-one ``v`` term, regularised side), so it is
    solved like the full one, in ``O((N + J(p+1))³)`` instead of ``O(q³)``. The result is accepted only when

    - every Ritz pair ``(μ, w = √μ R⁻¹ b)`` has ``‖W w − μ w‖ ≤`` :data:`RESIDUAL_TOLERANCE` ``· max(d)/λ``,
      where ``W w − μ w = √μ R (C b − μ A b)`` costs ``O(q k p)``; then each ``μ_i`` lies within the
      residual norm of its own eigenvalue of ``W`` (Kahan), and
    - the ``k`` of them are the largest: ``W`` has exactly ``k`` eigenvalues above ``σ``, midway between the
      ``k``-th and ``(k+1)``-th Ritz values (:func:`count_eigenvalues_above`), while every ``μ_i`` minus the
      residuals' Frobenius norm stays above ``σ``. A (near-)tie between the ``k``-th and ``(k+1)``-th
      eigenvalues, whose eigenvectors are not determined, fails this and falls back to the dense solve.

    ``None`` also when the subspace would not be small (over :data:`LARGEST_SUBSPACE_FRACTION` of ``q``) or
    the ``k``-th ``μ`` is numerically zero (the dense solve then clamps ``dim`` or raises).
    """
    q, p = mmd_side.shape
    diagonal = centered.diagonal
    order = torch.argsort(diagonal, descending=True)
    plan = _plan_subspace((lamb / diagonal[order]).cpu(), dim, p)
    if plan is None:
        return None
    kept, poles = plan
    top, rest = order[:kept], order[kept:]
    mixing = torch.cat([mmd_side[rest], centered.column_sums[rest, None]], dim=1)
    rational = torch.cat([mixing / (pole * diagonal[rest] - lamb)[:, None] for pole in poles], dim=1)
    rest_basis, _ = torch.linalg.qr(rational)

    rest_block = rest_basis.T @ (diagonal[rest, None] * rest_basis)
    sums = torch.cat([centered.column_sums[top], rest_basis.T @ centered.column_sums[rest]])
    projected = torch.block_diag(torch.diag(diagonal[top]), (rest_block + rest_block.T) / 2)
    projected = projected - torch.outer(sums, sums) / centered.n
    projected_mmd_side = torch.cat([mmd_side[top], rest_basis.T @ mmd_side[rest]])
    mu, vectors, inverse_sqrt = _whitened_eigenpairs(projected, projected_mmd_side, lamb)
    if not mu[dim - 1] > _rank_threshold(mu[0], q):
        return None

    wanted = mu[:dim]
    projected_coefficients = inverse_sqrt(vectors[:, :dim]) / wanted.sqrt()
    coefficients = torch.empty(q, dim, dtype=mu.dtype, device=mu.device)
    coefficients[top] = projected_coefficients[:kept]
    coefficients[rest] = rest_basis @ projected_coefficients[kept:]

    regularized = lamb * coefficients + mmd_side @ (mmd_side.T @ coefficients)
    misfit = regularizer_inverse_sqrt(mmd_side, lamb)(centered.times(coefficients) - wanted * regularized)
    residuals = wanted.sqrt() * torch.linalg.vector_norm(misfit, dim=0)
    if residuals.max() > RESIDUAL_TOLERANCE * diagonal.max() / lamb:
        return None
    separator = (mu[dim - 1] + mu[dim]) / 2
    if not mu[dim - 1] - torch.linalg.vector_norm(residuals) > separator:
        return None
    if count_eigenvalues_above(centered, mmd_side, lamb, float(separator)) != dim:
        return None
    return SubspaceSolution(coefficients=coefficients, eigenvalues=1.0 / wanted)


def _plan_subspace(poles_increasing: torch.Tensor, dim: int, p: int) -> tuple[int, list[float]] | None:
    """``(N, poles)`` of the smallest subspace for :func:`solve_on_rational_subspace`, or ``None``.

    ``poles_increasing`` are the ``e_j = λ/d_j`` sorted (on the CPU). ``N`` coordinates are kept, the other
    ``q − N`` get ``J`` blocks of ``p + 1`` columns; ``J`` is the smallest count whose Zolotarev bound meets
    :data:`ZOLOTAREV_TARGET`. Every ``N ≥ k + p + 2`` whose ``γ = e_(N+1)`` is beyond ``β`` is tried.
    """
    q = len(poles_increasing)
    first_kept = dim + p + 2
    if first_kept >= q:
        return None
    alpha, beta, delta = (float(poles_increasing[i]) for i in (0, first_kept - 1, q - 1))
    kept = torch.arange(first_kept, q)
    gamma = poles_increasing[first_kept:]
    kappa = _cross_ratio(alpha, beta, gamma, delta)
    count = torch.ceil(math.log(4 / ZOLOTAREV_TARGET) * torch.log(16 * kappa) / math.pi**2)
    size = kept + count * (p + 1)
    feasible = (alpha < beta) & (beta < gamma) & (gamma < delta) & (count * (p + 1) <= q - kept)
    if not bool(feasible.any()):
        return None
    best = int(torch.where(feasible, size, torch.inf).argmin())
    if size[best] > LARGEST_SUBSPACE_FRACTION * q:
        return None
    return int(kept[best]), zolotarev_poles(alpha, beta, float(gamma[best]), delta, int(count[best]))


def _cross_ratio(alpha: float, beta: float, gamma: float | torch.Tensor, delta: float) -> float | torch.Tensor:
    """``κ = (γ − α)(δ − β) / ((γ − β)(δ − α)) > 1`` of two intervals ``α < β < γ < δ`` (Möbius-invariant)."""
    return (gamma - alpha) * (delta - beta) / ((gamma - beta) * (delta - alpha))


def zolotarev_poles(alpha: float, beta: float, gamma: float, delta: float, count: int) -> list[float]:
    """The ``count`` poles in ``[α, β]`` of Zolotarev's rational function for ``[α, β]`` against ``[γ, δ]``.

    The Möbius map ``S`` with ``S(−1) = α``, ``S(−ℓ) = β``, ``S(ℓ) = γ`` takes ``[−1, −ℓ] ∪ [ℓ, 1]`` onto the two
    intervals (``S(1) = δ`` when ``κ = (1 + ℓ)²/(4ℓ)``, the cross-ratio). On the symmetric pair the optimal
    function of degree ``J`` has zeros ``p_i = dn((2i − 1) K / (2J) | 1 − ℓ²)`` (Jacobi's ``dn``, ``K`` the
    complete elliptic integral, the ADI shifts of Wachspress) and poles ``−p_i``; this returns ``S(−p_i)``,
    found from the cross-ratio ``c_i`` of ``(−p_i; −1, −ℓ, ℓ)``, which ``S`` keeps.
    """
    kappa = _cross_ratio(alpha, beta, gamma, delta)
    ell = 1 / (2 * kappa - 1 + 2 * math.sqrt(kappa * (kappa - 1)))  # the root of κ = (1 + ℓ)²/(4ℓ) below 1
    poles = []
    for zero in _jacobi_dn([(2 * i - 1) / (2 * count) for i in range(1, count + 1)], 1 - ell**2):
        ratio = 2 * ell * (1 - zero) / ((zero + ell) * (1 - ell))
        poles.append(
            (alpha * (beta - gamma) - ratio * gamma * (beta - alpha)) / ((beta - gamma) - ratio * (beta - alpha))
        )
    return poles


def _jacobi_dn(fractions: list[float], parameter: float) -> list[float]:
    """``dn(f K(m) | m)`` for each fraction ``f`` (``m`` = ``parameter``), by the arithmetic-geometric mean.

    Abramowitz & Stegun 16.4: ``a₀ = 1``, ``b₀ = √(1 − m)``, ``c₀ = √m``; ``a, b, c ← (a + b)/2, √(ab), (a − b)/2``
    until ``c_N`` is negligible; ``K = π / (2 a_N)``. From ``φ_N = 2^N a_N u`` (here ``2^{N−1} π f``),
    ``φ_{i−1} = (φ_i + asin(c_i sin(φ_i) / a_i)) / 2``, and ``dn = cos φ₀ / cos(φ₁ − φ₀)``.
    """
    a, b, c = 1.0, math.sqrt(1 - parameter), math.sqrt(parameter)
    steps: list[tuple[float, float]] = []
    while c > torch.finfo(torch.float64).eps:
        a, b, c = (a + b) / 2, math.sqrt(a * b), (a - b) / 2
        steps.append((a, c))
    if not steps:
        return [1.0] * len(fractions)  # m = 0: dn ≡ 1
    values = []
    for fraction in fractions:
        angles = [2 ** (len(steps) - 1) * math.pi * fraction]
        for a_i, c_i in reversed(steps):
            angles.append((angles[-1] + math.asin(c_i * math.sin(angles[-1]) / a_i)) / 2)
        values.append(math.cos(angles[-1]) / math.cos(angles[-2] - angles[-1]))
    return values


def count_eigenvalues_above(
    centered: DiagonalMinusRankOne, mmd_side: torch.Tensor, lamb: float, sigma: float
) -> int | None:
    """The number of eigenvalues of ``W = R C R`` above ``σ > 0`` (``C = D − vvᵀ/n``), in ``O(q p²)``; ``None``
    when rounding could change the count.

    By Sylvester's law it is the number of positive eigenvalues of ``C − σA = Δ − G Gᵀ`` (``A = λI + QQᵀ``),
    with ``Δ = D − σλ I`` diagonal and ``G = [v/√n, √σ Q]`` of ``p + 1`` columns. The inertia of
    ``[[Δ, G], [Gᵀ, I]]`` is both ``In(I) + In(Δ − GGᵀ)`` and ``In(Δ) + In(I − GᵀΔ⁻¹G)`` (Haynsworth), so the
    count is ``#{Δ_j > 0} + #{positive eigenvalues of I − GᵀΔ⁻¹G} − (p + 1)``. ``None`` when some ``Δ_j`` is 0
    or an eigenvalue of the small matrix is within its rounding error of 0.
    """
    shifted = centered.diagonal - sigma * lamb
    if not bool((shifted != 0).all()):
        return None
    mixing = [centered.column_sums[:, None] / math.sqrt(centered.n), math.sqrt(sigma) * mmd_side]
    low_rank = torch.cat(mixing, dim=1)
    identity = torch.eye(low_rank.shape[1], dtype=low_rank.dtype, device=low_rank.device)
    schur = identity - low_rank.T @ (low_rank / shifted[:, None])
    eigenvalues = torch.linalg.eigvalsh((schur + schur.T) / 2)
    magnitude = torch.linalg.matrix_norm(low_rank.abs().T @ (low_rank.abs() / shifted.abs()[:, None]), ord=2)
    if bool((eigenvalues.abs() <= len(shifted) * torch.finfo(shifted.dtype).eps * (1 + magnitude)).any()):
        return None
    return int((shifted > 0).sum()) + int((eigenvalues > 0).sum()) - low_rank.shape[1]
