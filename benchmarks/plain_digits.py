"""Plain scripts doing the work of `tlrun method=dann` and `tlrun method=jda` on the embedded digits: the yardsticks
of tlrun's overhead (``benchmarks/startup.py``, ``benchmarks/dann_throughput.py``).

Run from the repository root with the project's venv active:

    python benchmarks/plain_digits.py dann [THREADS] [--mlflow] [--lightning]  # as `tlrun method=dann threads=THREADS`
    python benchmarks/plain_digits.py jda [--mlflow]              # as `tlrun method=jda` (default threads)

Both load the default task as tlrun does (original → thick, seed 0, a fifth of the source held out) and print the
target accuracy and their times; no Lightning, no scoring during training, no diagnostics, no checkpoints. Without
``--mlflow`` nothing is recorded; with it the script records what a script that tracks its runs would, in the store
of ``$MLFLOW_TRACKING_URI``: one MLflow run with the settings as params, ``target_acc``, and the fitted model as an
MLflow pyfunc model (the pickled JDA, or the network's weights; explicit pip requirements, as tlrun gives). With
``--lightning`` the script first imports ``pytorch_lightning`` and uses nothing of it: the floor of any trainer built
on Lightning, whose import (with torchmetrics, torchvision and ``torch._dynamo`` that it pulls in) no tlrun setting
avoids.

- ``dann``: the networks `tlrun method=dann` builds, under the same seeds (tlrun's LeNet, the 256-unit bottleneck,
  the classifier and DANN's 1,024-unit discriminator), 30 epochs of one pass over the target (28 steps of 32 source +
  32 target samples, the source cycling, deterministic algorithms), SGD (lr 0.001, momentum 0.9, weight decay 1e-3)
  with the ``inv`` schedule and DANN's warm-up of the gradient reversal, then the target classified once. The first
  epoch draws the very batches of tlrun's; from the second on Lightning's loaders draw another order, so the target
  accuracy differs a little (0.839 here against the command's 0.817).
- ``jda``: tlrun's ``JDA`` class with its config's defaults, fitted in-process, its target labels scored.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from omegaconf import OmegaConf

from tlrun.backbones.small import LeNet
from tlrun.data.digits import Digits
from tlrun.losses import DomainDiscriminator, GradientReversal, dann_schedule, domain_adversarial_loss
from tlrun.methods.base import NullReporter, RunContext
from tlrun.scenarios import TrainingData, split

CONFIGS = Path(__file__).resolve().parents[1] / "conf"

SEED = 0
EPOCHS = 30
BATCH = 32
LR, MOMENTUM, WEIGHT_DECAY = 1e-3, 0.9, 1e-3  # DANN's config defaults (backbone_lr_mult 1: random weights)
BOTTLENECK, DISCRIMINATOR_HIDDEN, WARMUP_GAMMA = 256, 1024, 10.0


@dataclass
class Networks:
    backbone: nn.Module
    bottleneck: nn.Module
    classifier: nn.Module
    discriminator: nn.Module

    def modules(self) -> nn.ModuleList:
        return nn.ModuleList([self.backbone, self.bottleneck, self.classifier, self.discriminator])

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.bottleneck(self.backbone(x))
        return features, self.classifier(features)


def digits_split() -> tuple[TrainingData, np.ndarray]:
    """The default task split for ``da`` as tlrun splits it: the training data and the target's labels."""
    source, target = Digits(source="original", target="thick").load_pair()
    training, evaluation = split(source, target, "da", seed=SEED, source_val_fraction=0.2)
    return training, evaluation.target_test.y


def digits_task() -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """``(source X, source y)``, the target X and its labels of :func:`digits_split`."""
    training, target_labels = digits_split()
    return (training.source.X, training.source.y), training.target.X, target_labels


def lenet_networks(num_classes: int, image_shape: tuple[int, ...] = (1, 8, 8)) -> Networks:
    """The networks `tlrun method=dann` builds, under the same seeds: the backbone after seeding the run, the head
    and the discriminator after seeding again (``DeepMethod.fit``)."""
    torch.manual_seed(SEED)
    backbone = LeNet(input_shape=image_shape, channels=(32, 64), features=500, dropout=0.0)
    torch.manual_seed(SEED)
    bottleneck = nn.Sequential(nn.Linear(backbone.out_features, BOTTLENECK), nn.BatchNorm1d(BOTTLENECK), nn.ReLU())
    classifier = nn.Linear(BOTTLENECK, num_classes)
    return Networks(backbone, bottleneck, classifier, DomainDiscriminator(BOTTLENECK, DISCRIMINATOR_HIDDEN))


def epoch_batches(source: DataLoader, target: DataLoader):
    """One epoch: a pass over the target loader, the source loader starting over when it runs out (as Lightning's
    ``max_size_cycle``, which starts both over at every epoch)."""
    source_batches = iter(source)
    for target_batch in target:
        try:
            source_batch = next(source_batches)
        except StopIteration:
            source_batches = iter(source)
            source_batch = next(source_batches)
        yield source_batch, target_batch


def train(networks: Networks, source: tuple[np.ndarray, np.ndarray], target: np.ndarray, epochs: int = EPOCHS,
          lr: float = LR, on_step: Callable[[], None] = lambda: None) -> None:
    """DANN's training: CE on the source plus the domain loss through the reversal, SGD with the ``inv`` schedule."""
    source_loader = DataLoader(
        TensorDataset(torch.as_tensor(source[0], dtype=torch.float32), torch.as_tensor(source[1], dtype=torch.int64)),
        batch_size=BATCH, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(SEED))
    target_loader = DataLoader(TensorDataset(torch.as_tensor(target, dtype=torch.float32)), batch_size=BATCH,
                               shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(SEED + 1))
    total = epochs * len(target_loader)
    head = [p for module in (networks.bottleneck, networks.classifier, networks.discriminator) for p in module.parameters()]
    optimizer = torch.optim.SGD([{"params": head}, {"params": list(networks.backbone.parameters())}], lr=lr,
                                momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1.0 + 10.0 * min(step, total) / total) ** -0.75)
    reversal = GradientReversal()
    networks.modules().train()
    step = 0
    for _ in range(epochs):
        for (xs, ys), (xt,) in epoch_batches(source_loader, target_loader):
            reversal.coefficient = dann_schedule(min(1.0, step / total), WARMUP_GAMMA)
            features, logits = networks.logits(torch.cat([xs, xt]))
            n = len(xs)
            loss = F.cross_entropy(logits[:n], ys) + domain_adversarial_loss(
                networks.discriminator, features[:n], features[n:], grl=reversal)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            on_step()


@torch.no_grad()
def accuracy(networks: Networks, X: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    networks.modules().eval()
    inputs = torch.as_tensor(X, dtype=torch.float32)
    predictions = torch.cat([networks.logits(inputs[i:i + batch_size])[1].argmax(dim=1)
                             for i in range(0, len(inputs), batch_size)])
    return float((predictions.numpy() == y).mean())


class PickledModel:
    """An MLflow pyfunc model: the pickled fitted object of the ``model`` artifact; ``predict`` returns its labels."""

    def __new__(cls):
        import mlflow

        class Model(mlflow.pyfunc.PythonModel):
            def load_context(self, context):
                import pickle

                with open(context.artifacts["model"], "rb") as handle:
                    self.fitted = pickle.load(handle)

            def predict(self, context, model_input, params=None):
                return self.fitted(np.asarray(model_input, dtype=np.float32))

        return Model()


def record(params: dict, target_acc: float, predict: Callable[[np.ndarray], np.ndarray]) -> None:
    """One MLflow run: ``params``, ``target_acc``, and ``predict`` (pickled) as the pyfunc model ``model``."""
    import pickle
    import tempfile

    import mlflow

    with mlflow.start_run(), tempfile.TemporaryDirectory() as scratch:
        mlflow.log_params(params)
        mlflow.log_metric("target_acc", target_acc)
        path = Path(scratch) / "model.pkl"
        path.write_bytes(pickle.dumps(predict))
        mlflow.pyfunc.log_model(name="model", python_model=PickledModel(), artifacts={"model": str(path)},
                                pip_requirements=["torch", "numpy", "scikit-learn"])


class NetworkLabels:
    """The labels a DANN network gives rows (picklable: the modules themselves)."""

    def __init__(self, networks: Networks) -> None:
        self.networks = networks

    def __call__(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.networks.logits(torch.as_tensor(X))[1].argmax(dim=1).numpy()


def run_dann(threads: int, tracked: bool) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)  # as tlrun's trainer (deterministic: true)
    started = time.perf_counter()
    source, target, target_labels = digits_task()
    networks = lenet_networks(int(source[1].max()) + 1)
    trained = time.perf_counter()
    train(networks, source, target)
    done = time.perf_counter()
    target_acc = accuracy(networks, target, target_labels)
    if tracked:
        record({"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "threads": threads}, target_acc, NetworkLabels(networks))
    print(f"target_acc {target_acc:.4f}  (set-up {trained - started:.2f} s, training "
          f"{done - trained:.2f} s, evaluation{' and tracking' * tracked} {time.perf_counter() - done:.2f} s)")


def run_jda(tracked: bool) -> None:
    from tlrun.methods.jda import JDA

    settings = OmegaConf.merge(*(OmegaConf.load(CONFIGS / name).method
                                 for name in ("method/jda.yaml", "method_base/closed_form.yaml")))
    started = time.perf_counter()
    training, target_labels = digits_split()
    options = {key: value for key, value in OmegaConf.to_container(settings).items() if key != "_target_"}
    method = JDA(**options)
    fitted = time.perf_counter()
    method.fit(training, RunContext(reporter=NullReporter(), device="cpu", seed=SEED))
    labels = method.fitted_target_labels
    labels = method.predict(training.target.X) if labels is None else labels
    target_acc = float(np.mean(labels == target_labels))
    if tracked:
        record(options, target_acc, method.predict)
    print(f"target_acc {target_acc:.4f}  (set-up {fitted - started:.2f} s, "
          f"fit and labels{' and tracking' * tracked} {time.perf_counter() - fitted:.2f} s)")


def main() -> None:
    flags = {"--mlflow", "--lightning"}
    arguments = [argument for argument in sys.argv[1:] if argument not in flags]
    tracked = "--mlflow" in sys.argv
    if "--lightning" in sys.argv:  # the import any Lightning-based trainer pays, with nothing of Lightning used
        import pytorch_lightning  # noqa: F401
    which = arguments[0] if arguments else ""
    if which == "dann":
        run_dann(int(arguments[1]) if len(arguments) > 1 else 1, tracked)
    elif which == "jda":
        run_jda(tracked)
    else:
        raise SystemExit("usage: python benchmarks/plain_digits.py dann [THREADS] [--mlflow] [--lightning] | "
                         "jda [--mlflow]")


if __name__ == "__main__":
    main()
