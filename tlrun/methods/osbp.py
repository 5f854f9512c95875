"""Open Set Back-Propagation (OSBP, Saito et al., ECCV 2018): a ``K + 1``-way classifier whose last output is the
unknown class, and an adversarial boundary that sorts every target sample into a known class or the unknown one."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import GradientReversal, open_set_boundary_loss
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch
from tlrun.methods.settings import check_osbp


class OSBP(DomainAdaptation):
    """The classifier ``C`` has ``K + 1`` outputs (the ``K`` source classes, then unknown) and no source sample of
    the last; with ``L_adv`` OSBP's boundary loss on the target (:func:`~tlrun.losses.open_set_boundary_loss`, the
    unknown probability's cross-entropy against ``t``), ``C`` minimises ``CE_s + λ L_adv`` and the feature
    extractor ``G`` minimises ``CE_s − λ L_adv``, both in one backward pass through a gradient reversal layer
    between ``G`` and ``C`` on the target side. ``C`` learns to give every target sample the unknown probability
    ``t``; ``G`` moves each target sample away from that boundary, towards a known class or towards unknown.
    :meth:`predict` answers ``K`` (unknown) where that output wins. Its config (``class_sets: open_set``) keeps it to
    open-set tasks: a closed-set run is refused before it opens.

    Args:
        boundary: ``t``, 0.5 in the paper.
        lr: 0.001 by default, as DANN's (an adversarial game with a network trained from scratch).
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation` (the paper's reversal is constant:
            ``warmup: none``).
    """

    predicts_unknown = True  # the classifier's last output: the evaluation reads it instead of a confidence rule

    def __init__(self, backbone: nn.Module, boundary: float = 0.5, lr: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(backbone, lr=lr, **kwargs)
        check_osbp(type(self).__name__, boundary=boundary)
        self.boundary = float(boundary)
        self.reversal = GradientReversal()

    def build_head(self, num_classes: int) -> tuple[nn.Module, nn.Module]:
        """The bottleneck and a ``K + 1``-way linear classifier (the last output: unknown)."""
        return super().build_head(num_classes + 1)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        return open_set_boundary_loss(self.classifier(self.reversal(batch.target_features)), self.boundary)
