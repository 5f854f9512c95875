"""Zero-shot building blocks: the hinge ranking losses of attribute / label-embedding learning (the notes', DeViSE's,
ALE's), ConSE's convex combination of class embeddings, and the closed-form "embarrassingly simple" zero-shot
solution (ESZSL, Romera-Paredes & Torr, ICML 2015).

Both score a sample ``x`` against a class ``y`` by the compatibility ``F(x, y) = f(x) · g(y)``: ``f`` embeds
inputs, ``g`` embeds classes (their attribute vectors, or label embeddings). A zero-shot prediction is the unseen
class whose ``g(y)`` scores highest.
"""

from __future__ import annotations

import torch


def compatibility(embedded_inputs: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """``S[i, c] = f(x_i) · g(y_c)`` for inputs ``(n, d)`` and classes ``(C, d)``: an ``(n, C)`` score matrix."""
    if embedded_inputs.dim() != 2 or class_embeddings.dim() != 2 or embedded_inputs.shape[1] != class_embeddings.shape[1]:
        raise ValueError(
            f"compatibility: inputs (n, d) and class embeddings (C, d) must share d; got {tuple(embedded_inputs.shape)} "
            f"and {tuple(class_embeddings.shape)}"
        )
    return embedded_inputs @ class_embeddings.T


def _check_ranking(loss: str, scores: torch.Tensor, labels: torch.Tensor, margin: float) -> None:
    """The ranking losses' arguments: ``(n, C)`` scores over at least 2 classes, ``(n,)`` class indices, a margin
    ``>= 0``; else a ``ValueError`` naming ``loss``."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"{loss}: scores must be (n, C) with C >= 2 classes, got {tuple(scores.shape)}")
    if labels.shape != (scores.shape[0],) or labels.dtype.is_floating_point:
        raise ValueError(f"{loss}: labels must be ({scores.shape[0]},) class indices")
    if margin < 0:
        raise ValueError(f"{loss}: the margin must be >= 0, got {margin}")


def hinge_ranking_loss(
    scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, violations: str = "max"
) -> torch.Tensor:
    """The ranking hinge of the notes: the true class must beat the best other class by the margin ``k``::

        L = (1/n) Σ_n max(0, k − S[n, y_n] + max_{m ≠ y_n} S[n, m])            (violations="max")

    with ``S[n, m] = f(x_n) · g(y_m)`` (:func:`compatibility`). It is 0 exactly when every sample's margin is
    met; otherwise its gradient raises the true class's score and lowers the most-violating other one's.
    ``violations="sum"`` is DeViSE's form (Frome et al., 2013), every violating class contributing::

        L = (1/n) Σ_n Σ_{m ≠ y_n} max(0, k − S[n, y_n] + S[n, m])
    """
    _check_ranking("hinge_ranking_loss", scores, labels, margin)
    if violations not in ("max", "sum"):
        raise ValueError(f"hinge_ranking_loss: violations must be max or sum, got {violations!r}")
    true = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], float("-inf"))
    if violations == "max":
        return torch.clamp(margin - true + others.max(dim=1).values, min=0.0).mean()
    return torch.clamp(margin - true[:, None] + others, min=0.0).sum(dim=1).mean()  # the true class's -inf clamps to 0


def ale_ranking_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """ALE's weighted approximate ranking loss (Akata et al., TPAMI 2016, after WSABIE, Weston et al., 2011)::

        L = (1/n) Σ_n [ℓ(r_n) / r_n] Σ_{m ≠ y_n} max(0, Δ − S[n, y_n] + S[n, m])

        r_n  = #{m ≠ y_n : Δ − S[n, y_n] + S[n, m] > 0}     (the violating classes: an upper bound on the rank)
        ℓ(r) = Σ_{i=1..r} 1/i                                (ℓ(r)/r is taken as 0 when r = 0: no violation, no loss)

    with ``Δ(y, m) = margin`` for every ``m ≠ y`` (the 0/1 label loss when ``margin`` is 1) and ``S[n, m] =
    F(x_n, m)``. The weight ``ℓ(r)/r`` is constant in the scores (``r`` is a count): a sample whose true class
    ranks low (many violations) weighs each violation less than one ranked second, which spends the loss on the
    top of the ranking. ALE computes ``r`` with WSABIE's sampled estimate for speed; here it is counted exactly
    over every class of ``scores`` (``n × C``).
    """
    _check_ranking("ale_ranking_loss", scores, labels, margin)
    true = scores.gather(1, labels[:, None])
    hinges = (margin - true + scores).scatter(1, labels[:, None], 0.0)  # the true class is no violation
    violating = (hinges > 0).sum(dim=1)  # r_n
    harmonic = torch.cumsum(1.0 / torch.arange(1, scores.shape[1], device=scores.device, dtype=scores.dtype), 0)
    weight = torch.where(violating > 0, harmonic[(violating - 1).clamp(min=0)] / violating.clamp(min=1), 0.0)
    return (weight * torch.clamp(hinges, min=0.0).sum(dim=1)).mean()


def conse_embedding(probabilities: torch.Tensor, seen_embeddings: torch.Tensor, top: int = 10) -> torch.Tensor:
    """ConSE's semantic embedding of samples (Norouzi et al., ICLR 2014): the convex combination of the seen
    classes' embeddings ``s(y)`` weighted by the classifier's ``T`` largest probabilities::

        f(x) = (1/Z) Σ_{t=1..T} p(ŷ_t | x) s(ŷ_t),   Z = Σ_{t=1..T} p(ŷ_t | x)

    with ``ŷ_t`` the seen class of ``t``-th largest probability (``probabilities``: ``(n, C)``, rows over the
    ``C`` seen classes; ``seen_embeddings``: ``(C, d)``); ``T = min(top, C)``. Returns ``(n, d)``.
    """
    if probabilities.dim() != 2 or seen_embeddings.dim() != 2 or probabilities.shape[1] != seen_embeddings.shape[0]:
        raise ValueError(
            f"conse_embedding: probabilities (n, C) and seen embeddings (C, d) expected, got "
            f"{tuple(probabilities.shape)} and {tuple(seen_embeddings.shape)}"
        )
    if top < 1:
        raise ValueError(f"conse_embedding: top must be >= 1, got {top}")
    weights, classes = probabilities.topk(min(int(top), probabilities.shape[1]), dim=1)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)
    return torch.einsum("nt,ntd->nd", weights, seen_embeddings[classes])


def eszsl_weights(
    features: torch.Tensor, labels: torch.Tensor, signatures: torch.Tensor, gamma: float = 1.0, lamb: float = 1.0
) -> torch.Tensor:
    """ESZSL's bilinear compatibility matrix ``V`` (``F(x, y) = xᵀ V s_y``), the closed-form minimiser of::

        ‖Xᵀ V S − Y‖²_F + γ ‖V S‖²_F + λ ‖Xᵀ V‖²_F + γλ ‖V‖²_F

    over the seen classes, with ``X`` the ``d × n`` features (``features`` is ``(n, d)``), ``S`` the ``a × z``
    class signatures (``signatures`` is ``(z, a)``: one attribute row per seen class) and ``Y ∈ {−1, 1}^{n × z}``
    the one-vs-rest labels::

        V = (X Xᵀ + γ I_d)⁻¹ X Y Sᵀ (S Sᵀ + λ I_a)⁻¹

    computed with two symmetric positive-definite solves (no explicit inverse), in the inputs' dtype.
    """
    if features.dim() != 2 or signatures.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError("eszsl_weights: features (n, d), labels (n,) and signatures (z, a) expected")
    if gamma <= 0 or lamb <= 0:
        raise ValueError(f"eszsl_weights: gamma and lamb must be positive, got {gamma}, {lamb}")
    X = features.T
    S = signatures.T
    Y = -torch.ones(features.shape[0], signatures.shape[0], dtype=features.dtype, device=features.device)
    Y[torch.arange(features.shape[0], device=features.device), labels] = 1.0
    d, a = X.shape[0], S.shape[0]
    left = X @ X.T + gamma * torch.eye(d, dtype=X.dtype, device=X.device)
    right = S @ S.T + lamb * torch.eye(a, dtype=S.dtype, device=S.device)
    inner = torch.linalg.solve(left, X @ Y @ S.T)  # (X Xᵀ + γI)⁻¹ X Y Sᵀ
    return torch.linalg.solve(right, inner.T).T  # ... (S Sᵀ + λI)⁻¹ (right is symmetric)
