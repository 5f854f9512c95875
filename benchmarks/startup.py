"""What users wait for: whole `tlrun` commands, wall and CPU time, against plain scripts doing the same work.

Run from the repository root with the project's venv active:

    python benchmarks/startup.py [REPEATS]                                   # default 3; on the machine as it is
    python benchmarks/startup.py 3 --output benchmarks/results/startup_idle.md  # when nothing else runs
    python benchmarks/startup.py 3 --busy          # beside one other process spinning (results/startup.md)

Each command runs as a child process; its wall time is measured around it and its CPU time (user + system) is the
child's own, from ``os.wait4``. Rows:

- ``tlrun --help`` and a configuration error (answered before torch, Lightning or MLflow load);
- ``tlrun method=jda`` (the default task on the embedded digits, default settings, the MLflow store existing)
  against ``benchmarks/plain_digits.py jda`` (the digits loaded as tlrun loads them, tlrun's JDA class fitted
  in-process and scored; no Hydra, no MLflow);
- ``tlrun method=dann threads=1`` (default settings otherwise: scoring every epoch, diagnostics, a checkpoint every
  epoch, the model logged) against ``benchmarks/plain_digits.py dann 1`` (the same networks, data, batches, steps,
  optimizer and schedule in a plain PyTorch loop, the target classified once);
- each again against the plain script with ``--mlflow``: the same work recorded as a script that tracks its runs
  would (one MLflow run in the same store: params, ``target_acc``, the model as a pyfunc model), which prices
  tlrun's own bookkeeping apart from MLflow's;
- ``tlrun method=dann threads=1`` once more against ``plain_digits.py dann 1 --mlflow --lightning``: the tracked
  script that also imports ``pytorch_lightning`` (and uses nothing of it), the floor of a Lightning-based trainer.

Each pair is interleaved (tlrun first in odd repeats, the script first in even ones). Reported: medians and the
spread (min–max) of each, the ratio of the medians, and the machine's 1-minute load average before and after (the
commands run under whatever else the machine does: compare the load with the figures; ``--busy`` keeps one other
process spinning throughout, a loaded machine made reproducibly). Writes benchmarks/results/startup.md (or
``--output``) and prints it. Targets (issue 18): `--help` under 1 s of CPU, a whole `tlrun
method=jda` ≤ 1.2× its plain script, `tlrun method=dann` ≤ 1.1×.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from busy import one_busy_core  # noqa: E402  (the benchmarks folder is no package)

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results" / "startup.md"
PLAIN = BENCHMARKS / "plain_digits.py"


@dataclass
class Timings:
    """Wall and CPU seconds of the repeats of one command."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def cell(self, values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def time_command(command: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> tuple[float, float]:
    """Wall and CPU (user + system of the child) seconds of one run of ``command``."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != expect:
            output.seek(0)
            raise SystemExit(f"{command} exited {child.returncode}:\n{output.read().decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def tlrun_command() -> str:
    return shutil.which("tlrun", path=str(Path(sys.executable).parent)) or "tlrun"


def store_env(folder: Path) -> dict[str, str]:
    """The environment of the commands: an MLflow store of their own, and the repository importable."""
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "PYTHONPATH": os.pathsep.join([str(BENCHMARKS.parent), os.environ.get("PYTHONPATH", "")])}


def compare(pairs: list[tuple[str, list[str], str, list[str]]], repeats: int, cwd: Path, env: dict[str, str],
            ) -> list[tuple[str, Timings, str, Timings]]:
    """Each ``(tlrun name, command, plain name, command)`` pair run ``repeats`` times, interleaved."""
    results = [(name, Timings(), plain_name, Timings()) for name, _, plain_name, _ in pairs]
    for repeat in range(repeats):
        for (_, command, _, plain_command), (name, timings, plain_name, plain_timings) in zip(pairs, results):
            sides = [(name, command, timings), (plain_name, plain_command, plain_timings)]
            for label, argv, into in sides if repeat % 2 == 0 else reversed(sides):
                wall, cpu = time_command(argv, cwd, env)
                into.wall.append(wall)
                into.cpu.append(cpu)
                print(f"repeat {repeat + 1}/{repeats}  {label}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repeats", nargs="?", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS, help="e.g. results/startup_idle.md for an idle run")
    parser.add_argument("--busy", action="store_true", help="keep one other process spinning while measuring")
    args = parser.parse_args()
    with one_busy_core(args.busy):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """Every command and pair, timed; the results file written and printed."""
    repeats = args.repeats
    tlrun, python = tlrun_command(), sys.executable
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        env = store_env(cwd)
        subprocess.run([tlrun, "method=no_adaptation"], cwd=cwd, env=env, capture_output=True)  # create the store
        alone = [("tlrun --help", [tlrun, "--help"], 0),
                 ("tlrun method=jda scenario=finetune (config error)", [tlrun, "method=jda", "scenario=finetune"], 2)]
        single = []
        for name, command, expect in alone:
            timings = Timings()
            for _ in range(repeats):
                wall, cpu = time_command(command, cwd, env, expect)
                timings.wall.append(wall)
                timings.cpu.append(cpu)
            single.append((name, timings))
        commands = [("tlrun method=jda", [tlrun, "method=jda"], "plain_digits.py jda", [python, str(PLAIN), "jda"]),
                    ("tlrun method=dann threads=1", [tlrun, "method=dann", "threads=1"],
                     "plain_digits.py dann 1", [python, str(PLAIN), "dann", "1"])]
        pairs = compare([pair for name, command, plain_name, plain in commands
                         for pair in ((name, command, plain_name, plain),
                                      (name, command, f"{plain_name} --mlflow", [*plain, "--mlflow"]))]
                        + [("tlrun method=dann threads=1", commands[1][1], "plain_digits.py dann 1 --mlflow --lightning",
                            [python, str(PLAIN), "dann", "1", "--mlflow", "--lightning"])],
                        repeats, cwd, env)
    load_after = os.getloadavg()
    lines = [
        "# What users wait for: whole `tlrun` commands against plain scripts",
        "",
        f"Medians (min–max) of {repeats} runs, each a child process: wall seconds, and CPU seconds (the child's user + "
        f"system, `os.wait4`). {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}{', one other process spinning throughout' if args.busy else ''}. 1-minute load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"(5-minute: {load_before[1]:.2f}, {load_after[1]:.2f}). Made by `python benchmarks/startup.py {repeats}"
        f"{' --busy' * args.busy}{'' if args.output == RESULTS else ' --output ' + str(args.output)}`.",
        "",
        "| command | wall s | CPU s |",
        "|---|---|---|",
        *[f"| `{name}` | {t.cell(t.wall)} | {t.cell(t.cpu)} |" for name, t in single],
        "",
        "Each pair interleaved; the ratio is tlrun's median over the plain script's.",
        "",
        "| command | wall s | CPU s | plain script | wall s | CPU s | ratio wall | ratio CPU |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| `{name}` | {t.cell(t.wall)} | {t.cell(t.cpu)} | `{plain_name}` | {p.cell(p.wall)} | {p.cell(p.cpu)} | "
          f"{statistics.median(t.wall) / statistics.median(p.wall):.2f} | "
          f"{statistics.median(t.cpu) / statistics.median(p.cpu):.2f} |" for name, t, plain_name, p in pairs],
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
