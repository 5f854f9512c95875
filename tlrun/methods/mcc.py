"""Minimum Class Confusion (MCC, Jin et al. 2020): make the classifier's target predictions confuse classes less."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import minimum_class_confusion
from tlrun.methods.adaptation import DomainAdaptation, DomainBatch
from tlrun.methods.settings import check_mcc


class MCC(DomainAdaptation):
    """Minimises ``CE + λ L_MCC(z^t)``: the off-diagonal mass of the row-normalised, entropy-weighted class
    correlation ``Ŷᵀ W Ŷ`` of the temperature-scaled target predictions ``Ŷ = softmax(z^t / T)`` (see
    :func:`tlrun.losses.minimum_class_confusion`). No discriminator, no alignment of features.

    Args:
        temperature: ``T`` (2.5 in the paper).
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(self, backbone: nn.Module, temperature: float = 2.5, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        check_mcc(type(self).__name__, temperature=temperature)
        self.temperature = float(temperature)

    def transfer_loss(self, batch: DomainBatch) -> torch.Tensor:
        return minimum_class_confusion(batch.target_logits, self.temperature)
