"""Fuzz the `tlrun` command line: wrong-typed method settings and corrupt data files must each end in a clean error.

Run by hand from the repository root with the project's venv active (not in CI: one process per case):

    python benchmarks/cli_fuzz.py [--jobs 2] [--only settings|data] [--methods jda,dann]

The cases come from the configs: every method (``conf/method/*.yaml``) × each of its settings (with those merged
from ``conf/method_base``), set to a value of another type than the one its checks declare
(:func:`tlrun.methods.settings.values_of_other_types`, rotating through them from one setting to the next); then
corrupt data files, built in a temporary folder, for ``dataset=features`` (``.npz`` and ``.csv``) and
``dataset=image_folder``. Each case runs ``python -m tlrun.cli ... threads=1`` into a store of its own.

A case is clean when the process exits 2, the last line of stderr is ``tlrun: error: ...`` (naming
``method.<key>`` for a settings case), no traceback was printed, and the store holds no MLflow run. Writes
benchmarks/results/cli_fuzz.md (a table: case, exit code, clean, the error's first words; and the % clean) and
prints it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tlrun.config import group_options, option_keys, option_node  # noqa: E402
from tlrun.methods.settings import as_written, setting_types, values_of_other_types  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "cli_fuzz.md"
TIMEOUT = 600  # seconds per case
ERROR = "tlrun: error:"


@dataclass
class Case:
    """One command line; ``build`` writes its data into a folder, which ``dataset.root`` then names."""

    group: str
    name: str
    overrides: list[str]
    build: Callable[[Path], None] | None = None
    #: What the error line must contain (a settings case: ``method.<key>=``).
    names: str = ""


@dataclass
class Outcome:
    case: Case
    code: int
    #: Why the ending is not clean (empty: clean).
    faults: list[str]
    message: str


# ------------------------------------------------------------------------------------------ the cases


def settings_cases(methods: list[str]) -> list[Case]:
    """Every setting of every method, set to a value its declared type does not allow."""
    cases = []
    for method in methods:
        types = setting_types(str(option_node("method", method)["_target_"]))
        keys = sorted(key for key in option_keys("method", method) if not key.startswith("_"))
        for index, key in enumerate(keys):
            wrong = values_of_other_types(types.get(key))
            value = as_written(wrong[index % len(wrong)])
            cases.append(Case("settings", f"{method} {key}={value}", [f"method={method}", f"method.{key}={value}"],
                              names=f"method.{key}="))
    return cases


def _features(rows: int = 30, columns: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Sound arrays ``X`` (random features) and ``y`` (three classes)."""
    return {"X": np.random.default_rng(seed).normal(size=(rows, columns)), "y": np.arange(rows) % 3}


def _changed(change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    return dict(zip("Xy", change(**_features())))


def _nan(X: np.ndarray, y: np.ndarray, value: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
    X[3, 2] = value
    return X, y


def _npz(source: dict[str, np.ndarray], target: dict[str, np.ndarray] | None = None) -> Callable[[Path], None]:
    """A builder of ``src.npz`` (the arrays ``source``) and ``tgt.npz`` (``target``, by default sound)."""

    def build(root: Path) -> None:
        np.savez(root / "src.npz", **source)
        np.savez(root / "tgt.npz", **(target or _features(seed=1)))

    return build


def _truncated_npz(root: Path) -> None:
    _npz(_features())(root)
    data = (root / "src.npz").read_bytes()
    (root / "src.npz").write_bytes(data[: len(data) // 2])


def _ragged_csv(root: Path) -> None:
    np.savez(root / "tgt.npz", **_features(seed=1))
    source = _features()
    lines = [",".join(f"{v:.4f}" for v in row) + f",{label}" for row, label in zip(source["X"], source["y"])]
    lines[7] = lines[7].split(",", 1)[1]  # one cell short
    (root / "src.csv").write_text("\n".join(lines) + "\n")


FEATURE_CASES: dict[str, Callable[[Path], None]] = {
    "truncated .npz": _truncated_npz,
    "NaN in the features": _npz(_changed(_nan)),
    "inf in the features": _npz(_changed(lambda X, y: _nan(X, y, np.inf))),
    "labels that are fractions": _npz(_changed(lambda X, y: (X, y + 0.5))),
    "labels that are negative": _npz(_changed(lambda X, y: (X, -1 - y))),
    "labels missing (no y)": _npz({"X": _features()["X"]}),
    "empty arrays": _npz({"X": np.zeros((0, 5)), "y": np.zeros(0, dtype=int)}),
    "fewer labels than samples": _npz(_changed(lambda X, y: (X, y[:-4]))),
    "feature sizes differ (5 vs 7)": _npz(_features(), _features(columns=7, seed=1)),
    ".csv with a ragged row": _ragged_csv,
}


def _images(root: Path, domains: tuple[str, ...] = ("src", "tgt"), classes: tuple[str, ...] = ("a", "b")) -> None:
    for domain in domains:
        for k, label in enumerate(classes):
            for i in range(3):
                path = root / domain / label / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (12, 10), (80 * k, 60 * i, 40)).save(path)


def _truncated_image(root: Path) -> None:
    _images(root)
    image = root / "src" / "a" / "0.png"
    image.write_bytes(image.read_bytes()[:40])


def _text_as_image(root: Path) -> None:
    _images(root)
    (root / "src" / "b" / "0.png").write_text("not an image")


def _empty_class_folders(root: Path) -> None:
    _images(root, domains=("tgt",))
    for label in ("a", "b"):
        (root / "src" / label).mkdir(parents=True)


IMAGE_CASES: dict[str, Callable[[Path], None]] = {
    "truncated image file": _truncated_image,
    "text file named .png": _text_as_image,
    "empty class folders (source)": _empty_class_folders,
}


def data_cases() -> list[Case]:
    """Corrupt files for ``dataset=features`` (with JDA) and ``dataset=image_folder`` (no adaptation on a small
    random ResNet-18, asked for on purpose)."""
    features = ["dataset=features", "dataset.source=src", "dataset.target=tgt", "method=jda"]
    images = ["dataset=image_folder", "dataset.source=src", "dataset.target=tgt", "method=no_adaptation",
              "backbone=resnet18", "backbone.weights=none", "backbone.image_size=32"]
    return ([Case("features", name, features, build) for name, build in FEATURE_CASES.items()]
            + [Case("image_folder", name, images, build) for name, build in IMAGE_CASES.items()])


# ------------------------------------------------------------------------------------------ running them


def _runs(store: Path) -> int:
    """MLflow runs in the sqlite store (0 when it does not exist), read without MLflow."""
    if not store.is_file():
        return 0
    with sqlite3.connect(store) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0


def run_case(case: Case, folder: Path) -> Outcome:
    """Run the case's command line in ``folder`` and judge its ending."""
    data = folder / "data"
    data.mkdir(parents=True)
    if case.build:
        case.build(data)
    overrides = case.overrides + ([f"dataset.root={data}"] if case.build else [])
    store = folder / "store" / "mlflow.db"
    command = [sys.executable, "-m", "tlrun.cli", *overrides, f"logger.tracking_uri=sqlite:///{store}",
               f"hydra.run.dir={folder / 'hydra'}", f"cache_dir={folder / 'cache'}", "threads=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    try:
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return Outcome(case, -1, ["timed out"], f"no ending after {TIMEOUT} s")
    lines = result.stderr.replace(str(data), "<data>").strip().splitlines() or [""]
    last, runs = lines[-1], _runs(store)
    faults = [fault for fault, found in (
        (f"exit {result.returncode}", result.returncode != 2), (f"last line not {ERROR}", not last.startswith(ERROR)),
        (f"{case.names} not named", last.startswith(ERROR) and case.names not in last),
        ("traceback", "Traceback" in result.stderr), (f"{runs} MLflow run", runs > 0)) if found]
    message = last.removeprefix(ERROR).strip() if last.startswith(ERROR) else next(
        (line for line in reversed(lines) if "Error" in line.split(":")[0]), last)  # the exception's line
    return Outcome(case, result.returncode, faults, message)


def _first_words(message: str, words: int = 14) -> str:
    cut = message.split()
    return " ".join(cut[:words]) + (" …" if len(cut) > words else "")


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def report(outcomes: list[Outcome], command: str, seconds: float) -> str:
    clean = sum(not outcome.faults for outcome in outcomes)
    groups = sorted({outcome.case.group for outcome in outcomes}, key=[o.case.group for o in outcomes].index)
    lines = [
        "# CLI fuzz: wrong-typed settings and corrupt data files",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {_commit()}, on {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}).",
        f"Command: `{command}` ({seconds / 60:.1f} min)",
        "",
        "Clean: exit code 2, stderr's last line `tlrun: error: ...` (naming `method.<key>` for a settings case), no "
        "traceback, and no MLflow run in the case's store.",
        "",
        f"**{clean} of {len(outcomes)} cases clean ({100 * clean / max(len(outcomes), 1):.1f} %)**: "
        + ", ".join(f"{group} {sum(not o.faults for o in outcomes if o.case.group == group)}/"
                    f"{sum(o.case.group == group for o in outcomes)}" for group in groups) + ".",
        "",
        "| case | exit | clean | error (first words) |",
        "|---|---|---|---|",
    ]
    for outcome in outcomes:
        text = _first_words(outcome.message).replace("|", "\\|")
        lines.append(f"| {outcome.case.group}: {outcome.case.name.replace('|', '/')} | {outcome.code} | "
                     f"{'**no**: ' + ', '.join(outcome.faults) if outcome.faults else 'yes'} | {text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--only", choices=("settings", "data"), help="run one kind of case")
    parser.add_argument("--methods", help="comma-separated methods for the settings cases (default: all)")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else group_options("method")
    cases = ((settings_cases(methods) if args.only != "data" else [])
             + (data_cases() if args.only != "settings" else []))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda numbered: run_case(numbered[1], Path(scratch) / str(numbered[0])),
                                 enumerate(cases)))
    text = report(outcomes, "python benchmarks/cli_fuzz.py " + " ".join(sys.argv[1:]), time.perf_counter() - start)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
