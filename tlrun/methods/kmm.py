"""KMM: kernel mean matching (Huang, Smola, Gretton, Borgwardt & Schölkopf, NIPS 2007).

KMM re-weights the source samples so that their weighted mean in the kernel's feature space matches the
target's, which estimates the density ratio ``p_t(x)/p_s(x)`` without estimating either density::

    min_β  ½ βᵀ K β − κᵀ β      s.t.  0 ≤ β_i ≤ B,   |Σ_i β_i − n_s| ≤ n_s ε

with ``K_ij = k(x_i^s, x_j^s)`` and ``κ_i = (n_s/n_t) Σ_j k(x_i^s, x_j^t)``: up to the factor ``n_s²/2`` and a
constant this is the squared MMD between the ``β``-weighted source and the target. The weights then train a
sample-weighted classifier on the source.

The quadratic programme is solved in torch by accelerated projected gradient (FISTA with adaptive restart,
step ``1/λ_max(K)``), each step projected exactly onto the feasible set by :func:`project_box_sum`.

The solver needs ``K`` only through products ``K v``, ``κ`` and ``λ_max(K)`` (:class:`KernelBlocks`). The exact
``rbf`` kernel holds ``K`` (``n_s × n_s``: :class:`DenseKernelBlocks`). A kernel that factors as
``k(x, y) = φ(x)ᵀφ(y)`` with ``m`` features needs ``O(n m)`` memory and time per step instead
(:class:`FactoredKernelBlocks`): ``K v = Φ_s (Φ_sᵀ v)``, ``κ = (n_s/n_t) Φ_s (Φ_tᵀ 1)``, ``λ_max(K) = λ_max(Φ_sᵀΦ_s)``.
The linear kernel is that with ``φ(x) = x``, exactly; the ``rbf`` kernel is, approximately, with the Nyström
features of ``rank`` landmarks (:class:`~tlrun.methods.subspace.NystroemFeatures`, ``approx=nystroem``, or
``approx=auto`` above :data:`~tlrun.methods.settings.AUTO_EXACT_LIMIT` samples). The QP, its constraint and its
solver are the same; only ``K`` is approximated, and ``mmd_*`` are measured in the approximate kernel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import torch

from tlrun.config import read_only
from tlrun.losses.discrepancy import squared_distances
from tlrun.methods.base import RunContext
from tlrun.methods.no_adaptation import SourceClassifier
from tlrun.methods.settings import MEDIAN_SAMPLE, check_kmm
from tlrun.methods.subspace import Kernel, NystroemFeatures, drawn_rows, nystroem_landmarks, rbf_kernel


def median_heuristic_gamma(X: torch.Tensor) -> float:
    """``γ = 1 / median(‖x_i − x_j‖²)`` over the distinct pairs of rows of ``X``."""
    distances = squared_distances(X, X)
    pairs = distances[torch.triu_indices(len(X), len(X), offset=1, device=X.device).unbind()]
    return float(1.0 / pairs.median().clamp_min(torch.finfo(X.dtype).tiny))


def rows_of(source: torch.Tensor, target: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows ``indices`` (in order) of ``source`` stacked on ``target``, without stacking the two."""
    indices = indices.to(source.device)
    in_source = indices < len(source)
    rows = source.new_empty((len(indices), source.shape[1]))
    rows[in_source] = source[indices[in_source]]
    rows[~in_source] = target[indices[~in_source] - len(source)]
    return rows


def project_box_sum(v: torch.Tensor, upper: float, low: float, high: float) -> torch.Tensor:
    """The Euclidean projection of ``v`` onto ``{β : 0 ≤ β ≤ upper, low ≤ Σβ ≤ high}`` (exact).

    The projection is ``clip(v − ν, 0, upper)`` with the multiplier ``ν = 0`` when that sum is feasible, else the
    ``ν`` at which the sum equals the violated bound. ``s(ν) = Σ clip(v_i − ν, 0, upper)`` is piecewise linear
    and non-increasing with breakpoints ``v_i`` and ``v_i − upper``: it is evaluated at every breakpoint
    (sorted, with cumulative sums), and ``ν`` interpolated linearly on the segment that brackets the bound.
    """
    clipped = v.clamp(0.0, upper)
    total = clipped.sum()
    if low <= total <= high:
        return clipped
    bound = high if total > high else low
    descending = v.sort(descending=True).values
    prefix = torch.cat([descending.new_zeros(1), descending.cumsum(0)])

    def positive_part_sum(shift: torch.Tensor, offset: float) -> torch.Tensor:
        """``Σ_i max(v_i − offset − shift, 0)`` for every entry of ``shift``."""
        count = torch.searchsorted(-descending, -(shift + offset), right=False)
        return prefix[count] - count * (shift + offset)

    breakpoints = torch.cat([v, v - upper]).sort().values
    sums = positive_part_sum(breakpoints, 0.0) - positive_part_sum(breakpoints, upper)
    right = int(torch.searchsorted(-sums, -torch.as_tensor(bound, dtype=v.dtype, device=v.device)))
    right = min(max(right, 1), len(breakpoints) - 1)
    nu_left, nu_right = breakpoints[right - 1], breakpoints[right]
    sum_left, sum_right = sums[right - 1], sums[right]
    slope = (sum_right - sum_left) / (nu_right - nu_left) if nu_right > nu_left else sum_left.new_zeros(())
    nu = nu_left + (bound - sum_left) / slope if slope != 0 else nu_left
    return (v - nu).clamp(0.0, upper)


def largest_eigenvalue(K: torch.Tensor, iterations: int = 100) -> float:
    """An upper estimate of ``λ_max`` of a symmetric positive semi-definite ``K`` (power iteration, +2%)."""
    vector = torch.ones(len(K), dtype=K.dtype, device=K.device)
    value = torch.zeros((), dtype=K.dtype, device=K.device)
    for _ in range(iterations):
        image = K @ vector
        value = torch.linalg.vector_norm(image)
        if value == 0:
            return 1.0
        vector = image / value
    return float(value) * 1.02


class KernelBlocks(ABC):
    """What KMM reads of the kernel between ``n_s`` source and ``n_t`` target samples.

    Attributes:
        kappa: ``κ = (n_s/n_t) K_st 1``.
        target_mean: the mean of ``K_tt`` (the constant of the MMD).
    """

    kappa: torch.Tensor
    target_mean: float

    @abstractmethod
    def source_gram_times(self, v: torch.Tensor) -> torch.Tensor:
        """``K_ss v``."""

    @abstractmethod
    def lipschitz(self) -> float:
        """``λ_max(K_ss)`` or an upper bound: the gradient's Lipschitz constant."""

    def mmd(self, weights: torch.Tensor) -> float:
        """``‖(1/n_s) Σ β_i φ(x_i^s) − (1/n_t) Σ φ(x_j^t)‖²`` in the kernel's feature space."""
        n_s = len(weights)
        return float((weights @ self.source_gram_times(weights) - 2 * weights @ self.kappa) / n_s**2 + self.target_mean)


class DenseKernelBlocks(KernelBlocks):
    """The kernel computed exactly: ``K_ss`` held (``n_s × n_s``), ``K_st`` and ``K_tt`` reduced as they are made."""

    def __init__(self, K_ss: torch.Tensor, kappa: torch.Tensor, target_mean: float) -> None:
        self.K_ss, self.kappa, self.target_mean = K_ss, kappa, target_mean

    @classmethod
    def of(cls, kernel: Kernel, source: torch.Tensor, target: torch.Tensor) -> DenseKernelBlocks:
        kappa = kernel(source, target).sum(dim=1) * (len(source) / len(target))
        return cls(kernel(source, source), kappa, float(kernel(target, target).mean()))

    def source_gram_times(self, v: torch.Tensor) -> torch.Tensor:
        return self.K_ss @ v

    def lipschitz(self) -> float:
        return largest_eigenvalue(self.K_ss)


class FactoredKernelBlocks(KernelBlocks):
    """A kernel ``k(x, y) = φ(x)ᵀφ(y)`` given by the features ``Φ_s`` (``n_s × m``) and ``Φ_t``: no ``n × n``
    matrix, ``O(n m)`` per product.

    With ``self_similarity`` (``k(x, x)``, the same for every sample: 1 for the rbf kernel), the kernel is
    ``Φ Φᵀ + D``, ``D`` diagonal, that restores each ``k(x, x)`` an approximation ``φ`` falls short of
    (Nyström's ``‖φ(x)‖² ≤ k(x, x)``). Without
    it the QP's ``βᵀKβ`` would under-count the samples' self-similarity, the one term that keeps the weights from
    piling on a few samples: on 1,000 + 1,000 samples of a shift with 1,000 landmarks, target accuracy fell from 88.4
    to 81.9 %, the weights' effective fraction from 0.28 to 0.14.
    """

    def __init__(self, source_features: torch.Tensor, target_features: torch.Tensor,
                 self_similarity: float | None = None) -> None:
        self.source_features = source_features
        n_s, n_t = len(source_features), len(target_features)
        self.source_correction = (None if self_similarity is None else
                                  (self_similarity - (source_features**2).sum(dim=1)).clamp_min(0.0))
        target_sum = target_features.sum(dim=0)
        self.kappa = source_features @ target_sum * (n_s / n_t)
        self.target_mean = float(target_sum @ target_sum) / n_t**2
        if self_similarity is not None:
            self.target_mean += float((self_similarity - (target_features**2).sum(dim=1)).clamp_min(0.0).sum()) / n_t**2

    def source_gram_times(self, v: torch.Tensor) -> torch.Tensor:
        product = self.source_features @ (self.source_features.T @ v)
        return product if self.source_correction is None else product + self.source_correction * v

    def lipschitz(self) -> float:
        largest = float(torch.linalg.eigvalsh(self.source_features.T @ self.source_features)[-1])
        correction = 0.0 if self.source_correction is None else float(self.source_correction.max())
        return max(largest + correction, 1e-300)


def solve_kmm(
    blocks: KernelBlocks, upper: float, epsilon: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, int]:
    """Minimise ``½ βᵀKβ − κᵀβ`` over ``0 ≤ β ≤ upper``, ``|Σβ − n| ≤ nε`` (FISTA with adaptive restart).

    Stops when an iteration moves ``β`` by less than ``tol · max(1, ‖β‖)``. Returns ``β`` and the number of
    iterations.
    """
    kappa = blocks.kappa
    n = len(kappa)
    low, high = max(0.0, n * (1 - epsilon)), n * (1 + epsilon)
    step = 1.0 / blocks.lipschitz()
    beta = project_box_sum(torch.ones_like(kappa), upper, low, high)
    momentum_point, momentum = beta, 1.0
    for iteration in range(1, max_iter + 1):
        gradient = blocks.source_gram_times(momentum_point) - kappa
        updated = project_box_sum(momentum_point - step * gradient, upper, low, high)
        change = updated - beta
        if float(gradient @ change) > 0:  # the momentum points uphill: restart from the last iterate
            momentum_point, momentum = beta, 1.0
            continue
        next_momentum = (1 + (1 + 4 * momentum**2) ** 0.5) / 2
        momentum_point = updated + ((momentum - 1) / next_momentum) * change
        beta, momentum = updated, next_momentum
        if torch.linalg.vector_norm(change) <= tol * max(1.0, float(torch.linalg.vector_norm(beta))):
            return beta, iteration
    return beta, max_iter


#: KMM's ``classifier_options`` default (conf/method/kmm.yaml): those of the classifiers that weight samples.
KMM_CLASSIFIER_OPTIONS = read_only({"logreg": {"C": 1.0}, "linear_svm": {"C": 1.0}})


class KMM(SourceClassifier):
    """Kernel mean matching, then a sample-weighted classifier on the source.

    Args:
        kernel: ``rbf`` (``exp(−γ‖x − y‖²)``) or ``linear`` (``xᵀy``, always in its exact factored form).
        gamma: ``γ`` of the ``rbf`` kernel; ``None`` takes ``1/median‖x_i − x_j‖²`` over source and target
            (over the pairs of :data:`~tlrun.methods.settings.MEDIAN_SAMPLE` samples drawn with the run's seed
            when the kernel is approximated).
        bound: ``B``, the largest weight.
        epsilon: ``ε`` of the sum constraint; ``None`` takes ``(√n_s − 1)/√n_s`` (the paper's choice).
        max_iter, tol: of the QP solver.
        approx: how the ``rbf`` kernel is computed, as for TCA/JDA: ``none`` (exactly, ``K_ss`` held),
            ``nystroem`` (Nyström features of ``rank`` landmarks drawn with the run's seed from source and target)
            or ``auto`` (exactly up to :data:`~tlrun.methods.settings.AUTO_EXACT_LIMIT` samples, source + target).
        rank: the number of Nyström landmarks.
        classifier: a classifier that accepts sample weights (``logreg`` or ``linear_svm``).
        classifier_options: keyword arguments per classifier (e.g. ``{"logreg": {"C": 1.0}}``).

    Logs at ``step=0``: ``mmd_uniform`` and ``mmd_weighted`` (the squared kernel MMD between source and target
    before and after the re-weighting), ``effective_sample_fraction`` (``(Σβ)² / (n_s Σβ²)`` in ``[0, 1]``),
    ``weight_max``, ``qp_iterations``, and ``approx_rank`` (the landmarks) when the kernel is approximated.
    """

    def __init__(
        self,
        kernel: str = "rbf",
        gamma: float | None = None,
        bound: float = 10.0,
        epsilon: float | None = None,
        max_iter: int = 2000,
        tol: float = 1e-7,
        approx: str = "auto",
        rank: int = 1000,
        classifier: str = "logreg",
        classifier_options: Mapping[str, Any] | None = KMM_CLASSIFIER_OPTIONS,
    ) -> None:
        super().__init__(classifier=classifier, classifier_options=classifier_options)
        check_kmm(
            type(self).__name__, kernel=kernel, gamma=gamma, bound=bound, epsilon=epsilon, max_iter=max_iter, tol=tol,
            approx=approx, rank=rank, classifier=classifier,
        )
        self.kernel = kernel
        self.gamma = gamma
        self.bound = bound
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.tol = tol
        self.approx = approx
        self.rank = rank

    def kernel_blocks(
        self, source: torch.Tensor, target: torch.Tensor, seed: int
    ) -> tuple[KernelBlocks, dict[str, float]]:
        """The kernel between ``source`` and ``target`` as the solver reads it, and ``approx_rank`` if approximated."""
        if self.kernel == "linear":
            return FactoredKernelBlocks(source, target), {}
        n = len(source) + len(target)
        landmarks = nystroem_landmarks(type(self).__name__, self.kernel, self.approx, self.rank, n)
        generator = torch.Generator().manual_seed(seed)
        gamma = self.gamma
        if gamma is None:  # all pairs for the exact kernel; those of MEDIAN_SAMPLE samples for the approximated one
            sampled = n if landmarks is None else MEDIAN_SAMPLE
            gamma = median_heuristic_gamma(rows_of(source, target, drawn_rows(sampled, n, generator)))
        kernel = partial(rbf_kernel, gamma=gamma)
        if landmarks is None:
            return DenseKernelBlocks.of(kernel, source, target), {}
        features = NystroemFeatures(rows_of(source, target, drawn_rows(landmarks, n, generator)), kernel)
        blocks = FactoredKernelBlocks(features(source), features(target), self_similarity=1.0)  # rbf: k(x, x) = 1
        return blocks, {"approx_rank": float(landmarks)}

    def training_set(
        self, source: torch.Tensor, target: torch.Tensor, context: RunContext
    ) -> tuple[torch.Tensor, np.ndarray | None, dict[str, float]]:
        n_s = len(source)
        blocks, metrics = self.kernel_blocks(source, target, context.seed)
        epsilon = self.epsilon if self.epsilon is not None else (n_s**0.5 - 1) / n_s**0.5
        weights, iterations = solve_kmm(blocks, self.bound, epsilon, self.max_iter, self.tol)
        metrics |= {
            "mmd_uniform": blocks.mmd(torch.ones_like(weights)),
            "mmd_weighted": blocks.mmd(weights),
            "effective_sample_fraction": float(weights.sum() ** 2 / (n_s * (weights**2).sum())),
            "weight_max": float(weights.max()),
            "qp_iterations": float(iterations),
        }
        self.weights = weights.cpu().numpy()
        return source, self.weights, metrics
