"""The base of deep methods: a backbone and a classifier head trained by a Lightning ``Trainer``.

:class:`DeepMethod` is both a ``pytorch_lightning.LightningModule`` and a :class:`~tlrun.methods.base.Method`.
The runner builds it with the backbone network (``instantiate(cfg.method, backbone=<module>)``) and calls
``fit(data, context)``, which

1. seeds torch with ``context.seed`` and builds the classifier head (:meth:`DeepMethod.build_head`) for
   ``data.num_classes``;
2. builds the training DataLoaders (:meth:`DeepMethod.train_dataloaders`; shuffled with a generator seeded
   from ``context.seed``, ``num_workers=0`` by default);
3. trains with ``pl.Trainer(max_epochs=epochs, logger=context.lightning_logger() or False,
   enable_checkpointing=False, **context.trainer)``.

Subclasses implement ``training_step`` (returning the loss) and, for methods that also train on the target,
override :meth:`~DeepMethod.train_dataloaders`. The base provides, for every subclass:

- the optimizer (``sgd`` with momentum or ``adam``; the backbone's learning rate scaled by
  ``backbone_lr_mult``) and the learning-rate schedule (``none``, ``cosine``, or ``inv``:
  ``lr · (1 + 10 p)^-0.75`` over the training progress ``p``, as in DANN);
- a check that stops training with :class:`FloatingPointError` when a loss is NaN or infinite;
- per-epoch metrics ``train_loss`` and ``source_train_acc`` (from :meth:`~DeepMethod.record`), logged at
  ``step = epoch`` (1-based, epochs completed) to the Lightning logger, or to ``context.reporter`` when
  there is none;
- at the end of every ``report_every``-th epoch, predictions for the training target sent to
  ``context.reporter.target_predictions(pred, step=epoch)`` (the runner scores them; the method never sees
  target labels);
- :meth:`~DeepMethod.predict` in batches, in eval mode, without gradients.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from tlrun.backbones import inputs as _inputs
from tlrun.methods.base import Method, RunContext
from tlrun.scenarios import Labeled, TrainingData

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("none", "cosine", "inv")
#: ``Trainer`` arguments the method sets itself; ``context.trainer`` must not hold them.
RESERVED_TRAINER_KEYS = ("max_epochs", "logger", "enable_checkpointing")


class DeepMethod(pl.LightningModule, Method):
    """Backbone → linear classifier, trained with Lightning. Subclasses define ``training_step``.

    Args:
        backbone: the feature network (``out_features`` is read to size the head).
        epochs: training epochs (``Trainer.max_epochs``).
        batch_size: samples per training batch (of each domain, for methods that draw from both).
        optimizer: ``sgd`` (with ``momentum``, optionally Nesterov) or ``adam``.
        lr: learning rate of the head (and of the backbone, times ``backbone_lr_mult``).
        momentum: SGD momentum (ignored by Adam).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty on all parameters.
        backbone_lr_mult: the backbone's learning rate relative to ``lr`` (0.1 is usual for pretrained
            backbones; 0 freezes it in effect, though its batch-norm statistics still update).
        lr_schedule: ``none``, ``cosine`` (to 0 over training) or ``inv`` (DANN's annealing).
        eval_batch_size: samples per batch in :meth:`predict`.
        num_workers: DataLoader worker processes (0 loads in the main process: deterministic, no fork).
        report_every: predict the training target every this many epochs (0: never during training).
    """

    def __init__(
        self,
        backbone: nn.Module,
        epochs: int = 30,
        batch_size: int = 32,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 5e-4,
        backbone_lr_mult: float = 1.0,
        lr_schedule: str = "none",
        eval_batch_size: int = 256,
        num_workers: int = 0,
        report_every: int = 1,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"{type(self).__name__}: optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"{type(self).__name__}: lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}"
            )
        if int(epochs) < 1 or int(batch_size) < 1 or not lr > 0:
            raise ValueError(f"{type(self).__name__}: epochs, batch_size and lr must be positive")
        if not hasattr(backbone, "out_features"):
            raise TypeError(f"{type(self).__name__}: the backbone must expose out_features")
        self.backbone = backbone
        self.head: nn.Module | None = None
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.lr_schedule = lr_schedule
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = int(num_workers)
        self.report_every = int(report_every)
        self.num_classes: int | None = None
        self._image_shape: tuple[int, ...] | None = None
        self._data: TrainingData | None = None
        self._context: RunContext | None = None
        self._predict_device = torch.device("cpu")
        self._epoch_stats: torch.Tensor | None = None  # loss sum, loss count, correct, labeled count

    # ---------------------------------------------------------------------------------------- network

    def build_head(self, num_classes: int) -> nn.Module:
        """The classifier on top of the backbone's features (a linear layer); override for a bottleneck."""
        return nn.Linear(int(self.backbone.out_features), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch."""
        return self.head(self.backbone(x))

    # ------------------------------------------------------------------------------------------- data

    def make_loader(
        self,
        X: np.ndarray | tuple[str, ...],
        y: np.ndarray | None = None,
        *,
        shuffle: bool,
        batch_size: int | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        """A DataLoader over samples (and labels) for this method's backbone; shuffled with a seeded generator."""
        dataset = _inputs.make_dataset(X, y, backbone=self.backbone, image_shape=self._image_shape)
        generator = None
        if shuffle:
            seed = self._context.seed if self._context is not None else 0
            generator = torch.Generator().manual_seed(int(seed))
        size = batch_size or self.batch_size
        return DataLoader(
            dataset,
            batch_size=size,
            shuffle=shuffle,
            generator=generator,
            # A last batch of one sample breaks batch normalization in training mode.
            drop_last=drop_last and len(dataset) > size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def labeled_source(self, data: TrainingData) -> Labeled:
        """``data.source``, which must be labeled."""
        if not isinstance(data.source, Labeled):
            raise TypeError(f"{type(self).__name__} trains on a labeled source; this scenario's source is unlabeled")
        return data.source

    def train_dataloaders(self, data: TrainingData) -> Any:
        """What ``Trainer.fit`` iterates over: by default the labeled source, shuffled, in ``(x, y)`` batches.

        Methods that also draw target batches return e.g. a
        ``pytorch_lightning.utilities.combined_loader.CombinedLoader`` of both.
        """
        source = self.labeled_source(data)
        return self.make_loader(source.X, source.y, shuffle=True, drop_last=True)

    # ------------------------------------------------------------------------------------ training aid

    def record(self, loss: torch.Tensor, logits: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """Add a batch to the epoch's ``train_loss`` and ``source_train_acc`` (logits and labels of the source)."""
        count = len(y) if y is not None else 1
        batch = torch.zeros(4, dtype=torch.float64, device=loss.device)  # summed on the device: no sync per step
        batch[0] = loss.detach().double() * count
        batch[1] = count
        if logits is not None and y is not None:
            batch[2] = (logits.detach().argmax(dim=1) == y).sum()
            batch[3] = len(y)
        self._epoch_stats = batch if self._epoch_stats is None else self._epoch_stats + batch.to(self._epoch_stats.device)
        self.log("train_loss", loss.detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_before_backward(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError(
                f"{type(self).__name__}: the training loss is {float(loss.detach())} at epoch {self.current_epoch + 1}, "
                f"optimizer step {self.global_step}: training diverged. Lower the learning rate (now lr={self.lr}; "
                f"try method.lr={self.lr / 10:g}), or check the inputs for NaN/inf values."
            )

    def on_train_epoch_start(self) -> None:
        self._epoch_stats = None

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch + 1
        stats = self._epoch_stats.tolist() if self._epoch_stats is not None else [0.0] * 4
        loss_sum, loss_count, correct, labeled = stats
        metrics: dict[str, float] = {}
        if loss_count:
            metrics["train_loss"] = loss_sum / loss_count
        if labeled:
            metrics["source_train_acc"] = correct / labeled
        if metrics:
            if self.loggers:
                for logger in self.loggers:
                    logger.log_metrics(metrics, step=epoch)
            elif self._context is not None:
                self._context.reporter.log_metrics(metrics, step=epoch)
        if self._context is not None and self._data is not None and self.report_every > 0:
            if epoch % self.report_every == 0 or epoch == self.epochs:
                predictions = self._predict(self._data.target.X, self.device)
                self._context.reporter.target_predictions(predictions, step=epoch)

    def configure_optimizers(self) -> Any:
        backbone_params = [p for p in self.backbone.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in backbone_params}
        other_params = [p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids]
        groups = [{"params": other_params, "lr": self.lr}]
        if backbone_params:
            groups.append({"params": backbone_params, "lr": self.lr * self.backbone_lr_mult})
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov and self.momentum > 0,
                weight_decay=self.weight_decay,
            )
        else:
            optimizer = torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if self.lr_schedule == "cosine":
            factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
        else:
            factor = lambda step: (1.0 + 10.0 * min(step, total) / total) ** -0.75  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --------------------------------------------------------------------------------- Method interface

    def fit(self, data: TrainingData, context: RunContext) -> None:
        reserved = [key for key in RESERVED_TRAINER_KEYS if key in context.trainer]
        if reserved:
            raise ValueError(
                f"trainer settings {', '.join(reserved)} are set by the method (method.epochs, the run's logger, "
                "no checkpoints); remove them from the trainer config"
            )
        self._data, self._context = data, context
        self._image_shape = tuple(data.image_shape) if data.image_shape else None
        self._predict_device = torch.device(context.device)
        self.num_classes = int(data.num_classes)
        torch.manual_seed(int(context.seed))
        self.head = self.build_head(self.num_classes)
        loaders = self.train_dataloaders(data)
        logger = context.lightning_logger() if context.lightning_logger is not None else None
        trainer = pl.Trainer(
            max_epochs=self.epochs, logger=logger or False, enable_checkpointing=False, **context.trainer
        )
        try:
            with warnings.catch_warnings():
                # num_workers=0 is deliberate (determinism); small datasets log less often than log_every_n_steps.
                warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
                # Emitted inside Lightning 2.6 under torch 2.14 (its own pytree helper); nothing to act on here.
                warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
                trainer.fit(self, train_dataloaders=loaders)
        finally:
            self._data = None
        self.to(self._predict_device)

    @torch.no_grad()
    def _predict(self, X: np.ndarray | tuple[str, ...], device: torch.device) -> np.ndarray:
        loader = self.make_loader(X, shuffle=False, batch_size=self.eval_batch_size)
        was_training = self.training
        self.eval()
        try:
            labels = [self(batch.to(device)).argmax(dim=1).cpu() for batch in loader]
        finally:
            self.train(was_training)
        if not labels:
            return np.zeros(0, dtype=np.int64)
        return torch.cat(labels).numpy().astype(np.int64)

    def predict(self, X: np.ndarray | tuple[str, ...]) -> np.ndarray:
        if self.head is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        return self._predict(X, self.device)
