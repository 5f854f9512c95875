"""Wall time of a 4-job CPU sweep per Hydra launcher, and the per-run cost of MLflow tracking.

Run by hand from the repository root with the project's venv active (about 15 minutes on 2 cores, half of it the heavy sweep under submitit_local):

    python benchmarks/sweep_launchers.py [--sweep-repeats 1] [--tracking-repeats 5] [--no-heavy]
        [--ray-pythonpath /tmp/plugsite:/tmp/plugsite-ray]

Writes benchmarks/results/sweep_launchers.md and prints it.

**Part 1, launchers.** The same 4-job sweep, ``tlrun --multirun`` as a subprocess, with each launcher: basic (the
jobs one after another in the ``tlrun`` process), joblib (``hydra.launcher.n_jobs=2``), submitit_local and Ray
(``hydra.launcher.ray.init.num_cpus=2``; only where ``ray`` and ``hydra_plugins.hydra_ray_launcher`` import, with
``--ray-pythonpath`` prepended to ``PYTHONPATH`` for that row alone, else the row says "not installed"). Two
sweeps: *light*, ``method=coral,jda dataset.target=thick,rotate`` (closed-form methods on the embedded digits,
about a second of compute each), and *heavy* (skip it with ``--no-heavy``), ``method=dann method.epochs=10
diagnostics=false dataset.target=thick,rotate seed=0,1`` (about 10 s of training each, alone on the machine), where
running two jobs at once could pay for the extra start-ups. Every sweep runs in a fresh temporary folder (its working directory,
``hydra.sweep.dir`` and ``cache_dir``) with its own sqlite store, created before the clock starts (store creation
is not timed; the experiment and the sweep's parent run are created by the sweep, as in real use). The wall time
is the median of ``--sweep-repeats`` (default 1: the machine has 2 cores shared with others, and the whole part
takes minutes). From the store it checks that the sweep made 1 parent run (FINISHED) and 4 FINISHED children
(and exits non-zero otherwise), and from the runs' start and end times it splits the wall time into: before the
first job's MLflow run opened (process start, imports, launcher start-up, Ray's cluster start), the span of the
runs, and after the last run ended (the sweep's comparison table, closing the parent, shutting down), plus the
runs' summed duration and the most runs open at once. For reference it times one Python process that imports
what a job imports (tlrun.run, tlrun.tracking, torch, Lightning, scikit-learn, matplotlib).

**Part 2, tracking overhead per run.** In this process, ``tlrun.run.run_job(cfg)`` for a few configs (``method=coral``;
``method=dann method.epochs=1 diagnostics=false``), with tracking on (a sqlite store created beforehand, as the
sweeps use) and off. "Off" swaps ``tlrun.tracking.TrackedRun`` (``run_job`` imports it from there when it runs)
for :class:`NullRun`, a stand-in with the same interface that stores nothing: every ``log_*``/``set_tags`` call is
counted and dropped, ``log_model`` saves nothing (the real one pickles the fitted method, checks it reads back and
logs it as an MLflow model), ``log_figure`` does not render the figure to PNG, ``lightning_logger()`` returns ``None`` (so deep methods train
with ``Trainer(logger=False)``: no MLflowLogger, no per-step metric writes), and it keeps only the latest metric
values in a dict, because ``run_job`` returns them (read as ``tracked.client.get_run(run_id).data.metrics``).
What stays in both modes, so the difference leaves it out: composing the run's tags (``_tags``, which runs
``git rev-parse`` and ``git status``; timed separately and reported), flattening the config into params, the config
as YAML, drawing the confusion-matrix figure, the per-class CSV text, and the end-of-run summary (printed into a
buffer). Each config is warmed up once off, then once on (imports, opening the store, creating the experiment:
those first runs are reported apart), then run ``--tracking-repeats`` times (default 5) alternating on/off (the
order flips every repeat); the table gives the medians and the difference in seconds per run, and the counts of
what one tracked run writes (params, tags, metric points, artifacts, read back from the store) and of the
runner's calls to the run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "sweep_launchers.md"
EXPERIMENT = "bench-sweep"

SWEEPS = {
    "light": ["method=coral,jda", "dataset.target=thick,rotate"],
    "heavy": ["method=dann", "method.epochs=10", "diagnostics=false", "dataset.target=thick,rotate", "seed=0,1"],
}
#: The overrides of tests/cli/test_sweeps.py's LAUNCHERS table.
LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
    "ray": ["hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2"],
}
#: In-process configs for part 2 (besides the store, the experiment, cache_dir and no progress bar).
TRACKING_CONFIGS = {
    "coral (closed form)": ["method=coral"],
    "dann, 1 epoch (deep)": ["method=dann", "method.epochs=1", "diagnostics=false"],
}
JOB_IMPORTS = "import tlrun.run, tlrun.tracking, torch, pytorch_lightning, sklearn, matplotlib.pyplot"
COMMON = ["trainer.enable_progress_bar=false", f"logger.experiment={EXPERIMENT}"]


def _create_store(folder: Path) -> str:
    """An empty sqlite store at ``<folder>/outputs/mlflow.db`` (artifacts beside it, in ``outputs/mlartifacts``)."""
    from mlflow.tracking import MlflowClient

    (folder / "outputs").mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'outputs' / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the tables
    return uri


# ------------------------------------------------------------------------------------------------ part 1


def _ray_check(ray_pythonpath: str) -> str | None:
    """Ray's and the plugin's versions when both import with ``ray_pythonpath`` prepended, else ``None``."""
    code = ("import ray, hydra_plugins.hydra_ray_launcher.ray_launcher, importlib.metadata as m; "
            "print(ray.__version__, m.version('hydra-ray-launcher'), m.version('cloudpickle'))")
    result = subprocess.run([sys.executable, "-c", code], env=_ray_env(os.environ, ray_pythonpath),
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None
    ray, plugin, cloudpickle = result.stdout.split()
    return f"ray {ray}, hydra-ray-launcher {plugin}, cloudpickle {cloudpickle}"


def _ray_env(env: Any, ray_pythonpath: str) -> dict[str, str]:
    env = dict(env)
    if ray_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ray_pythonpath, env.get("PYTHONPATH", "")) if p)
    return env


def _most_at_once(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, change in events:  # an end and a start at the same millisecond: the end first (-1 sorts before 1)
        now += change
        most = max(most, now)
    return most


def _sweep_once(tlrun: str, sweep: list[str], launcher: list[str], ray_pythonpath: str | None) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="tlrun-bench-sweep-") as name:
        folder = Path(name)
        store = _create_store(folder)
        env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true"}
        if ray_pythonpath is not None:
            env = _ray_env(env, ray_pythonpath)
        command = [tlrun, "--multirun", *sweep, *launcher, *COMMON, f"hydra.sweep.dir={folder / 'sweep'}",
                   f"cache_dir={folder / 'cache'}"]
        started_at = time.time()
        start = time.perf_counter()
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
        ended_at = started_at + wall
        output = (result.stdout + result.stderr)[-4000:]
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{output}")
        client = MlflowClient(tracking_uri=store)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
        children = [r for r in runs if r.data.tags.get("sweep.role") != "parent"]
        ok = (len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 4
              and all(c.info.status == "FINISHED" for c in children)
              and all(c.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id for c in children))
        if not ok:
            found = [(r.data.tags.get("sweep.role", "child"), r.info.status) for r in runs]
            raise SystemExit(f"{' '.join(command)}: expected 1 parent and 4 FINISHED children, found {found}\n{output}")
        intervals = [(c.info.start_time, c.info.end_time) for c in children]
        first, last = min(s for s, _ in intervals) / 1000, max(e for _, e in intervals) / 1000
        return {
            "wall": wall,
            "before": first - started_at,
            "span": last - first,
            "after": ended_at - last,
            "runs": sum(e - s for s, e in intervals) / 1000,
            "at_once": _most_at_once(intervals),
        }


def _time_imports(repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", JOB_IMPORTS], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def part_sweeps(args: argparse.Namespace, ray_versions: str | None) -> tuple[list[str], dict[str, Any]]:
    tlrun = shutil.which("tlrun", path=str(Path(sys.executable).parent)) or "tlrun"
    imports = _time_imports(max(args.sweep_repeats, 1))
    rows, measured = [], {}
    sweeps = {k: v for k, v in SWEEPS.items() if k != "heavy" or not args.no_heavy}
    for sweep_name, sweep in sweeps.items():
        for launcher_name, launcher in LAUNCHERS.items():
            label = f"| {sweep_name} | {launcher_name} |"
            if launcher_name == "ray" and ray_versions is None:
                rows.append(f"{label} not installed | | | | | | |")
                continue
            ray_path = args.ray_pythonpath if launcher_name == "ray" else None
            print(f"sweep {sweep_name}, launcher {launcher_name} ...", flush=True)
            times = [_sweep_once(tlrun, sweep, launcher, ray_path) for _ in range(args.sweep_repeats)]
            median = {key: statistics.median(t[key] for t in times) for key in times[0]}
            measured[(sweep_name, launcher_name)] = median
            basic = measured.get((sweep_name, "basic"), median)["wall"]
            rows.append(
                f"{label} {median['wall']:.1f} | {basic / median['wall']:.2f}× | {median['before']:.1f} | "
                f"{median['span']:.1f} | {median['after']:.1f} | {median['runs']:.1f} | {median['at_once']:.0f} |"
            )
            print(rows[-1], flush=True)
    lines = [
        "## 1. A 4-job sweep per launcher",
        "",
        f"Sweeps (each with `{' '.join(COMMON)}`, `hydra.sweep.dir`, `cache_dir` in a fresh temporary folder):",
        "",
        *[f"- **{name}**: `tlrun --multirun {' '.join(sweep)}`" for name, sweep in sweeps.items()],
        "",
        "Launcher overrides: " + "; ".join(f"{name} `{' '.join(o) or '(none)'}`" for name, o in LAUNCHERS.items()) + ".",
        "",
        f"Seconds, median of {args.sweep_repeats} run(s) per row (1 by default: 2 shared cores, minutes per row; single "
        "runs are noisy). Each sweep's sqlite store was created before the clock started (not timed). *before first "
        "run*: from starting `tlrun` until the first job's MLflow run opened; *runs span*: first run opened to last "
        "run ended; *after last run*: the sweep's comparison table, closing its parent run, exiting; *sum of runs*: the 4 "
        "runs' own durations (MLflow start to end) added up. Every sweep was checked in its store: 1 parent, 4 "
        "FINISHED children.",
        "",
        "| sweep | launcher | wall s | speed-up vs basic | before first run s | runs span s | after last run s | "
        "sum of runs s | most runs at once |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"For reference, one Python process importing what a job imports (`{JOB_IMPORTS}`): **{imports:.1f} s** "
        f"(median of {max(args.sweep_repeats, 1)}).",
        "",
        *_explain(measured, imports),
    ]
    return lines, {"imports": imports, "measured": measured}


#: How each launcher runs the jobs (from the plugins' code and conf/hydra/launcher/ray.yaml).
HOW = {
    "basic": "runs the jobs one after another inside the `tlrun` process, which imports torch, Lightning and MLflow once",
    "joblib": "hands the jobs to 2 loky worker processes (Hydra's joblib plugin hard-codes the loky backend); each "
              "worker starts Python and imports tlrun, torch, Lightning and MLflow once, then takes jobs in turn",
    "submitit_local": "starts one new process per job (`python -u -m submitit.core._submit`), so every job pays "
                      "Python's start and the imports, and the jobs start together on the 2 cores",
    "ray": "starts a local Ray instance first (its GCS, raylet and worker processes), and with `max_calls: 1` "
           "(conf/hydra/launcher/ray.yaml) each job runs in a fresh Ray worker process that imports everything again",
}


def _explain(measured: dict[tuple[str, str], dict[str, float]], imports: float) -> list[str]:
    """What the time went to, in words, with this run's numbers."""
    lines = ["**What dominates.**", ""]
    for (sweep, launcher), m in measured.items():
        share = 100 * (m["before"] + m["after"]) / m["wall"]
        basic = measured.get((sweep, "basic"), m)
        lines.append(
            f"- {sweep}, {launcher}: {m['before']:.0f} s before the first run and {m['after']:.0f} s after the last "
            f"({share:.0f} % of the {m['wall']:.0f} s wall time); the 4 runs themselves {m['runs']:.0f} s in all, at "
            f"most {m['at_once']:.0f} at once"
            + (f", each {m['runs'] / basic['runs']:.1f}× as long as under basic." if launcher != "basic" else ".")
        )
    lines += ["", "How the launchers run the jobs:", ""]
    lines += [f"- **{launcher}** {how}." for launcher, how in HOW.items()
              if any(launcher == name for _, name in measured)]
    lines += [
        "",
        f"A job's imports alone take {imports:.1f} s here, comparable to or more than a closed-form run, so in the light "
        "sweep start-up, not compute, sets the wall time: every extra process a launcher starts costs about that, and "
        "2 cores cannot hide it. Parallel runs on 2 cores also share them (each torch process uses the cores it sees), "
        "so a run takes longer when another runs beside it: compare *sum of runs* between launchers.",
        "",
    ]
    return lines


# ------------------------------------------------------------------------------------------------ part 2


class NullRun:
    """:class:`tlrun.tracking.TrackedRun`'s interface, storing nothing (see the module docstring)."""

    opened = 0
    #: Calls (``log_params``...) and items (params, metric values...) of the last run, by method.
    calls: Counter = Counter()
    items: Counter = Counter()

    def __init__(self, experiment: str, tracking_uri: str | None = None, run_name: str | None = None,
                 tags: dict[str, str] | None = None, run_id: str | None = None) -> None:
        NullRun.opened += 1
        NullRun.calls, NullRun.items = Counter(), Counter({"tags": len(tags or {})})
        self.run_id = run_id or f"null-run-{NullRun.opened}"  # per-run paths (the checkpoint's) stay apart
        self.tracking_uri = "(tracking off)"
        self.status = "RUNNING"
        self.metrics: dict[str, float] = {}
        self.client = self  # run_job reads the final metrics as tracked.client.get_run(run_id).data.metrics

    def _count(self, method: str, kind: str, n: int) -> None:
        NullRun.calls[method] += 1
        NullRun.items[kind] += n

    def log_params(self, params: dict[str, str]) -> None:
        self._count("log_params", "params", len(params))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._count("set_tags", "tags", len(tags))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._count("log_metrics", "metric values", len(metrics))
        self.metrics.update({key: float(value) for key, value in metrics.items()})

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        self._count("log_artifact", "artifacts", 1)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._count("log_text", "artifacts", 1)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._count("log_figure", "artifacts", 1)

    def log_model(self, predictor: Any, input_example: Any) -> None:
        self._count("log_model", "artifacts", 1)

    def lightning_logger(self) -> None:
        return None  # Trainer(logger=False)

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(data=SimpleNamespace(metrics=dict(self.metrics)))

    def __enter__(self) -> "NullRun":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self.status = "FINISHED" if exc_type is None else "FAILED"
        return False


@contextlib.contextmanager
def _tracking(on: bool):
    import tlrun.tracking

    real = tlrun.tracking.TrackedRun
    if not on:
        tlrun.tracking.TrackedRun = NullRun
    try:
        yield
    finally:
        tlrun.tracking.TrackedRun = real


def _run(cfg: Any, on: bool) -> tuple[float, str]:
    from tlrun.run import run_job

    opened = NullRun.opened
    with _tracking(on), contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        outcome = run_job(cfg)
        seconds = time.perf_counter() - start
    if (NullRun.opened > opened) == on or outcome.run_id.startswith("null-run") == on:
        raise SystemExit(f"tracking {'on' if on else 'off'}: the run went to the wrong kind of run ({outcome.run_id})")
    return seconds, outcome.run_id


def _stored(store: str, run_id: str) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise SystemExit(f"tracked run {run_id} ended {run.info.status}")

    def artifacts(path: str | None = None) -> int:
        return sum(artifacts(f.path) if f.is_dir else 1 for f in client.list_artifacts(run_id, path))

    return {
        "params": len(run.data.params),
        "tags": len(run.data.tags),
        "metric points": sum(len(client.get_metric_history(run_id, key)) for key in run.data.metrics),
        "artifacts": artifacts(),
    }


def part_tracking(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    from hydra import compose, initialize_config_dir

    from tlrun.config import config_dir, register_resolvers
    from tlrun.tracking import git_commit

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    register_resolvers()
    rows, write_lines, cold_lines, measured = [], [], [], {}
    previous_cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="tlrun-bench-tracking-") as name:
        folder = Path(name)
        os.chdir(folder)  # anything MLflow or Lightning writes relative to the working directory lands here
        try:
            store = _create_store(folder)
            for label, overrides in TRACKING_CONFIGS.items():
                base = [f"logger.tracking_uri={store}", "logger.experiment=bench-tracking", f"cache_dir={folder / 'cache'}",
                        "trainer.enable_progress_bar=false"]
                with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
                    cfg = compose("config", overrides=base + overrides)
                print(f"tracking overhead: {label} ...", flush=True)
                cold_off, _ = _run(cfg, on=False)
                cold_on, _ = _run(cfg, on=True)
                seconds: dict[bool, list[float]] = {True: [], False: []}
                run_id = ""
                for repeat in range(args.tracking_repeats):
                    for on in ((True, False) if repeat % 2 == 0 else (False, True)):
                        took, run = _run(cfg, on)
                        seconds[on].append(took)
                        if on:
                            run_id = run
                on_s, off_s = statistics.median(seconds[True]), statistics.median(seconds[False])
                measured[label] = {"on": on_s, "off": off_s}
                rows.append(f"| {label} | `{' '.join(overrides)}` | {on_s:.2f} | {off_s:.2f} | {on_s - off_s:+.2f} | "
                            f"{100 * (on_s - off_s) / off_s:+.0f} % |")
                print(rows[-1], flush=True)
                stored = _stored(store, run_id)
                calls = ", ".join(f"{method} {n}" for method, n in sorted(NullRun.calls.items()))
                lightning_points = stored["metric points"] - NullRun.items["metric values"]
                write_lines.append(
                    f"| {label} | {stored['params']} | {stored['tags']} | {stored['metric points']} "
                    f"({lightning_points} through Lightning's MLflowLogger) | {stored['artifacts']} | {calls} |")
                cold_lines.append(f"| {label} | {cold_off:.2f} | {cold_on:.2f} |")
            shared = []
            for _ in range(5):
                start = time.perf_counter()
                git_commit(REPO / "tlrun")
                shared.append(time.perf_counter() - start)
        finally:
            os.chdir(previous_cwd)
    lines = [
        "## 2. Tracking overhead per run (in-process `run_job`)",
        "",
        f"Median seconds of {args.tracking_repeats} runs each, on and off alternating (the order flips every repeat), "
        "after one warm-up run off and one on. *On*: a `TrackedRun` into a sqlite store created beforehand (the "
        "same store for every run, so it grows by one run per on-run). *Off*: `tlrun.tracking.TrackedRun` swapped for "
        "a null run that stores nothing and gives Lightning no logger (see the module docstring for what stays in "
        "both modes). Every config also gets `trainer.enable_progress_bar=false`.",
        "",
        "| config | overrides | tracking on s | tracking off s | added by MLflow s/run | added % |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "What one tracked run wrote (read back from the store; tags include MLflow's own `mlflow.*`), and the "
        "runner's calls to its run (counted by the null run, the same in both modes):",
        "",
        "| config | params | tags | metric points | artifacts | calls to the run |",
        "|---|---|---|---|---|---|",
        *write_lines,
        "",
        "The warm-up runs, not in the medians (the first of each config in this process: the first run off pays the "
        "imports of torch, scikit-learn, matplotlib, and for the deep config Lightning's; the first run on creates the "
        "experiment and is the first to use MLflow's logging and artifact code):",
        "",
        "| config | first run off s | first run on s |",
        "|---|---|---|",
        *cold_lines,
        "",
        f"Work that stays in both modes, so is not in the difference: `git_commit` for the `git_commit` tag "
        f"(two `git` calls) takes {statistics.median(shared):.3f} s per run.",
        "",
    ]
    return lines, {"measured": measured, "git": statistics.median(shared)}


# ------------------------------------------------------------------------------------------------ main


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sweep-repeats", type=int, default=1, help="runs of each sweep (median; default 1)")
    parser.add_argument("--tracking-repeats", type=int, default=5, help="on/off pairs per config (median; default 5)")
    parser.add_argument("--no-heavy", action="store_true", help="skip the heavy (DANN) sweep")
    parser.add_argument("--ray-pythonpath", default="",
                        help="prepended to PYTHONPATH for the Ray row only (where ray and hydra-ray-launcher live)")
    parser.add_argument("--parts", default="sweeps,tracking", help="comma-separated: sweeps, tracking")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    ray_versions = _ray_check(args.ray_pythonpath)
    body: list[str] = []
    if "sweeps" in parts:
        body += part_sweeps(args, ray_versions)[0]
    if "tracking" in parts:
        body += part_tracking(args)[0]
    minutes = (time.perf_counter() - started) / 60
    load_after = os.getloadavg()[0]

    versions = ", ".join(f"{p} {_version(p)}" for p in (
        "torch", "pytorch-lightning", "mlflow", "hydra-core", "hydra-joblib-launcher", "joblib",
        "hydra-submitit-launcher", "submitit"))
    command = " ".join(["python", "benchmarks/sweep_launchers.py", *sys.argv[1:]])
    lines = [
        "# Sweeps per launcher, and the per-run cost of MLflow tracking",
        "",
        f"Made by `{command}` (from the repository root, the project's venv active).",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {versions}; {ray_versions or 'Ray not installed'}"
        + (f" (from `--ray-pythonpath {args.ray_pythonpath}`)" if ray_versions and args.ray_pythonpath else "") + ".",
        f"Whole benchmark: {minutes:.1f} min; 1-minute load average {load_before:.1f} before, {load_after:.1f} after "
        "(other processes share the 2 cores: single timings are noisy).",
        "",
        *body,
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
