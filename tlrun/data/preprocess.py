"""Per-domain preprocessing of feature matrices.

Every function takes an ``(n, d)`` array of one domain (samples in rows) and returns a new float64 array; the
statistics (means, deviations) are computed on that domain alone, as the published protocols do. ``none``
returns its input unchanged (so that pixel data may stay float32).

=================  ==========================================================================================
name               formula, for sample ``i`` and feature ``j``
=================  ==========================================================================================
``none``           ``x'_ij = x_ij``
``l2``             ``x'_ij = x_ij / ||x_i||_2``; an all-zero sample stays zero
``zscore``         ``x'_ij = (x_ij - mu_j) / sigma_j`` with ``mu_j`` the mean and ``sigma_j`` the *population*
                   standard deviation (divide by ``n``) of feature ``j`` over the domain; a constant feature
                   (``sigma_j = 0``) becomes 0
``rowsum_zscore``  ``s_ij = x_ij / sum_k x_ik``, then ``zscore`` of ``s``: the protocol of the JDA release
                   (Long et al., ICCV 2013) for the Office+Caltech10 SURF histograms; a sample summing to 0
                   stays zero instead of becoming NaN
=================  ==========================================================================================

Imports numpy only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tlrun.errors import DataError


def _as_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"preprocessing expects an (n, d) matrix, got shape {X.shape}")
    return X


def none(X: np.ndarray) -> np.ndarray:
    """Identity: ``x'_ij = x_ij`` (the input itself, dtype unchanged)."""
    return X


def l2(X: np.ndarray) -> np.ndarray:
    """Scale each sample to unit Euclidean norm: ``x'_i = x_i / ||x_i||_2`` (zero samples stay zero)."""
    X = _as_matrix(X)
    norms = np.sqrt(np.sum(X * X, axis=1, keepdims=True))
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def zscore(X: np.ndarray) -> np.ndarray:
    """Standardise each feature over the domain: ``x'_ij = (x_ij - mu_j) / sigma_j``.

    ``sigma_j = sqrt(mean_i (x_ij - mu_j)^2)`` is the population deviation (MATLAB's ``zscore(X, 1)``). A
    feature whose values are all equal becomes 0 (MATLAB divides by 1 there, which gives 0 as well); the test
    is exact equality of the values, so that rounding in the mean cannot turn a constant into noise.
    """
    X = _as_matrix(X)
    if len(X) == 0:
        return X.copy()
    mu = X.mean(axis=0)
    sigma = X.std(axis=0)  # ddof=0: population deviation
    constant = (X.max(axis=0) == X.min(axis=0)) | (sigma == 0)
    out = np.zeros_like(X)
    keep = ~constant
    out[:, keep] = (X[:, keep] - mu[keep]) / sigma[keep]
    return out


def rowsum_zscore(X: np.ndarray) -> np.ndarray:
    """JDA-release protocol: ``s_ij = x_ij / sum_k x_ik``, then :func:`zscore` of ``s`` (population deviation).

    A sample whose values sum to 0 is left at zero before the z-score (the MATLAB code would produce NaN).
    """
    X = _as_matrix(X)
    sums = X.sum(axis=1, keepdims=True)
    S = np.divide(X, sums, out=np.zeros_like(X), where=sums != 0)
    return zscore(S)


PREPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": none,
    "l2": l2,
    "zscore": zscore,
    "rowsum_zscore": rowsum_zscore,
}


#: Preprocessings that transform each sample on its own (no statistics shared across samples).
ROW_WISE = ("none", "l2")


def check_row_wise(name: str, why: str) -> None:
    """:class:`DataError` unless ``name`` is a per-sample preprocessing (:data:`ROW_WISE`); ``why`` says what a
    statistic over samples would leak."""
    if name not in ROW_WISE:
        raise DataError(f"dataset.preprocess={name} computes statistics over samples, which {why}; use one of: {', '.join(ROW_WISE)}")


def get(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The preprocessing function called ``name``; :class:`DataError` listing the options when unknown."""
    try:
        return PREPROCESSORS[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown preprocessing {name!r}; choose dataset.preprocess among: {', '.join(PREPROCESSORS)}"
        ) from None


def apply(name: str, X: np.ndarray) -> np.ndarray:
    """Apply the preprocessing called ``name`` to one domain's ``(n, d)`` matrix."""
    return get(name)(X)
