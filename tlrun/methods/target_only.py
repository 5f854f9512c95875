"""Target only: the fine-tuning network trained from scratch on the labeled target pool alone; the baseline
every fine-tuning result is compared with (what transfer has to beat)."""

from __future__ import annotations

from typing import Any

from torch import nn

from tlrun.methods.finetune import FineTuning


class TargetOnly(FineTuning):
    """Cross-entropy on the labeled target, from randomly initialised weights: no source, no pre-training.

    Objective: ``(1/n) Σ_i CE(h(g(x_i)), y_i)`` over the labeled target pool, every layer training at ``lr``.
    Constructor arguments: those of :class:`~tlrun.methods.finetune.FineTuning`.
    """

    starts_pretrained = False

    def __init__(self, backbone: nn.Module, **kwargs: Any) -> None:
        if backbone.weights_id() != "none":
            raise ValueError(
                f"TargetOnly trains from scratch, but the backbone has weights ({backbone.weights_id()}); set "
                "backbone.weights=none, or use method=finetune to start from them"
            )
        super().__init__(backbone, **kwargs)
