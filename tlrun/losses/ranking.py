"""Zero-shot building blocks: the hinge ranking loss of attribute / label-embedding learning, and the closed-form
"embarrassingly simple" zero-shot solution (ESZSL, Romera-Paredes & Torr, ICML 2015).

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
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"hinge_ranking_loss: scores must be (n, C) with C >= 2 classes, got {tuple(scores.shape)}")
    if labels.shape != (scores.shape[0],) or labels.dtype.is_floating_point:
        raise ValueError(f"hinge_ranking_loss: labels must be ({scores.shape[0]},) class indices")
    if margin < 0:
        raise ValueError(f"hinge_ranking_loss: the margin must be >= 0, got {margin}")
    if violations not in ("max", "sum"):
        raise ValueError(f"hinge_ranking_loss: violations must be max or sum, got {violations!r}")
    true = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], float("-inf"))
    if violations == "max":
        return torch.clamp(margin - true + others.max(dim=1).values, min=0.0).mean()
    return torch.clamp(margin - true[:, None] + others, min=0.0).sum(dim=1).mean()  # the true class's -inf clamps to 0


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
