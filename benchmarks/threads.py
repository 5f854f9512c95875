"""How many CPU threads a run should use, and how they should wait, on an idle and on a busy machine.

Run by hand from the repository root with the project's venv active:

    python benchmarks/threads.py [--repeats 5] [--output benchmarks/results/threads.md]

**Workloads** (each measured in a fresh process, so that the OpenMP runtime reads its environment when torch loads
it): ``jda``, one JDA fit (tlrun's defaults: linear kernel, 1-NN, 10 iterations) on a synthetic shift of 3,000
samples per domain of 256 features (the task of ``benchmarks/scaling.py``), the time of 2 fits after a warm-up;
``lenet``, 50 training steps of a LeNet on 64 digit-sized images (SGD, cross-entropy), after 5 warm-up steps.

**Settings**: ``1 thread``; ``2 threads, spinning`` (``OMP_WAIT_POLICY=ACTIVE``: the waiting threads spin, as
they did by default before tlrun set the policy); ``2 threads, passive`` (``OMP_WAIT_POLICY=PASSIVE``,
``GOMP_SPINCOUNT=0``: they sleep at once); ``2 threads, brief spin`` (``GOMP_SPINCOUNT=1000``: GNU OpenMP's
waiting threads spin 1000 rounds, then sleep); ``auto (tlrun's default)``: the brief spin, and the threads
``threads=auto`` gives a single run (``tlrun.runner.threads.free_cores``: the cores less the other processes
running as the process starts).

**Machine states**: *idle* (nothing else started by this script; the load average printed says what else ran) and
*busy* (one other process spinning on one core for the whole measurement, as another job, a test suite or an editor
would). The settings are interleaved within each repeat, and the table gives the median wall time of ``--repeats``
repeats with the smallest and largest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from busy import one_busy_core  # noqa: E402  (the benchmarks folder is no package)

RESULTS = Path(__file__).resolve().parent / "results" / "threads.md"
#: name: (threads, or ``auto`` for tlrun's choice at start (``free_cores``), and the OpenMP environment)
SETTINGS = {
    "1 thread": ("1", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}),
    "2 threads, spinning": ("2", {"OMP_WAIT_POLICY": "ACTIVE"}),
    "2 threads, passive": ("2", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}),
    "2 threads, brief spin": ("2", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}),
    "auto (tlrun's default)": ("auto", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}),
}
WORKLOAD = """
import sys, time
import torch
from tlrun.runner.threads import free_cores
threads, workload = (free_cores() if sys.argv[1] == "auto" else int(sys.argv[1])), sys.argv[2]
torch.set_num_threads(threads)
if workload == "jda":
    sys.path.insert(0, "benchmarks")
    from scaling import make_task
    from tlrun.methods.base import NullReporter, RunContext
    from tlrun.methods.jda import JDA
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled
    (source, source_labels), (target, _) = make_task(3000, 256, 0)
    data = TrainingData(Labeled(source, source_labels), Unlabeled(target), 10, tuple(map(str, range(10))))
    work = lambda: JDA().fit(data, RunContext(reporter=NullReporter()))
    warmup, repeats = 1, 2
else:
    from tlrun.backbones.small import LeNet
    torch.manual_seed(0)
    network = torch.nn.Sequential(LeNet(input_shape=(1, 28, 28)), torch.nn.LazyLinear(10))
    images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    network(images)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
    def work():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(images), labels).backward()
        optimizer.step()
    warmup, repeats = 5, 50
for _ in range(warmup):
    work()
start = time.perf_counter()
for _ in range(repeats):
    work()
print(f"seconds={time.perf_counter() - start:.6f}")
"""


def measure(threads: str, openmp: dict[str, str], workload: str) -> float:
    """Wall seconds of ``workload`` in a fresh process with ``threads`` threads and the OpenMP environment
    ``openmp``."""
    env = {**{key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
           **openmp, "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run([sys.executable, "-c", WORKLOAD, str(threads), workload], env=env, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.strip().rsplit("seconds=", 1)[1])


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    started, load_before = time.perf_counter(), load()
    times: dict[tuple[str, str, str], list[float]] = {}
    for state in ("idle", "busy"):
        with one_busy_core(state == "busy"):
            for _ in range(args.repeats):
                for workload in ("jda", "lenet"):
                    for name, (threads, openmp) in SETTINGS.items():
                        times.setdefault((state, workload, name), []).append(measure(threads, openmp, workload))
    lines = [
        "# Threads per run and how they wait, on an idle and a busy machine",
        "",
        f"Made by `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}` "
        f"({(time.perf_counter() - started) / 60:.0f} min) on {os.cpu_count()} cores; load average before: "
        f"{load_before}; after: {load()}. Workloads, settings and states: see the script's docstring. Each cell: the "
        f"median wall time of {args.repeats} repeats [smallest – largest], seconds (`jda`: one fit; `lenet`: 50 steps).",
        "",
        "| machine | workload | " + " | ".join(SETTINGS) + " |",
        "|---|---|" + "---:|" * len(SETTINGS),
    ]
    for state in ("idle", "busy"):
        for workload in ("jda", "lenet"):
            cells = []
            for name in SETTINGS:
                values = times[(state, workload, name)]
                cells.append(f"{statistics.median(values):.3f} [{min(values):.3f} – {max(values):.3f}]")
            lines.append(f"| {state} | {workload} | " + " | ".join(cells) + " |")
    output = Path(args.output)
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
