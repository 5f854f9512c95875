"""L2-SP (Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks", ICML 2018): fine-tuning that pulls the transferred weights towards their pre-trained values instead
of towards 0."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import l2_penalty, l2sp_penalty
from tlrun.methods.finetune import FineTuning
from tlrun.methods.settings import check_l2sp
from tlrun.scenarios import TrainingData


class L2SP(FineTuning):
    """Fine-tuning with the L2-SP penalty. Minimises::

        (1/n) Σ_i CE(h(g(x_i)), y_i) + α ‖w_g − w_g⁰‖² + β ‖w_h‖²

    with ``w_g`` the backbone's (transferred) weights, ``w_g⁰`` their values when fine-tuning starts (after the
    source phase, or as loaded), and ``w_h`` the new head's. Weight decay should be 0 (``β`` replaces it).

    Args (besides :class:`~tlrun.methods.finetune.FineTuning`'s):
        alpha: weight of the distance to the starting point.
        beta: weight of the head's L2 penalty.
    """

    def __init__(
        self, backbone: nn.Module, alpha: float = 0.01, beta: float = 0.01, weight_decay: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(backbone, weight_decay=weight_decay, **kwargs)
        check_l2sp(type(self).__name__, alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)
        self.starting_point: list[torch.Tensor] = []

    def build_extra(self, data: TrainingData) -> None:
        self.starting_point = [p.detach().clone() for p in self.backbone.parameters()]

    def on_fit_start(self) -> None:
        self.starting_point = [w.to(self.device) for w in self.starting_point]

    def conservative_terms(self, x: torch.Tensor, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "l2sp": self.alpha * l2sp_penalty(self.backbone.parameters(), self.starting_point),
            "head_l2": self.beta * l2_penalty(self.head_parameters()),
        }
