"""KMM: kernel mean matching (Huang, Smola, Gretton, Borgwardt & Schölkopf, NIPS 2007).

KMM re-weights the source samples so that their weighted mean in the kernel's feature space matches the
target's, which estimates the density ratio ``p_t(x)/p_s(x)`` without estimating either density::

    min_β  ½ βᵀ K β − κᵀ β      s.t.  0 ≤ β_i ≤ B,   |Σ_i β_i − n_s| ≤ n_s ε

with ``K_ij = k(x_i^s, x_j^s)`` and ``κ_i = (n_s/n_t) Σ_j k(x_i^s, x_j^t)``: up to the factor ``n_s²/2`` and a
constant this is the squared MMD between the ``β``-weighted source and the target. The weights then train a
sample-weighted classifier on the source.

The quadratic programme is solved in torch by accelerated projected gradient (FISTA with adaptive restart,
step ``1/λ_max(K)``), each step projected exactly onto the feasible set by :func:`project_box_sum`.
"""

from __future__ import annotations

from functools import partial
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tlrun.config import read_only
from tlrun.methods.no_adaptation import SourceClassifier
from tlrun.methods.settings import check_kmm
from tlrun.losses.discrepancy import squared_distances
from tlrun.methods.subspace import linear_kernel, rbf_kernel


def median_heuristic_gamma(X: torch.Tensor) -> float:
    """``γ = 1 / median(‖x_i − x_j‖²)`` over the distinct pairs of rows of ``X``."""
    distances = squared_distances(X, X)
    pairs = distances[torch.triu_indices(len(X), len(X), offset=1, device=X.device).unbind()]
    return float(1.0 / pairs.median().clamp_min(torch.finfo(X.dtype).tiny))


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


def solve_kmm(
    K: torch.Tensor, kappa: torch.Tensor, upper: float, epsilon: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, int]:
    """Minimise ``½ βᵀKβ − κᵀβ`` over ``0 ≤ β ≤ upper``, ``|Σβ − n| ≤ nε`` (FISTA with adaptive restart).

    Stops when an iteration moves ``β`` by less than ``tol · max(1, ‖β‖)``. Returns ``β`` and the number of
    iterations.
    """
    n = len(kappa)
    low, high = max(0.0, n * (1 - epsilon)), n * (1 + epsilon)
    step = 1.0 / largest_eigenvalue(K)
    beta = project_box_sum(torch.ones_like(kappa), upper, low, high)
    momentum_point, momentum = beta, 1.0
    for iteration in range(1, max_iter + 1):
        gradient = K @ momentum_point - kappa
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


def weighted_mmd(K_ss: torch.Tensor, K_st: torch.Tensor, K_tt_mean: float, weights: torch.Tensor) -> float:
    """``‖(1/n_s) Σ β_i φ(x_i^s) − (1/n_t) Σ φ(x_j^t)‖²`` from the kernel blocks (``K_tt_mean`` = mean of K_tt)."""
    n_s = len(weights)
    return float(weights @ K_ss @ weights / n_s**2 - 2 * (weights @ K_st.mean(dim=1)) / n_s + K_tt_mean)


#: KMM's ``classifier_options`` default (conf/method/kmm.yaml): those of the classifiers that weight samples.
KMM_CLASSIFIER_OPTIONS = read_only({"logreg": {"C": 1.0}, "linear_svm": {"C": 1.0}})


class KMM(SourceClassifier):
    """Kernel mean matching, then a sample-weighted classifier on the source.

    Args:
        kernel: ``rbf`` (``exp(−γ‖x − y‖²)``) or ``linear``.
        gamma: ``γ`` of the ``rbf`` kernel; ``None`` takes ``1/median‖x_i − x_j‖²`` over source and target.
        bound: ``B``, the largest weight.
        epsilon: ``ε`` of the sum constraint; ``None`` takes ``(√n_s − 1)/√n_s`` (the paper's choice).
        max_iter, tol: of the QP solver.
        classifier: a classifier that accepts sample weights (``logreg`` or ``linear_svm``).
        classifier_options: keyword arguments per classifier (e.g. ``{"logreg": {"C": 1.0}}``).

    Logs at ``step=0``: ``mmd_uniform`` and ``mmd_weighted`` (the squared kernel MMD between source and target
    before and after the re-weighting), ``effective_sample_fraction`` (``(Σβ)² / (n_s Σβ²)`` in ``[0, 1]``),
    ``weight_max`` and ``qp_iterations``.
    """

    def __init__(
        self,
        kernel: str = "rbf",
        gamma: float | None = None,
        bound: float = 10.0,
        epsilon: float | None = None,
        max_iter: int = 2000,
        tol: float = 1e-7,
        classifier: str = "logreg",
        classifier_options: Mapping[str, Any] | None = KMM_CLASSIFIER_OPTIONS,
    ) -> None:
        super().__init__(classifier=classifier, classifier_options=classifier_options)
        check_kmm(
            type(self).__name__, kernel=kernel, gamma=gamma, bound=bound, epsilon=epsilon, max_iter=max_iter, tol=tol,
            classifier=classifier,
        )
        self.kernel = kernel
        self.gamma = gamma
        self.bound = bound
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.tol = tol

    def training_set(
        self, source: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, np.ndarray | None, dict[str, float]]:
        if self.kernel == "linear":
            kernel = linear_kernel
        else:
            gamma = self.gamma if self.gamma is not None else median_heuristic_gamma(torch.cat([source, target]))
            kernel = partial(rbf_kernel, gamma=gamma)
        n_s, n_t = len(source), len(target)
        K_ss, K_st = kernel(source, source), kernel(source, target)
        K_tt_mean = float(kernel(target, target).mean())
        kappa = K_st.sum(dim=1) * (n_s / n_t)
        epsilon = self.epsilon if self.epsilon is not None else (n_s**0.5 - 1) / n_s**0.5
        weights, iterations = solve_kmm(K_ss, kappa, self.bound, epsilon, self.max_iter, self.tol)
        metrics = {
            "mmd_uniform": weighted_mmd(K_ss, K_st, K_tt_mean, torch.ones_like(weights)),
            "mmd_weighted": weighted_mmd(K_ss, K_st, K_tt_mean, weights),
            "effective_sample_fraction": float(weights.sum() ** 2 / (n_s * (weights**2).sum())),
            "weight_max": float(weights.max()),
            "qp_iterations": float(iterations),
        }
        self.weights = weights.cpu().numpy()
        return source, self.weights, metrics
