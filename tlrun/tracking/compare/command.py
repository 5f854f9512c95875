"""``tlrun compare``: a paper-style table (methods × tasks, the average last) and plots from the MLflow store.

Usage (settings are ``key=value``, like ``tlrun ui``)::

    tlrun compare                                   # the latest sweep, or else the latest experiment's runs
    tlrun compare sweep=outputs/multirun/2026-01-02/10-11-12      # a sweep by its folder (or its parent run id)
    tlrun compare experiment=jda_office_caltech_surf tag.backbone=identity metric=source_acc

Settings: ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI``, else tlrun's store ``./outputs/mlflow.db``),
``experiment`` (a name), ``sweep`` (a parent run id, a sweep folder, or ``latest``), ``tag.<key>=<value>``
(several allowed), ``metric`` (default ``target_acc``), ``better`` (``higher``, or ``lower`` for loss-like
metrics), ``out`` (the folder for the files, default ``outputs/compare/<timestamp>``). With no filter the latest
sweep is shown (the most recent parent run); with no sweep in the store, the runs of the most recently created
experiment. When the selection is one whole sweep (no tag filter) the files are also logged to its parent run,
under ``comparison/`` (``comparison/<metric>/`` for a metric other than ``target_acc``).

The table. Only FINISHED runs that logged the metric count (the others are counted and reported). Rows are
methods (tag ``method``); runs of one method whose params differ in anything but the seed, the task and volatile
keys (:data:`~tlrun.tracking.compare.table.IGNORED_PARAMS`) make one row per setting, labelled with the differing keys
(``jda (method.lamb=0.1)``; a varying ``<group>.name`` stands for its whole group: ``dann (backbone=resnet50)``).
Columns are tasks ``source→target`` (tags), in the order the runs started, then ``avg``. Statistics:

* a cell is the mean over its runs (the repeats: seeds) ± the sample standard deviation (ddof = 1); a single run
  shows its value alone; ``(n=k)`` marks a cell whose number of runs differs from the table's usual one;
* ``avg`` is the mean over the tasks of the per-task means, shown only when the row has every task;
* the best mean of each column is marked (bold in Markdown and LaTeX, highlighted on the terminal), highest by
  default; equal values as displayed are all marked;
* accuracies (metric names ending in ``acc``, and ``gzsl_h``) are fractions in the store and shown in percent;
  other metrics as logged.

Published numbers: a recipe may hold a top-level ``published`` block, which reaches every run in its
``config.yaml`` artifact (read from one run of the selection)::

    published:
      citation: Long et al., ICCV 2013, Table 2
      metric: target_acc                  # the metric the numbers are for (default target_acc)
      values:                             # in the table's unit: percent for accuracies
        jda: {caltech->amazon: 44.78, ...}   # tasks written source->target (or source→target)

For every method with published numbers the table adds a row ``<method> (published)`` and, for each of the
method's rows, a row ``<label> Δ`` = ours − published (mean over seeds minus the published value; the ``avg``
difference is between the two averages over the table's tasks). Published and Δ rows are never marked best.

Files: ``comparison.md``, ``comparison.csv`` (one line per row: for every task its mean, std and n, then avg, in
the table's unit), ``comparison.tex`` (a booktabs ``tabular``), ``per_task.png`` (bars per task, std error bars),
and, when exactly one hyperparameter varies, ``<metric>_vs_<param>.png`` (mean ± std over all runs of a setting,
seeds and tasks pooled, against the parameter's value; one line per method, dashed when the method does not vary).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from tlrun.errors import TlrunError
from tlrun.tracking.arguments import key_value_settings
from tlrun.tracking.compare.published import published_numbers
from tlrun.tracking.compare.render import file_safe, rich_table, write_files
from tlrun.tracking.compare.select import TAG_PREFIX, select_runs
from tlrun.tracking.compare.table import Comparison, comparison_table
from tlrun.tracking.store import open_client, store_failure
from tlrun.tracking.sweeps import sweep_runs

SETTINGS: dict[str, Any] = {"tracking_uri": None, "experiment": None, "sweep": None, "metric": "target_acc",
                            "better": "higher", "out": None}


def wide_console() -> Any:
    """A Rich console for the tables: the terminal's width, or, when the output is a file or a pipe (a log, CI),
    no width limit, so that no column is cut to fit Rich's default of 80."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=1000)


def artifact_folder(metric: str) -> str:
    """Where a parent run keeps the comparison: ``comparison/``, or ``comparison/<metric>/`` for another metric."""
    return "comparison" if metric == "target_acc" else f"comparison/{file_safe(metric)}"


def report(client: Any, runs: list[Any], metric: str = "target_acc", better: str = "higher", console: Any = None,
           out_dir: Path | None = None, parent_run_id: str | None = None, heading: str | None = None) -> Comparison:
    """Build the table of ``runs``, print it, write the files into ``out_dir`` (a temporary folder when None)
    and, with ``parent_run_id``, log them as that run's artifacts under ``comparison/``."""
    console = console or wide_console()
    comparison = comparison_table(runs, metric, better, published_numbers(client, runs))
    if heading:
        console.print(heading, highlight=False, soft_wrap=True)
    console.print(rich_table(comparison))
    for note in comparison.notes():
        console.print(note, highlight=False)
    logged = f"Logged to the sweep's parent run {parent_run_id} under {artifact_folder(metric)}/"
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch)
        write_files(comparison, folder)
        if parent_run_id:
            try:
                client.log_artifacts(parent_run_id, str(folder), artifact_folder(metric))
            except Exception as error:  # a read-only store is still read
                problem = store_failure(error)
                if problem is None:
                    raise
                logged = f"Not logged to the sweep's parent run {parent_run_id}: its artifact folder is {problem}"
        if out_dir is not None:
            console.print(f"Files: {folder}", highlight=False, soft_wrap=True)
    if parent_run_id:
        console.print(logged, highlight=False, soft_wrap=True)
    return comparison


def compare_sweep(client: Any, parent_run_id: str, console: Any = None, out_dir: Path | None = None,
                  metric: str = "target_acc") -> Comparison | None:
    """The comparison of one sweep (:func:`~tlrun.tracking.sweeps.sweep_runs`), printed, written and logged to its
    parent run. For the end of a sweep: when no run finished with the metric it prints one line, logs nothing and
    returns None."""
    from mlflow.exceptions import MlflowException

    console = console or wide_console()
    try:
        runs = sweep_runs(client, parent_run_id)
        return report(client, runs, metric, console=console, out_dir=out_dir, parent_run_id=parent_run_id)
    except (TlrunError, MlflowException) as reason:
        console.print(f"tlrun: no comparison table for this sweep: {reason}", highlight=False, soft_wrap=True)
        return None


def parse_settings(arguments: list[str]) -> dict[str, Any]:
    """``key=value`` settings over :data:`SETTINGS` plus ``tag.<key>=<value>`` (gathered in ``tags``); filter values
    are names and ids, kept as typed (YAML would read 1e5 or 007 as numbers)."""
    settings = key_value_settings("compare", arguments, SETTINGS, as_typed=("experiment", "sweep"),
                                  prefix=TAG_PREFIX.rstrip("."))
    settings["tags"] = settings.pop(TAG_PREFIX.rstrip("."))
    if settings["out"] is None:
        settings["out"] = str(Path.cwd() / "outputs" / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    return settings


def main(arguments: list[str]) -> int:
    """``tlrun compare key=value ...``; returns the exit code."""
    if arguments[:1] in (["--help"], ["-h"], ["help"]):
        print(__doc__)
        return 0
    settings = parse_settings(arguments)
    client = open_client(settings["tracking_uri"], create=False)
    selection = select_runs(client, settings["experiment"], settings["sweep"], settings["tags"])
    report(client, selection.runs, str(settings["metric"]), str(settings["better"]), out_dir=Path(settings["out"]),
           parent_run_id=selection.parent_run_id, heading=f"Runs: {selection.description} ({settings['tracking_uri']})")
    return 0
