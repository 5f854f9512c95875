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
keys (:data:`IGNORED_PARAMS`) make one row per setting, labelled with the differing keys
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

import csv
import math
import os
import re
import statistics
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from tlrun.errors import TlrunError
from tlrun.sweeps import ROLE_TAG, sweep_runs
from tlrun.tracking import every_run, store_failure

SETTINGS: dict[str, Any] = {"tracking_uri": None, "experiment": None, "sweep": None, "metric": "target_acc",
                            "better": "higher", "out": None}
TAG_PREFIX = "tag."

#: Params that never tell two settings apart: the seed, the task, and what varies between machines or runs.
IGNORED_PARAMS = ("seed", "task", "dataset.source", "dataset.target", "dataset.root", "cache_dir",
                  "trainer.enable_progress_bar")
#: Prefixes of ignored params: the logger, Hydra, the data sizes a run logs, lineage, the published numbers.
IGNORED_PREFIXES = ("logger.", "hydra", "data.", "lineage.", "published.")

PARENT_FILTER = f"tags.`{ROLE_TAG}` = 'parent'"
ARROW = "→"


# -- selection ---------------------------------------------------------------------------------------------------
def _is_parent(run: Any) -> bool:
    return run.data.tags.get(ROLE_TAG) == "parent"


@dataclass
class Selection:
    """The runs to compare, what chose them (for messages), and the sweep's parent run when it is one sweep."""

    runs: list[Any]
    description: str
    parent_run_id: str | None = None


def _latest_parent(client: Any, experiment_ids: list[str]) -> Any | None:
    parents = every_run(client, experiment_ids, PARENT_FILTER)
    return parents[-1] if parents else None


def _sweep_selection(client: Any, sweep: str, experiment_ids: list[str]) -> Selection:
    """``sweep``: ``latest``, a parent run id, or a sweep folder (the ``sweep`` tag of a parent, else of runs)."""
    from mlflow.exceptions import MlflowException

    if sweep == "latest":
        parent = _latest_parent(client, experiment_ids)
        if parent is None:
            raise TlrunError("sweep=latest: the store holds no sweep (no parent run tagged sweep.role=parent)")
        return Selection(sweep_runs(client, parent.info.run_id), f"sweep {parent.data.tags.get('sweep', '?')}",
                         parent.info.run_id)
    if re.fullmatch(r"[0-9a-f]{32}", sweep):
        try:
            run = client.get_run(sweep)
        except MlflowException:
            run = None
        if run is not None:
            if not _is_parent(run):
                raise TlrunError(f"sweep={sweep}: run {sweep} is not a sweep's parent run (tag sweep.role=parent)")
            return Selection(sweep_runs(client, sweep), f"sweep {run.data.tags.get('sweep', sweep)}", sweep)
    from tlrun.tracking import sweep_tag

    folder = sweep_tag(os.path.expanduser(sweep))
    parents = [run for run in every_run(client, experiment_ids, PARENT_FILTER) if run.data.tags.get("sweep") == folder]
    if parents:
        parent = parents[-1]
        return Selection(sweep_runs(client, parent.info.run_id), f"sweep {folder}", parent.info.run_id)
    runs = [run for run in every_run(client, experiment_ids) if run.data.tags.get("sweep") == folder]
    if not runs:
        raise TlrunError(f"sweep={sweep}: no parent run id and no run tagged sweep={folder}")
    return Selection(runs, f"sweep {folder}")


def select_runs(client: Any, experiment: str | None = None, sweep: str | None = None,
                tags: dict[str, str] | None = None) -> Selection:
    """The runs :func:`main` compares (parent runs never count as results). Filters combine: ``experiment``
    narrows the search, ``sweep`` picks one sweep, ``tags`` keep the runs whose tags equal the values. Without
    any filter: the latest sweep, else the runs of the most recently created experiment that holds runs."""
    tags = tags or {}
    experiments = client.search_experiments()
    if experiment is not None:
        found = [e for e in experiments if e.name == experiment]
        if not found:
            known = ", ".join(sorted(e.name for e in experiments)) or "none"
            raise TlrunError(f"experiment={experiment}: no such experiment; experiments in the store: {known}")
        experiment_ids = [found[0].experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in experiments]
    filters = ([f"experiment={experiment}"] if experiment is not None else []) + \
              ([f"sweep={sweep}"] if sweep is not None else []) + [f"{TAG_PREFIX}{k}={v}" for k, v in tags.items()]

    if sweep is not None:
        selection = _sweep_selection(client, str(sweep), experiment_ids)
    elif tags or experiment is not None:
        selection = Selection(every_run(client, experiment_ids), ", ".join(filters))
    else:
        parent = _latest_parent(client, experiment_ids)
        if parent is not None:
            selection = Selection(sweep_runs(client, parent.info.run_id),
                                  f"the latest sweep, {parent.data.tags.get('sweep', parent.info.run_id)}",
                                  parent.info.run_id)
        else:
            selection = Selection([], "the latest experiment")
            by_age = sorted(experiments, key=lambda e: (e.creation_time or 0, _numeric(e.experiment_id)), reverse=True)
            for candidate in by_age:
                runs = every_run(client, [candidate.experiment_id])
                if runs:
                    selection = Selection(runs, f"the latest experiment, {candidate.name}")
                    break
    selection.runs = [run for run in selection.runs if not _is_parent(run)
                      and all(run.data.tags.get(key) == str(value) for key, value in tags.items())]
    if tags:  # a part of a sweep: its table is not the sweep's, so it is not logged to the parent
        selection.parent_run_id = None
    if not selection.runs:
        raise TlrunError(f"no runs match {', '.join(filters) if filters else selection.description}")
    return selection


def _numeric(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


# -- the table ---------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One table cell: the runs' values (in the table's unit), their mean and sample std (None for one value)."""

    values: list[float]
    mean: float
    std: float | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, values: list[float]) -> "Cell":
        return cls(list(values), statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class Row:
    """A row: ``kind`` is ``ours`` (runs), ``published`` or ``delta`` (ours − published)."""

    label: str
    method: str
    kind: str = "ours"
    settings: dict[str, str] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)
    avg: float | None = None
    best: set[str] = field(default_factory=set)  # the columns (tasks, "avg") where this row is best


@dataclass
class Published:
    citation: str
    metric: str
    values: dict[str, dict[str, float]]  # method -> task (source→target) -> value, in the table's unit


@dataclass
class Comparison:
    metric: str
    unit: str  # "%" or ""
    better: str
    tasks: list[str]
    rows: list[Row]
    n_runs: int
    left_out: dict[str, int]  # reason (a status, or "without <metric>") -> count
    varying: list[str]  # the hyperparameters (params) that differ within a method
    published: Published | None = None

    @property
    def usual_n(self) -> int:
        counts = Counter(cell.n for row in self.rows if row.kind == "ours" for cell in row.cells.values())
        return counts.most_common(1)[0][0] if counts else 0

    def title(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        spread = f", mean ± std over {self.usual_n} runs (seeds)" if self.usual_n > 1 else ""
        return f"{self.metric}{unit}{spread}"

    def notes(self) -> list[str]:
        notes = [f"Best of each column marked ({self.better} is better). {self.n_runs} run(s)."]
        if self.left_out:
            notes.append("Left out: " + ", ".join(f"{count} {why}" for why, count in self.left_out.items()) + ".")
        if self.published:
            notes.append(f"Published: {self.published.citation}; Δ = ours − published.")
        return notes


def is_fraction_metric(metric: str) -> bool:
    """Accuracies (names ending in ``acc``) and GZSL's ``gzsl_h`` are fractions, shown in percent."""
    return metric.endswith("acc") or metric == "gzsl_h"


def _ignored(key: str) -> bool:
    return key in IGNORED_PARAMS or key.startswith(IGNORED_PREFIXES)


def task_of(run: Any) -> str:
    tags = run.data.tags
    return f"{tags.get('source', '?')}{ARROW}{tags.get('target', '?')}"


def _label(method: str, settings: dict[str, str], condensed: bool) -> str:
    if not settings:
        return method
    shown = dict(settings)
    if condensed:  # backbone.name=resnet50 stands for every varying backbone.* key
        for key in [k for k in settings if k.endswith(".name")]:
            group = key[: -len(".name")]
            for other in [k for k in shown if k.startswith(group + ".")]:
                del shown[other]
            shown[group] = settings[key]
    return f"{method} ({', '.join(f'{k}={v}' for k, v in sorted(shown.items()))})"


def comparison_table(runs: Iterable[Any], metric: str = "target_acc", better: str = "higher",
                     published: Published | None = None) -> Comparison:
    """Build the table (see the module docstring) from MLflow runs; raises :class:`TlrunError` when no
    FINISHED run logged ``metric`` (naming the metrics the runs have)."""
    if better not in ("higher", "lower"):
        raise TlrunError(f"better={better}: choose higher or lower")
    runs = sorted(runs, key=lambda run: run.info.start_time or 0)
    scale = 100.0 if is_fraction_metric(metric) else 1.0
    left_out: Counter = Counter()
    kept = []
    for run in runs:
        if run.info.status != "FINISHED":
            left_out[run.info.status] += 1
        elif metric not in run.data.metrics:
            left_out[f"without {metric}"] += 1
        else:
            kept.append(run)
    if not runs:
        raise TlrunError("there are no runs to compare")
    if not kept:
        present = sorted({key for run in runs for key in run.data.metrics})
        if any(run.info.status == "FINISHED" for run in runs):
            raise TlrunError(f"no finished run logged the metric {metric!r}; metrics present: "
                             f"{', '.join(present) or 'none'}")
        raise TlrunError(f"none of the {len(runs)} run(s) finished ({', '.join(f'{c} {s}' for s, c in left_out.items())})")

    tasks = list(dict.fromkeys(task_of(run) for run in kept))
    by_method: dict[str, list[Any]] = {}
    for run in kept:
        by_method.setdefault(run.data.tags.get("method", "?"), []).append(run)

    rows: list[Row] = []
    varying_all: set[str] = set()
    for method, method_runs in by_method.items():
        keys = sorted({key for run in method_runs for key in run.data.params if not _ignored(key)})
        varying = [key for key in keys if len({run.data.params.get(key, "—") for run in method_runs}) > 1]
        varying_all.update(varying)
        groups: dict[tuple, list[Any]] = {}
        for run in method_runs:
            groups.setdefault(tuple(run.data.params.get(key, "—") for key in varying), []).append(run)
        settings = [dict(zip(varying, values)) for values in groups]
        labels = [_label(method, s, condensed=True) for s in settings]
        if len(set(labels)) < len(labels):
            labels = [_label(method, s, condensed=False) for s in settings]
        for label, setting, group in zip(labels, settings, groups.values()):
            values: dict[str, list[float]] = {}
            for run in group:
                values.setdefault(task_of(run), []).append(scale * run.data.metrics[metric])
            row = Row(label, method, "ours", setting, {task: Cell.of(values[task]) for task in tasks if task in values})
            rows.append(row)

    for row in rows:
        row.avg = _average(row, tasks)
    comparison = Comparison(metric, "%" if scale == 100.0 else "", better, tasks, rows, len(kept), dict(left_out),
                            sorted(varying_all))
    if published is not None and published.metric == metric:
        comparison.published = published
        comparison.rows = _with_published(rows, tasks, published)
    _mark_best(comparison)
    return comparison


def _average(row: Row, tasks: list[str]) -> float | None:
    """The mean over the tasks of the row's per-task means; None unless the row has every task."""
    return statistics.mean(row.cells[task].mean for task in tasks) if len(row.cells) == len(tasks) else None


def _with_published(rows: list[Row], tasks: list[str], published: Published) -> list[Row]:
    """After each method's rows: ``<method> (published)``, then one ``<label> Δ`` row per row of the method."""
    out: list[Row] = []
    for index, row in enumerate(rows):
        out.append(row)
        last_of_method = index + 1 == len(rows) or rows[index + 1].method != row.method
        numbers = published.values.get(row.method)
        if not last_of_method or not numbers:
            continue
        reference = Row(f"{row.method} (published)", row.method, "published",
                        cells={task: Cell.of([numbers[task]]) for task in tasks if task in numbers})
        reference.avg = _average(reference, tasks)
        out.append(reference)
        for ours in [r for r in rows if r.method == row.method]:
            delta = Row(f"{ours.label} Δ", row.method, "delta", dict(ours.settings), {
                task: Cell.of([ours.cells[task].mean - reference.cells[task].mean])
                for task in tasks if task in ours.cells and task in reference.cells
            })
            if ours.avg is not None and reference.avg is not None:
                delta.avg = ours.avg - reference.avg
            out.append(delta)
    return out


def _mark_best(comparison: Comparison) -> None:
    pick = max if comparison.better == "higher" else min
    for column in [*comparison.tasks, "avg"]:
        shown = {}
        for row in comparison.rows:
            value = row.avg if column == "avg" else (row.cells[column].mean if column in row.cells else None)
            if row.kind == "ours" and value is not None:
                shown[id(row)] = (float(format_value(value, comparison.unit)), row)
        if shown:
            best = pick(value for value, _ in shown.values())
            for value, row in shown.values():
                if value == best:
                    row.best.add(column)


# -- published numbers -------------------------------------------------------------------------------------------
_published_cache: dict[frozenset, Published | None] = {}


def parse_published(block: Any) -> Published | None:
    """A config's ``published`` block as :class:`Published` (tasks ``a->b`` written ``a→b``), or None."""
    if not isinstance(block, dict) or not isinstance(block.get("values"), dict):
        return None
    values: dict[str, dict[str, float]] = {}
    for method, tasks in block["values"].items():
        if isinstance(tasks, dict):
            values[str(method)] = {str(task).replace("->", ARROW): float(number) for task, number in tasks.items()
                                   if isinstance(number, (int, float))}
    return Published(str(block.get("citation", "published")), str(block.get("metric", "target_acc")), values)


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow's download progress bar off (it would print one line per small download)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def published_numbers(client: Any, runs: list[Any]) -> Published | None:
    """The ``published`` block of the ``config.yaml`` artifact of one run (the first that finished), cached per
    set of runs; None when there is none."""
    key = frozenset(run.info.run_id for run in runs)
    if key in _published_cache:
        return _published_cache[key]
    import yaml
    from mlflow.exceptions import MlflowException

    finished = [run for run in runs if run.info.status == "FINISHED"] or runs
    published = None
    if finished:
        with tempfile.TemporaryDirectory() as scratch, _no_progress_bar():
            try:
                path = client.download_artifacts(finished[0].info.run_id, "config.yaml", scratch)
                config = yaml.safe_load(Path(path).read_text())
            except (MlflowException, OSError, yaml.YAMLError):
                config = None
        if isinstance(config, dict):
            published = parse_published(config.get("published"))
    _published_cache[key] = published
    return published


# -- rendering ---------------------------------------------------------------------------------------------------
def format_value(value: float, unit: str, signed: bool = False) -> str:
    """Two decimals for percentages, four significant digits otherwise; a value that rounds to zero shows no minus."""
    sign = "+z" if signed else "z"
    return f"{value:{sign}.2f}" if unit == "%" else f"{value:{sign}.4g}"


def _cell_text(comparison: Comparison, row: Row, column: str, pm: str = " ± ") -> str | None:
    """The text of a cell (None when empty)."""
    unit, delta = comparison.unit, row.kind == "delta"
    if column == "avg":
        return None if row.avg is None else format_value(row.avg, unit, signed=delta)
    cell = row.cells.get(column)
    if cell is None:
        return None
    text = format_value(cell.mean, unit, signed=delta)
    if cell.std is not None:
        text += pm + format_value(cell.std, unit)
    if row.kind == "ours" and cell.n != comparison.usual_n:
        text += f" (n={cell.n})"
    return text


def rich_table(comparison: Comparison) -> Any:
    from rich.table import Table

    table = Table(title=comparison.title())
    table.add_column("method")
    for column in [*comparison.tasks, "avg"]:
        table.add_column(column, justify="right")
    for row in comparison.rows:
        cells = []
        for column in [*comparison.tasks, "avg"]:
            text = _cell_text(comparison, row, column) or "—"
            cells.append(f"[bold green]{text}[/]" if column in row.best else text)
        table.add_row(row.label, *cells, style="dim" if row.kind != "ours" else None)
    return table


def markdown(comparison: Comparison) -> str:
    columns = [*comparison.tasks, "avg"]
    lines = [f"**{comparison.title()}**", "", "| method | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in comparison.rows:
        cells = []
        for column in columns:
            text = _cell_text(comparison, row, column) or "—"
            cells.append(f"**{text}**" if column in row.best else text)
        lines.append(f"| {row.label.replace('|', '/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + comparison.notes()) + "\n"


def _tex_escape(text: str) -> str:
    text = re.sub(r"([&%$#_{}])", r"\\\1", text)
    return text.replace(ARROW, r"$\to$").replace("Δ", r"$\Delta$").replace("~", r"\textasciitilde{}")


def latex(comparison: Comparison) -> str:
    columns = [*comparison.tasks, "avg"]
    lines = [f"% {comparison.title()}. {' '.join(comparison.notes())}", r"% needs \usepackage{booktabs}",
             r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "method & " + " & ".join(_tex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for row in comparison.rows:
        cells = []
        for column in columns:
            text = _cell_text(comparison, row, column, pm=r" $\pm$ ")
            text = "--" if text is None else text.replace(" (n=", " (n = ")
            cells.append(rf"\textbf{{{text}}}" if column in row.best else text)
        lines.append(_tex_escape(row.label) + " & " + " & ".join(cells) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def write_csv(comparison: Comparison, path: Path) -> None:
    """One line per row: label, kind, method, metric, unit, then ``<task> mean``, ``<task> std``, ``<task> n``
    for each task, and ``avg`` (full precision, in the table's unit; empty when absent)."""
    header = ["label", "kind", "method", "metric", "unit"]
    for task in comparison.tasks:
        header += [f"{task} mean", f"{task} std", f"{task} n"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header + ["avg"])
        for row in comparison.rows:
            line = [row.label, row.kind, row.method, comparison.metric, comparison.unit]
            for task in comparison.tasks:
                cell = row.cells.get(task)
                line += ["", "", ""] if cell is None else [repr(cell.mean), "" if cell.std is None else repr(cell.std),
                                                          cell.n if row.kind == "ours" else ""]
            writer.writerow(line + ["" if row.avg is None else repr(row.avg)])


def plot_per_task(comparison: Comparison, path: Path) -> None:
    """Grouped bars: one group per task, one bar (and colour) per row of runs, the std as error bars."""
    from matplotlib.figure import Figure

    rows = [row for row in comparison.rows if row.kind == "ours"]
    tasks = comparison.tasks
    width = 0.8 / len(rows)
    figure = Figure(figsize=(max(6.0, len(tasks) * (0.6 + 0.25 * len(rows))), 4.5), layout="constrained")
    axes = figure.subplots()
    for index, row in enumerate(rows):
        positions = [t + (index - (len(rows) - 1) / 2) * width for t, task in enumerate(tasks) if task in row.cells]
        cells = [row.cells[task] for task in tasks if task in row.cells]
        axes.bar(positions, [c.mean for c in cells], width, yerr=[c.std or 0.0 for c in cells], capsize=2,
                 label=row.label, color=f"C{index % 10}")
    axes.set_xticks(range(len(tasks)), tasks, rotation=30 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center")
    axes.set_ylabel(f"{comparison.metric}{f' ({comparison.unit})' if comparison.unit else ''}")
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=120)


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def plot_vs_param(comparison: Comparison, param: str, path: Path) -> None:
    """The metric (mean ± std over every run of a setting: seeds and tasks pooled) against ``param``; one line
    per method, a dashed line at its mean for a method that does not vary ``param``."""
    from matplotlib.figure import Figure

    rows = [row for row in comparison.rows if row.kind == "ours"]
    varied = [row for row in rows if param in row.settings]
    raw = list(dict.fromkeys(row.settings[param] for row in varied))
    numbers = [_as_number(value) for value in raw]
    numeric = all(number is not None for number in numbers)
    position = dict(zip(raw, numbers)) if numeric else {value: float(i) for i, value in enumerate(raw)}
    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, method in enumerate(dict.fromkeys(row.method for row in rows)):
        mine = [row for row in rows if row.method == method]
        pooled = [[v for cell in row.cells.values() for v in cell.values] for row in mine]
        if all(param in row.settings for row in mine):
            points = sorted((position[row.settings[param]], statistics.mean(values),
                             statistics.stdev(values) if len(values) > 1 else 0.0) for row, values in zip(mine, pooled))
            xs, means, stds = zip(*points)
            axes.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=method, color=f"C{index % 10}")
        else:
            values = [v for group in pooled for v in group]
            axes.axhline(statistics.mean(values), linestyle="--", label=method, color=f"C{index % 10}")
    if numeric:
        positive = [n for n in numbers if n > 0]
        if len(positive) == len(numbers) and max(positive) / min(positive) >= 100:
            axes.set_xscale("log")
    else:
        axes.set_xticks(range(len(raw)), raw)
    axes.set_title("mean ± std over seeds and tasks", fontsize="medium")
    axes.set_xlabel(param)
    axes.set_ylabel(f"{comparison.metric}{f' ({comparison.unit})' if comparison.unit else ''}")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=120)


def _file_safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def write_files(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Write the Markdown, CSV and LaTeX tables and the plots into ``out_dir``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / name for name in ("comparison.md", "comparison.csv", "comparison.tex", "per_task.png")]
    files[0].write_text(markdown(comparison), encoding="utf-8")
    write_csv(comparison, files[1])
    files[2].write_text(latex(comparison), encoding="utf-8")
    plot_per_task(comparison, files[3])
    if len(comparison.varying) == 1:
        param = comparison.varying[0]
        files.append(out_dir / f"{comparison.metric}_vs_{_file_safe(param)}.png")
        plot_vs_param(comparison, param, files[-1])
    return files


# -- entry points ------------------------------------------------------------------------------------------------
def wide_console() -> Any:
    """A Rich console for the tables: the terminal's width, or, when the output is a file or a pipe (a log, CI),
    no width limit, so that no column is cut to fit Rich's default of 80."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=1000)


def artifact_folder(metric: str) -> str:
    """Where a parent run keeps the comparison: ``comparison/``, or ``comparison/<metric>/`` for another metric."""
    return "comparison" if metric == "target_acc" else f"comparison/{_file_safe(metric)}"


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
    """The comparison of one sweep (:func:`sweep_runs`), printed, written and logged to its parent run. For the
    end of a sweep: when no run finished with the metric it prints one line, logs nothing and returns None."""
    from mlflow.exceptions import MlflowException

    console = console or wide_console()
    try:
        runs = sweep_runs(client, parent_run_id)
        return report(client, runs, metric, console=console, out_dir=out_dir, parent_run_id=parent_run_id)
    except (TlrunError, MlflowException) as reason:
        console.print(f"tlrun: no comparison table for this sweep: {reason}", highlight=False, soft_wrap=True)
        return None


def parse_settings(arguments: list[str]) -> dict[str, Any]:
    """``key=value`` settings over :data:`SETTINGS` plus ``tag.<key>=<value>`` (gathered in ``tags``)."""
    from omegaconf import OmegaConf

    known = [*SETTINGS, f"{TAG_PREFIX}<key>"]
    malformed = [argument for argument in arguments if "=" not in argument]
    if malformed:
        raise TlrunError(f"tlrun compare takes key=value settings ({', '.join(known)}), got {' '.join(malformed)!r}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(arguments))
    except Exception as error:  # OmegaConf's grammar errors
        raise TlrunError(f"tlrun compare: cannot read the settings {' '.join(arguments)!r}: {error}") from None
    unknown = sorted(key for key in given if key not in SETTINGS and key != TAG_PREFIX[:-1])
    if unknown or not isinstance(given.get("tag", {}), dict):
        raise TlrunError(f"tlrun compare: unknown setting {', '.join(unknown) or 'tag'}; settings: {', '.join(known)}")
    # Filter values are names and ids: keep their text as typed (YAML would read 1e5 or 007 as numbers).
    text = dict(argument.split("=", 1) for argument in arguments)
    settings = {**SETTINGS, **{key: value for key, value in given.items() if key != "tag"}}
    for key in ("experiment", "sweep"):
        if settings[key] is not None:
            settings[key] = text[key]
    settings["tags"] = {key[len(TAG_PREFIX):]: value for key, value in text.items() if key.startswith(TAG_PREFIX)}
    if settings["tracking_uri"] is None:
        from tlrun.tracking import default_tracking_uri

        settings["tracking_uri"] = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if settings["out"] is None:
        settings["out"] = str(Path.cwd() / "outputs" / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    return settings


def main(arguments: list[str]) -> int:
    """``tlrun compare key=value ...``; returns the exit code."""
    if arguments[:1] in (["--help"], ["-h"], ["help"]):
        print(__doc__)
        return 0
    settings = parse_settings(arguments)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from tlrun.tracking import open_client

    client = open_client(str(settings["tracking_uri"]), create=False)
    selection = select_runs(client, settings["experiment"], settings["sweep"], settings["tags"])
    report(client, selection.runs, str(settings["metric"]), str(settings["better"]), out_dir=Path(settings["out"]),
           parent_run_id=selection.parent_run_id, heading=f"Runs: {selection.description} ({settings['tracking_uri']})")
    return 0
