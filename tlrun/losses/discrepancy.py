"""Discrepancy losses: distances between a source batch and a target batch of features.

Each function takes two 2-D tensors of shape ``(n_s, d)`` and ``(n_t, d)`` (one row per sample) and returns a
scalar tensor that is differentiable with respect to both, so that a deep domain-adaptation method can add it to
its classification loss with a trade-off weight. Used by DDC (:func:`mmd_linear`), DAN (:func:`mk_mmd`, with the
bandwidth family of :func:`multi_kernel_bandwidths` and the estimates :func:`mk_mmd_quadratic` and
:func:`mk_mmd_linear_time`), Deep CORAL (:func:`coral_loss`; DomainBed's form: :func:`coral_moments_loss`), CMD
(:func:`cmd`) and M3SDA (:func:`moment_distance`, which takes several source batches); :func:`mean_over_pairs`
averages one over the pairs of several domains. :func:`mmd_multi_kernel` and :func:`mmd_multi_layer` are the earlier
summed-kernel MK-MMD, kept for direct use.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch



def covariance(X: torch.Tensor) -> torch.Tensor:
    """The sample covariance of the rows of ``X`` (``n − 1`` denominator)."""
    centered = X - X.mean(dim=0, keepdim=True)
    return centered.T @ centered / (len(X) - 1)


def squared_distances(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``‖x − y‖²`` between the rows of ``X`` and ``Y`` (clamped at 0 against rounding)."""
    sq = (X * X).sum(dim=1)[:, None] + (Y * Y).sum(dim=1)[None, :] - 2.0 * X @ Y.T
    return sq.clamp_min(0.0)


def check_pair(source: torch.Tensor, target: torch.Tensor, min_samples: int = 1) -> None:
    """Raise a ``ValueError`` unless both are 2-D, share their feature size and hold ``min_samples`` rows or more."""
    for name, x in (("source", source), ("target", target)):
        if x.dim() != 2:
            raise ValueError(f"{name} features must be 2-D (samples × features), got shape {tuple(x.shape)}")
        if x.shape[0] < min_samples:
            raise ValueError(f"{name} features need at least {min_samples} samples, got {x.shape[0]}")
    if source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source and target features differ in size: {source.shape[1]} vs {target.shape[1]} features"
        )


def gaussian_kernel_matrix(
    X: torch.Tensor, Y: torch.Tensor, bandwidths: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """The sum of Gaussian kernels between the rows of ``X`` and ``Y``::

        K[i, j] = Σ_u exp(−‖x_i − y_j‖² / h_u)

    where ``h_u`` are the ``bandwidths`` (scales of the *squared* distance, all > 0).
    """
    h = torch.as_tensor(bandwidths, dtype=X.dtype, device=X.device).reshape(-1)
    if h.numel() == 0 or bool((h <= 0).any()):
        raise ValueError(f"bandwidths must be a non-empty list of positive numbers, got {h.tolist()}")
    d2 = squared_distances(X, Y)
    return torch.exp(-d2[None, :, :] / h[:, None, None]).sum(dim=0)


def mmd_linear(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The squared MMD with the linear kernel ``k(x, y) = xᵀy`` (DDC, Tzeng et al. 2014)::

        MMD²_lin = ‖ (1/n_s) Σ_i x_i^s − (1/n_t) Σ_j x_j^t ‖²
    """
    check_pair(source, target)
    delta = source.mean(dim=0) - target.mean(dim=0)
    return (delta * delta).sum()


def median_squared_distance(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The median heuristic's centre: the median of ``‖z_i − z_j‖²`` over the distinct pairs ``i < j`` of the pooled
    samples ``z = [source; target]`` (an even number of pairs takes the mean of the two middle values), detached
    (the bandwidths are not trained) and clamped above 0.

    The median of the squared distances is the square of the median distance (exactly, for an odd number of
    pairs): with the kernel ``exp(−‖x − y‖² / γ)`` it puts the median pair at ``exp(−1)``.
    """
    pooled = torch.cat([source, target]).detach()
    n = pooled.shape[0]
    if n < 2:
        raise ValueError(f"the median pairwise distance needs at least 2 samples, got {n}")
    rows, columns = torch.triu_indices(n, n, offset=1, device=pooled.device)
    pairs = squared_distances(pooled, pooled)[rows, columns]
    return torch.quantile(pairs, 0.5).clamp_min(torch.finfo(pooled.dtype).tiny)


def multi_kernel_bandwidths(
    source: torch.Tensor,
    target: torch.Tensor,
    kernel_mul: float,
    kernel_num: int,
    bandwidth: float | None,
    center: str = "mean",
) -> torch.Tensor:
    """``h_u = h · kernel_mul^(u − ⌊kernel_num/2⌋)``, ``u = 0 … kernel_num−1``, a geometric family around ``h``.

    ``h`` is ``bandwidth`` when given, else a statistic of the pooled batch, detached (the bandwidths are not
    trained): ``center=mean``, the mean squared distance ``‖z_i − z_j‖²`` over the distinct pairs; ``median``,
    their median (:func:`median_squared_distance`, the median heuristic). DAN's family (Long et al. 2015, after
    Gretton et al. 2012b) is ``kernel_mul = 2^(1/2)``, ``kernel_num = 33``, ``center = median``:
    ``h_u = 2^(u/2 − 8) γ``, ``u = 0 … 32``, i.e. ``2⁻⁸γ, 2^(−7.5)γ, …, 2⁸γ``.
    """
    if kernel_num < 1:
        raise ValueError(f"kernel_num must be at least 1, got {kernel_num}")
    if kernel_mul <= 0:
        raise ValueError(f"kernel_mul must be positive, got {kernel_mul}")
    if center not in ("mean", "median"):
        raise ValueError(f"center must be mean or median, got {center!r}")
    if bandwidth is not None and bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if bandwidth is not None:
        h = torch.tensor(float(bandwidth), dtype=source.dtype, device=source.device)
    elif center == "median":
        h = median_squared_distance(source, target)
    else:
        pooled = torch.cat([source, target]).detach()
        n = pooled.shape[0]
        h = squared_distances(pooled, pooled).sum() / (n * n - n)
        h = h.clamp_min(torch.finfo(pooled.dtype).tiny)
    exponents = torch.arange(kernel_num, dtype=source.dtype, device=source.device) - kernel_num // 2
    return h * kernel_mul**exponents


def mk_mmd_quadratic(source: torch.Tensor, target: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
    """The squared MK-MMD with equal kernel weights ``β_u = 1/m`` over the ``m`` ``bandwidths``, biased
    (V-statistic, all ``n_s² + n_t² + n_s n_t`` pairs, ``O(n²)``)::

        MMD²_k = mean_{i,i'} k(x_i, x_i') + mean_{j,j'} k(y_j, y_j') − 2 mean_{i,j} k(x_i, y_j),
        k(x, y) = (1/m) Σ_u exp(−‖x − y‖² / h_u)

    with ``x`` the source rows and ``y`` the target rows. ≥ 0, and exactly 0 for identical batches.
    """
    check_pair(source, target)
    m = torch.as_tensor(bandwidths).numel()
    k_ss = gaussian_kernel_matrix(source, source, bandwidths).mean()
    k_tt = gaussian_kernel_matrix(target, target, bandwidths).mean()
    k_st = gaussian_kernel_matrix(source, target, bandwidths).mean()
    return (k_ss + k_tt - 2.0 * k_st) / m


def mk_mmd_linear_time(source: torch.Tensor, target: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
    """The unbiased linear-time estimate of the squared MK-MMD (Gretton et al. 2012, Lemma 14; DAN's Eq. 5), with
    the kernel ``k(x, y) = (1/m) Σ_u exp(−‖x − y‖² / h_u)``. Over the quad-tuples
    ``z_i = (x_{2i−1}, x_{2i}, y_{2i−1}, y_{2i})``, ``i = 1 … n/2``::

        MMD²_l = (2/n) Σ_i g(z_i),
        g(z_i) = k(x_{2i−1}, x_{2i}) + k(y_{2i−1}, y_{2i}) − k(x_{2i−1}, y_{2i}) − k(x_{2i}, y_{2i−1})

    ``n`` is the smaller batch's size rounded down to even; the rows past it are left out (so are those of the
    larger batch). ``O(n)`` kernel evaluations; unbiased, so it can be negative; it depends on the rows' order (a
    shuffled batch is a random pairing).
    """
    check_pair(source, target, min_samples=2)
    n = min(source.shape[0], target.shape[0]) // 2 * 2
    x1, x2, y1, y2 = source[0:n:2], source[1:n:2], target[0:n:2], target[1:n:2]
    h = torch.as_tensor(bandwidths, dtype=source.dtype, device=source.device).reshape(-1)
    if h.numel() == 0 or bool((h <= 0).any()):
        raise ValueError(f"bandwidths must be a non-empty list of positive numbers, got {h.tolist()}")

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # row-wise k(a_i, b_i), shape (n/2,)
        d2 = ((a - b) ** 2).sum(dim=1)
        return torch.exp(-d2[None, :] / h[:, None]).mean(dim=0)

    g = k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1)
    return 2.0 / n * g.sum()


def mk_mmd(
    source: torch.Tensor,
    target: torch.Tensor,
    kernel_mul: float = 2.0**0.5,
    kernel_num: int = 33,
    center: str = "median",
    estimator: str = "quadratic",
    bandwidth: float | None = None,
) -> torch.Tensor:
    """DAN's multi-kernel MMD² (Long et al. 2015, Eq. 3) with the convex kernel ``k = Σ_u β_u k_u`` at equal
    weights ``β_u = 1/m``::

        MMD²_k = E k(x, x') + E k(y, y') − 2 E k(x, y),   k_u(x, y) = exp(−‖x − y‖² / h_u)

    over the family ``h_u`` of :func:`multi_kernel_bandwidths` (by default DAN's: ``2⁻⁸γ … 2⁸γ`` in steps of
    ``2^(1/2)``, 33 kernels, ``γ`` the median squared pairwise distance of the pooled batch), estimated by
    :func:`mk_mmd_quadratic` (``estimator=quadratic``) or :func:`mk_mmd_linear_time` (``linear``, the paper's).
    DAN learns ``β`` by a quadratic program maximising the test power; here ``β`` is fixed.
    """
    if estimator not in ("quadratic", "linear"):
        raise ValueError(f"estimator must be quadratic or linear, got {estimator!r}")
    check_pair(source, target, min_samples=2 if estimator == "linear" else 1)
    h = multi_kernel_bandwidths(source, target, kernel_mul, kernel_num, bandwidth, center=center)
    if estimator == "linear":
        return mk_mmd_linear_time(source, target, h)
    return mk_mmd_quadratic(source, target, h)


def mmd_multi_kernel(
    source: torch.Tensor,
    target: torch.Tensor,
    kernel_mul: float = 2.0,
    kernel_num: int = 5,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """The squared multi-kernel MMD (MK-MMD of DAN, Long et al. 2015), biased (V-statistic) estimate::

        MMD²_k = mean_{i,i'} k(x_i^s, x_i'^s) + mean_{j,j'} k(x_j^t, x_j'^t) − 2 mean_{i,j} k(x_i^s, x_j^t)

    with ``k(x, y) = Σ_u exp(−‖x − y‖² / h_u)`` (:func:`gaussian_kernel_matrix`) and the bandwidths
    ``h_u = h · kernel_mul^(u − ⌊kernel_num/2⌋)`` (:func:`multi_kernel_bandwidths`; ``h`` = ``bandwidth``, or by
    default the mean squared pairwise distance of the pooled batch). It is ≥ 0, symmetric in its arguments and
    exactly 0 for identical batches. The kernels are summed (weights 1 each); :func:`mk_mmd` is DAN's version,
    with weights ``1/m``, the median-centred family and the linear-time estimate as an option.
    """
    check_pair(source, target)
    h = multi_kernel_bandwidths(source, target, kernel_mul, kernel_num, bandwidth)
    k_ss = gaussian_kernel_matrix(source, source, h).mean()
    k_tt = gaussian_kernel_matrix(target, target, h).mean()
    k_st = gaussian_kernel_matrix(source, target, h).mean()
    return k_ss + k_tt - 2.0 * k_st


def mmd_multi_layer(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], **kernel_options: float | int | None
) -> torch.Tensor:
    """The sum of the MK-MMD over several layers, as DAN adapts several layers at once::

        Σ_l MMD²_k(h_l^s, h_l^t)

    ``pairs`` holds one ``(source, target)`` feature pair per layer (each layer with its own data-driven
    bandwidths); ``kernel_options`` go to :func:`mmd_multi_kernel`.
    """
    terms = [mmd_multi_kernel(source, target, **kernel_options) for source, target in pairs]
    if not terms:
        raise ValueError("mmd_multi_layer needs at least one (source, target) pair of layer features")
    return torch.stack(terms).sum()


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The Deep CORAL loss (Sun & Saenko 2016)::

        ℓ_CORAL = ‖C_s − C_t‖²_F / (4 d²)

    with ``C`` the unbiased sample covariance of the features (``n − 1`` denominator) and ``d`` the feature size.
    Needs at least 2 samples per domain.
    """
    check_pair(source, target, min_samples=2)
    d = source.shape[1]
    diff = covariance(source) - covariance(target)
    return (diff * diff).sum() / (4.0 * d * d)


def coral_moments_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DomainBed's CORAL penalty (Gulrajani & Lopez-Paz 2021, after Sun & Saenko 2016): the first two moments::

        ℓ = (1/d) ‖μ_s − μ_t‖² + (1/d²) ‖C_s − C_t‖²_F

    with ``μ`` the feature means and ``C`` the unbiased covariances (:func:`covariance`). Needs at least 2 samples
    per domain.
    """
    check_pair(source, target, min_samples=2)
    means = source.mean(dim=0) - target.mean(dim=0)
    covariances = covariance(source) - covariance(target)
    return (means * means).mean() + (covariances * covariances).mean()


def mean_over_pairs(discrepancy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    groups: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(2 / (K (K − 1))) Σ_{i<j} D(g_i, g_j)``: a two-domain discrepancy averaged over every pair of K groups
    (one group per domain; domain generalisation aligns the source domains with each other, as DomainBed does).
    Two groups give ``D(g_1, g_2)``; fewer than two give 0."""
    terms = [discrepancy(groups[i], groups[j]) for i in range(len(groups)) for j in range(i + 1, len(groups))]
    if not terms:
        return groups[0].new_zeros(()) if groups else torch.zeros(())
    return torch.stack(terms).mean()


def cmd(
    source: torch.Tensor, target: torch.Tensor, moments: int = 5, bounds: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """The central moment discrepancy (CMD, Zellinger et al. 2017), for features bounded in ``[a, b]``::

        CMD_K = (1/|b−a|) ‖E(X) − E(Y)‖₂ + Σ_{k=2..K} (1/|b−a|^k) ‖C_k(X) − C_k(Y)‖₂

    with ``E`` the per-feature empirical mean and ``C_k(X) = E((x − E(X))^k)`` the per-feature empirical k-th
    central moment (``K`` = ``moments``; ``a, b`` = ``bounds``).
    """
    check_pair(source, target)
    if moments < 1:
        raise ValueError(f"moments must be at least 1, got {moments}")
    a, b = bounds
    span = abs(b - a)
    if span == 0:
        raise ValueError(f"bounds must be two different numbers, got {bounds}")
    mean_s, mean_t = source.mean(dim=0), target.mean(dim=0)
    total = torch.linalg.vector_norm(mean_s - mean_t) / span
    centered_s, centered_t = source - mean_s, target - mean_t
    for k in range(2, moments + 1):
        gap = (centered_s**k).mean(dim=0) - (centered_t**k).mean(dim=0)
        total = total + torch.linalg.vector_norm(gap) / span**k
    return total


def moment_distance(sources: Sequence[torch.Tensor], target: torch.Tensor, moments: int = 2) -> torch.Tensor:
    """M3SDA's moment distance ``MD²`` (Peng et al. 2019, Eq. 1) between ``N`` source batches and a target batch::

        MD² = Σ_{k=1..K} [ (1/N) Σ_i ‖E(X_i^k) − E(X_T^k)‖₂ + (1/C(N,2)) Σ_{i<j} ‖E(X_i^k) − E(X_j^k)‖₂ ]

    with ``X^k`` the element-wise ``k``-th power of the features and ``E`` the per-feature batch mean (raw, not
    central, moments), ``K`` = ``moments`` (2 in the paper). With one source the pair term is absent: the distance is
    that source's to the target.
    """
    if not sources:
        raise ValueError("moment_distance needs at least one source batch")
    if moments < 1:
        raise ValueError(f"moments must be at least 1, got {moments}")
    for source in sources:
        check_pair(source, target)

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(a - b)

    total = target.new_zeros(())
    for k in range(1, moments + 1):
        source_moments = [(source**k).mean(dim=0) for source in sources]
        target_moment = (target**k).mean(dim=0)
        total = total + torch.stack([distance(moment, target_moment) for moment in source_moments]).mean()
        total = total + mean_over_pairs(distance, source_moments)  # 0 for one source
    return total
