"""Deep Adaptation Network (DAN, Long et al. 2015): multi-kernel Gaussian MMD over several layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.losses.discrepancy import mk_mmd
from tlrun.methods.adaptation import DiscrepancyAlignment
from tlrun.methods.settings import check_dan


class DAN(DiscrepancyAlignment):
    """Minimises ``CE + λ Σ_{l ∈ layers} MK-MMD²(h_l^s, h_l^t)``, by default over the bottleneck and the logits
    (DAN adapts the task-specific layers), with the multi-kernel MMD of :func:`tlrun.losses.discrepancy.mk_mmd`::

        MK-MMD² = E k(x, x') + E k(y, y') − 2 E k(x, y),   k(x, y) = (1/m) Σ_u exp(−‖x − y‖² / h_u),
        h_u = γ · kernel_mul^(u − ⌊m/2⌋),   u = 0 … m−1,   m = kernel_num

    The defaults are the paper's kernel family (Sec. 4, after Gretton et al. 2012b): ``kernel_mul = 2^(1/2)``,
    ``kernel_num = 33``, i.e. bandwidths ``2⁻⁸γ, 2^(−7.5)γ, …, 2⁸γ``, with ``γ`` the median pairwise distance
    (``bandwidth_center=median``). The paper's kernel is ``exp(−‖x − y‖²/γ)``, so ``γ`` here is the median of the
    *squared* distances, which is the squared median distance.

    Remaining differences from the paper:

    * the weights ``β_u`` are fixed at ``1/m``; DAN learns them (``Σ β_u = 1``, ``β ≥ 0``) by a quadratic program
      maximising the test power, alternating with the network's training;
    * ``γ`` is taken per mini-batch and per layer, on the pooled source + target batch, where the paper takes the
      median over the training data;
    * the default estimate is the biased quadratic one (``estimator=quadratic``, all pairs of the batch); the
      paper trains with the unbiased linear-time estimate over quad-tuples (``estimator=linear``);
    * the layers are a LeNet/ResNet bottleneck and the logits, where the paper adapts AlexNet's fc6–fc8.

    ``bandwidth_center=mean`` centres the family on the mean squared distance instead (the earlier default, with
    ``kernel_mul = 2``, ``kernel_num = 5``; the kernels were then summed, i.e. ``transfer_weight × 5`` here).

    Args:
        kernel_mul: ratio between successive bandwidths (> 1).
        kernel_num: number of Gaussian kernels ``m``.
        bandwidth_center: ``median`` (the paper's median heuristic) or ``mean`` of the squared pairwise distances.
        estimator: ``quadratic`` (biased, all pairs) or ``linear`` (unbiased, linear-time; the paper's).
        layers, **kwargs: see :class:`~tlrun.methods.adaptation.DiscrepancyAlignment`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        layers: Any = ("features", "logits"),
        kernel_mul: float = 2.0**0.5,
        kernel_num: int = 33,
        bandwidth_center: str = "median",
        estimator: str = "quadratic",
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, layers=layers, **kwargs)
        check_dan(
            type(self).__name__, kernel_mul=kernel_mul, kernel_num=kernel_num, bandwidth_center=bandwidth_center,
            estimator=estimator,
        )
        self.kernel_mul = float(kernel_mul)
        self.kernel_num = int(kernel_num)
        self.bandwidth_center = bandwidth_center
        self.estimator = estimator

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mk_mmd(
            source, target, kernel_mul=self.kernel_mul, kernel_num=self.kernel_num, center=self.bandwidth_center,
            estimator=self.estimator,
        )
