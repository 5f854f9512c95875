"""The training input pipeline of a ResNet-50 on image files (decode + augment) against the model's appetite.

Run by hand from the repository root with the project's venv active:

    python benchmarks/input_pipeline.py [--images 2000] [--batches 20] [--workers 0 1 2] [--repeats 3]
                                        [--model-steps 2] [--device cpu|cuda] [--precision 32-true|bf16-mixed]
                                        [--output FILE]

It writes ``--images`` synthetic JPEGs into a temporary ImageFolder-like tree (sizes drawn between 300 × 300 and
500 × 375 (Office-31's Amazon images are 300 × 300); smooth random content with noise, quality 90), then
measures:

- the loader: samples/s of ``--batches`` shuffled batches of 32 (worker start-up included) of tlrun's own
  training pipeline for image files, the dataset :func:`tlrun.backbones.inputs.make_dataset` builds for a ResNet-50
  with ``augment=crop_flip`` (decode, random resized crop to 224, flip, to tensor, normalise), read by a
  ``DataLoader`` with the settings of :func:`tlrun.backbones.inputs.loader_options` for each worker count (and, on
  a GPU, with pinned memory on and off, each batch copied to the device); 0 workers is measured with torch's
  threads as they are and with one thread (as a worker has); repeats alternate the settings, the table gives
  medians;
- where one sample's time goes on one core (one torch thread, as in a worker: decode, the random crop and flip,
  to tensor + normalise);
- the model: samples/s of a ResNet-50 training step (backbone, 256-unit bottleneck, 31-way classifier, cross
  entropy, SGD) on ``--device`` with batches of 32 random 224 × 224 images, after one warm-up step.

The results file compares the two with the GPU's appetite and says how many cores of decode + augment keep a GPU
fed. Writes benchmarks/results/input_pipeline.md (or ``--output``) and prints it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from tlrun.backbones.inputs import loader_options, make_dataset
from tlrun.backbones.resnet import ResNet
from tlrun.data.images import open_image
from tlrun.methods.source_only import SourceOnly

RESULTS = Path(__file__).resolve().parent / "results" / "input_pipeline.md"
BATCH = 32
NUM_CLASSES = 31
SEED = 0
#: Measured in this repository: DANN, ResNet-18 on 3 × 96 × 96 inputs, 32 + 32 samples a step, 16-mixed, on an
#: H100 (benchmarks/results/dann_throughput_cuda.md, the median of 3 repeats).
RESNET18_96PX_H100 = 3250.8
#: Forward GFLOPs (multiply-adds) at 224 × 224: torchvision's figures for the two networks.
GFLOPS_224 = {"resnet18": 1.81, "resnet50": 4.09}
#: Published: ResNet-50 v1.5 training, 1 × A100 80GB, mixed precision, batch 256 (NVIDIA DeepLearningExamples,
#: PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100").
RESNET50_A100_PUBLISHED = 2470.0


def write_images(folder: Path, count: int) -> list[str]:
    """``count`` JPEGs in ``folder/<class>/``: Office-31-like sizes, smooth content with some noise."""
    from PIL import Image

    rng = np.random.default_rng(SEED)
    paths = []
    for k in range(count):
        width, height = int(rng.integers(300, 501)), int(rng.integers(300, 376))
        coarse = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 8, (height, width, 3))
        path = folder / f"class{k % NUM_CLASSES:02d}" / f"{k:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


class Setting(NamedTuple):
    workers: int
    pin_memory: bool
    #: torch threads of the main process (``None``: as they are); workers run on one thread each.
    main_threads: int | None = None


def loader_rate(dataset, paths: list[str], setting: Setting, batches: int, device: torch.device) -> float:
    """Samples/s of the first ``batches`` shuffled batches (worker start-up included), each batch copied to
    ``device`` on a GPU."""
    options = loader_options(setting.workers, paths, device) | {"pin_memory": setting.pin_memory}
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(SEED),
                        drop_last=True, **options)
    threads = torch.get_num_threads()
    torch.set_num_threads(setting.main_threads or threads)
    try:
        started, samples = time.perf_counter(), 0
        for x, _ in itertools.islice(loader, batches):
            if device.type == "cuda":
                x = x.to(device, non_blocking=setting.pin_memory)
            samples += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    del loader  # its (persistent) workers end here
    return samples / elapsed


def stage_times(dataset, paths: list[str], count: int) -> dict[str, float]:
    """Milliseconds per sample of each step of the training transform, the median over ``count`` images (robust to
    the other processes' preemptions), on one torch thread (as a DataLoader worker runs)."""
    steps = dataset.transform.transforms  # RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize
    geometric, tensor = steps[:2], steps[2:]
    spent: dict[str, list[float]] = {"decode (open, RGB)": [], "random resized crop + flip": [], "to tensor + normalise": []}
    torch.manual_seed(SEED)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for path in paths[:count]:
        t0 = time.perf_counter()
        image = open_image(path)
        image.load()
        t1 = time.perf_counter()
        for step in geometric:
            image = step(image)
        t2 = time.perf_counter()
        for step in tensor:
            image = step(image)
        t3 = time.perf_counter()
        for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2)):
            spent[name].append(seconds)
    torch.set_num_threads(threads)
    return {name: 1000 * statistics.median(seconds) for name, seconds in spent.items()}


def model_rate(steps: int, device: torch.device, precision: str) -> float:
    """Samples/s of ResNet-50 training steps (SourceOnly's networks) on random 224 × 224 batches."""
    torch.manual_seed(SEED)
    method = SourceOnly(ResNet(arch="resnet50", weights="none"), batch_size=BATCH)
    method.bottleneck, method.classifier = method.build_head(NUM_CLASSES)
    model = method.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    x = torch.randn(BATCH, 3, 224, 224, device=device)
    y = torch.randint(0, NUM_CLASSES, (BATCH,), device=device)
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return steps * BATCH / (times[-1] - times[0])


def machine(device: torch.device) -> str:
    cpu = f"CPU {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores"
    gpu = f"; GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"{cpu}, {torch.get_num_threads()} torch threads{gpu}; torch {torch.__version__}, Python {platform.python_version()}"


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic JPEGs (default 2000)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 32 per measure (default 20)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per setting, alternating (default 3)")
    parser.add_argument("--model-steps", type=int, default=2, help="timed ResNet-50 training steps (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the model step runs")
    parser.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"),
                        help="the model step's precision (bf16-mixed: autocast, no loss scaling; default 32-true)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    began, load_before = time.perf_counter(), load()

    with tempfile.TemporaryDirectory(prefix="tlrun-input-pipeline-") as folder:
        made = time.perf_counter()
        paths = write_images(Path(folder), args.images)
        made = time.perf_counter() - made
        sizes = [os.path.getsize(p) for p in paths]
        labels = np.arange(len(paths)) % NUM_CLASSES
        backbone = ResNet(arch="resnet50", weights="none")
        dataset = make_dataset(paths, labels, backbone=backbone, augment="crop_flip")
        pins = (False, True) if device.type == "cuda" else (False,)
        settings = [Setting(w, pin) for w in args.workers for pin in pins]
        if 0 in args.workers and torch.get_num_threads() > 1:
            settings.insert(1, Setting(0, False, main_threads=1))
        rates: dict[Setting, list[float]] = {s: [] for s in settings}
        for repeat in range(args.repeats):
            for setting in settings if repeat % 2 == 0 else settings[::-1]:
                rates[setting].append(loader_rate(dataset, paths, setting, args.batches, device))
                print(f"{setting}: {rates[setting][-1]:.1f} samples/s", flush=True)
        stages = stage_times(dataset, paths, min(200, len(paths)))
    model = model_rate(args.model_steps, device, args.precision)
    print(f"ResNet-50 training step on {args.device}: {model:.1f} samples/s", flush=True)

    median = {s: statistics.median(r) for s, r in rates.items()}
    per_sample_ms = sum(stages.values())
    per_core = 1000 / per_sample_ms  # one core of decode + augment, given to it alone
    # What a worker delivers (its batches also go through collation and shared memory), measured on this machine.
    per_worker = median.get(Setting(1, False), per_core)
    best = max(median, key=median.get)
    scaled = RESNET18_96PX_H100 * (GFLOPS_224["resnet18"] * (96 / 224) ** 2) / GFLOPS_224["resnet50"]
    auto_16 = loader_options("auto", paths, "cuda", cores=16)["num_workers"]
    lines = [
        "# Input pipeline: ResNet-50 training inputs from image files (decode + augment) against the model's appetite",
        "",
        f"{len(paths)} synthetic JPEGs (sizes 300–500 × 300–375 px, median {statistics.median(sizes) / 1024:.0f} KiB, "
        f"written in {made:.0f} s), tlrun's training pipeline for image files with `augment=crop_flip` "
        "(decode, RandomResizedCrop 224, flip, to tensor, ImageNet normalisation), batches of 32; each measure is "
        f"{args.batches} batches of a shuffled pass, worker start-up included; {args.repeats} alternating repeats, medians.",
        f"Machine: {machine(device)}.",
        f"Made by `nice python benchmarks/input_pipeline.py --images {args.images} --batches {args.batches} --workers "
        f"{' '.join(map(str, args.workers))} --repeats {args.repeats} --model-steps {args.model_steps} --device {args.device}"
        f"{'' if args.precision == '32-true' else ' --precision ' + args.precision}`.",
        "",
        "## The loader",
        "",
        "| num_workers | pin_memory | main process's torch threads | samples/s (repeats) | median |",
        "|---|---|---|---|---|",
    ]
    for setting, values in rates.items():
        threads = setting.main_threads or torch.get_num_threads()
        lines.append(f"| {setting.workers} | {str(setting.pin_memory).lower()} | {threads} | "
                     f"{', '.join(f'{v:.0f}' for v in values)} | **{median[setting]:.0f}** |")
    lines += ["", "With 0 workers the main process runs the per-sample tensor steps on the run's torch threads; on a busy "
              "machine that thread pool waits for cores it does not get (compare the two 0-worker rows). A worker "
              "runs on one thread.", ""]
    if device.type != "cuda":
        lines.append("pin_memory is measured only with `--device cuda`: without a GPU there is no copy it could speed "
                     "up (tlrun pins only when the network computes on a CUDA device).")
    lines += ["", "Where one sample's time goes on one core (one torch thread, as in a worker; ms per sample, the median "
              f"over the first {min(200, len(paths))} images):", "", "| step | ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in stages.items()]
    lines += [f"| **total** | **{per_sample_ms:.2f}** ({1000 / per_sample_ms:.0f} samples/s) |"]
    lines += [
        "",
        "## The model",
        "",
        f"ResNet-50 training step (SourceOnly's networks, batch {BATCH}, 224 × 224, SGD, {args.precision}) on "
        f"{args.device}: **{model:.1f} samples/s** ({args.model_steps} steps after a warm-up step).",
        "",
        "The GPU's appetite for the same step (no GPU on the machine that made this file; estimates, labelled so):",
        "",
        f"- from this repository's own H100 measurement, {RESNET18_96PX_H100:.0f} samples/s of DANN with a ResNet-18 "
        "on 96 × 96 inputs, 32 + 32 a step, 16-mixed ([dann_throughput_cuda.md](dann_throughput_cuda.md)), scaled by "
        f"the forward FLOPs (ResNet-18 at 96 px: {GFLOPS_224['resnet18']:.2f} × (96/224)² GFLOPs; ResNet-50 at 224 "
        f"px: {GFLOPS_224['resnet50']:.2f}): **≈ {scaled:.0f} samples/s**. A floor rather than an estimate of the "
        "card: that run's small convolutions leave the H100 mostly idle (20 ms a step);",
        f"- published: **{RESNET50_A100_PUBLISHED:.0f} samples/s** for ResNet-50 training in mixed precision on one "
        "A100 80GB (batch 256; NVIDIA DeepLearningExamples, resnet50v1.5, DGX A100 table). An H100 is faster still.",
        "",
        "## Conclusion",
        "",
        f"One core of decode + augment gives **{per_worker:.0f}–{per_core:.0f} samples/s**: {per_core:.0f} is 1000 / "
        f"the time per sample above, the work alone; {per_worker:.0f} what the loader with one worker delivered, "
        "batches collated and passed through shared memory, on this machine shared with other work.",
        "",
    ]
    for appetite, basis in ((scaled, "the floor scaled from this repository's H100 run"),
                            (RESNET50_A100_PUBLISHED, "the published A100 figure")):
        lines.append(f"- To feed {appetite:.0f} samples/s ({basis}): **{appetite / per_core:.1f}–"
                     f"{appetite / per_worker:.1f} worker cores** (plus the main process, which drives the GPU).")
    cpu_side = "the model" if model < median[best] else "the loader"
    best_threads = f", the main process on {best.main_threads} torch thread" if best.main_threads else ""
    lines += [
        f"- On this machine's CPU the model trains {model:.1f} samples/s and the loader gives up to {median[best]:.0f} "
        f"({best.workers} workers{best_threads}): **{cpu_side} is the bottleneck**, "
        f"{max(model, median[best]) / min(model, median[best]):.0f}× slower than the other.",
        f"- `method.num_workers=auto` gives image files one worker per CPU thread of the run but one, at most "
        f"{auto_16} (a 16-core GPU machine: {auto_16} workers, {auto_16 * per_worker:.0f}–{auto_16 * per_core:.0f} "
        "samples/s at these rates).",
        "",
        f"Whole benchmark: {(time.perf_counter() - began) / 60:.1f} min; 1-minute load average {load_before} before, "
        f"{load()} after (other processes on the machine make single repeats noisy: compare the medians).",
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
