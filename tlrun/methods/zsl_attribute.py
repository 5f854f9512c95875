"""Attribute embedding for zero-shot learning: the notes' hinge ranking loss over a learned compatibility.

A sample ``x`` and a class ``y`` are compared by ``F(x, y) = f(x) · g(s_y)``: ``f`` is the backbone (and
bottleneck) followed by a linear projection into the embedding space, ``s_y`` the class signature (its attribute
vector, centred and scaled to unit length; see :class:`~tlrun.methods.base.ZeroShotMethod`), and ``g`` either the
identity (the attribute space is the embedding space, as in ALE, Akata et al., 2013) or a small network trained
jointly (``learn_label_embedding``: ``g(s) = W₂ ReLU(W₁ s)``). Training on the seen classes minimises::

    L = (1/n) Σ_n max(0, k − F(x_n, y_n) + max_{m ≠ y_n} F(x_n, y_m))

(:func:`~tlrun.losses.ranking.hinge_ranking_loss`, margin ``k``), so that every sample scores its own class
above every other seen class by ``k``. Prediction: the candidate class (the unseen ones in ZSL) whose ``g(s_y)``
scores highest. :class:`AttributeEmbedding` is also the base of :mod:`tlrun.methods.devise`, which only changes
where the class vectors come from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tlrun.losses.ranking import compatibility, hinge_ranking_loss
from tlrun.methods.base import RunContext, ZeroShotMethod
from tlrun.methods.deep import DeepMethod
from tlrun.methods.settings import check_attribute_embedding
from tlrun.scenarios import ClassDescriptions, TrainingData


class CompatibilityHead(nn.Module):
    """``F(h, y) = (W h) · g(s_y)`` for features ``h`` and class signatures ``s_y`` (the seen classes' by default)."""

    def __init__(self, in_features: int, signatures: torch.Tensor, embedding_dim: int | None, hidden: int) -> None:
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
        self.projection = nn.Linear(in_features, embedding_dim)

    def forward(self, features: torch.Tensor, signatures: torch.Tensor | None = None) -> torch.Tensor:
        classes = self.seen_signatures if signatures is None else signatures
        return compatibility(self.projection(features), self.label_embedding(classes))


class AttributeEmbedding(DeepMethod, ZeroShotMethod):
    """Zero-shot learning with the hinge ranking loss over ``f(x) · g(s_y)`` (see the module docstring).

    Args:
        backbone, and every :class:`~tlrun.methods.deep.DeepMethod` argument (``bottleneck_dim`` is the hidden
            layer of ``f`` on top of the backbone; 0: a linear ``f``), with the defaults of
            ``conf/method/zsl_attribute.yaml``: batches of 64, Adam at 1e-3, weight decay 1e-4, no lr schedule.
        margin: the margin ``k`` of the ranking hinge.
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
            type(self).__name__, margin=margin, violations=violations, learn_label_embedding=learn_label_embedding,
            embedding_dim=embedding_dim, label_hidden=label_hidden, center_signatures=center_signatures,
            calibration=calibration,
        )
        self.margin = float(margin)
        self.violations = violations
        self.learn_label_embedding = bool(learn_label_embedding)
        self.embedding_dim = int(embedding_dim)
        self.label_hidden = int(label_hidden)
        self.center_signatures = bool(center_signatures)
        self.calibration = float(calibration)
        self._seen_signatures: np.ndarray | None = None

    def fit(self, data: TrainingData, context: RunContext) -> None:
        self._seen_signatures = self.remember_seen(data.seen_classes, self.center_signatures)
        super().fit(data, context)

    def build_head(self, num_classes: int) -> tuple[nn.Module, nn.Module]:
        """The bottleneck of :class:`~tlrun.methods.deep.DeepMethod` and, instead of its linear classifier, the
        :class:`CompatibilityHead` over the seen classes' signatures."""
        bottleneck = self.build_bottleneck()
        head = CompatibilityHead(
            self.feature_dim,
            torch.as_tensor(self._seen_signatures),
            self.embedding_dim if self.learn_label_embedding else None,
            self.label_hidden,
        )
        return bottleneck, head

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        x, y = batch
        scores = self(x)
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
