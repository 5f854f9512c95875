"""Deep Domain Confusion (DDC, Tzeng et al. 2014): a linear-kernel MMD between the domains' representations."""

from __future__ import annotations

import torch

from tlrun.losses import mmd_linear
from tlrun.methods.adaptation import DiscrepancyAlignment


class DDC(DiscrepancyAlignment):
    """Minimises ``CE + λ Σ_l ‖(1/n_s) Σ_i h_l(x_i^s) − (1/n_t) Σ_j h_l(x_j^t)‖²`` (the linear-kernel MMD² of
    each adapted layer; by default the bottleneck, DDC's "adaptation layer").

    Constructor arguments: ``layers`` and those of :class:`~tlrun.methods.adaptation.DomainAdaptation`.
    """

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mmd_linear(source, target)
