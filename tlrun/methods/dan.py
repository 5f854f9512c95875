"""Deep Adaptation Network (DAN, Long et al. 2015): multi-kernel Gaussian MMD over several layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses import mmd_multi_kernel
from tlrun.methods.adaptation import DiscrepancyAlignment
from tlrun.methods.settings import check_dan


class DAN(DiscrepancyAlignment):
    """Minimises ``CE + λ Σ_{l ∈ layers} MK-MMD²(h_l^s, h_l^t)``, by default over the bottleneck and the logits
    (DAN adapts the task-specific layers), each with the kernel family
    ``k(x, y) = Σ_u exp(−‖x − y‖² / (h · kernel_mul^(u − ⌊kernel_num/2⌋)))`` and ``h`` the batch's mean squared
    distance (see :func:`tlrun.losses.mmd_multi_kernel`).

    Args:
        kernel_mul: ratio between successive bandwidths.
        kernel_num: number of Gaussian kernels.
        layers, **kwargs: see :class:`~tlrun.methods.adaptation.DiscrepancyAlignment`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        layers: Any = ("features", "logits"),
        kernel_mul: float = 2.0,
        kernel_num: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, layers=layers, **kwargs)
        check_dan(type(self).__name__, kernel_mul=kernel_mul, kernel_num=kernel_num)
        self.kernel_mul = float(kernel_mul)
        self.kernel_num = int(kernel_num)

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mmd_multi_kernel(source, target, kernel_mul=self.kernel_mul, kernel_num=self.kernel_num)
