"""A 2-job sweep on the GPU with ``trainer=gpu``: wall time and training throughput, one job per GPU vs two sharing it.

Run by hand from the repository root on a machine with a CUDA GPU (on a machine without one the jobs fall back to the
CPU, and the file says so):

    python benchmarks/gpu_sweep.py [--method dann] [--epochs 30] [--seeds 0,1] [--jobs-per-gpu 1,2] [--out FILE]

For each ``trainer.jobs_per_gpu`` value it launches ``tlrun --multirun hydra/launcher=joblib hydra.launcher.n_jobs=2
trainer=gpu method=<method> seed=<seeds> method.epochs=<epochs>`` on the embedded digits shift, into a fresh MLflow
store, and times the whole sweep. With ``jobs_per_gpu=1`` the GPU claim rule (:mod:`tlrun.runner.devices`) runs the jobs
one after the other on a one-GPU machine; with 2 they share it. Per job it reads back from MLflow the device tag,
``target_acc``, ``duration_s`` (the run, data loading and evaluation included) and the number of source training
samples, and reports the end-to-end training throughput ``epochs × n_source_train / duration_s`` (source samples
per second; each step also carries as many target samples). Writes benchmarks/results/gpu_sweep.md (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sweep(method: str, epochs: int, seeds: str, jobs_per_gpu: int, folder: Path) -> tuple[float, list, str]:
    """Run the sweep; returns (wall seconds, child runs, its output's tail)."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{folder / 'mlflow.db'}"
    experiment = f"gpu-sweep-{jobs_per_gpu}"
    command = [
        sys.executable, "-m", "tlrun.cli", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "trainer=gpu", f"trainer.jobs_per_gpu={jobs_per_gpu}", "trainer.enable_progress_bar=false",
        f"method={method}", f"seed={seeds}", f"method.epochs={epochs}", f"logger.experiment={experiment}",
        f"hydra.sweep.dir={folder / experiment}", f"cache_dir={folder / 'cache'}",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the sweep failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    children = sorted((r for r in runs if r.data.tags.get("sweep.role") != "parent"), key=lambda r: r.info.start_time)
    return wall, children, result.stdout[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="dann")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--jobs-per-gpu", default="1,2")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_sweep.md")
    args = parser.parse_args()

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (the jobs ran on the CPU)"
    lines = [
        f"# A 2-job sweep with trainer=gpu: {args.method} on the digits shift, {args.epochs} epochs, seeds {args.seeds}",
        "",
        f"GPU: {device}; torch {torch.__version__}; Python {platform.python_version()}; {os.cpu_count()} CPUs.",
        f"Made by `python benchmarks/gpu_sweep.py --method {args.method} --epochs {args.epochs} --seeds {args.seeds} "
        f"--jobs-per-gpu {args.jobs_per_gpu}` (joblib launcher, 2 parallel jobs).",
        "",
        "| jobs per GPU | sweep wall time (s) | job | device | target_acc (%) | job duration (s) | source samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for jobs_per_gpu in (int(k) for k in args.jobs_per_gpu.split(",")):
        with tempfile.TemporaryDirectory() as scratch:
            wall, children, _ = sweep(args.method, args.epochs, args.seeds, jobs_per_gpu, Path(scratch))
        for run in children:
            duration = run.data.metrics["duration_s"]
            samples = args.epochs * int(run.data.params["data.n_source_train"])
            lines.append(
                f"| {jobs_per_gpu} | {wall:.1f} | seed {run.data.tags['seed']} | {run.data.tags.get('device', 'cpu')} | "
                f"{100 * run.data.metrics['target_acc']:.2f} | {duration:.1f} | {samples / duration:.0f} |"
            )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
