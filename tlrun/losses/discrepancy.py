"""Discrepancy losses: distances between a source batch and a target batch of features.

Each function takes two 2-D tensors of shape ``(n_s, d)`` and ``(n_t, d)`` (one row per sample) and returns a
scalar tensor that is differentiable with respect to both, so that a deep domain-adaptation method can add it to
its classification loss with a trade-off weight. Used by DDC (:func:`mmd_linear`), DAN (:func:`mmd_multi_kernel`,
:func:`mmd_multi_layer`), Deep CORAL (:func:`coral_loss`) and CMD (:func:`cmd`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

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


def multi_kernel_bandwidths(
    source: torch.Tensor, target: torch.Tensor, kernel_mul: float, kernel_num: int, bandwidth: float | None
) -> torch.Tensor:
    """``h_u = h · kernel_mul^(u − ⌊kernel_num/2⌋)``, ``u = 0 … kernel_num−1``, a geometric family around ``h``.

    ``h`` is ``bandwidth`` when given, else the mean squared distance ``‖z_i − z_j‖²`` over the distinct pairs of
    the pooled samples ``z`` (detached: the bandwidths are not trained).
    """
    if kernel_num < 1:
        raise ValueError(f"kernel_num must be at least 1, got {kernel_num}")
    if kernel_mul <= 0:
        raise ValueError(f"kernel_mul must be positive, got {kernel_mul}")
    if bandwidth is None:
        pooled = torch.cat([source, target]).detach()
        n = pooled.shape[0]
        center = squared_distances(pooled, pooled).sum() / (n * n - n)
        center = center.clamp_min(torch.finfo(pooled.dtype).tiny)
    elif bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    else:
        center = torch.tensor(float(bandwidth), dtype=source.dtype, device=source.device)
    exponents = torch.arange(kernel_num, dtype=source.dtype, device=source.device) - kernel_num // 2
    return center * kernel_mul**exponents


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
    exactly 0 for identical batches. The kernels are weighted equally (DAN learns the weights; we fix them).
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
