"""Conditional building blocks: the conditional domain-adversarial loss of CDAN (Long et al., "Conditional
Adversarial Domain Adaptation", NeurIPS 2018) with its multilinear maps and entropy conditioning, and the minimum
class confusion loss of MCC (Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020).

Features ``f`` are ``(n, d)``, class probabilities ``g`` (softmax outputs) and logits ``z`` are ``(n, C)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses.discrepancy import check_pair


def check_probabilities(probabilities: torch.Tensor, name: str = "probabilities") -> None:
    """Raise a ``ValueError`` unless ``probabilities`` is 2-D (samples × classes) with at least one sample."""
    if probabilities.dim() != 2 or probabilities.shape[0] < 1 or probabilities.shape[1] < 1:
        raise ValueError(
            f"{name} must be 2-D (samples × classes) with at least one sample, got shape {tuple(probabilities.shape)}"
        )


def entropy(probabilities: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The Shannon entropy of each row, of shape ``(n,)``::

        H(p_i) = −Σ_k p_ik log(p_ik + ε)

    (``ε`` = ``eps`` keeps the logarithm finite at ``p_ik = 0``, as in the authors' code).
    """
    check_probabilities(probabilities)
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return -(probabilities * torch.log(probabilities + eps)).sum(dim=1)


def entropy_weights(probabilities: torch.Tensor) -> torch.Tensor:
    """CDAN+E's per-sample weights ``w_i = 1 + exp(−H(p_i))`` (:func:`entropy`), of shape ``(n,)``, in
    ``(1, 2]``: confident (low-entropy) predictions weigh more. Computed without gradient (detached).
    """
    with torch.no_grad():
        return 1.0 + torch.exp(-entropy(probabilities.detach()))


def check_features_and_probabilities(features: torch.Tensor, probabilities: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless ``features`` ``(n, d)`` and ``probabilities`` ``(n, C)`` are 2-D with the same
    number of rows."""
    if features.dim() != 2:
        raise ValueError(f"features must be 2-D (samples × features), got shape {tuple(features.shape)}")
    check_probabilities(probabilities)
    if features.shape[0] != probabilities.shape[0]:
        raise ValueError(
            f"features and probabilities differ in samples: {features.shape[0]} vs {probabilities.shape[0]}"
        )


def multilinear_map(features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """CDAN's multilinear map ``T⊗(f, g) = f ⊗ g``, the outer product of each sample's features and class
    probabilities, flattened to shape ``(n, d·C)``: entry ``a·C + k`` of row ``i`` is ``f_ia g_ik``.
    """
    check_features_and_probabilities(features, probabilities)
    n = features.shape[0]
    return (features[:, :, None] * probabilities[:, None, :]).reshape(n, -1)


class RandomizedMultilinearMap(nn.Module):
    """CDAN's randomized multilinear map, for when ``d·C`` is too large::

        T⊙(f, g) = (R_f f) ⊙ (R_g g) / √output_dim

    with ``⊙`` the element-wise product and ``R_f`` (output_dim × d), ``R_g`` (output_dim × C) fixed matrices of
    standard Gaussian entries, drawn once at construction (from the global generator, so reproducible under
    ``torch.manual_seed``) and stored as buffers: saved in the state dict, moved with the module, never trained.
    ``⟨T⊙(f, g), T⊙(f', g')⟩`` is an unbiased estimate of ``⟨f ⊗ g, f' ⊗ g'⟩``.
    """

    def __init__(self, features_dim: int, num_classes: int, output_dim: int = 1024) -> None:
        super().__init__()
        if features_dim < 1 or num_classes < 1 or output_dim < 1:
            raise ValueError(
                f"features_dim, num_classes and output_dim must be positive, "
                f"got {features_dim}, {num_classes} and {output_dim}"
            )
        self.features_dim = features_dim
        self.num_classes = num_classes
        self.output_dim = output_dim
        self.register_buffer("R_f", torch.randn(output_dim, features_dim))
        self.register_buffer("R_g", torch.randn(output_dim, num_classes))

    def forward(self, features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        check_features_and_probabilities(features, probabilities)
        if features.shape[1] != self.features_dim or probabilities.shape[1] != self.num_classes:
            raise ValueError(
                f"the randomized multilinear map takes (n × {self.features_dim}) features and "
                f"(n × {self.num_classes}) probabilities, got shapes {tuple(features.shape)} "
                f"and {tuple(probabilities.shape)}"
            )
        R_f = self.R_f.to(features.dtype)
        R_g = self.R_g.to(probabilities.dtype)
        return (features @ R_f.T) * (probabilities @ R_g.T) / math.sqrt(self.output_dim)

    def extra_repr(self) -> str:
        return f"features_dim={self.features_dim}, num_classes={self.num_classes}, output_dim={self.output_dim}"


def conditional_adversarial_loss(
    discriminator: nn.Module,
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    source_probabilities: torch.Tensor,
    target_probabilities: torch.Tensor,
    *,
    grl: nn.Module | None = None,
    mapping: nn.Module | None = None,
    entropy_conditioning: bool = True,
) -> torch.Tensor:
    """The CDAN (+E) domain loss: a binary domain discriminator on the joint ``h = T(f, g)``::

        L = ½ Σ_{i∈s} ŵ_i BCE(D(R_λ(h_i)), 1) + ½ Σ_{j∈t} ŵ_j BCE(D(R_λ(h_j)), 0)

    with ``g`` detached (as in the authors' code: the map conditions on the predictions, the gradient goes into
    the features), ``T`` = :func:`multilinear_map` when ``mapping`` is None, else ``mapping(f, g)`` (e.g. a
    :class:`RandomizedMultilinearMap`), ``R_λ`` the gradient reversal ``grl`` (None: none) and ``D`` the
    ``discriminator``, one logit per sample (e.g. :class:`~tlrun.losses.adversarial.DomainDiscriminator`;
    source label 1, target label 0). With ``entropy_conditioning`` (CDAN+E) the weights are
    ``ŵ_i = w_i / Σ_{i'∈same domain} w_i'`` with ``w = 1 + exp(−H(g))`` (:func:`entropy_weights`); without it
    ``ŵ_i = 1/n_s`` and ``ŵ_j = 1/n_t`` (the mean BCE when ``n_s = n_t``). Source and target go through ``D``
    together, as one batch.
    """
    check_pair(source_features, target_features)
    check_features_and_probabilities(source_features, source_probabilities)
    check_features_and_probabilities(target_features, target_probabilities)
    if source_probabilities.shape[1] != target_probabilities.shape[1]:
        raise ValueError(
            f"source and target probabilities differ in classes: "
            f"{source_probabilities.shape[1]} vs {target_probabilities.shape[1]}"
        )
    n_s, n_t = source_features.shape[0], target_features.shape[0]
    features = torch.cat([source_features, target_features])
    probabilities = torch.cat([source_probabilities, target_probabilities]).detach()
    h = multilinear_map(features, probabilities) if mapping is None else mapping(features, probabilities)
    if grl is not None:
        h = grl(h)
    logits = discriminator(h)
    if logits.dim() != 1 or logits.shape[0] != n_s + n_t:
        raise ValueError(
            f"the discriminator must return one logit per sample (shape ({n_s + n_t},)), "
            f"got shape {tuple(logits.shape)}"
        )
    labels = torch.cat([logits.new_ones(n_s), logits.new_zeros(n_t)])
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if entropy_conditioning:
        w_s = entropy_weights(source_probabilities).to(bce.dtype)
        w_t = entropy_weights(target_probabilities).to(bce.dtype)
    else:
        w_s, w_t = bce.new_ones(n_s), bce.new_ones(n_t)
    weights = torch.cat([w_s / w_s.sum(), w_t / w_t.sum()])
    return 0.5 * (weights * bce).sum()


def minimum_class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """The MCC loss of a target batch of logits ``Z`` (n × C)::

        Ŷ = softmax(Z / T)                                         (temperature scaling)
        W_ii = n (1 + exp(−H(Ŷ_i))) / Σ_j (1 + exp(−H(Ŷ_j)))      (entropy weights, detached)
        C = Ŷᵀ W Ŷ                                                 (C × C class correlations)
        C̃_jj' = C_jj' / Σ_j'' C_jj''                               (row-normalised)
        L = (1/C) Σ_j Σ_{j'≠j} |C̃_jj'|

    with ``H`` the :func:`entropy`. It is 0 when the batch's predictions never confuse two classes (one-hot
    predictions) and the gradient flows into the logits.
    """
    if logits.dim() != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ValueError(f"logits must be 2-D (samples × classes) with at least one sample, got {tuple(logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n, num_classes = logits.shape
    Y = torch.softmax(logits / temperature, dim=1)
    w = entropy_weights(Y)
    w = n * w / w.sum()
    C = (Y * w[:, None]).T @ Y
    C = C / C.sum(dim=1, keepdim=True).clamp_min(torch.finfo(C.dtype).tiny)
    off_diagonal = ~torch.eye(num_classes, dtype=torch.bool, device=C.device)
    return C.abs()[off_diagonal].sum() / num_classes
