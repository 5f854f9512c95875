"""Wall time, peak memory and target accuracy of the closed-form methods as the data grows, per solver path.

Run by hand from the repository root with the project's venv active:

    python benchmarks/scaling.py [--sizes 1000 5000 20000] [--dims 256] [--paths tca tca-rbf-nystroem ...]
        [--timeout 900] [--output benchmarks/results/scaling.md]

**Tasks.** Synthetic two-domain shifts, seeded (``--seed``): 10 classes, class-conditional Gaussians in ``d``
dimensions (class means drawn from N(0, s² I) with s = 0.35 (256/d)^¼, unit isotropic noise), ``n`` samples per
domain (``n_s = n_t``, classes balanced). The target is the same distribution rotated by a random orthogonal matrix
near the identity (the Q of the QR factorisation of ``I + G / sqrt(d)``, ``G`` standard normal, with signs fixed so
that it stays near the identity) and scaled per feature by factors log-uniform in [1/2, 2]: at n = 1000, d = 256,
1-NN trained on the source scores 54 % on the target against 73 % trained on target samples. Each domain is written
to ``<data>/src.npz`` and ``<data>/tgt.npz`` (arrays ``X``, ``y``).

**Measurements.** Each (path, n, d) is one ``tlrun dataset=features ...`` command, as a user would run it, in a
subprocess started with ``nice -n 10``, in a fresh temporary folder with its own sqlite MLflow store
(``logger.tracking_uri``, created before the clock starts) and ``save_model=false`` (logging the fitted model is
left out: it is not the method's cost); ``resources.max_memory`` stays ``auto``. Recorded: the command's wall time,
the run's logged ``duration_s`` (loading + fitting + scoring, without imports and start-up), the peak resident
memory of the ``tlrun`` process (its ``VmHWM``) and ``target_acc`` read from the store. A
command that exits 2 with tlrun's preflight memory error is recorded as ``refused`` with the estimate it gave;
one running past ``--timeout`` seconds is killed and recorded as ``timeout``.

**Paths.** The defaults of ``no_adaptation``, ``coral``, ``tca``, ``jda`` (linear kernel) and ``kmm`` (rbf, exact
up to 10,000 samples in all and Nyström above), TCA/JDA with ``method.kernel=rbf`` solved exactly
(``method.approx=none``) and with Nyström landmarks (``method.approx=nystroem``, ``method.rank`` at its default
1000), and KMM forced to either (``kmm-rbf-exact``, ``kmm-rbf-nystroem``; its width from the median heuristic). The rbf width ``method.gamma`` is set per task to
1 / the mean squared distance between source samples (on 1000 of them): the default ``gamma=1`` makes every
kernel value between two 256-dimensional samples 0 here, and exact and Nyström would then compare nothing.

**Peers.** ``--paths skada-coral skada-tca skada-kmm`` run skada 0.6's counterparts of the default paths (installed
apart from tlrun: ``pip install --no-deps --target /tmp/skada skada pot``; ``--skada`` names the folder), each as a
Python script in its own process, measured the same way (its *duration_s*: fit + predict): ``CORAL`` with 1-NN (as
tlrun's default: Ledoit–Wolf, centred), ``TransferComponentAnalysis`` with the linear kernel, 100 components,
``mu=1`` and 1-NN (tlrun's TCA also L2-normalises the rows, and solves in the data's rank instead of the n × n
kernel), ``KMMReweight`` with ``B=10`` and logistic regression (its default width ``gamma=1/d`` instead of tlrun's
median heuristic, its Frank–Wolfe solver on the exact n_s × n_s kernel).

Writes the table, its rows as JSON (``<output>.json``) and a log-log plot of wall time and peak memory against ``n``
(``<output>.png``). ``--merge`` keeps the rows of an earlier run's JSON that this run does not measure again (the
command line in the table's header is then this run's only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "scaling.md"
CLASSES = 10
MEAN_SCALE = 0.35  # class means' standard deviation at d = 256 (1-NN within a domain ≈ 80 %), times (256 / d)^¼
PATHS = {
    "no_adaptation": ["method=no_adaptation"],
    "coral": ["method=coral"],
    "tca": ["method=tca"],
    "jda": ["method=jda"],
    "tca-rbf-exact": ["method=tca", "method.kernel=rbf", "method.approx=none"],
    "tca-rbf-nystroem": ["method=tca", "method.kernel=rbf", "method.approx=nystroem"],
    "jda-rbf-exact": ["method=jda", "method.kernel=rbf", "method.approx=none"],
    "jda-rbf-nystroem": ["method=jda", "method.kernel=rbf", "method.approx=nystroem"],
    "kmm": ["method=kmm"],
    "kmm-rbf-exact": ["method=kmm", "method.approx=none"],
    "kmm-rbf-nystroem": ["method=kmm", "method.approx=nystroem"],
}
#: The TCA/JDA rbf paths, whose width is set per task (KMM's default, the median heuristic, is its own).
RBF_PATHS = {name for name, overrides in PATHS.items() if "method.kernel=rbf" in overrides}
#: skada 0.6's counterparts of the default paths, as close as its API allows (see the module docstring).
PEER_PATHS = {
    "skada-coral": "CORAL(KNeighborsClassifier(n_neighbors=1))",
    "skada-tca": "TransferComponentAnalysis(KNeighborsClassifier(n_neighbors=1), kernel='linear', n_components=100, "
                 "mu=1.0)",
    "skada-kmm": "KMMReweight(LogisticRegression(C=1.0, max_iter=1000).set_fit_request(sample_weight=True), B=10.0)",
}
#: The script a peer path runs (argv: the task's folder, the skada pipeline): fit on the source and the unlabeled
#: target, predict the target, print the time of both and the accuracy.
PEER_SCRIPT = """
import sys, time
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from skada import CORAL, KMMReweight, TransferComponentAnalysis
sklearn.set_config(enable_metadata_routing=True)  # KMMReweight passes its weights to the estimator through it
source, target = (np.load(f"{sys.argv[1]}/{name}.npz") for name in ("src", "tgt"))
Xs, ys, Xt, yt = source["X"].astype(np.float64), source["y"], target["X"].astype(np.float64), target["y"]
start = time.perf_counter()
pipeline = eval(sys.argv[2]).fit(np.vstack([Xs, Xt]), np.concatenate([ys, -np.ones(len(Xt), dtype=np.int64)]),
                                 sample_domain=np.concatenate([np.ones(len(Xs)), -np.ones(len(Xt))]).astype(np.int64))
predictions = pipeline.predict(Xt, sample_domain=-np.ones(len(Xt), dtype=np.int64))
print(f"duration_s={time.perf_counter() - start:.3f}")
print(f"target_acc={float(np.mean(predictions == yt)):.6f}")
"""
REFUSAL = re.compile(r"needs about ([\d.]+ [KMGT]?B) of memory")


def make_task(n: int, d: int, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Source and target ``(X, y)``, ``n`` samples each (see the module docstring)."""
    rng = np.random.default_rng(seed)
    means = MEAN_SCALE * (256 / d) ** 0.25 * rng.normal(size=(CLASSES, d))  # the margin over the noise kept as d grows
    rotation, triangle = np.linalg.qr(np.eye(d) + rng.normal(size=(d, d)) / np.sqrt(d))
    rotation *= np.sign(np.diag(triangle))  # QR's sign convention would otherwise negate about half the axes
    scale = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=d))

    def draw() -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % CLASSES
        return (means[labels] + rng.normal(size=(n, d))).astype(np.float32), labels

    (source, source_labels), (target, target_labels) = draw(), draw()
    return (source, source_labels), ((target @ rotation.T) * scale, target_labels)


def rbf_gamma(features: np.ndarray) -> float:
    """1 / the mean squared distance between (up to) 1000 samples."""
    sample = features[:1000].astype(np.float64)
    squared = (sample**2).sum(1)
    distances = squared[:, None] + squared[None, :] - 2 * sample @ sample.T
    return float(1.0 / distances[np.triu_indices(len(sample), 1)].mean())


def measure(tlrun: str, data: Path, overrides: list[str], timeout: float) -> dict[str, object]:
    """One ``tlrun`` command on the task in ``data``: wall s, duration_s, peak RSS (GiB), target_acc or the
    refusal/timeout/failure that ended it."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="tlrun-bench-scaling-") as name:
        folder = Path(name)
        store = f"sqlite:///{folder / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=store)
        client.search_experiments()  # creates the tables before the clock starts
        command = [tlrun, "dataset=features", f"dataset.root={data}", "dataset.source=src",
                   "dataset.target=tgt", *overrides, "save_model=false", f"logger.tracking_uri={store}",
                   "logger.experiment=bench-scaling", "trainer.enable_progress_bar=false",
                   f"hydra.run.dir={folder / 'run'}", f"cache_dir={folder / 'cache'}"]
        result, code, output = run_command(command, folder, timeout, {"MLFLOW_DISABLE_TELEMETRY": "true"})
        refused = REFUSAL.search(output)
        if code == 2 and refused:
            return {**result, "outcome": f"refused: {refused[1]}"}
        if code != 0:
            return result
        (run,) = client.search_runs([client.get_experiment_by_name("bench-scaling").experiment_id])
        return {**result, "duration_s": run.data.metrics["duration_s"], "target_acc": run.data.metrics["target_acc"]}


def measure_peer(skada: str, data: Path, path: str, timeout: float) -> dict[str, object]:
    """skada's counterpart of a path (:data:`PEER_PATHS`) as a script on the task in ``data``, with skada and POT
    importable from ``skada``: wall s, duration_s (fit + predict), peak RSS, target_acc."""
    with tempfile.TemporaryDirectory(prefix="tlrun-bench-scaling-peer-") as name:
        command = [sys.executable, "-c", PEER_SCRIPT, str(data), PEER_PATHS[path]]
        result, code, output = run_command(command, Path(name), timeout, {"PYTHONPATH": skada})
        if code != 0:
            return result
        found = dict(re.findall(r"^(duration_s|target_acc)=([\d.]+)$", output, flags=re.MULTILINE))
        return {**result, **{key: float(value) for key, value in found.items()}}


def run_command(command: list[str], folder: Path, timeout: float,
                env: dict[str, str]) -> tuple[dict[str, object], int | None, str]:
    """``command`` under ``nice -n 10`` in ``folder``, killed after ``timeout`` s: its wall s, peak RSS (GiB) and
    outcome (``ok``, ``timeout`` or ``exit N`` with the last line of its output), exit code and output."""
    log_path = folder / "log.txt"
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(["nice", "-n", "10", *command], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, **env})
        status, peak = _wait(process.pid, start + timeout)
        wall = time.perf_counter() - start
    result: dict[str, object] = {"wall": wall, "rss_gib": peak}
    if status is None:
        os.killpg(process.pid, signal.SIGKILL)
        os.waitpid(process.pid, 0)
        return {**result, "outcome": "timeout"}, None, ""
    code = os.waitstatus_to_exitcode(status)
    output = log_path.read_text()
    lines = output.strip().splitlines() or [""]
    return {**result, "outcome": "ok" if code == 0 else f"exit {code}: {lines[-1][:200]}"}, code, output


def _wait(pid: int, deadline: float) -> tuple[int | None, float | None]:
    """Wait for ``pid`` to end: its exit status and peak resident memory in GiB, or ``(None, None)`` once
    ``deadline`` passes. The peak is the process's ``VmHWM`` (``/proc/<pid>/status``), read every 0.2 s while it
    runs: it counts from ``exec`` (``nice`` execs the command), unlike ``ru_maxrss``, which includes the pages the
    child shared with this script when it was forked."""
    peak = None
    status_file = Path(f"/proc/{pid}/status")
    while time.perf_counter() < deadline:
        try:
            found = re.search(r"^VmHWM:\s+(\d+) kB", status_file.read_text(), flags=re.MULTILINE)
            peak = int(found[1]) * 1024 / 2**30 if found else peak
        except OSError:
            pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, peak
        time.sleep(0.2)
    return None, None


def _cell(value: object, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_results(rows: list[dict], args: argparse.Namespace, loads: tuple[str, str], minutes: float) -> str:
    output = Path(args.output)
    output.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Closed-form methods at scale: time, memory and accuracy per solver path",
        "",
        f"Made by `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}` ({minutes:.0f} min) on "
        f"{os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB of "
        "memory, shared with other work (`uptime` load average before: " + loads[0] + "; after: " + loads[1] + ").",
        f"Task: 10 class-conditional Gaussians, target rotated and scaled per feature (seed {args.seed}; see the "
        "script's docstring), n samples per domain. Each row is one `tlrun dataset=features ...` command with "
        "`save_model=false` and `resources.max_memory` at auto; *wall* is the whole command (imports and start-up "
        "included), *duration_s* the run's logged fitting + scoring time, *peak RSS* the tlrun "
        "process's maximum resident memory (`VmHWM`, polled). TCA/JDA rbf paths set `method.gamma` to 1 / the mean "
        "squared distance; KMM keeps its median heuristic. `skada-*` rows are skada 0.6's counterparts, one script each (see the "
        "script's docstring for how they differ).",
        "",
        "| path | n | d | wall s | duration_s | peak RSS GiB | target_acc % | outcome |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in sorted(rows, key=lambda row: (row["d"], [*PATHS, *PEER_PATHS].index(row["path"]), row["n"])):
        accuracy = None if row.get("target_acc") is None else 100 * row["target_acc"]
        lines.append(f"| `{row['path']}` | {row['n']} | {row['d']} | {row['wall']:.1f} | "
                     f"{_cell(row.get('duration_s'), 1)} | {_cell(row.get('rss_gib'), 2)} | "
                     f"{_cell(accuracy, 1)} | {row['outcome']} |")
    lines += ["", *nystroem_gaps(rows)]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    plot(rows, output.with_suffix(".png"))
    return "\n".join(lines)


def nystroem_gaps(rows: list[dict]) -> list[str]:
    """A sentence per method, n and d where both rbf paths finished: Nyström's target accuracy minus exact's."""
    finished = {(row["path"], row["n"], row["d"]): row["target_acc"] for row in rows if row["outcome"] == "ok"}
    gaps = [f"`{path.removesuffix('-rbf-exact')}` at n = {n}, d = {d}: "
            f"{100 * (finished[(path.replace('exact', 'nystroem'), n, d)] - accuracy):+.1f} points"
            for (path, n, d), accuracy in finished.items()
            if path.endswith("-rbf-exact") and (path.replace("exact", "nystroem"), n, d) in finished]
    return ["Nyström (rank 1000) minus exact rbf, target accuracy: " + ("; ".join(gaps) if gaps else
            "no size where both finished") + "."]


def plot(rows: list[dict], path: Path) -> None:
    """Wall time and peak RSS against n, log-log, one line per path and d (finished runs only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in dict.fromkeys((row["path"], row["d"]) for row in rows):
        done = sorted((row for row in rows if (row["path"], row["d"]) == key and row["outcome"] == "ok"),
                      key=lambda row: row["n"])
        if done:
            label = f"{key[0]} (d={key[1]})"
            time_axis.plot([r["n"] for r in done], [r["wall"] for r in done], marker="o", label=label)
            measured = [r for r in done if r["rss_gib"] is not None]
            memory_axis.plot([r["n"] for r in measured], [r["rss_gib"] for r in measured], marker="o", label=label)
    for axis, title in ((time_axis, "wall time of the tlrun command (s)"), (memory_axis, "peak RSS (GiB)")):
        axis.set(xscale="log", yscale="log", xlabel="n per domain", title=title)
        axis.grid(True, which="both", alpha=0.3)
    memory_axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 50000, 100000],
                        help="samples per domain")
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=[*PATHS, *PEER_PATHS])
    parser.add_argument("--skada", default="/tmp/skada",
                        help="a folder where skada and POT are installed (pip install --no-deps --target DIR skada "
                             "pot), for the skada-* paths")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of <output>.json (an earlier run) that this run does not measure again")
    args = parser.parse_args()
    tlrun = shutil.which("tlrun") or str(Path(sys.executable).with_name("tlrun"))
    rows, started, load_before = [], time.perf_counter(), _load()
    earlier = Path(args.output).with_suffix(".json")
    if args.merge and earlier.is_file():
        measured = {(path, n, d) for path in args.paths for n in args.sizes for d in args.dims}
        rows = [row for row in json.loads(earlier.read_text()) if (row["path"], row["n"], row["d"]) not in measured]
    with tempfile.TemporaryDirectory(prefix="tlrun-bench-scaling-data-") as data_root:
        for d in args.dims:
            for n in args.sizes:
                data = Path(data_root) / f"n{n}_d{d}"
                data.mkdir()
                (source, source_labels), (target, target_labels) = make_task(n, d, args.seed)
                np.savez(data / "src.npz", X=source, y=source_labels)
                np.savez(data / "tgt.npz", X=target, y=target_labels)
                gamma = rbf_gamma(source)
                for path in args.paths:
                    if path in PEER_PATHS:
                        measured = measure_peer(args.skada, data, path, args.timeout)
                    else:
                        overrides = PATHS[path] + ([f"method.gamma={gamma:.6g}"] if path in RBF_PATHS else [])
                        measured = measure(tlrun, data, overrides, args.timeout)
                    row = {"path": path, "n": n, "d": d, **measured}
                    rows.append(row)
                    print(row, flush=True)
                    write_results(rows, args, (load_before, "(running)"), (time.perf_counter() - started) / 60)
                shutil.rmtree(data)
    print(write_results(rows, args, (load_before, _load()), (time.perf_counter() - started) / 60))


if __name__ == "__main__":
    main()
