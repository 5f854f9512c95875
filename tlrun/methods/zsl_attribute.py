"""Attribute embedding for zero-shot learning: a learned compatibility ``F(x, y)`` trained with a ranking hinge.

Two variants (``variant``), one class.

``notes`` (the default): the source notes' attribute embedding. ``F(x, y) = f(x) · g(s_y)``: ``f`` is the backbone
and an MLP on it (the bottleneck, ``ReLU(BN(W_b h))``, then a linear projection with bias into the embedding
space), ``s_y`` the class signature (its attribute vector, centred and scaled to unit length; see
:class:`~tlrun.methods.base.ZeroShotMethod`), ``g`` either the identity or a small network trained jointly
(``learn_label_embedding``: ``g(s) = W₂ ReLU(W₁ s)``). Training on the seen classes minimises the notes' hinge::

    L = (1/n) Σ_n max(0, k − F(x_n, y_n) + max_{m ≠ y_n} F(x_n, y_m))

(:func:`~tlrun.losses.ranking.hinge_ranking_loss`, margin ``k``; ``violations=sum`` sums over every violating
class instead, DeViSE's form).

``ale``: ALE, "Label-Embedding for Image Classification" (Akata et al., TPAMI 2016), like for like with its
published numbers. The bilinear compatibility ``F(x, y) = θ(x)ᵀ W φ(y)``: ``θ(x)`` the backbone's output (no
bottleneck: ``bottleneck_dim`` is not used), ``W`` one linear map without bias, ``φ(y) = s_y`` (``g`` the identity;
``learn_label_embedding``, ``embedding_dim``, ``label_hidden`` and ``violations`` are not used). Training
minimises ALE's weighted approximate ranking loss (:func:`~tlrun.losses.ranking.ale_ranking_loss`)::

    L = (1/n) Σ_n [ℓ(r_n) / r_n] Σ_{m ≠ y_n} max(0, Δ − F(x_n, y_n) + F(x_n, y_m)),   ℓ(r) = Σ_{i=1..r} 1/i

with ``r_n`` the number of violating seen classes and ``Δ = margin``. Where it differs from the paper: the rank
``r_n`` is counted exactly rather than estimated by WSABIE's sampling; training is the deep base's (Adam,
mini-batches, weight decay 1e-4 by default) where ALE runs plain SGD regularised by early stopping.

Prediction, both variants: the candidate class (the unseen ones in ZSL) whose signature scores highest.
:class:`AttributeEmbedding` is also the base of :mod:`tlrun.methods.devise`, which only changes where the class
vectors come from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tlrun.losses.ranking import ale_ranking_loss, compatibility, hinge_ranking_loss
from tlrun.methods.base import RunContext, ZeroShotMethod
from tlrun.methods.deep import DeepMethod
from tlrun.methods.settings import check_attribute_embedding
from tlrun.scenarios import ClassDescriptions, TrainingData


class CompatibilityHead(nn.Module):
    """``F(h, y) = (W h + b) · g(s_y)`` for features ``h`` and class signatures ``s_y`` (the seen classes' by
    default); ``bias=False``: ``F(h, y) = hᵀ Wᵀ g(s_y)``, bilinear."""

    def __init__(
        self, in_features: int, signatures: torch.Tensor, embedding_dim: int | None, hidden: int, bias: bool = True,
    ) -> None:
        super().__init__()
        signature_dim = signatures.shape[1]
        self.register_buffer("seen_signatures", signatures.float())
        if embedding_dim is None:  # fixed: f maps into the attribute space itself
            self.label_embedding: nn.Module = nn.Identity()
            embedding_dim = signature_dim
        else:
            self.label_embedding = nn.Sequential(
                nn.Linear(signature_dim, hidden), nn.ReLU(), nn.Linear(hidden, embedding_dim)
            )
        self.projection = nn.Linear(in_features, embedding_dim, bias=bias)

    def forward(self, features: torch.Tensor, signatures: torch.Tensor | None = None) -> torch.Tensor:
        classes = self.seen_signatures if signatures is None else signatures
        return compatibility(self.projection(features), self.label_embedding(classes))


class AttributeEmbedding(DeepMethod, ZeroShotMethod):
    """Zero-shot learning with a ranking hinge over a learned compatibility (see the module docstring).

    Args:
        backbone, and every :class:`~tlrun.methods.deep.DeepMethod` argument (``bottleneck_dim`` is the hidden
            layer of ``f`` on top of the backbone; 0: a linear ``f``), with the defaults of
            ``conf/method/zsl_attribute.yaml``: batches of 64, Adam at 1e-3, weight decay 1e-4, no lr schedule.
        variant: ``notes`` (an MLP ``f`` and the notes' hinge) or ``ale`` (ALE's bilinear ``θ(x)ᵀ W φ(y)`` and
            weighted approximate ranking loss; the settings it does not use are named in the module docstring).
        margin: the margin ``k`` of the ranking hinge (ALE's ``Δ``).
        violations: ``max`` (the notes: the most-violating class) or ``sum`` (every violating class, DeViSE).
        learn_label_embedding: train ``g`` (a two-layer network over the signatures) jointly with ``f``;
            otherwise ``g`` is the identity and ``f`` maps into the signature space.
        embedding_dim: the joint space's size when ``learn_label_embedding``.
        label_hidden: hidden units of ``g``.
        center_signatures: subtract the seen classes' mean class vector before scaling to unit length.
        calibration: GZSL calibrated stacking constant (subtracted from the seen classes' scores).
    """

    def __init__(
        self,
        backbone: nn.Module,
        variant: str = "notes",
        margin: float = 1.0,
        violations: str = "max",
        learn_label_embedding: bool = False,
        embedding_dim: int = 64,
        label_hidden: int = 128,
        center_signatures: bool = True,
        calibration: float = 0.0,
        batch_size: int = 64,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_schedule: str = "none",
        **deep: Any,
    ) -> None:
        super().__init__(
            backbone, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
            lr_schedule=lr_schedule, **deep,
        )
        check_attribute_embedding(
            type(self).__name__, variant=variant, margin=margin, violations=violations,
            learn_label_embedding=learn_label_embedding, embedding_dim=embedding_dim, label_hidden=label_hidden,
            center_signatures=center_signatures, calibration=calibration,
        )
        self.variant = variant
        self.margin = float(margin)
        self.violations = violations
        self.learn_label_embedding = bool(learn_label_embedding)
        self.embedding_dim = int(embedding_dim)
        self.label_hidden = int(label_hidden)
        self.keep_signature_settings(center_signatures, calibration)

    def fit(self, data: TrainingData, context: RunContext) -> None:
        self.fit_signatures(data)
        super().fit(data, context)

    @property
    def feature_dim(self) -> int:
        """The bottleneck's size (``notes``), or the backbone's output size (``ale``: ``θ(x)``, no bottleneck)."""
        return int(self.backbone.out_features) if self.variant == "ale" else super().feature_dim

    def build_head(self, num_classes: int) -> tuple[nn.Module, nn.Module]:
        """The bottleneck of :class:`~tlrun.methods.deep.DeepMethod` (none for ``ale``) and, instead of its linear
        classifier, the :class:`CompatibilityHead` over the seen classes' signatures (bias-free for ``ale``)."""
        ale = self.variant == "ale"
        head = CompatibilityHead(
            self.feature_dim,
            torch.as_tensor(self._seen_signatures),
            self.embedding_dim if self.learn_label_embedding else None,
            self.label_hidden,
            bias=not ale,
        )
        return (nn.Identity() if ale else self.build_bottleneck()), head

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        x, y = batch
        scores = self(x)
        if self.variant == "ale":
            loss = ale_ranking_loss(scores, y, self.margin)
        else:
            loss = hinge_ranking_loss(scores, y, self.margin, self.violations)
        self.record(loss, scores, y)
        return loss

    @torch.no_grad()
    def class_scores(self, X: np.ndarray | tuple[str, ...], classes: ClassDescriptions) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError(f"{type(self).__name__}.class_scores called before fit")
        signatures = torch.as_tensor(self.signatures(classes), dtype=torch.float32, device=self.device)
        loader = self.make_loader(X, shuffle=False, batch_size=self.eval_batch_size)
        was_training = self.training
        self.eval()
        try:
            scores = [self.classifier(self.features(batch.to(self.device)), signatures).float().cpu() for batch in loader]
        finally:
            self.train(was_training)
        return torch.cat(scores).numpy() if scores else np.zeros((0, len(classes)), dtype=np.float32)
