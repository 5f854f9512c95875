"""Deep CORAL (Sun & Saenko 2016): align the second-order statistics of the domains' representations."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import coral_loss, coral_moments_loss
from tlrun.methods.adaptation import DiscrepancyAlignment
from tlrun.methods.settings import check_deep_coral


class DeepCORAL(DiscrepancyAlignment):
    """Minimises ``CE + λ Σ_l ‖C_s(h_l) − C_t(h_l)‖²_F / (4 d_l²)`` with ``C`` the batch covariance; by default
    on the logits, as in the paper (its fc8). In ``dg`` the term is averaged over the pairs of source domains.

    Args:
        layers: the representations aligned (see :class:`~tlrun.methods.adaptation.DiscrepancyAlignment`).
        penalty: ``deep_coral`` (the paper's, above) or ``domainbed``: DomainBed's CORAL, the means too,
            ``‖μ_s − μ_t‖² / d + ‖C_s − C_t‖²_F / d²`` (:func:`tlrun.losses.coral_moments_loss`).
        **kwargs: those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def __init__(self, backbone: nn.Module, layers: Any = ("logits",), penalty: str = "deep_coral", **kwargs: Any) -> None:
        super().__init__(backbone, layers=layers, **kwargs)
        check_deep_coral(type(self).__name__, penalty=penalty)
        self.penalty = penalty

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (coral_moments_loss if self.penalty == "domainbed" else coral_loss)(source, target)


class DomainBedCORAL(DeepCORAL):
    """DomainBed's CORAL for domain generalisation (``dg_coral``): :class:`DeepCORAL` with DomainBed's penalty
    (means and covariances) on the features the classifier reads, averaged over the pairs of source domains."""

    def __init__(self, backbone: nn.Module, layers: Any = ("features",), penalty: str = "domainbed", **kwargs: Any) -> None:
        super().__init__(backbone, layers=layers, penalty=penalty, **kwargs)
