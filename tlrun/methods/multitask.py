"""Multi-task learning as transfer (Caruana 1997): the source task (source labels) and the target task (the
labeled target pool) are trained jointly on shared layers, each task with its own head. No source pre-training
phase runs: the joint training is the transfer (``pretrain_epochs`` is ignored).

Where the two networks split is configured over the backbone's named stages ``s_1 … s_S`` (see
:meth:`~tlrun.backbones.base.Backbone.stages`):

- ``sharing=input``: the first ``shared_stages`` stages are shared (the same parameters), each task has its own
  copy of the remaining stages and its own classifier ("share the input side": tasks whose inputs are alike);
  ``shared_stages=null`` shares every stage (hard parameter sharing, one linear head per task);
- ``sharing=middle``: each task has its own copy of the first ``private_stages`` stages, the rest is shared,
  then one classifier per task ("share the middle": tasks whose inputs differ, e.g. the layers nearest the
  signal of multilingual speech recognition).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tlrun.methods.finetune import FineTuning
from tlrun.methods.settings import check_multitask
from tlrun.scenarios import TrainingData

TASKS = ("source", "target")


class MultiTask(FineTuning):
    """Joint training of the source task and the target task; each step draws a source batch and a target batch.
    Minimises, over the shared stages ``g_sh``, each task's private stages ``p_k`` and head ``h_k``
    (``k ∈ {s, t}``)::

        L_k = (1/n_k) Σ_i CE(h_k(g_k(x_i^k)), y_i^k),   g_k = p_k ∘ g_sh (sharing=input) or g_sh ∘ p_k (middle)

        L = w_s · L_s + w_t · L_t                                   (weighting=fixed)
        L = Σ_k exp(−s_k) · L_k + s_k                               (weighting=uncertainty)

    where ``s_k = log σ_k²`` are learned log-variances, initialised at 0 (homoscedastic task uncertainty; Kendall,
    Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses", CVPR 2018): a task whose loss stays
    high is down-weighted, and ``+ s_k`` keeps the weights from collapsing to 0. They are trainable parameters
    of the head's optimizer group (``head_lr``).

    The target task's path is ``self.backbone`` → ``bottleneck`` → ``classifier``, so prediction, scoring and
    every option of :class:`~tlrun.methods.finetune.FineTuning` (freezing, discriminative learning rates, gradual
    unfreezing) apply to it; the source task's private copies of stages follow their target twins (frozen with
    them, in the same optimizer group, unfrozen at the same epoch). ``backbone_lr_mult=auto`` is 1 for a randomly
    initialised backbone and 0.1 for given weights.

    Args (besides :class:`~tlrun.methods.finetune.FineTuning`'s; ``pretrain_epochs`` is ignored):
        sharing: ``input`` or ``middle`` (see the module docstring).
        shared_stages: with ``input``: how many stages from the input are shared (``None``: all).
        private_stages: with ``middle``: how many stages from the input each task has its own copy of.
        weighting: ``fixed`` (``w_s``, ``w_t``) or ``uncertainty`` (learned ``s_k``; the fixed weights are unused).
        source_weight: ``w_s``.
        target_weight: ``w_t``.
    """

    #: No source phase: training starts from the given weights, or from random ones, on both tasks at once.
    starts_pretrained = False

    def __init__(
        self,
        backbone: nn.Module,
        sharing: str = "input",
        shared_stages: int | None = None,
        private_stages: int = 1,
        weighting: str = "fixed",
        source_weight: float = 1.0,
        target_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        name = type(self).__name__
        check_multitask(
            name, sharing=sharing, shared_stages=shared_stages, private_stages=private_stages, weighting=weighting,
            source_weight=source_weight, target_weight=target_weight,
        )
        stage_names = [stage for stage, _ in backbone.stages()]
        count = len(stage_names)
        if not count:
            raise ValueError(
                f"{name} shares the backbone's layers between the tasks, but backbone {type(backbone).__name__} has "
                "none; choose a backbone with layers: backbone=lenet, mlp, resnet18 or resnet50"
            )
        listing = f"the stages of {type(backbone).__name__}: {', '.join(stage_names)}"
        if sharing == "input":
            shared = count if shared_stages is None else int(shared_stages)
            if not 1 <= shared <= count:
                raise ValueError(
                    f"{name}: sharing=input needs 1 <= shared_stages <= {count} ({listing}), or null for all; got "
                    f"{shared_stages}"
                )
            private = stage_names[shared:]
        else:
            if not 1 <= int(private_stages) < count:
                raise ValueError(
                    f"{name}: sharing=middle needs 1 <= private_stages <= {count - 1} (at least one stage shared; "
                    f"{listing}), got {private_stages}"
                )
            private = stage_names[:int(private_stages)]
        self.sharing, self.weighting = sharing, weighting
        self.source_weight, self.target_weight = float(source_weight), float(target_weight)
        #: Names of the stages each task has its own copy of (the others are shared).
        self.private_stage_names: tuple[str, ...] = tuple(private)
        #: The source task's copies of the private stages (built in ``fit``), by stage name.
        self.source_stages: nn.ModuleDict | None = None
        #: The source task's head: its own bottleneck and classifier.
        self.source_head: nn.Module | None = None
        #: ``s_k = log σ_k²`` of (source, target) with ``weighting=uncertainty``.
        self.log_vars: nn.Parameter | None = None

    # ---------------------------------------------------------------------------------------- network

    def build_extra(self, data: TrainingData) -> None:
        """The source task's private stages (copies of the target's, as the backbone starts), its head, and the
        log-variances."""
        self.source_stages = nn.ModuleDict({
            name: copy.deepcopy(stage) for name, stage in self.backbone.stages() if name in self.private_stage_names
        })
        self.source_head = nn.Sequential(*self.build_head(self.num_classes))
        self.log_vars = nn.Parameter(torch.zeros(len(TASKS))) if self.weighting == "uncertainty" else None

    def task_stages(self, task: str) -> list[tuple[str, nn.Module]]:
        """The stages ``task`` (``source`` or ``target``) runs through, input → output: the shared ones are the
        backbone's own modules, the private ones the task's copies."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        if task == "target":
            return self.backbone.stages()
        if self.source_stages is None:
            raise RuntimeError(f"{type(self).__name__}: the source task's network is built in fit")
        return [(name, self.source_stages[name] if name in self.source_stages else stage)
                for name, stage in self.backbone.stages()]

    def source_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The source task's logits: ``finish(stages(prepare(x)))`` along its path, then its head."""
        h = self.backbone.prepare(x)
        for _, stage in self.task_stages("source"):
            h = stage(h)
        return self.source_head(self.backbone.finish(h))

    def private_copies(self) -> list[tuple[str, nn.Module]]:
        """``(stage name, the source task's copy)`` of every private stage."""
        copies = getattr(self, "source_stages", None)
        return list(copies.items()) if copies is not None else []

    # ------------------------------------------------------------------------- freezing and optimizer

    def unfreezing_schedule(self) -> list[tuple[int, str, nn.Module]]:
        """FineTuning's schedule, each private stage's source copy beside its target twin (same epoch, same
        learning rate: :meth:`param_groups` gives it a group of the same name)."""
        copies = dict(self.private_copies())
        schedule = []
        for start, name, stage in super().unfreezing_schedule():
            schedule.append((start, name, stage))
            if name in copies:
                schedule.append((start, name, copies[name]))
        return schedule

    def head_parameters(self) -> list[nn.Parameter]:
        """Both heads and the log-variances; not the source copies of stages (they are in their stage's group)."""
        copied = {id(p) for _, module in self.private_copies() for p in module.parameters()}
        return [p for p in super().head_parameters() if id(p) not in copied]

    def stage_modules(self) -> list[nn.Module]:
        """The backbone's stages and the source task's copies (frozen copies keep their statistics too)."""
        return super().stage_modules() + [stage for _, stage in self.private_copies()]

    # ------------------------------------------------------------------------------------------- data

    def train_dataloaders(self, data: TrainingData) -> Any:
        """Labeled source and labeled target ``(x, y)`` batches, drawn together (:meth:`paired_loaders`)."""
        source, target = self.labeled(data, "source"), self.labeled(data, "target")
        return self.paired_loaders(
            self.make_loader(source.X, source.y, shuffle=True, drop_last=True),
            self.make_loader(target.X, target.y, shuffle=True, drop_last=True, seed_offset=1),
        )

    # --------------------------------------------------------------------------------------- training

    def combine(self, source_ce: torch.Tensor, target_ce: torch.Tensor) -> torch.Tensor:
        """``L`` from the two tasks' cross-entropies (fixed or uncertainty weighting)."""
        if self.log_vars is None:
            return self.source_weight * source_ce + self.target_weight * target_ce
        losses = torch.stack([source_ce, target_ce])
        return (torch.exp(-self.log_vars) * losses + self.log_vars).sum()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        (source_x, source_y), (target_x, target_y) = batch["source"], batch["target"]
        source_ce = F.cross_entropy(self.source_logits(source_x), source_y)
        target_logits = self(target_x)
        target_ce = F.cross_entropy(target_logits, target_y)
        loss = self.combine(source_ce, target_ce)
        terms = {"source_ce": source_ce, "target_ce": target_ce}
        if self.log_vars is not None:
            terms.update(source_log_var=self.log_vars[0], target_log_var=self.log_vars[1])
        self.record(loss, target_logits, target_y, **terms)
        return loss
