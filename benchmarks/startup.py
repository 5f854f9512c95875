"""Start-up cost of the `tlrun` command: `--help`, a configuration error, and the default run end to end.

Run by hand from the repository root with the project's venv active:

    python benchmarks/startup.py [REPEATS]     # default 3

Writes benchmarks/results/startup.md (median wall seconds on this machine) and prints it. Targets: `--help` and
configuration errors without importing torch, Lightning or MLflow; the default run under a minute on 2 cores.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "startup.md"


def _time(command: list[str], cwd: Path, env: dict[str, str], repeats: int, expect: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if result.returncode != expect:
            raise SystemExit(f"{command} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return statistics.median(seconds)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    tlrun = shutil.which("tlrun", path=str(Path(sys.executable).parent)) or "tlrun"
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
        subprocess.run([tlrun, "method=no_adaptation"], cwd=cwd, env=env, capture_output=True)  # create the store
        rows = [
            ("tlrun --help", _time([tlrun, "--help"], cwd, env, repeats, 0)),
            ("tlrun method=jda scenario=finetune (config error)",
             _time([tlrun, "method=jda", "scenario=finetune"], cwd, env, repeats, 2)),
            ("tlrun (default run: JDA on the embedded digits, store exists)", _time([tlrun], cwd, env, repeats, 0)),
        ]
    lines = [
        "# Start-up cost of `tlrun`",
        "",
        f"Median wall time of {repeats} runs; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Made by `python benchmarks/startup.py`.",
        "",
        "| command | seconds |",
        "|---|---|",
        *[f"| `{name}` | {seconds:.2f} |" for name, seconds in rows],
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
