"""The base of deep methods: backbone → bottleneck → classifier, trained by a Lightning ``Trainer``.

:class:`DeepMethod` is both a ``pytorch_lightning.LightningModule`` and a :class:`~tlrun.methods.base.Method`.
The runner builds it with the backbone network (``instantiate(cfg.method, backbone=<module>)``) and calls
``fit(data, context)``, which

1. seeds torch with ``context.seed`` and builds the head for ``data.num_classes``: a bottleneck
   ``f = ReLU(BN(W_b h))`` of ``bottleneck_dim`` units on the backbone's output ``h`` (none when 0), then a
   linear classifier ``z = W_c f`` (:meth:`DeepMethod.build_head`), and any networks the method adds
   (:meth:`DeepMethod.build_extra`);
2. builds the training DataLoaders (:meth:`DeepMethod.train_dataloaders`; shuffled with a generator seeded
   from ``context.seed``, training-time augmentation ``data.augment``; ``num_workers=auto``: worker processes for
   image files only, see :func:`tlrun.backbones.inputs.loader_options`; pinned memory on a GPU);
3. trains with ``pl.Trainer(max_epochs=epochs, logger=context.lightning_logger() or False,
   enable_checkpointing=False, use_distributed_sampler=False, **context.trainer)`` (tlrun's loaders shard
   themselves under DDP; ``strategy: ddp`` becomes ``ddp_find_unused_parameters_true`` for a method that
   :attr:`~DeepMethod.leaves_parameters_unused`) and the callbacks of the method and of ``context.callbacks``
   (the runner's supervision of DDP processes); with ``context.checkpoint`` it writes a resumable Lightning
   checkpoint there after every epoch (weights, optimizer, schedule, epoch, and the model-selection state), and
   with ``context.resume_from`` it continues training from such a checkpoint;
4. restores the weights of the epoch chosen by ``context.select`` (label-free model selection, see below).

Subclasses implement ``training_step`` (returning the loss). The base provides, for every subclass:

- the optimizer (``sgd`` with momentum or ``adam``; the backbone's learning rate scaled by
  ``backbone_lr_mult``) and the learning-rate schedule (``none``, ``cosine``, or ``inv``:
  ``lr · (1 + 10 p)^-0.75`` over the training progress ``p``, as in DANN);
- a check that stops training with :class:`TrainingDiverged` (a :class:`~tlrun.errors.TlrunError`) when a loss is
  NaN or infinite, naming the learning rate to try;
- per-epoch means of every term passed to :meth:`~DeepMethod.record` (``train_loss``, ``transfer_loss``...)
  and ``source_train_acc``, logged at ``step = epoch`` (1-based, epochs completed) through ``context.reporter``
  (one write to the store per epoch);
- at the end of every ``report_every``-th epoch (and the last): predictions for the training target sent to
  ``context.reporter.target_predictions`` (the runner scores them; the method never sees target labels; in open-set
  DA with ``unknown`` by :func:`~tlrun.metrics.open_set_labels`, as the final scoring labels them), and
  label-free model-selection scores of :mod:`tlrun.methods.components.selection` logged as ``select.<score>``:
  ``entropy`` (minus the target prediction entropy, cheap) and the score ``context.select`` needs at every such
  epoch, all of them at the last: ``source_val`` (accuracy on the held-out source split), ``dev``
  (importance-weighted validation) and ``snd`` (soft neighbourhood density); the last scored predictions, when the
  final weights made them, are kept as ``fitted_target_labels`` (the runner scores them without another pass);
- checkpoint selection: with ``context.select`` other than ``last`` the weights of the epoch with the best
  score are kept and restored after training (``selected_epoch`` is logged); ``oracle`` selects by target
  accuracy, which reads target labels through the runner, and the run is tagged ``selection.oracle=true``; in
  ``dg`` (no training target) ``lodo`` scores the source domain held out of training and ``oracle`` the share of the
  test domain that the runner's reporter holds (:meth:`~tlrun.methods.base.Reporter.held_out_oracle_accuracy`);
- diagnostics (``context.diagnostics``): the proxy A-distance between source and target features before
  training (backbone output) and after (the representation the classifier reads), ``pad_before`` /
  ``pad_after``, and a figure of both (their first two principal components, or with ``diagnostics=tsne`` a t-SNE
  map), ``diagnostics/embedding.png`` (skipped when the training target is empty: ``zeroshot``, ``dg``);
- :meth:`~DeepMethod.predict` in batches, in eval mode, without gradients.

With several processes (``trainer=ddp``, Lightning DDP; see :mod:`tlrun.runner.ddp`) each process draws its own
1/N of every shuffled training loader (the effective batch is N × ``batch_size``; the learning rate is not
scaled), the epoch means are summed over the processes, and only rank 0 predicts the target, scores, keeps and
restores the selected epoch and logs; early stopping and the non-finite-loss check are agreed by all processes.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities.combined_loader import CombinedLoader
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from tlrun.backbones import inputs as _inputs
from tlrun.config import group_options, option_node
from tlrun.data.base import join_samples, take
from tlrun.errors import TlrunError
from tlrun.methods.base import Method, RunContext
from tlrun.methods.components import selection
from tlrun.methods.components.diagnostics import embedding_figure, proxy_a_distance
from tlrun.methods.deep_ddp import agree, shard_sampler, sum_over_processes
from tlrun.methods.settings import check_deep_method
from tlrun.metrics import open_set_labels
from tlrun.scenarios import Labeled, TrainingData

class _WithoutAdvertising(logging.Filter):
    """Drops Lightning's tip advertising its cloud logger, printed at every ``Trainer`` construction."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_WithoutAdvertising())

#: ``Trainer`` arguments the method sets itself; ``context.trainer`` must not hold them.
RESERVED_TRAINER_KEYS = ("max_epochs", "logger", "enable_checkpointing", "callbacks", "use_distributed_sampler")
#: Samples per domain used for the label-free scores that need features, and for the diagnostics.
SCORE_SAMPLES = 1000
DIAGNOSTIC_SAMPLES = 500
#: Points of each panel of the diagnostics' figure (half per domain); t-SNE took a fifth of a digits run's CPU time
#: at 1,000.
EMBEDDING_POINTS = 500


class TrainingDiverged(TlrunError, FloatingPointError):
    """A NaN or infinite training loss: the run stops, and the message names a learning rate to try."""


def configured_lr(method: type) -> tuple[str, float] | None:
    """``(name, lr)`` of the config ``conf/method/<name>.yaml`` whose ``_target_`` is ``method``, as composed (its
    own ``lr``, else the one of the configs it merges, ``- /method_base/deep_da@_here_``); ``None`` when no config
    builds ``method`` or it sets no ``lr``."""
    target = f"{method.__module__}.{method.__qualname__}"
    for name in group_options("method"):
        composed = option_node("method", name)
        if composed.get("_target_") == target:
            return None if composed.get("lr") is None else (name, float(composed["lr"]))
    return None


def _subsample(n: int, size: int, seed: int) -> np.ndarray:
    """At most ``size`` sorted indices of ``range(n)``, drawn with ``seed``."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


class Cycle:
    """``length`` batches drawn from ``loader``, starting it over (a new shuffle) whenever it runs out."""

    def __init__(self, loader: Iterable, length: int) -> None:
        self.loader, self.length = loader, int(length)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        drawn = 0
        while drawn < self.length:
            before = drawn
            for batch in self.loader:
                yield batch
                drawn += 1
                if drawn == self.length:
                    return
            if drawn == before:
                raise ValueError("the training data gives no batch (fewer samples than batch_size?)")


class DeepMethod(pl.LightningModule, Method):
    """Backbone → bottleneck → linear classifier, trained with Lightning. Subclasses define ``training_step``.

    Args:
        backbone: the feature network (``out_features`` is read to size the head).
        epochs: training epochs (``Trainer.max_epochs``).
        batch_size: samples per training batch (of each domain, for methods that draw from both).
        optimizer: ``sgd`` (with ``momentum``, optionally Nesterov) or ``adam``.
        lr: learning rate of the head (and of the backbone, times ``backbone_lr_mult``).
        momentum: SGD momentum (ignored by Adam).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty on all parameters.
        backbone_lr_mult: the backbone's learning rate relative to ``lr``; ``auto``: 0.1 when its weights are
            pretrained (ImageNet, a file), 1 when randomly initialised. 0 freezes it in effect, though its
            batch-norm statistics still update.
        lr_schedule: ``none``, ``cosine`` (to 0 over training) or ``inv`` (DANN's annealing).
        bottleneck_dim: units of the bottleneck layer between backbone and classifier (0: none).
        iterations_per_epoch: optimizer steps per epoch, the training data cycling (reshuffled at each pass);
            ``None``: one pass over the training data (over the larger domain, for methods that draw from two).
        eval_batch_size: samples per batch in :meth:`predict`.
        num_workers: DataLoader worker processes (0 loads in the main process); ``auto``: 0 for arrays, one per
            CPU thread of the run but one (at most 8) for image files (:func:`~tlrun.backbones.inputs.loader_options`).
            The same count repeats a run; another count draws other augmentations.
        report_every: predict the training target and score the model every this many epochs (0: only at
            the end).
        patience: early stopping: end training when the ``trainer.select`` score has not improved for this many
            scored epochs (``None``: train all epochs; needs a selection score other than ``last``).
    """

    #: The bottleneck's non-linearity (CMD needs bounded features and uses a sigmoid).
    bottleneck_activation: type[nn.Module] = nn.ReLU
    #: The side whose labeled samples :meth:`train_dataloaders` draws (``source``; fine-tuning: ``target``); the
    #: training batches' accuracy is logged as ``<side>_train_acc``.
    trains_on = "source"
    #: Submodules left out of the logged weights (frozen copies: a teacher, a progressive net's source column).
    unsaved_modules: tuple[str, ...] = ()
    #: True for methods that read which source domain each sample comes from (multi-source DA, domain
    #: generalisation): with pooled sources their source batches are ``(x, y, d)`` (:meth:`make_loader`'s ``domains``).
    reads_source_domains = False
    #: Optimizer steps per training batch: 1, or more for a method that takes several steps per batch by hand
    #: (Lightning counts every ``step`` in ``global_step``; :meth:`progress` counts batches).
    optimizer_steps_per_batch = 1
    #: True when some training steps leave parameters without gradient (a network of a source absent from a
    #: batch): under ``strategy: ddp`` the run then trains with ``ddp_find_unused_parameters_true``.
    leaves_parameters_unused = False

    def __init__(
        self,
        backbone: nn.Module,
        epochs: int = 30,
        batch_size: int = 32,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 1e-3,
        backbone_lr_mult: float | str = "auto",
        lr_schedule: str = "inv",
        bottleneck_dim: int = 256,
        iterations_per_epoch: int | None = None,
        eval_batch_size: int = 256,
        num_workers: int | str = "auto",
        report_every: int = 1,
        patience: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_deep_method(
            name, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
            nesterov=nesterov, weight_decay=weight_decay, backbone_lr_mult=backbone_lr_mult, lr_schedule=lr_schedule,
            bottleneck_dim=bottleneck_dim, iterations_per_epoch=iterations_per_epoch, eval_batch_size=eval_batch_size,
            num_workers=num_workers, report_every=report_every, patience=patience,
        )
        if not hasattr(backbone, "out_features"):
            raise TypeError(f"{name}: the backbone must expose out_features")
        self.backbone = backbone
        self.bottleneck: nn.Module | None = None
        self.classifier: nn.Module | None = None
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        if backbone_lr_mult == "auto":
            pretrained = getattr(backbone, "weights_id", lambda: "none")() != "none"
            backbone_lr_mult = 0.1 if pretrained else 1.0
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.lr_schedule = lr_schedule
        self.bottleneck_dim = int(bottleneck_dim)
        self.iterations_per_epoch = None if iterations_per_epoch is None else int(iterations_per_epoch)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = num_workers if num_workers == "auto" else int(num_workers)
        self.report_every = int(report_every)
        self.patience = None if patience is None else int(patience)
        self.num_classes: int | None = None
        self._image_shape: tuple[int, ...] | None = None
        self._augment = "none"
        self._data: TrainingData | None = None
        self._context: RunContext | None = None
        self._predict_device = torch.device("cpu")
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        self._scored_since_best = 0
        #: ``(epoch, labels)``: the training target's predicted labels at the latest scored epoch.
        self._scored_target_labels: tuple[int, np.ndarray] | None = None
        self._checkpoint: Path | None = None
        #: On a GPU, the last step's loss check, still on its way to the host (see :meth:`on_before_backward`).
        self._pending_finite: tuple[torch.Tensor, torch.cuda.Event, torch.Tensor, int] | None = None
        #: ``(rank, world_size)`` while training on several processes (DDP), else ``None``.
        self._shard: tuple[int, int] | None = None

    # ---------------------------------------------------------------------------------------- network

    @property
    def feature_dim(self) -> int:
        """Size of the representation the classifier reads (the bottleneck's, or the backbone's output)."""
        return self.bottleneck_dim or int(self.backbone.out_features)

    def build_bottleneck(self) -> nn.Module:
        """The bottleneck ``ReLU(BN(W_b h))`` on the backbone's output (identity when ``bottleneck_dim`` is 0)."""
        if not self.bottleneck_dim:
            return nn.Identity()
        return nn.Sequential(
            nn.Linear(int(self.backbone.out_features), self.bottleneck_dim),
            nn.BatchNorm1d(self.bottleneck_dim),
            self.bottleneck_activation(),
        )

    def build_head(self, num_classes: int) -> tuple[nn.Module, nn.Module]:
        """The bottleneck (:meth:`build_bottleneck`) and the linear classifier."""
        return self.build_bottleneck(), nn.Linear(self.feature_dim, num_classes)

    def build_extra(self, data: TrainingData) -> None:
        """Build the networks the method adds (discriminators, decoders...): called in ``fit``, after the head."""

    def callbacks(self) -> list[pl.Callback]:
        """Lightning callbacks the method trains with (none by default)."""
        return []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the classifier reads: bottleneck(backbone(x))."""
        return self.bottleneck(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch."""
        return self.classifier(self.features(x))

    # ------------------------------------------------------------------------------------------- data

    def make_loader(
        self,
        X: np.ndarray | tuple[str, ...],
        y: np.ndarray | None = None,
        *,
        shuffle: bool,
        batch_size: int | None = None,
        drop_last: bool = False,
        seed_offset: int = 0,
        domains: np.ndarray | None = None,
        batch_domains: np.ndarray | None = None,
    ) -> DataLoader:
        """A DataLoader over samples (and labels, and each sample's domain index: ``(x, y, d)`` batches) for this
        method's backbone.

        Shuffled loaders are training loaders: seeded from the run's seed (plus ``seed_offset``, so that two
        loaders of one run draw different orders) and augmented with the dataset's ``augment`` policy. Under DDP a
        shuffled loader draws this process's 1/N of the samples (:func:`tlrun.methods.deep_ddp.shard_sampler`).
        With ``batch_domains`` (each sample's domain, several domains) a shuffled loader's batches hold
        ``batch_size`` samples of every domain (:class:`~tlrun.backbones.inputs.PerDomainBatches`).
        Workers and pinned memory follow ``num_workers`` and the device the network is on
        (:func:`tlrun.backbones.inputs.loader_options`).
        """
        dataset = _inputs.make_dataset(
            X, y, backbone=self.backbone, image_shape=self._image_shape, augment=self._augment if shuffle else "none"
        )
        if domains is not None:
            dataset = _inputs.WithDomains(dataset, domains)
        generator, sampler = None, None
        size = batch_size or self.batch_size
        if shuffle:
            seed = self._context.seed if self._context is not None else 0
            if batch_domains is not None and len(np.unique(batch_domains)) > 1:
                rank, world_size = self._shard or (0, 1)
                batches = _inputs.PerDomainBatches(batch_domains, size, int(seed) + seed_offset, rank, world_size)
                return DataLoader(dataset, batch_sampler=batches,
                                  **_inputs.loader_options(self.num_workers, X, self.device))
            if self._shard is not None:
                rank, world_size = self._shard
                sampler = shard_sampler(dataset, world_size, rank, int(seed) + seed_offset)
            else:
                generator = torch.Generator().manual_seed(int(seed) + seed_offset)
        return DataLoader(
            dataset,
            batch_size=size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            generator=generator,
            # A last batch of one sample breaks batch normalization in training mode.
            drop_last=drop_last and len(sampler if sampler is not None else dataset) > size,
            **_inputs.loader_options(self.num_workers, X, self.device),
        )

    def example_batch(self, X: np.ndarray | tuple[str, ...], size: int = 2) -> torch.Tensor:
        """The first ``size`` samples of ``X`` as the (non-augmented) loader gives them: their shape sizes the
        networks a method adds."""
        return next(iter(self.make_loader(X[:size], shuffle=False, batch_size=size)))

    def labeled(self, data: TrainingData, side: str) -> Labeled:
        """``data.source`` or ``data.target`` (``side``), which must be labeled."""
        part = getattr(data, side)
        if not isinstance(part, Labeled):
            raise TypeError(f"{type(self).__name__} trains on a labeled {side}; this scenario's {side} is unlabeled")
        return part

    def train_dataloader(self) -> Any:
        """Lightning's hook, called once the processes exist: :meth:`train_dataloaders` on the data of ``fit``, each
        DDP process drawing its own share; the worker processes per loader are logged as ``loader_workers``."""
        world_size = self.trainer.world_size
        self._shard = (self.trainer.global_rank, world_size) if world_size > 1 else None
        if self._context is not None:  # what num_workers (auto) resolved to, logged as loader_workers
            options = _inputs.loader_options(self.num_workers, self._data.source.X, self.device)
            self._context.reporter.log_metrics({"loader_workers": options["num_workers"]}, step=0)
        return self.train_dataloaders(self._data)

    def train_dataloaders(self, data: TrainingData) -> Any:
        """What ``Trainer.fit`` iterates over: the labeled :attr:`trains_on` side, shuffled, in ``(x, y)`` batches;
        in ``semi_da`` a method trained on the source also trains on the few labeled target samples (the usual
        "S+T" baseline)."""
        labeled = self.labeled(data, self.trains_on)
        if self.trains_on == "source" and data.target_labeled is not None:
            labeled = Labeled(join_samples(labeled.X, data.target_labeled.X),
                              np.concatenate([labeled.y, data.target_labeled.y]))
        return self.epoch_of(self.make_loader(labeled.X, labeled.y, shuffle=True, drop_last=True))

    def labeled_target_loader(self, data: TrainingData) -> DataLoader | None:
        """``semi_da``: the few labeled target samples in shuffled ``(x, y)`` batches of at most ``batch_size``."""
        if data.target_labeled is None:
            return None
        part = data.target_labeled
        return self.make_loader(part.X, part.y, shuffle=True, drop_last=True, seed_offset=2,
                                batch_size=min(self.batch_size, len(part)))

    def paired_loaders(self, source: DataLoader, target: DataLoader | None, **others: DataLoader | None) -> Any:
        """Source and target batches (and any ``others`` given, e.g. ``labeled_target``) drawn together, as
        ``{"source": ..., "target": ..., ...}``: an epoch is one pass over the larger domain (the smaller cycling),
        or ``iterations_per_epoch`` steps with all cycling. ``target=None`` (``dg``): no ``target`` key."""
        loaders = ({"source": source} | ({} if target is None else {"target": target})
                   | {name: loader for name, loader in others.items() if loader})
        if self.iterations_per_epoch is None:
            return CombinedLoader(loaders, mode="max_size_cycle")
        return CombinedLoader({name: self.epoch_of(loader) for name, loader in loaders.items()}, mode="min_size")

    def epoch_of(self, loader: DataLoader) -> Any:
        """What one epoch iterates: the loader once, or ``iterations_per_epoch`` batches of it, cycling."""
        return loader if self.iterations_per_epoch is None else Cycle(loader, self.iterations_per_epoch)

    # ------------------------------------------------------------------------------------ training aid

    def record(
        self, loss: torch.Tensor, logits: torch.Tensor | None = None, y: torch.Tensor | None = None, **terms: torch.Tensor
    ) -> None:
        """Add a batch to the epoch's means: ``train_loss``, each named loss term, and the training accuracy
        (``<side>_train_acc``, from the labeled batch's logits and labels; see :attr:`trains_on`)."""
        self.record_terms(train_loss=loss, **terms)
        if logits is not None and y is not None:
            # new_full fills on the device; new_tensor(len(y)) would copy from the host and wait for the GPU.
            correct = torch.stack([(logits.detach().argmax(dim=1) == y).sum().double(),
                                   logits.new_full((), float(len(y)), dtype=torch.float64)])
            key = f"{self.trains_on}_train_acc"
            self._epoch_sums[key] = self._epoch_sums[key] + correct if key in self._epoch_sums else correct
        trainer = self._trainer  # None: a step called outside a Trainer, where self.log does nothing
        shown = trainer is not None and trainer.progress_bar_callback is not None
        if shown and self.global_step % max(1, trainer.log_every_n_steps) == 0:
            # The progress bar's loss, every log_every_n_steps steps: Lightning's self.log costs about a millisecond.
            self.log("train_loss", loss.detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def record_terms(self, **terms: torch.Tensor) -> None:
        """Add scalar loss terms to the epoch's means (logged under their names at the epoch's end)."""
        for name, value in terms.items():
            value = value.detach().double().reshape(())
            total = torch.stack([value, torch.ones_like(value)])  # summed on the device: no sync per step
            self._epoch_sums[name] = self._epoch_sums[name] + total if name in self._epoch_sums else total

    def progress(self) -> float:
        """Training progress ``p ∈ [0, 1]``: training batches taken over the batches of the whole run."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(1.0, self.global_step // self.optimizer_steps_per_batch / total)

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Stop on a NaN or infinite loss. On the CPU each step's loss is checked at once; on a GPU the check
        reads the previous step's flag (copied to the host without blocking), so the host never waits for the
        step it has just queued: a divergence stops training one step later, with the step it happened at. Under
        DDP every process checks every step and they agree, so all stop at the same step: none is left waiting
        in a collective."""
        if self.trainer.world_size > 1:
            local = bool(torch.isfinite(loss.detach()).all())
            if not agree(self.trainer, local, every=True):
                self._diverged(float(loss.detach()) if not local else "not finite in another DDP process", self.global_step)
            return
        finite = torch.isfinite(loss.detach()).all()
        if loss.device.type != "cuda":
            if not finite:
                self._diverged(float(loss.detach()), self.global_step)
            return
        self._check_pending_finite()
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(finite, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self._pending_finite = (host, done, loss.detach(), self.global_step)

    def _check_pending_finite(self) -> None:
        pending, self._pending_finite = self._pending_finite, None
        if pending is not None:
            host, done, loss, step = pending
            done.synchronize()
            if not bool(host):
                self._diverged(float(loss), step)

    def _diverged(self, loss: float | str, step: int) -> None:
        """Raise :class:`TrainingDiverged`: it advises the method's configured default ``lr`` when the run's is higher
        (a diverging ``lr=1e6`` gets ``0.001``, not ``1e5``), else ten times lower than the run's."""
        configured = configured_lr(type(self))
        if configured is not None and configured[1] < self.lr:
            advice = f"method.lr={configured[1]:g} ({configured[0]}'s default)"
        else:
            advice = f"method.lr={self.lr / 10:g} (ten times lower)"
        raise TrainingDiverged(
            f"{type(self).__name__}: the training loss became {loss} at epoch {self.current_epoch + 1}, optimizer "
            f"step {step}, with method.lr={self.lr:g}: training diverged. Try {advice}, or check the inputs for "
            "NaN/inf values."
        )

    def on_train_epoch_start(self) -> None:
        self._epoch_sums = {}

    def _log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """The epoch's metrics into the run (its reporter: one write with the target accuracy), else into
        Lightning's loggers (a ``Trainer`` built outside :meth:`fit`)."""
        if not metrics:
            return
        if self._context is not None:
            self._context.reporter.log_metrics(metrics, step=epoch)
        else:
            for logger in self.loggers:
                logger.log_metrics(metrics, step=epoch)

    def on_train_epoch_end(self) -> None:
        self._check_pending_finite()
        epoch = self.current_epoch + 1
        trainer = self.trainer
        metrics = {}
        for name, sums in sum_over_processes(self._epoch_sums, trainer).items():
            total, count = sums.tolist()
            if count:
                metrics[name] = total / count
        every = self.report_every
        if trainer.is_global_zero and self._context is not None and self._data is not None and (
            epoch == self.epochs or (every > 0 and epoch % every == 0)
        ):
            metrics.update(self._score_epoch(epoch))
        if trainer.world_size > 1:  # early stopping is rank 0's decision: every process must stop with it
            trainer.should_stop = agree(trainer, trainer.should_stop, every=False)
        if trainer.is_global_zero:
            self._log_epoch(metrics, epoch)
        if self._checkpoint is not None:  # after scoring: the checkpoint holds this epoch's selection state
            partial = self._checkpoint.with_suffix(".partial")
            # Optimizer and loop state too (resume needs them). Every process calls it (a barrier); rank 0 writes.
            trainer.save_checkpoint(partial, weights_only=False)
            if trainer.is_global_zero:
                partial.replace(self._checkpoint)  # atomic: an interruption never leaves a torn checkpoint

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tlrun_selection"] = {"best": self._best, "scored_since_best": self._scored_since_best}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tlrun_selection") or {}
        self._best, self._scored_since_best = state.get("best"), state.get("scored_since_best", 0)

    # ----------------------------------------------------------------------------------- model selection

    def _score_epoch(self, epoch: int) -> dict[str, float]:
        """Report target predictions, keep the weights if they score best; the ``select.*`` metrics: every score at
        the last epoch, before it the score ``trainer.select`` needs and the cheap ``entropy``."""
        data, context = self._data, self._context
        scores, oracle = {}, None
        every_score = epoch == self.epochs

        def wanted(name: str) -> bool:
            return every_score or name == context.select

        has_target = len(data.target) > 0  # zeroshot trains without target samples
        if has_target:
            target_probs, target_features = self._outputs(data.target.X)
            predictions = target_probs.argmax(axis=1)
            self._scored_target_labels = (epoch, predictions)
            if data.unknown_label is not None:  # open-set: scored as the final evaluation scores, unknown included
                predictions = open_set_labels(target_probs, data.unknown_label, self.predicts_unknown)
            context.reporter.target_predictions(predictions, step=epoch)
            if context.select == "oracle":  # reads target labels: a tagged oracle run only
                oracle = context.reporter.oracle_accuracy(predictions)
            scores["entropy"] = selection.neg_entropy(target_probs)
            if wanted("snd"):
                scores["snd"] = selection.soft_neighborhood_density(target_probs, seed=context.seed)
        elif context.select == "oracle":  # dg: the reporter scores a share of the test domain it alone holds
            oracle = context.reporter.held_out_oracle_accuracy(self.predict)
        if wanted("target_val") and data.target_val is not None and len(data.target_val):
            scores["target_val"] = float(np.mean(self._outputs(data.target_val.X)[0].argmax(axis=1) == data.target_val.y))
        # lodo (dg): the held-out source split is a whole source domain, left out of training
        source_key = "lodo" if context.select == "lodo" else "source_val"
        source_scores = wanted(source_key) or (has_target and wanted("dev"))
        if source_scores and data.source_val is not None and len(data.source_val) and isinstance(data.source, Labeled):
            val_probs, val_features = self._outputs(data.source_val.X)
            scores[source_key] = selection.source_val_accuracy(val_probs, data.source_val.y)
            if has_target and wanted("dev"):
                val_losses = -np.log(np.clip(val_probs[np.arange(len(val_probs)), data.source_val.y], 1e-12, None))
                source = self.labeled(data, "source")
                _, source_features = self._outputs(take(source.X, _subsample(len(source), SCORE_SAMPLES, context.seed)))
                target_features = target_features[_subsample(len(target_features), SCORE_SAMPLES, context.seed)]
                scores["dev"] = selection.deep_embedded_validation(
                    source_features, target_features, val_features, val_losses, seed=context.seed
                )
        logged = {f"select.{name}": value for name, value in scores.items()}
        if oracle is not None:
            scores["oracle"] = float(oracle)
        if context.select == "last":
            return logged
        if context.select not in scores:
            raise ValueError(
                f"trainer.select={context.select} needs "
                + ("a held-out source split: set dataset.source_val_fraction > 0" if context.select in ("source_val", "dev")
                   else "a source domain held out whole (scenario=dg with several sources)" if context.select == "lodo"
                   else "a held-out labeled target split: set scenario.target_val_fraction > 0" if context.select == "target_val"
                   else "target labels at training time, which this scenario does not give")
            )
        score = scores[context.select]
        if self._best is None or score > self._best[0]:
            state = {key: value.detach().to("cpu", copy=True) for key, value in self.state_dict().items()}
            self._best, self._scored_since_best = (score, epoch, state), 0
        else:
            self._scored_since_best += 1
            if self.patience is not None and self._scored_since_best >= self.patience:
                self.trainer.should_stop = True
                logged["stopped_epoch"] = float(epoch)
        return logged

    def _restore_selected(self) -> int:
        """Load the weights ``context.select`` chose; the epoch whose weights the network now holds."""
        context = self._context
        if context is None or context.select == "last" or self._best is None:
            return self.current_epoch
        score, epoch, state = self._best
        self.load_state_dict(state)
        context.reporter.log_metrics({"selected_epoch": float(epoch), f"selected.{context.select}": score}, step=self.epochs)
        return epoch

    # -------------------------------------------------------------------------------------- diagnostics

    def _diagnostic_samples(self, data: TrainingData, seed: int) -> tuple[Any, Any]:
        source = self.labeled(data, "source")
        return (take(source.X, _subsample(len(source), DIAGNOSTIC_SAMPLES, seed)),
                take(data.target.X, _subsample(len(data.target), DIAGNOSTIC_SAMPLES, seed)))

    def _log_diagnostics(self, before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray]) -> None:
        context = self._context
        seed = context.seed
        context.reporter.log_metrics(
            {"pad_before": proxy_a_distance(*before, seed=seed), "pad_after": proxy_a_distance(*after, seed=seed)},
            step=self.epochs,
        )
        context.reporter.log_figure(embedding_figure(after, before, seed=seed, max_points=EMBEDDING_POINTS,
                                                     embedding=context.diagnostics), "diagnostics/embedding.png")

    # ----------------------------------------------------------------------------------------- optimizer

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups, each ``{"name", "params", "lr"}``: the head (bottleneck,
        classifier, any added network) at ``lr`` and the backbone at ``lr · backbone_lr_mult``."""
        backbone_params = [p for p in self.backbone.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in backbone_params}
        other_params = [p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids]
        groups = [{"name": "head", "params": other_params, "lr": self.lr}]
        if backbone_params:
            groups.append({"name": "backbone", "params": backbone_params, "lr": self.lr * self.backbone_lr_mult})
        return groups

    def lr_factor(self, step: int, total: int, group: dict[str, Any]) -> float:
        """The multiplier of ``group``'s learning rate at optimizer step ``step`` of ``total``: the
        ``lr_schedule`` (1, cosine to 0, or ``(1 + 10 p)^-0.75`` with ``p = step / total``)."""
        p = min(step, total) / total
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if self.lr_schedule == "inv":
            return (1.0 + 10.0 * p) ** -0.75
        return 1.0

    def configure_optimizers(self) -> Any:
        groups = self.param_groups()
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov and self.momentum > 0,
                weight_decay=self.weight_decay,
            )
        else:
            optimizer = torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        factors = [lambda step, group=group: self.lr_factor(step, total, group) for group in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --------------------------------------------------------------------------------- Method interface

    def fit(self, data: TrainingData, context: RunContext) -> None:
        reserved = [key for key in RESERVED_TRAINER_KEYS if key in context.trainer]
        if reserved:
            raise ValueError(
                f"trainer settings {', '.join(reserved)} are set by the method (method.epochs, the run's logger, "
                "no checkpoints, its own sharding of the training data under DDP); remove them from the trainer config"
            )
        if self.patience is not None and context.select == "last":
            raise ValueError(
                f"{type(self).__name__}: patience (early stopping) watches the trainer.select score; set trainer.select "
                "to a score (e.g. target_val in finetune, source_val in da)"
            )
        self._data, self._context, self._best, self._scored_since_best = data, context, None, 0
        self._scored_target_labels, self.fitted_target_labels = None, None
        self._checkpoint = context.checkpoint
        if self._checkpoint is not None:
            self._checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self._image_shape = tuple(data.image_shape) if data.image_shape else None
        self._augment = data.augment
        self._predict_device = torch.device(context.device)
        self.num_classes = int(data.num_classes)
        torch.manual_seed(int(context.seed))
        self.bottleneck, self.classifier = self.build_head(self.num_classes)
        self.build_extra(data)
        diagnostics = context.diagnostics and len(data.target) > 0  # source vs. target: needs target samples
        if diagnostics:
            diagnostic_samples = self._diagnostic_samples(data, context.seed)
            self.to(self._predict_device)
            before = tuple(self._outputs(X, layer=self.backbone)[1] for X in diagnostic_samples)
        logger = context.lightning_logger() if context.lightning_logger is not None else None
        trainer = pl.Trainer(
            max_epochs=self.epochs, logger=logger or False, enable_checkpointing=False,
            callbacks=self.callbacks() + list(context.callbacks),
            # Every training loader draws its own process's share (make_loader): Lightning adds no sampler of its own,
            # which it could not do to the per-source batches anyway.
            use_distributed_sampler=False,
            **dict(context.trainer) | ({"strategy": "ddp_find_unused_parameters_true"}
                                       if self.leaves_parameters_unused and context.trainer.get("strategy") == "ddp"
                                       else {}),
        )
        try:
            with warnings.catch_warnings():
                # Arrays load in the main process on purpose; small datasets log less often than log_every_n_steps.
                warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
                # Emitted inside Lightning 2.6 under torch 2.14 (its own pytree helper); nothing to act on here.
                warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
                # Frozen copies (teachers, a progressive net's source column) stay in eval mode on purpose.
                warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
                try:
                    trainer.fit(self, ckpt_path=str(context.resume_from) if context.resume_from else None)  # data: train_dataloader
                except SystemExit as error:
                    # Lightning answers Ctrl-C by shutting down gracefully and calling sys.exit(1): an interruption,
                    # which the runner ends KILLED with exit code 130, not a failure with exit code 1.
                    if trainer.interrupted:
                        raise KeyboardInterrupt("interrupted during training") from error
                    raise
            self.to(self._predict_device)
            weights_epoch = self._restore_selected()
            scored = self._scored_target_labels  # the training target classified by these very weights: kept
            self.fitted_target_labels = scored[1] if scored is not None and scored[0] == weights_epoch else None
            if diagnostics:
                self._log_diagnostics(before, tuple(self._outputs(X)[1] for X in diagnostic_samples))
        finally:
            self._data, self._best, self._checkpoint, self._shard, self._pending_finite = None, None, None, None, None
            self._scored_target_labels = None

    @torch.no_grad()
    def _outputs(self, X: np.ndarray | tuple[str, ...], layer: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and features of ``X`` (in eval mode, in batches). ``layer`` replaces
        :meth:`features` as the feature map (the probabilities are then not computed: an empty array)."""
        loader = self.make_loader(X, shuffle=False, batch_size=self.eval_batch_size)
        was_training = self.training
        self.eval()
        probabilities, features = [], []
        try:
            for batch in loader:
                batch = batch.to(self.device)
                feature = layer(batch) if layer is not None else self.features(batch)
                features.append(feature.float().cpu())
                if layer is None:
                    probabilities.append(F.softmax(self.classifier(feature).float(), dim=1).cpu())
        finally:
            self.train(was_training)
        num_classes = self.num_classes or 0
        return (
            torch.cat(probabilities).numpy() if probabilities else np.zeros((0, num_classes), dtype=np.float32),
            torch.cat(features).numpy() if features else np.zeros((0, self.feature_dim), dtype=np.float32),
        )

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The weights a run logs as its model (``state_dict`` less :attr:`unsaved_modules`)."""
        prefixes = tuple(f"{name}." for name in self.unsaved_modules)
        return {key: value for key, value in self.state_dict().items() if not prefixes or not key.startswith(prefixes)}

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        return self.predict_scores(X).argmax(axis=1).astype(np.int64)

    def predict_scores(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        """The class probabilities ``softmax(h(f(x)))``."""
        if self.classifier is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        probabilities, _ = self._outputs(X)
        return probabilities

    def __getstate__(self) -> dict[str, Any]:
        """What pickling keeps (the logged model, :mod:`tlrun.predictor`): the network and its settings, not the
        run it trained in (its context holds the MLflow run and Lightning's logger)."""
        return super().__getstate__() | {"_context": None}
