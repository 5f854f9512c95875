"""Central Moment Discrepancy (CMD, Zellinger et al. 2017): match the domains' moments up to order K."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import cmd
from tlrun.methods.adaptation import DiscrepancyAlignment
from tlrun.methods.settings import check_cmd


class CMD(DiscrepancyAlignment):
    """Minimises ``CE + λ CMD_K(f^s, f^t)`` on the bottleneck features, which CMD needs bounded: the
    bottleneck uses a sigmoid, so ``f ∈ [0, 1]`` and
    ``CMD_K = ‖E(f^s) − E(f^t)‖₂ + Σ_{k=2..K} ‖C_k(f^s) − C_k(f^t)‖₂`` (see :func:`tlrun.losses.cmd`).

    Args:
        moments: ``K``, the highest central moment matched (5 in the paper).
        layers, **kwargs: see :class:`~tlrun.methods.adaptation.DiscrepancyAlignment`; the layers must be
            bounded in [0, 1]: ``features`` or ``probabilities``.
    """

    bottleneck_activation = nn.Sigmoid

    def __init__(self, backbone: nn.Module, moments: int = 5, layers: Any = ("features",), **kwargs: Any) -> None:
        super().__init__(backbone, layers=layers, **kwargs)
        check_cmd(type(self).__name__, moments=moments, layers=self.layers, bottleneck_dim=self.bottleneck_dim)
        self.moments = int(moments)

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cmd(source, target, moments=self.moments, bounds=(0.0, 1.0))
