"""JDA on the 12 Office+Caltech10 SURF tasks: accuracy against the paper and seconds per task.

Run by hand from the repository root with the project's venv active:

    python benchmarks/jda_office_caltech.py [DATA_FOLDER] [--device cpu|cuda] [--repeats 3] [--threads N|auto] [--busy]
        [--skada /tmp/skada] [--output benchmarks/results/jda_office_caltech.md]

``DATA_FOLDER`` holds the four ``*_SURF_L10.mat`` files (default: ``$TLRUN_SHARED_DATA/office_caltech10_surf`` or
``../shared/data/office_caltech10_surf`` beside the checkout). JDA runs with the paper's protocol (linear kernel,
k = 100, λ = 1, T = 10, 1-NN); one untimed warm-up task comes first. The time covers ``fit`` (every iteration,
pseudo-labels included), whose last labels of the target are what a run scores (``fitted_target_labels``); each task
runs ``--repeats`` times (in rounds over the 12 tasks) and its median is reported, with the load average (other work
on the machine slows it). ``--threads`` sets torch's threads (default ``auto``: the number ``threads=auto`` gives a
run, ``tlrun.runner.threads.free_cores``); ``--busy`` keeps one other process spinning while it measures (a loaded
machine, reproducibly).

With ``--skada DIR`` (a folder where skada and POT are installed: ``pip install --no-deps --target DIR skada pot``),
skada 0.6's ``TransferComponentAnalysis()`` with its defaults (rbf kernel, ``mu=0.1``, an SVC) runs on the same
preprocessed features in the same rounds, right after JDA on each task (fit on source + unlabeled target, predict the
target), and its median time per task is reported beside ours. Writes the results file and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from busy import one_busy_core  # noqa: E402  (the benchmarks folder is no package)
from tlrun import __version__  # first: tlrun sets the OpenMP wait policy before torch loads its runtime, as in a run

import numpy as np
import torch

from tlrun.data.features import OfficeCaltech10
from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.jda import JDA
from tlrun.runner.threads import free_cores
from tlrun.scenarios import Labeled, TrainingData, Unlabeled

RESULTS = Path(__file__).resolve().parent / "results" / "jda_office_caltech.md"
DEFAULT_DATA = Path(
    os.environ.get("TLRUN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
) / "office_caltech10_surf"
DOMAINS = {"A": "amazon", "C": "caltech", "D": "dslr", "W": "webcam"}
# JDA paper (Long et al., ICCV 2013), Table 2, JDA row: target accuracy in %.
PAPER = {
    "C->A": 44.78, "C->W": 41.69, "C->D": 45.22, "A->C": 39.36, "A->W": 37.97, "A->D": 39.49,
    "W->C": 31.17, "W->A": 32.78, "W->D": 89.17, "D->C": 31.52, "D->A": 33.09, "D->W": 89.49,
}


def load_task(root: Path, name: str) -> tuple[TrainingData, np.ndarray]:
    source, target = (DOMAINS[letter] for letter in name.split("->"))
    dataset = OfficeCaltech10(root=str(root), source=source, target=target, features="surf", preprocess="rowsum_zscore")
    source_domain, target_domain = dataset.load(source), dataset.load(target)
    data = TrainingData(Labeled(source_domain.X, source_domain.y), Unlabeled(target_domain.X), 10, source_domain.classes)
    return data, target_domain.y


def run_task(data: TrainingData, target_labels: np.ndarray, device: str) -> tuple[float, float]:
    """(target accuracy in [0, 1], seconds) of one JDA fit, scored as a run scores it."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    method = JDA()
    method.fit(data, RunContext(reporter=NullReporter(), device=device))
    predictions = method.fitted_target_labels
    if device == "cuda":
        torch.cuda.synchronize()
    return float(np.mean(predictions == target_labels)), time.perf_counter() - start


def run_skada_tca(data: TrainingData, target_labels: np.ndarray) -> tuple[float, float]:
    """(target accuracy in [0, 1], seconds) of skada's ``TransferComponentAnalysis()`` (its defaults) on the task."""
    from skada import TransferComponentAnalysis

    start = time.perf_counter()
    source, target = np.asarray(data.source.X), np.asarray(data.target.X)
    X = np.vstack([source, target])
    y = np.concatenate([data.source.y, -np.ones(len(target), dtype=np.int64)])
    domain = np.concatenate([np.ones(len(source), dtype=np.int64), -np.ones(len(target), dtype=np.int64)])
    predictions = TransferComponentAnalysis().fit(X, y, sample_domain=domain).predict(
        target, sample_domain=-np.ones(len(target), dtype=np.int64))
    return float(np.mean(predictions == target_labels)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3, help="runs per task; the median time is reported")
    parser.add_argument("--threads", default="auto", help="torch threads (default auto: what threads=auto gives a run)")
    parser.add_argument("--busy", action="store_true", help="keep one other process spinning while measuring")
    parser.add_argument("--skada", default=None, help="a folder holding skada and POT: time skada's TCA beside JDA")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with one_busy_core(args.busy):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """The 12 tasks (and skada's TCA beside them), timed; the results file written and printed."""
    torch.set_num_threads(free_cores() if args.threads == "auto" else int(args.threads))
    if args.skada:
        sys.path.insert(0, args.skada)

    tasks = {name: load_task(args.data, name) for name in PAPER}
    run_task(*tasks["D->W"], args.device)  # warm-up: imports, kernels, BLAS threads
    if args.skada:
        run_skada_tca(*tasks["D->W"])

    load_before = os.getloadavg()[0]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in tasks}
    peer: dict[str, list[tuple[float, float]]] = {name: [] for name in tasks}
    for _ in range(args.repeats):  # rounds over the tasks: a burst of load spreads over all of them
        for name, task in tasks.items():
            runs[name].append(run_task(*task, args.device))
            if args.skada:
                peer[name].append(run_skada_tca(*task))
    load_after = os.getloadavg()[0]
    rows, seconds_all, peer_seconds, differences = [], [], [], []
    for name, task_runs in runs.items():
        accuracy = task_runs[0][0]
        assert all(run[0] == accuracy for run in task_runs), f"{name}: the accuracy changed between repeats"
        seconds = statistics.median(run[1] for run in task_runs)
        difference = round(100 * accuracy - PAPER[name], 2) + 0.0  # + 0.0: no "-0.00"
        row = f"| {name} | {100 * accuracy:.2f} | {PAPER[name]:.2f} | {difference:+.2f} | {seconds:.3f} |"
        if args.skada:
            peer_seconds.append(statistics.median(run[1] for run in peer[name]))
            row += f" {100 * peer[name][0][0]:.2f} | {peer_seconds[-1]:.3f} |"
        rows.append(row)
        seconds_all.append(seconds)
        differences.append(difference)
    average_ours = np.mean([PAPER[name] + diff for name, diff in zip(PAPER, differences)])
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    text = "\n".join(
        [
            "# JDA on Office+Caltech10 SURF (12 tasks)",
            "",
            "Protocol of the JDA paper: rowsum + z-score preprocessing per domain, linear kernel, k = 100, λ = 1, T = 10,",
            "1-NN. Accuracy in % on all target samples; seconds = `fit` (whose last target labels a run scores) after one",
            f"warm-up task, float64, median of {args.repeats} runs per task, device: {args.device} ({device}, OpenMP wait "
            f"policy {os.environ.get('OMP_WAIT_POLICY', 'default')}, GOMP_SPINCOUNT "
            f"{os.environ.get('GOMP_SPINCOUNT', 'default')}{'; one other process spinning' if args.busy else ''}), tlrun {__version__}, torch {torch.__version__}; 1-minute load average "
            f"{load_before:.1f} before, {load_after:.1f} after. Produced by `python benchmarks/jda_office_caltech.py "
            f"{' '.join(sys.argv[1:])}`."
            + (" skada: 0.6's `TransferComponentAnalysis()` with its defaults, timed in the same rounds (fit + "
               "predict)." if args.skada else ""),
            "",
            "| task | ours | paper | diff | seconds |" + (" skada TCA | skada seconds |" if args.skada else ""),
            "|---|---|---|---|---|" + ("---|---|" if args.skada else ""),
            *rows,
            f"| **avg** | {average_ours:.2f} | {np.mean(list(PAPER.values())):.2f} | {np.mean(differences):+.2f} | "
            f"{np.mean(seconds_all):.3f} |" + (f" | {np.mean(peer_seconds):.3f} |" if args.skada else ""),
            "",
            f"Total: {np.sum(seconds_all):.2f} s for the 12 tasks; slowest task {np.max(seconds_all):.3f} s."
            + (f" skada TCA: {np.sum(peer_seconds):.2f} s; ours / skada = {np.sum(seconds_all) / np.sum(peer_seconds):.2f}."
               if args.skada else ""),
            "",
        ]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
