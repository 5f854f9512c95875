"""Output-level conservative training: fine-tuning that keeps the network's outputs on target inputs close to
the pre-trained network's, by distillation with a temperature (as Learning without Forgetting, Li & Hoiem 2016,
keeps the old task's outputs)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from tlrun.losses import distillation_loss, feature_distillation_loss
from tlrun.methods.finetune import FineTuning, frozen_copy
from tlrun.methods.settings import check_distill_finetune
from tlrun.scenarios import TrainingData


class DistillFinetune(FineTuning):
    """Fine-tuning plus a distillation term towards the frozen pre-trained network ``g⁰`` (the teacher).
    Minimises::

        (1/n) Σ_i CE(h(g(x_i)), y_i) + λ · τ² KL( softmax(s⁰(g⁰(x_i))/τ) ‖ softmax(s(g(x_i))/τ) )

    where ``s⁰`` is the source classifier of the pre-training phase and ``s`` a trainable copy of it kept beside
    the new head (the old task's outputs must not drift). When the weights came from elsewhere (ImageNet, a
    file, an earlier run) there is no source classifier, and the term compares the representations instead:
    ``λ · (1/n) Σ_i ‖g(x_i) − g⁰(x_i)‖² / d``.

    Args (besides :class:`~tlrun.methods.finetune.FineTuning`'s):
        distill_weight: ``λ``.
        temperature: ``τ``.
    """

    unsaved_modules = ("teacher_backbone", "teacher_head")

    def __init__(self, backbone: nn.Module, distill_weight: float = 1.0, temperature: float = 2.0, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        check_distill_finetune(type(self).__name__, distill_weight=distill_weight, temperature=temperature)
        self.distill_weight, self.temperature = float(distill_weight), float(temperature)
        self.teacher_backbone: nn.Module | None = None
        self.teacher_head: nn.Module | None = None
        self.source_head: nn.Module | None = None

    def build_extra(self, data: TrainingData) -> None:
        self.teacher_backbone = frozen_copy(self.backbone)
        if self.pretraining is not None:
            self.teacher_head = frozen_copy(self.pretraining.head)
            self.source_head = copy.deepcopy(self.pretraining.head)

    def train(self, mode: bool = True) -> "DistillFinetune":
        super().train(mode)
        for teacher in (self.teacher_backbone, self.teacher_head):
            if teacher is not None:
                teacher.eval()
        return self

    def conservative_terms(self, x: torch.Tensor, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher_hidden = self.teacher_backbone(x)
        if self.source_head is None:
            return {"distill": self.distill_weight * feature_distillation_loss(hidden, teacher_hidden)}
        with torch.no_grad():
            teacher_logits = self.teacher_head(teacher_hidden)
        return {"distill": self.distill_weight * distillation_loss(self.source_head(hidden), teacher_logits, self.temperature)}
