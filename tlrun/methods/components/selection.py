"""Scores for choosing a checkpoint (an epoch, a hyperparameter) of a domain-adaptation run without target labels.

Every score is **higher is better**, so that the caller takes the argmax over the candidates. Risks are returned
negated (:func:`deep_embedded_validation`). ``SCORES`` names the selection rules a run can use; all but
``oracle`` are label-free. Inputs are numpy arrays: softmax outputs of shape ``(n, K)``, features of shape
``(n, d)``, one row per sample.

Imports numpy only at module level: scikit-learn is imported by the functions that use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlrun.methods.components.diagnostics import check_feature_pair, subsample_rows
from tlrun.errors import TlrunError

SCORES = ("last", "source_val", "target_val", "dev", "snd", "entropy", "lodo", "oracle")
SCORE_HELP = {
    "last": "the final epoch: no selection",
    "source_val": "accuracy on the held-out labeled source split",
    "target_val": "accuracy on the held-out part of the labeled target pool (finetune, scenario.target_val_fraction > 0)",
    "dev": "deep embedded validation: source validation loss re-weighted by target/source density ratios",
    "snd": "soft neighborhood density of the target softmax outputs",
    "entropy": "minus the mean entropy of the target predictions (rewards collapse: use with other scores)",
    "lodo": "dg: accuracy on a source domain held out of training whole (leave-one-domain-out)",
    "oracle": "ORACLE, not label-free: accuracy on the target labels, for reference only",
}


class SelectionError(TlrunError):
    """An unknown model-selection score. The message names the known ones."""


def check_score(name: str) -> str:
    """``name`` when it is one of ``SCORES``, else a :class:`SelectionError` naming the options."""
    if name not in SCORES:
        raise SelectionError(f"unknown selection score {name!r}; choose one of: {', '.join(SCORES)}")
    return name


def check_probabilities(probabilities: Any, min_samples: int = 1) -> np.ndarray:
    """The softmax outputs as float64; a ``ValueError`` unless they are ``(n, K)`` with ``n ≥ min_samples``,
    finite, non-negative, and each row sums to 1 (within 1e-3)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probabilities must be 2-D (samples × classes), got shape {p.shape}")
    if p.shape[0] < min_samples:
        raise ValueError(f"probabilities need at least {min_samples} samples, got {p.shape[0]}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative rows that sum to 1 (softmax outputs, not logits)")
    return p


def source_val_accuracy(probabilities: Any, labels: Any) -> float:
    """The accuracy ``(1/n) Σ_i [argmax_k p_ik = y_i]`` on the held-out labeled source split."""
    p = check_probabilities(probabilities)
    y = np.asarray(labels)
    if y.shape != (len(p),):
        raise ValueError(f"labels must be 1-D with one label per row of probabilities ({len(p)}), got shape {y.shape}")
    return float(np.mean(p.argmax(axis=1) == y))


def row_entropy(p: np.ndarray) -> np.ndarray:
    """``H(p_i) = −Σ_k p_ik log p_ik`` of each row, with ``0 log 0 = 0``."""
    return -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=1)


def neg_entropy(probabilities: Any) -> float:
    """Minus the mean prediction entropy of the target softmax outputs::

        −(1/n) Σ_i H(p_i),   H(p_i) = −Σ_k p_ik log p_ik   (0 log 0 = 0)

    In ``[−log K, 0]``: confident predictions score higher. A weak criterion on its own, since a model that
    collapses onto one class is maximally confident; use it together with other scores.
    """
    p = check_probabilities(probabilities)
    return float(-np.mean(row_entropy(p)))


def soft_neighborhood_density(
    probabilities: Any, temperature: float = 0.05, *, max_samples: int = 2000, seed: int = 0
) -> float:
    """Soft neighborhood density (SND, Saito et al., ICCV 2021) of the target softmax outputs::

        p̂_i = p_i / ‖p_i‖₂,   M_ij = p̂_iᵀ p̂_j,   s_ij = exp(M_ij / τ) / Σ_{l≠i} exp(M_il / τ)   (j ≠ i)
        SND = (1/n) Σ_i H(s_i)

    Higher means denser neighbourhoods in the prediction space. It is maximal, ``log(n − 1)``, when all
    predictions are identical (collapse), so like :func:`neg_entropy` it is used together with other scores.
    The diagonal is excluded from the softmax (the reference code masks it with ``−1/τ`` instead). Needs 2
    samples; above ``max_samples`` (the ``n × n`` similarity matrix), that many rows are drawn without
    replacement with the generator seeded by ``seed``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    p = check_probabilities(probabilities, min_samples=2)
    p = subsample_rows(p, max_samples, np.random.default_rng(seed))
    unit = p / np.linalg.norm(p, axis=1, keepdims=True)
    logits = unit @ unit.T / temperature
    np.fill_diagonal(logits, -np.inf)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_s = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    s = np.exp(log_s)
    return float(np.mean(-np.sum(s * np.where(s > 0, log_s, 0.0), axis=1)))


def density_ratios(
    source_train_features: Any, target_features: Any, val_features: Any, seed: int = 0, *, max_samples: int = 2000
) -> np.ndarray:
    """The importance weights of DEV (You et al., ICML 2019) for the source validation samples::

        w_i = (n_s / n_t) · p(target | x_i) / p(source | x_i)

    from a domain classifier (``LogisticRegression``, ``C = 1``, on standardized features) trained to tell the
    source-train features (label 0) from the target features (label 1); ``n_s, n_t`` are the numbers of samples
    it saw (at most ``max_samples`` per domain, drawn with the generator seeded by ``seed``). The odds are read
    from the classifier's log-odds, so that a confident classifier gives no division by zero.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source, target = check_feature_pair(source_train_features, target_features)
    validation, _ = check_feature_pair(val_features, source, names=("validation", "source-train"))
    rng = np.random.default_rng(seed)
    source, target = subsample_rows(source, max_samples, rng), subsample_rows(target, max_samples, rng)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    classifier.fit(np.concatenate([source, target]), np.repeat([0, 1], [len(source), len(target)]))
    return len(source) / len(target) * np.exp(classifier.decision_function(validation))


def control_variate_risk(weights: Any, losses: Any) -> float:
    """The DEV risk estimate (You et al., ICML 2019) from importance weights ``w`` and per-sample losses ``ℓ``::

        L_i = w_i ℓ_i,   η = −Cov(L, w) / Var(w),   risk = mean(L) + η · mean(w) − η

    ``η`` uses the known mean ``E[w] = 1`` as a control variate to reduce the variance of ``mean(L)``. When
    ``Var(w) ≈ 0`` (below ``1e-12 · mean(w)²``), ``η = 0``.
    """
    w = np.asarray(weights, dtype=np.float64)
    loss = np.asarray(losses, dtype=np.float64)
    if w.ndim != 1 or len(w) < 1 or loss.shape != w.shape:
        raise ValueError(
            f"weights and losses must be 1-D, non-empty and of the same length, got shapes {w.shape} and {loss.shape}"
        )
    weighted = w * loss
    var_w = np.var(w)
    eta = 0.0
    if var_w > 1e-12 * np.mean(w) ** 2:
        eta = -np.mean((weighted - weighted.mean()) * (w - w.mean())) / var_w
    return float(np.mean(weighted) + eta * np.mean(w) - eta)


def deep_embedded_validation(
    source_train_features: Any,
    target_features: Any,
    val_features: Any,
    val_losses: Any,
    seed: int = 0,
    *,
    max_samples: int = 2000,
) -> float:
    """Deep embedded validation (DEV, You et al., ICML 2019), **negated** so that higher is better::

        DEV = −(mean(L) + η · mean(w) − η),   L_i = w_i ℓ_i,   η = −Cov(L, w) / Var(w)

    ``val_features`` and ``val_losses`` (per-sample classification losses ``ℓ_i``) come from the held-out labeled
    source split; the weights ``w_i`` estimate the target/source density ratio at each validation sample
    (:func:`density_ratios`), so the score estimates minus the target risk. See :func:`control_variate_risk`.
    """
    weights = density_ratios(source_train_features, target_features, val_features, seed, max_samples=max_samples)
    losses = np.asarray(val_losses, dtype=np.float64)
    if losses.shape != weights.shape:
        raise ValueError(
            f"val_losses must be 1-D with one loss per validation sample ({len(weights)}), got shape {losses.shape}"
        )
    return -control_variate_risk(weights, losses)
