"""Fine-tuning (scenario ``finetune``): a network pre-trained on the labeled source, or given weights, adapted
to a small labeled target set. :class:`FineTuning` is ``method=finetune`` and the base of the family
(``target_only``, ``l2sp``, ``distill_finetune``, ``multitask``, ``progressive``).

**Starting weights.** When ``backbone.weights`` names weights (``imagenet``, a file, ``runs:/<run_id>/model``),
fine-tuning starts from them. Otherwise the run first pre-trains: backbone + a source classifier trained with
cross-entropy on the labeled source for ``pretrain_epochs`` (:class:`~tlrun.methods.source_only.SourceOnly`),
its metrics logged as ``pretrain.*`` in the same MLflow run.

**Fine-tuning** minimises, over the trainable parameters θ, on the labeled target pool ``{(x_i, y_i)}``::

    L(θ) = (1/n) Σ_i CE(h(g(x_i)), y_i) + R(θ)

with ``g`` the backbone, ``h`` a new head (``bottleneck_dim`` 0: one linear layer) and ``R`` a method's
conservative term (:meth:`FineTuning.conservative_terms`; none here). Which layers move, and how fast, is
configured over the backbone's named stages ``s_1 … s_S`` (input → output, :meth:`Backbone.stages`; ResNet:
stem, layer1…layer4; LeNet: conv1, conv2, fc; MLP: block1…):

- ``freeze``: ``none``; ``all_but_head``; ``first_k`` (the ``freeze_k`` stages nearest the input: images, whose
  early layers are generic); ``last_k`` (the ``freeze_last_k`` stages nearest the output: speech, where the
  late layers are shared). Frozen stages get no gradient and no optimizer group; with ``freeze_bn`` their
  batch-norm layers also keep their running statistics (they stay in eval mode).
- discriminative learning rates: stage ``s_i`` learns at ``lr · backbone_lr_mult · layer_decay^(S−i)`` (the
  stage nearest the head fastest), the head at ``head_lr`` (default ``lr``).
- gradual unfreezing (``unfreeze_every = N > 0``): training starts with the head alone; at epoch ``k·N`` the
  ``k``-th trainable stage from the top joins (a Lightning ``BaseFinetuning`` callback); stages frozen by
  ``freeze`` never do.
- ``warmup_epochs``: each group's learning rate rises linearly from 0 over this many epochs from the epoch
  it starts training (times the ``lr_schedule``).
"""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace
from typing import Any

import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn
from torch.nn import functional as F

from tlrun.errors import OracleRefused
from tlrun.methods.base import RunContext
from tlrun.methods.deep import DeepMethod
from tlrun.methods.settings import check_fine_tuning
from tlrun.scenarios import TrainingData


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Switch gradients of every parameter of ``module`` on or off."""
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def is_frozen(module: nn.Module) -> bool:
    """True when ``module`` has parameters and none of them takes gradients."""
    parameters = list(module.parameters())
    return bool(parameters) and not any(p.requires_grad for p in parameters)


class GradualUnfreezing(BaseFinetuning):
    """Lightning's fine-tuning callback, driven by a schedule of ``(epoch, stage name, stage)``: each stage is
    frozen before training and becomes trainable at the start of its epoch (0-based).

    The stages' parameters are in the optimizer from the start (their groups get no gradient while frozen), so
    the learning-rate schedule covers every group; unfreezing only switches gradients on.
    """

    def __init__(self, schedule: list[tuple[int, str, nn.Module]]) -> None:
        super().__init__()
        self.schedule = schedule

    def freeze_before_training(self, pl_module: Any) -> None:
        for _, _, stage in self.schedule:
            set_trainable(stage, False)

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
        changed = False
        for start, _, stage in self.schedule:
            if start <= epoch and is_frozen(stage):
                set_trainable(stage, True)
                changed = True
        if changed and pl_module.training:
            pl_module.train()  # unfrozen stages' batch norms train again; still-frozen ones keep their statistics


class FineTuning(DeepMethod):
    """Fine-tune a pre-trained network on the labeled target (see the module docstring for the objective).

    Args (besides :class:`~tlrun.methods.deep.DeepMethod`'s, whose defaults the family changes as
    ``conf/method_base/finetune.yaml`` does: a small labeled pool, Adam at 1e-3, 20 epochs of 20 steps, no bottleneck):
        pretrain_epochs: epochs of source pre-training when the backbone has no weights (0: start from random).
        freeze: ``none``, ``all_but_head``, ``first_k`` or ``last_k``.
        freeze_k: stages frozen from the input side by ``first_k``.
        freeze_last_k: stages frozen from the output side by ``last_k``.
        freeze_bn: frozen stages keep their batch-norm statistics.
        layer_decay: discriminative learning rates: each stage further from the head learns this factor slower.
        head_lr: the new head's learning rate (``None``: ``lr``).
        unfreeze_every: gradual unfreezing: one more stage from the top every this many epochs (0: off).
        warmup_epochs: linear learning-rate warm-up of each group from the epoch it starts training.
        backbone_lr_mult: ``auto`` is 0.1 when the backbone starts pre-trained (weights given, or a source phase
            of ``pretrain_epochs > 0``), else 1.
    Freezing needs pre-trained stages: ``freeze`` other than ``none`` on random weights is an error.
    """

    trains_on = "target"
    #: Whether the backbone starts from pre-trained weights (given, or from the source phase).
    starts_pretrained = True

    def __init__(
        self,
        backbone: nn.Module,
        pretrain_epochs: int = 10,
        freeze: str = "none",
        freeze_k: int = 1,
        freeze_last_k: int = 1,
        freeze_bn: bool = False,
        layer_decay: float = 1.0,
        head_lr: float | None = None,
        unfreeze_every: int = 0,
        warmup_epochs: int = 0,
        backbone_lr_mult: float | str = "auto",
        epochs: int = 20,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        bottleneck_dim: int = 0,
        iterations_per_epoch: int | None = 20,
        **kwargs: Any,
    ) -> None:
        given = getattr(backbone, "weights_id", lambda: "none")() != "none"
        pretrained = given or (self.starts_pretrained and int(pretrain_epochs) > 0)
        if backbone_lr_mult == "auto":
            backbone_lr_mult = 0.1 if pretrained else 1.0
        super().__init__(
            backbone, backbone_lr_mult=backbone_lr_mult, epochs=epochs, optimizer=optimizer, lr=lr,
            weight_decay=weight_decay, bottleneck_dim=bottleneck_dim, iterations_per_epoch=iterations_per_epoch,
            **kwargs,
        )
        name = type(self).__name__
        check_fine_tuning(
            name, pretrain_epochs=pretrain_epochs, freeze=freeze, freeze_k=freeze_k, freeze_last_k=freeze_last_k,
            freeze_bn=freeze_bn, layer_decay=layer_decay, head_lr=head_lr, unfreeze_every=unfreeze_every,
            warmup_epochs=warmup_epochs,
        )
        if freeze != "none" and not pretrained:
            raise ValueError(
                f"{name}: freeze={freeze} would keep randomly initialised stages as they are (no backbone.weights"
                + (" and pretrain_epochs=0" if self.starts_pretrained else "") + "); use freeze=none"
            )
        stages = backbone.stages()
        stage_names = [stage for stage, _ in stages]
        staged = {id(p) for _, module in stages for p in module.parameters()}
        if any(id(p) not in staged for p in backbone.parameters()):
            raise ValueError(f"{name}: {type(backbone).__name__}.stages() does not hold all of its parameters")
        if self.starts_pretrained and not staged:
            raise ValueError(
                f"{name} transfers the backbone's layers, but backbone {type(backbone).__name__} has none; choose a "
                "backbone with layers: backbone=lenet, mlp, resnet18 or resnet50"
            )
        count = {"first_k": int(freeze_k), "last_k": int(freeze_last_k)}.get(freeze)
        if count is not None and not 1 <= count <= len(stages):
            key = "freeze_k" if freeze == "first_k" else "freeze_last_k"
            raise ValueError(
                f"{name}: freeze={freeze} needs 1 <= {key} <= {len(stages)} (the stages of {type(backbone).__name__}: "
                f"{', '.join(stage_names)}), got {count}"
            )
        if freeze == "all_but_head":
            frozen = stage_names
        elif freeze == "first_k":
            frozen = stage_names[:count]
        elif freeze == "last_k":
            frozen = stage_names[len(stages) - count:]
        else:
            frozen = []
        #: Names of the backbone stages that never train.
        self.frozen_stages: tuple[str, ...] = tuple(frozen)
        self.pretrain_epochs = int(pretrain_epochs)
        self.freeze_bn = bool(freeze_bn)
        self.layer_decay = float(layer_decay)
        self.head_lr = float(head_lr) if head_lr is not None else self.lr
        self.unfreeze_every = int(unfreeze_every)
        self.warmup_epochs = int(warmup_epochs)
        #: What the source pre-training phase left (its classifier), when it ran; not a submodule.
        self.pretraining: SimpleNamespace | None = None

    # ------------------------------------------------------------------------------------------ stages

    def trainable_stages(self) -> list[tuple[str, nn.Module]]:
        """The backbone stages that train (at some point), input → output."""
        return [(name, stage) for name, stage in self.backbone.stages() if name not in self.frozen_stages]

    def unfreezing_schedule(self) -> list[tuple[int, str, nn.Module]]:
        """``(epoch, name, stage)``: with gradual unfreezing the ``k``-th trainable stage from the top starts at
        epoch ``k · unfreeze_every``; without it every trainable stage starts at epoch 0."""
        top_down = list(reversed(self.trainable_stages()))
        every = self.unfreeze_every
        return [((k + 1) * every if every else 0, name, stage) for k, (name, stage) in enumerate(top_down)]

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters outside the backbone: the new head and any network the method adds."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in backbone]

    def param_groups(self) -> list[dict[str, Any]]:
        """One group per trainable stage at ``lr · backbone_lr_mult · layer_decay^(S−i)`` and the head at
        ``head_lr``; each group carries the epoch it starts training (``start_epoch``, for the warm-up)."""
        depth = {name: len(self.backbone.stages()) - index for index, (name, _) in enumerate(self.backbone.stages(), 1)}
        groups = [{"name": "head", "params": self.head_parameters(), "lr": self.head_lr, "start_epoch": 0}]
        for start, name, stage in reversed(self.unfreezing_schedule()):
            lr = self.lr * self.backbone_lr_mult * self.layer_decay ** depth[name]
            groups.append({"name": name, "params": list(stage.parameters()), "lr": lr, "start_epoch": start})
        return [group for group in groups if group["params"]]

    def lr_factor(self, step: int, total: int, group: dict[str, Any]) -> float:
        """The ``lr_schedule`` times the group's linear warm-up from its ``start_epoch``."""
        factor = super().lr_factor(step, total, group)
        if self.warmup_epochs:
            steps_per_epoch = total / self.epochs
            since = step - group.get("start_epoch", 0) * steps_per_epoch
            factor *= min(1.0, max(0.0, (since + 1) / (self.warmup_epochs * steps_per_epoch)))
        return factor

    def callbacks(self) -> list[Any]:
        if not self.unfreeze_every:
            return []
        late = [name for start, name, _ in self.unfreezing_schedule() if start >= self.epochs]
        if late:
            warnings.warn(
                f"{type(self).__name__}: with unfreeze_every={self.unfreeze_every} and epochs={self.epochs} the stages "
                f"{', '.join(late)} are never unfrozen; raise epochs or lower unfreeze_every", stacklevel=2,
            )
        return [GradualUnfreezing(self.unfreezing_schedule())]

    def train(self, mode: bool = True) -> "FineTuning":
        super().train(mode)
        if mode:
            self.hold_frozen_statistics()
        return self

    def stage_modules(self) -> list[nn.Module]:
        """Every stage module that freezing applies to (the backbone's)."""
        return [stage for _, stage in self.backbone.stages()]

    def hold_frozen_statistics(self) -> None:
        """With ``freeze_bn``, put the batch-norm layers of the frozen stages in eval mode (statistics fixed)."""
        if not getattr(self, "freeze_bn", False):
            return
        for stage in self.stage_modules():
            if is_frozen(stage):
                for module in stage.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.train()  # Lightning keeps the modules' modes as it found them: set them (and frozen statistics) here

    # --------------------------------------------------------------------------------------- training

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads before its bottleneck: the backbone's features."""
        return self.backbone(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.hidden(x))

    def conservative_terms(self, x: torch.Tensor, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted terms of ``R(θ)`` for a batch (``hidden`` = the backbone's output); none here."""
        return {}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        hidden = self.hidden(x)
        logits = self.classifier(self.bottleneck(hidden))
        cross_entropy = F.cross_entropy(logits, y)
        terms = self.conservative_terms(x, hidden)
        loss = cross_entropy + sum(terms.values()) if terms else cross_entropy
        self.record(loss, logits, y, **({"target_ce": cross_entropy, **terms} if terms else {}))
        return loss

    # -------------------------------------------------------------------------------------- two phases

    def pretrain(self, data: TrainingData, context: RunContext) -> None:
        """Train backbone + a source classifier on the labeled source (``pretrain.*`` metrics)."""
        from tlrun.methods.source_only import SourceOnly

        phase = SourceOnly(
            self.backbone, epochs=self.pretrain_epochs, batch_size=self.batch_size, optimizer=self.optimizer_name,
            lr=self.lr, momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay,
            backbone_lr_mult=1.0, lr_schedule=self.lr_schedule, bottleneck_dim=0, eval_batch_size=self.eval_batch_size,
            num_workers=self.num_workers, report_every=0,
        )
        phase.fit(data, RunContext(
            reporter=PrefixedReporter(context.reporter, "pretrain."), device=context.device, seed=context.seed,
            trainer=context.trainer, callbacks=context.callbacks,
        ))
        self.pretraining = SimpleNamespace(head=phase.classifier)

    def fit(self, data: TrainingData, context: RunContext) -> None:
        self.pretraining = None
        if self.starts_pretrained and self.backbone.weights_id() == "none" and self.pretrain_epochs:
            self.pretrain(data, context)
        for name, stage in self.backbone.stages():
            set_trainable(stage, name not in self.frozen_stages)
        super().fit(data, context)


class PrefixedReporter:
    """A reporter that logs under ``prefix`` and scores no predictions (a phase before the run's own training)."""

    def __init__(self, reporter: Any, prefix: str) -> None:
        self.reporter, self.prefix = reporter, prefix

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.reporter.log_metrics({self.prefix + key: value for key, value in metrics.items()}, step)

    def target_predictions(self, predictions: Any, step: int) -> None:
        return None

    def oracle_accuracy(self, predictions: Any) -> float | None:
        raise OracleRefused("the pretraining phase keeps its last epoch; it selects by nothing")

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.reporter.log_figure(figure, self.prefix.rstrip(".") + "/" + artifact_file)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that takes no gradient (a teacher, a frozen column); keep it in eval mode."""
    clone = copy.deepcopy(module)
    set_trainable(clone, False)
    return clone.eval()
