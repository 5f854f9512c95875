"""Deep CORAL (Sun & Saenko 2016): align the second-order statistics of the domains' representations."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import coral_loss
from tlrun.methods.adaptation import DiscrepancyAlignment


class DeepCORAL(DiscrepancyAlignment):
    """Minimises ``CE + λ Σ_l ‖C_s(h_l) − C_t(h_l)‖²_F / (4 d_l²)`` with ``C`` the batch covariance; by default
    on the logits, as in the paper (its fc8).

    Constructor arguments: ``layers`` and those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(self, backbone: nn.Module, layers: Any = ("logits",), **kwargs: Any) -> None:
        super().__init__(backbone, layers=layers, **kwargs)

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return coral_loss(source, target)
