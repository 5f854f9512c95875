"""DANN's training throughput: our Lightning module against a minimal hand-written PyTorch loop.

Run by hand from the repository root with the project's venv active:

    python benchmarks/dann_throughput.py [--model resnet18|lenet] [--steps N] [--warmup W] [--repeats R]
                                         [--device cpu|cuda] [--precision 32-true|16-mixed|bf16-mixed] [--threads T]

``--model resnet18`` (the default): both sides train the same networks (a ResNet-18 backbone on 3×96×96 inputs,
randomly initialised, the 256-unit bottleneck, the 31-way classifier and the 1024-unit domain discriminator, built by
``DANN.build_head`` / ``DANN.build_extra`` under the same seed), on the same random pixel rows, with batches of
32 source + 32 target samples, SGD (momentum 0.9, weight decay 1e-3, the same two parameter groups), the
``inv`` learning-rate schedule and DANN's warm-up of the gradient-reversal coefficient. A step takes seconds on a
CPU, which hides per-step overhead: ``--model lenet`` times `tlrun method=dann`'s own case instead, LeNet on the
embedded digits (a step of milliseconds), ours against the plain loop of ``benchmarks/plain_digits.py``, and adds
whole-fit times (ours: ``DANN.fit`` with its default per-epoch scoring, without diagnostics; plain: training and the
target classified once) and whole-command times (`tlrun method=dann threads=T` against `plain_digits.py dann T`,
wall and CPU, as ``benchmarks/startup.py`` measures them).

- ours: ``tlrun.methods.dann.DANN.fit`` (Lightning ``Trainer``, ``CombinedLoader`` of two cycling loaders,
  per-step ``record``/``self.log``, the NaN check, ``report_every=0``, no diagnostics, no logger);
- plain: a ``for`` loop over two ``DataLoader``\\ s of ``TensorDataset``\\ s: forward, loss, ``zero_grad``,
  ``backward``, ``step``, scheduler ``step``.

Each side runs ``W + N`` optimizer steps; a timestamp is taken at the end of every step (for ours, in a
Lightning callback's ``on_train_batch_end``, so the fit's set-up and its end-of-training scoring are not
timed), the first ``W`` steps are discarded, and the rate is ``N · 64 / seconds`` over the next ``N``. The two
sides alternate ``R`` times (ours first in odd repeats, plain first in even ones); the medians are compared:
overhead % = (plain / ours − 1) · 100, target under 10 % (issue 3). On CUDA the device is synchronised at the
two timestamps that bound the measured window. Writes benchmarks/results/dann_throughput.md and prints it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import plain_digits
from startup import compare, store_env, tlrun_command
from tlrun.backbones.resnet import ResNet
from tlrun.backbones.small import LeNet
from tlrun.losses import GradientReversal, dann_schedule, domain_adversarial_loss
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.dann import DANN
from tlrun.scenarios import Labeled, TrainingData, Unlabeled

RESULTS = Path(__file__).resolve().parent / "results" / "dann_throughput.md"
LENET_RESULTS = RESULTS.with_name("dann_throughput_lenet.md")
IMAGE_SHAPE = (3, 96, 96)
NUM_CLASSES = 31
BATCH = 32  # per domain: 64 samples per step
SEED = 0
TARGET_OVERHEAD = 10.0  # %
# The method's settings (DANN's config defaults, with the inv schedule); the plain loop reads the same values.
METHOD = dict(batch_size=BATCH, lr=0.01, momentum=0.9, weight_decay=1e-3, lr_schedule="inv", report_every=0,
              bottleneck_dim=256, discriminator_hidden=1024, transfer_weight=1.0, warmup_gamma=10.0)


def make_data(samples: int) -> TrainingData:
    """Random float32 pixel rows in [0, 1): a labeled source and an unlabeled target of ``samples`` rows each."""
    rng = np.random.default_rng(SEED)
    width = int(np.prod(IMAGE_SHAPE))
    X = rng.random((samples, width), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, samples)
    Xt = rng.random((samples, width), dtype=np.float32)
    classes = tuple(f"class{k}" for k in range(NUM_CLASSES))
    return TrainingData(Labeled(X, y), Unlabeled(Xt), NUM_CLASSES, classes, image_shape=IMAGE_SHAPE)


def make_method(steps: int) -> DANN:
    backbone = ResNet(input_shape=IMAGE_SHAPE, arch="resnet18", weights="none", image_size=None)
    return DANN(backbone, epochs=1, iterations_per_epoch=steps, **METHOD)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def rate(times: list[float], warmup: int, steps: int) -> float:
    """Samples per second over the ``steps`` steps after the first ``warmup`` (``times``: one per step end)."""
    if len(times) < warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} step timestamps, got {len(times)}")
    return steps * 2 * BATCH / (times[warmup + steps - 1] - times[warmup - 1])


class StepTimer(pl.Callback):
    """A ``perf_counter`` timestamp at the end of every training batch (synchronised at the window's bounds)."""

    def __init__(self, warmup: int, steps: int, device: str) -> None:
        self.bounds, self.device = (warmup - 1, warmup + steps - 1), device
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if len(self.times) in self.bounds:
            synchronize(self.device)
        self.times.append(time.perf_counter())


def run_ours(data: TrainingData, args: argparse.Namespace) -> float:
    """Samples/s of ``DANN.fit`` through Lightning."""
    method = make_method(args.warmup + args.steps)
    timer = StepTimer(args.warmup, args.steps, args.device)
    trainer = dict(
        accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, precision=args.precision,
        deterministic=False, enable_progress_bar=False, enable_model_summary=False,
    )
    method.callbacks = lambda: [timer]  # the method's own hook for its Lightning callbacks
    method.fit(data, RunContext(reporter=NullReporter(), device=args.device, seed=SEED, trainer=trainer))
    return rate(timer.times, args.warmup, args.steps)


def forever(loader: DataLoader) -> Iterator:
    """The loader's batches, starting it over (a new shuffle) whenever it runs out."""
    while True:
        yield from loader


def run_plain(data: TrainingData, args: argparse.Namespace) -> float:
    """Samples/s of a minimal hand-written training loop over the same networks and batches."""
    device = torch.device(args.device)
    total = args.warmup + args.steps
    # The same networks, built as DANN.fit builds them: the backbone first, then the head and the discriminator
    # under the run's seed. They are then used as plain modules.
    method = make_method(total)
    torch.manual_seed(SEED)
    bottleneck, classifier = method.build_head(NUM_CLASSES)
    method.bottleneck, method.classifier = bottleneck, classifier
    method.build_extra(data)
    backbone, discriminator = method.backbone, method.discriminator
    del method
    grl = GradientReversal()
    model = nn.ModuleDict(dict(backbone=backbone, bottleneck=bottleneck, classifier=classifier,
                               discriminator=discriminator)).to(device).train()

    source = TensorDataset(torch.as_tensor(data.source.X), torch.as_tensor(data.source.y, dtype=torch.int64))
    target = TensorDataset(torch.as_tensor(data.target.X))
    source_loader = DataLoader(source, batch_size=BATCH, shuffle=True, drop_last=True,
                               generator=torch.Generator().manual_seed(SEED))
    target_loader = DataLoader(target, batch_size=BATCH, shuffle=True, drop_last=True,
                               generator=torch.Generator().manual_seed(SEED + 1))

    head = [p for name in ("bottleneck", "classifier", "discriminator") for p in model[name].parameters()]
    lr = METHOD["lr"]
    optimizer = torch.optim.SGD(
        # DeepMethod.configure_optimizers' groups; backbone_lr_mult is 1 (auto, random weights).
        [{"params": head, "lr": lr}, {"params": list(backbone.parameters()), "lr": lr}],
        lr=lr, momentum=METHOD["momentum"], weight_decay=METHOD["weight_decay"],
    )
    inv = lambda step: (1.0 + 10.0 * min(step, total) / total) ** -0.75  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, inv)
    autocast_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type) if args.precision == "16-mixed" else None

    times = []
    batches = zip(forever(source_loader), forever(target_loader))
    for step in range(total):
        (xs, ys), (xt,) = next(batches)
        xs, ys, xt = xs.to(device), ys.to(device), xt.to(device)
        grl.coefficient = dann_schedule(min(1.0, step / total), METHOD["warmup_gamma"])
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            features = model["bottleneck"](model["backbone"](torch.cat([xs, xt])))
            logits = model["classifier"](features)  # both domains, as DomainAdaptation.forward_domains does
            loss = F.cross_entropy(logits[:BATCH], ys) + METHOD["transfer_weight"] * domain_adversarial_loss(
                model["discriminator"], features[:BATCH], features[BATCH:], grl=grl
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        if len(times) in (args.warmup - 1, total - 1):
            synchronize(args.device)
        times.append(time.perf_counter())
    return rate(times, args.warmup, args.steps)


def device_name(device: str, threads: int) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} torch threads"


def step_seconds(times: list[float]) -> float:
    """The median time between consecutive step ends: a steady-state step, whatever the epochs' ends cost."""
    return statistics.median(later - earlier for earlier, later in zip(times, times[1:]))


def lenet_ours(training: TrainingData) -> tuple[float, float]:
    """Seconds per step and of the whole ``DANN.fit`` (its defaults: 30 epochs, scoring every epoch), LeNet on the
    digits as `tlrun method=dann` builds it (the backbone after seeding, the head in ``fit``)."""
    torch.manual_seed(SEED)
    method = DANN(LeNet(input_shape=(1, 8, 8)))
    timer = StepTimer(1, 1, "cpu")
    method.callbacks = lambda: [timer]
    trainer = dict(accelerator="cpu", devices=1, precision="32-true", deterministic=True, enable_progress_bar=False,
                   enable_model_summary=False)
    started = time.perf_counter()
    method.fit(training, RunContext(reporter=NullReporter(), device="cpu", seed=SEED, trainer=trainer))
    return step_seconds(timer.times), time.perf_counter() - started


def lenet_plain(training: TrainingData, target_labels: np.ndarray) -> tuple[float, float]:
    """Seconds per step and of the whole plain loop (``benchmarks/plain_digits.py``: training, the target scored)."""
    torch.use_deterministic_algorithms(True)
    times: list[float] = []
    started = time.perf_counter()
    networks = plain_digits.lenet_networks(training.num_classes)
    plain_digits.train(networks, (training.source.X, training.source.y), training.target.X,
                       on_step=lambda: times.append(time.perf_counter()))
    plain_digits.accuracy(networks, training.target.X, target_labels)
    return step_seconds(times), time.perf_counter() - started


def spread(values: list[float], scale: float = 1.0) -> str:
    return f"{statistics.median(values) * scale:.2f} ({min(values) * scale:.2f}–{max(values) * scale:.2f})"


def main_lenet(args: argparse.Namespace) -> None:
    """``--model lenet``: per step, whole fit and whole command, ours and plain interleaved."""
    training, target_labels = plain_digits.digits_split()
    load_before = os.getloadavg()
    steps, fits = {"ours": [], "plain": []}, {"ours": [], "plain": []}
    for repeat in range(args.repeats):
        sides = [("ours", lambda: lenet_ours(training)), ("plain", lambda: lenet_plain(training, target_labels))]
        for name, run in sides if repeat % 2 == 0 else reversed(sides):
            gc.collect()
            step, fit = run()
            steps[name].append(step)
            fits[name].append(fit)
            print(f"repeat {repeat + 1}/{args.repeats}  {name:5s}  {1000 * step:.2f} ms/step, whole fit {fit:.2f} s",
                  flush=True)
    with tempfile.TemporaryDirectory() as folder:
        env = store_env(Path(folder))
        threads = str(args.threads)
        [(name, ours, plain_name, plain)] = compare(
            [(f"tlrun method=dann threads={threads}", [tlrun_command(), "method=dann", f"threads={threads}"],
              f"plain_digits.py dann {threads}", [sys.executable, plain_digits.__file__, "dann", threads])],
            args.repeats, Path(folder), env)
    load_after = os.getloadavg()

    def ratio(ours_values: list[float], plain_values: list[float]) -> str:
        return f"{statistics.median(ours_values) / statistics.median(plain_values):.2f}"

    text = "\n".join([
        "# DANN on the embedded digits (LeNet): tlrun against a plain PyTorch loop",
        "",
        f"`tlrun method=dann`'s own case: LeNet, 30 epochs of 28 steps of 32 source + 32 target samples, torch threads "
        f"{args.threads}; {device_name('cpu', args.threads)}; torch {torch.__version__}, Lightning {pl.__version__}, "
        f"Python {platform.python_version()}. Medians (min–max) of {args.repeats} interleaved repeats. 1-minute load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after. Made by `python benchmarks/dann_throughput.py "
        f"--model lenet --repeats {args.repeats} --threads {args.threads}`.",
        "",
        "| measure | ours (tlrun) | plain | ratio |",
        "|---|---|---|---|",
        f"| ms per step (median step, in-process) | {spread(steps['ours'], 1000)} | {spread(steps['plain'], 1000)} | "
        f"{ratio(steps['ours'], steps['plain'])} |",
        f"| whole fit, s (in-process: `DANN.fit` with its per-epoch scoring; plain: training + target scored) | "
        f"{spread(fits['ours'])} | {spread(fits['plain'])} | {ratio(fits['ours'], fits['plain'])} |",
        f"| whole command, wall s (`{name}` / `{plain_name}`) | {spread(ours.wall)} | {spread(plain.wall)} | "
        f"{ratio(ours.wall, plain.wall)} |",
        f"| whole command, CPU s | {spread(ours.cpu)} | {spread(plain.cpu)} | {ratio(ours.cpu, plain.cpu)} |",
        "",
        "Targets (issue 18): per step ≤ 1.05×, whole command ≤ 1.1×.",
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", choices=("resnet18", "lenet"))
    parser.add_argument("--steps", type=int, default=20, help="measured steps N (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="discarded warm-up steps W ≥ 1 (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats R of each side (default 3)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="32-true", choices=("32-true", "16-mixed", "bf16-mixed"))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--output", type=Path, help=f"the Markdown file written (default {RESULTS}, for lenet "
                        f"{LENET_RESULTS})")
    args = parser.parse_args()
    if args.model == "lenet":
        args.output = args.output or LENET_RESULTS
        torch.set_num_threads(args.threads)
        return main_lenet(args)
    args.output = args.output or RESULTS
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        parser.error("--steps, --warmup and --repeats must be positive")
    if args.device == "cpu" and args.precision == "16-mixed":
        parser.error("16-mixed needs --device cuda (use bf16-mixed on the CPU)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")

    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Enough rows that neither loader starts over inside the timed steps (at least 1,024 per domain).
    data = make_data(max(1024, BATCH * (args.warmup + args.steps)))

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    ours, plain = [], []
    for repeat in range(args.repeats):
        order = (("ours", run_ours, ours), ("plain", run_plain, plain))
        for name, run, rates in order if repeat % 2 == 0 else reversed(order):
            gc.collect()
            rates.append(run(data, args))
            print(f"repeat {repeat + 1}/{args.repeats}  {name:5s}  {rates[-1]:8.1f} samples/s", flush=True)

    wall, load_after = time.perf_counter() - started, os.getloadavg()[0]
    ours_median, plain_median = statistics.median(ours), statistics.median(plain)
    overhead = (plain_median / ours_median - 1.0) * 100.0
    per_step_ms = (2 * BATCH / ours_median - 2 * BATCH / plain_median) * 1000.0
    verdict = "PASS" if overhead < TARGET_OVERHEAD else "FAIL"
    rows = [f"| {r + 1} | {o:.1f} | {p:.1f} | {(p / o - 1) * 100:+.1f} |" for r, (o, p) in enumerate(zip(ours, plain))]
    text = "\n".join([
        "# DANN training throughput: our Lightning module vs a plain PyTorch loop",
        "",
        f"ResNet-18 backbone (random init), 3×96×96 inputs (random float32 pixel rows), batch {BATCH} source + "
        f"{BATCH} target per step, 31 classes, SGD + inv schedule, DANN warm-up; precision {args.precision}.",
        f"Device: {args.device} ({device_name(args.device, torch.get_num_threads())}); torch {torch.__version__}, "
        f"Lightning {pl.__version__}, Python {platform.python_version()}.",
        f"W = {args.warmup} warm-up steps discarded, N = {args.steps} steps timed, R = {args.repeats} alternating "
        "repeats (timestamps at each step's end; ours through a Lightning callback, so the fit's set-up and "
        "end-of-training scoring are excluded).",
        f"Made by `python benchmarks/dann_throughput.py --steps {args.steps} --warmup {args.warmup} "
        f"--repeats {args.repeats} --device {args.device} --precision {args.precision} --threads {args.threads}`.",
        "",
        "| repeat | ours (samples/s) | plain (samples/s) | overhead % |",
        "|---|---|---|---|",
        *rows,
        f"| **median** | **{ours_median:.1f}** | **{plain_median:.1f}** | **{overhead:+.1f}** |",
        "",
        f"Seconds per step (median): ours {2 * BATCH / ours_median:.3f}, plain {2 * BATCH / plain_median:.3f} "
        f"(difference {per_step_ms:+.1f} ms per step).",
        "",
        f"Overhead of ours: {overhead:+.1f} % (target < {TARGET_OVERHEAD:.0f} %): **{verdict}**.",
        "",
        f"Whole benchmark: {wall / 60:.1f} min; 1-minute load average {load_before:.1f} before, {load_after:.1f} after "
        f"(other processes on the machine make single repeats noisy: compare the medians).",
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
