"""Progressive neural networks (Rusu et al., "Progressive Neural Networks", 2016): the source network is kept
frozen as column 1, and a new column 2 learns the target task, reading column 1's representation at every depth
through learned lateral connections. Column 1 cannot be forgotten (it never changes), and column 2 takes from it
what helps: the answer to "we do not know whether the source transfers"."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlrun.methods.finetune import FineTuning, frozen_copy
from tlrun.methods.settings import check_progressive
from tlrun.scenarios import TrainingData


class Lateral(nn.Module):
    """A lateral adapter ``a(u) = W (α u)``: a learned scalar ``α`` (initialised at ``scale``) times a 1×1
    convolution (4-D stage outputs ``(n, C, H, W)``) or a linear layer (2-D ``(n, d)``), mapping column 1's
    output into column 2's space of the same shape."""

    def __init__(self, shape: tuple[int, ...], scale: float) -> None:
        super().__init__()
        if len(shape) == 4:
            self.map: nn.Module = nn.Conv2d(shape[1], shape[1], kernel_size=1)
        elif len(shape) == 2:
            self.map = nn.Linear(shape[1], shape[1])
        else:
            raise ValueError(
                f"Progressive: lateral connections take (n, C, H, W) or (n, d) stage outputs, got a stage output of "
                f"shape {tuple(shape)}"
            )
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.map(self.scale * u)


def reinitialise(module: nn.Module) -> None:
    """Draw fresh random weights for every layer of ``module`` (each layer's own ``reset_parameters``; batch
    norm also forgets its running statistics)."""
    for layer in module.modules():
        if layer is not module and hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


class Progressive(FineTuning):
    """A two-column progressive network. Column 1 ``g¹`` is the pre-trained backbone (after the source phase, or
    as loaded), frozen: no gradient, no optimizer group, always in eval mode (batch-norm statistics and dropout
    fixed), so it is exactly unchanged by training. Column 2 ``g²`` (``self.backbone``) has the same stages, drawn
    afresh (``column2_init=random``, as in the paper) or starting as a copy of column 1 (``copy``). With
    ``u_0 = prepare(x)``, ``h¹_0 = h²_0 = u_0``::

        h¹_i = s¹_i(h¹_{i−1})                                   (column 1, fixed)
        h²_1 = s²_1(u_0),   h²_i = s²_i(h²_{i−1} + a_{i−1}(h¹_{i−1}))   i = 2 … S
        z(x) = h(finish(h²_S) + a_S(finish(h¹_S)))

    with lateral adapters ``a_i(u) = W_i(α_i u)`` (:class:`Lateral`) and ``h`` the new head. It minimises, over
    column 2, the adapters (``W_i``, ``α_i``) and the head::

        L = (1/n) Σ_i CE(z(x_i), y_i)

    on the labeled target pool. The freezing options and learning rates of
    :class:`~tlrun.methods.finetune.FineTuning` apply to column 2's stages; the adapters learn with the head
    (``head_lr``). ``backbone_lr_mult=auto`` is 1 for a random column 2 (it learns from scratch) and 0.1 for a
    copied one.

    ``lateral_scale`` (the initial ``α_i``) defaults to 0.01. The paper multiplies the lateral activations "by a
    learned scalar, initialized by a random small value" to adjust for the different scales of the columns, and
    gives neither the value nor its distribution; 0.01 is our choice of "small" (public re-implementations use 0.1,
    or one of 1, 0.1, 0.01 drawn at random). Column 2 then starts close to an independent network and the
    optimizer grows ``α_i`` where column 1 helps; ``lateral_scale=1`` gives lateral signals of the order of
    column 2's own activations from the first step (the default before; with a small ``α`` the gradient reaching
    ``W_i`` is scaled down by it, which matters with the few hundred steps of a small target pool).

    Remaining differences from the paper: every ``α_i`` starts at the same fixed value rather than a random draw;
    the adapter is linear (``W_i α_i u``: a 1×1 convolution or a linear layer of column 1's width), where the
    paper's dense adapter is a one-hidden-layer MLP ``U_i σ(V_i α_i u)`` whose hidden layer projects to the
    layer's width (and 1×1 convolutions reduce the channels for convolutional layers); there are two columns (one
    source task), where the paper stacks a column per task.

    Args (besides :class:`~tlrun.methods.finetune.FineTuning`'s):
        column2_init: ``random`` or ``copy``.
        lateral_scale: initial ``α_i`` of every adapter (>= 0), learned from there.
    """

    unsaved_modules = ("column1",)

    def __init__(
        self,
        backbone: nn.Module,
        column2_init: str = "random",
        lateral_scale: float = 0.01,
        backbone_lr_mult: float | str = "auto",
        freeze: str = "none",
        **kwargs: Any,
    ) -> None:
        check_progressive(type(self).__name__, column2_init=column2_init, lateral_scale=lateral_scale, freeze=freeze)
        if backbone_lr_mult == "auto":
            backbone_lr_mult = 1.0 if column2_init == "random" else 0.1
        super().__init__(backbone, backbone_lr_mult=backbone_lr_mult, freeze=freeze, **kwargs)
        self.column2_init = column2_init
        self.lateral_scale = float(lateral_scale)
        #: The frozen source column (built in ``fit``, after the source phase).
        self.column1: nn.Module | None = None
        #: ``a_1 … a_{S−1}`` (stage outputs) and ``a_S`` (final features) of column 1.
        self.laterals: nn.ModuleList | None = None

    # ---------------------------------------------------------------------------------------- network

    def build_extra(self, data: TrainingData) -> None:
        """Column 1 (a frozen copy of the backbone as pre-trained), column 2 re-drawn when ``random``, and the
        adapters, sized by column 1's outputs on an example batch."""
        self.column1 = frozen_copy(self.backbone)
        if self.column2_init == "random":
            reinitialise(self.backbone)
        device = next(self.column1.parameters()).device
        with torch.no_grad():
            outputs = self.column1_outputs(self.backbone.prepare(self.example_batch(data.target.X).to(device)))
        self.laterals = nn.ModuleList(Lateral(tuple(u.shape), self.lateral_scale) for u in outputs)

    def column1_outputs(self, u: torch.Tensor) -> list[torch.Tensor]:
        """Column 1's stage outputs ``h¹_1 … h¹_{S−1}`` and its features ``finish(h¹_S)``, from the prepared
        input ``u``."""
        outputs = []
        h = u
        for _, stage in self.column1.stages():
            h = stage(h)
            outputs.append(h)
        outputs[-1] = self.column1.finish(h)
        return outputs

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """``finish(h²_S) + a_S(finish(h¹_S))``: what the head reads."""
        u = self.backbone.prepare(x)
        with torch.no_grad():
            lateral_inputs = self.column1_outputs(u)
        h = u
        for index, (_, stage) in enumerate(self.backbone.stages()):
            if index:
                h = h + self.laterals[index - 1](lateral_inputs[index - 1])
            h = stage(h)
        return self.backbone.finish(h) + self.laterals[-1](lateral_inputs[-1])

    def train(self, mode: bool = True) -> "Progressive":
        super().train(mode)
        column1 = getattr(self, "column1", None)
        if column1 is not None:
            column1.eval()
        return self
