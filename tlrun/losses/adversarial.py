"""Adversarial building blocks of DANN (Ganin et al. 2016): gradient reversal, a domain discriminator (binary, or
over K domains), the domain-adversarial losses and the warm-up schedule of its coefficient; PADA's class weights
(Cao et al. 2018, partial DA), OSBP's open-set boundary loss (Saito et al. 2018) and MDAN's smooth maximum over
sources (Zhao et al. 2018, multi-source DA); MCD's classifier discrepancy (Saito et al. 2018, used by M3SDA-β).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.losses.discrepancy import check_pair


class GradientReversalFunction(torch.autograd.Function):
    """``R_λ(x) = x`` forward, ``∂R_λ/∂x = −λ I`` backward: the gradient flowing back is multiplied by ``−λ``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad_output, None


def gradient_reversal(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """``R_λ(x)``: identity forward, gradient × ``(−λ)`` backward (``λ`` = ``coefficient``)."""
    return GradientReversalFunction.apply(x, float(coefficient))


class GradientReversal(nn.Module):
    """The gradient reversal layer ``R_λ`` as a module; set ``coefficient`` (``λ``) during training, e.g. from
    :func:`dann_schedule`. Forward: ``R_λ(x) = x``; backward: ``∂L/∂x = −λ ∂L/∂R_λ(x)``.
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = float(coefficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gradient_reversal(x, self.coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient}"


class DomainDiscriminator(nn.Module):
    """A binary domain classifier ``D(f) = w₃ᵀ ReLU(W₂ ReLU(W₁ f + b₁) + b₂) + b₃`` (with batch norm after each
    hidden layer), returning ONE logit per sample, of shape ``(n,)``: ``σ(D(f))`` is the probability that ``f``
    comes from the source. Train it with binary cross-entropy on logits; there is no softmax, so the output can
    never be a one-class softmax (constant 1) that passes no gradient.

    With ``domains`` = K > 2 it tells K domains apart instead: ``W₃`` has K rows and the output is ``(n, K)``
    logits, for the softmax cross-entropy of :func:`multi_domain_adversarial_loss`.
    """

    def __init__(self, in_features: int, hidden: int = 1024, domains: int = 2) -> None:
        super().__init__()
        if in_features < 1 or hidden < 1 or domains < 2:
            raise ValueError(f"in_features and hidden must be positive and domains at least 2, got {in_features}, "
                             f"{hidden} and {domains}")
        self.in_features = in_features
        self.domains = domains
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1 if domains == 2 else domains),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"the domain discriminator takes (samples × {self.in_features}) features, "
                f"got shape {tuple(features.shape)}"
            )
        logits = self.net(features)
        return logits.squeeze(1) if self.domains == 2 else logits


def domain_adversarial_loss(
    discriminator: nn.Module,
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    grl: nn.Module | None = None,
    source_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The DANN domain loss: binary cross-entropy of the discriminator on reversed features::

        L_d = −(1/(n_s+n_t)) [ Σ_i γ_i log σ(D(R_λ(f_i^s))) + Σ_j log(1 − σ(D(R_λ(f_j^t)))) ]

    with ``γ_i`` = ``source_weights`` (``None``: 1; PADA weighs each source sample by its class's weight).

    (source label 1, target label 0). Minimising it trains ``D`` to tell the domains apart while, through the
    gradient reversal ``R_λ`` (``grl``), the feature extractor receives ``−λ`` times that gradient and learns to
    confuse ``D``. ``grl=None`` means no reversal (a plain discriminator loss). Source and target are passed
    through ``D`` together, as one batch (batch norm sees both domains).
    """
    check_pair(source_features, target_features)
    features = torch.cat([source_features, target_features])
    if grl is not None:
        features = grl(features)
    logits = discriminator(features)
    if logits.dim() != 1 or logits.shape[0] != features.shape[0]:
        raise ValueError(
            f"the discriminator must return one logit per sample (shape ({features.shape[0]},)), "
            f"got shape {tuple(logits.shape)}"
        )
    labels = torch.cat([logits.new_ones(source_features.shape[0]), logits.new_zeros(target_features.shape[0])])
    if source_weights is None:
        return F.binary_cross_entropy_with_logits(logits, labels)
    weights = torch.cat([source_weights.to(logits.dtype), logits.new_ones(target_features.shape[0])])
    return F.binary_cross_entropy_with_logits(logits, labels, weight=weights)


def pada_class_weights(target_probabilities: torch.Tensor) -> torch.Tensor:
    """PADA's class weights (Cao et al., ECCV 2018): the average of the target's predicted class probabilities,
    normalised by its largest entry, ``γ = (1/n_t) Σ_j ŷ_j``, ``γ ← γ / max_c γ_c`` (so ``max γ = 1``). Classes
    absent from the target receive little probability mass, so their weight is low."""
    if target_probabilities.dim() != 2 or target_probabilities.shape[0] == 0:
        raise ValueError(f"pada_class_weights takes (samples × classes) probabilities, "
                         f"got {tuple(target_probabilities.shape)}")
    weights = target_probabilities.mean(dim=0)
    return weights / weights.max().clamp_min(torch.finfo(weights.dtype).tiny)


def open_set_boundary_loss(target_logits: torch.Tensor, boundary: float = 0.5) -> torch.Tensor:
    """OSBP's adversarial loss (Saito et al., ECCV 2018) on the target's ``K + 1``-way logits, the last output the
    unknown class::

        L_adv = −(1/n_t) Σ_j [ t log p(K+1 | x_j) + (1 − t) log(1 − p(K+1 | x_j)) ],   t = ``boundary``

    The classifier minimises it (its unknown probability pushed to ``t``); the feature extractor, behind a gradient
    reversal layer, maximises it: it moves each target sample towards a known class (``p → 0``) or the unknown one
    (``p → 1``)."""
    if target_logits.dim() != 2 or target_logits.shape[1] < 2:
        raise ValueError(f"open_set_boundary_loss takes (samples × (K+1)) logits, got {tuple(target_logits.shape)}")
    log_probabilities = F.log_softmax(target_logits, dim=1)
    log_unknown = log_probabilities[:, -1]
    log_known = torch.logsumexp(log_probabilities[:, :-1], dim=1)  # log(1 − p(K+1)), stable
    return -(boundary * log_unknown + (1.0 - boundary) * log_known).mean()


def multi_domain_adversarial_loss(
    discriminator: nn.Module, features: torch.Tensor, domains: torch.Tensor, grl: nn.Module | None = None
) -> torch.Tensor:
    """DANN across K domains (DomainBed's DANN, with gradient reversal): the softmax cross-entropy of a K-way
    discriminator on reversed features::

        L_d = −(1/n) Σ_i log softmax(D(R_λ(f_i)))_{d_i}

    with ``d_i`` sample ``i``'s domain index in ``0..K−1``. ``D`` learns to tell the domains apart while the
    features, receiving ``−λ`` times its gradient, learn to hide them. ``grl=None``: no reversal. A binary
    discriminator (one logit, K = 2) is trained with the binary cross-entropy of ``σ(D(f))`` against ``d_i``: the same.
    """
    if features.dim() != 2 or domains.shape != (features.shape[0],):
        raise ValueError(f"features must be (n, d) and domains (n,), got shapes {tuple(features.shape)} and "
                         f"{tuple(domains.shape)}")
    logits = discriminator(grl(features) if grl is not None else features)
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, domains.to(logits.dtype))
    return F.cross_entropy(logits, domains)


def soft_maximum(losses: torch.Tensor, gamma: float) -> torch.Tensor:
    """MDAN's smooth maximum of per-source losses (Zhao et al., NeurIPS 2018, the "soft version")::

        (1/γ) log Σ_{i=1..N} exp(γ t_i)

    It lies in ``[max_i t_i, max_i t_i + log(N)/γ]``: the hard maximum as ``γ → ∞``, and ``mean(t) + log(N)/γ + O(γ)``
    as ``γ → 0``. Its gradient weighs each ``t_i`` by ``softmax(γ t)_i``, so the worst sources count most while every
    source still trains. ``losses``: the N values ``t_i``, one dimension.
    """
    if losses.dim() != 1 or losses.shape[0] == 0 or not gamma > 0:
        raise ValueError(f"soft_maximum takes a non-empty vector of losses and gamma > 0, got shape "
                         f"{tuple(losses.shape)} and gamma {gamma}")
    return torch.logsumexp(gamma * losses, dim=0) / gamma


def classifier_discrepancy(first_logits: torch.Tensor, second_logits: torch.Tensor) -> torch.Tensor:
    """The discrepancy of two classifiers on the same samples (MCD, Saito et al., CVPR 2018; M3SDA-β's step)::

        d = (1/n) Σ_i (1/K) Σ_k |p¹_ik − p²_ik|,   p = softmax(logits)

    0 when the two agree on every sample, at most ``2/K``. MCD's classifiers learn to maximise it on target samples
    and the features to minimise it, which moves the target features away from where the classifiers disagree (their
    decision boundaries).
    """
    if first_logits.dim() != 2 or first_logits.shape != second_logits.shape:
        raise ValueError(f"the two classifiers' logits must be (n, K) alike, got shapes {tuple(first_logits.shape)} "
                         f"and {tuple(second_logits.shape)}")
    return (F.softmax(first_logits, dim=1) - F.softmax(second_logits, dim=1)).abs().mean()


def dann_schedule(progress: float, gamma: float = 10.0) -> float:
    """DANN's warm-up of the adversarial coefficient: ``λ_p = 2 / (1 + exp(−γ p)) − 1``, with ``p ∈ [0, 1]`` the
    training progress; 0 at ``p = 0``, rising monotonically towards 1.
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress}")
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
