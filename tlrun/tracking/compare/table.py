"""The comparison table: methods (one row per setting) × tasks, mean ± std over seeds, the average last, the best
of each column marked, published numbers and the differences to them (see :mod:`tlrun.tracking.compare.command`)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tlrun.errors import TlrunError

#: Params that never tell two settings apart: the seed, the task, and what varies between machines or runs.
IGNORED_PARAMS = ("seed", "task", "dataset.source", "dataset.target", "dataset.root", "cache_dir",
                  "trainer.enable_progress_bar")
#: Prefixes of ignored params: the logger, Hydra, the data sizes a run logs, lineage, the published numbers.
IGNORED_PREFIXES = ("logger.", "hydra", "data.", "lineage.", "published.")

#: Between a task's source and target: ``caltech→amazon``.
ARROW = "→"


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
    """The run's column: ``source→target``; in ``dg`` the held-out domain alone (DomainBed's table: one column
    per test domain, the others training)."""
    tags = run.data.tags
    if tags.get("scenario") == "dg":
        return tags.get("target", "?")
    return f"{tags.get('source', '?')}{ARROW}{tags.get('target', '?')}"


def task_columns(runs: list[Any]) -> Callable[[Any], str]:
    """Each run's column in a table of ``runs``: :func:`task_of`, except that a ``dg`` held-out domain the runs reach
    from several source lists gets one column per list, ``sources→target``, so that no cell averages runs trained on
    different domains."""
    sources: dict[str, set[str]] = {}
    for run in runs:
        if run.data.tags.get("scenario") == "dg":
            sources.setdefault(task_of(run), set()).add(run.data.tags.get("source", "?"))

    def column(run: Any) -> str:
        task = task_of(run)
        if run.data.tags.get("scenario") == "dg" and len(sources[task]) > 1:
            return f"{run.data.tags.get('source', '?')}{ARROW}{task}"
        return task

    return column


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

    column = task_columns(kept)
    tasks = list(dict.fromkeys(column(run) for run in kept))
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
                values.setdefault(column(run), []).append(scale * run.data.metrics[metric])
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


def format_value(value: float, unit: str, signed: bool = False) -> str:
    """Two decimals for percentages, four significant digits otherwise; a value that rounds to zero shows no minus."""
    sign = "+z" if signed else "z"
    return f"{value:{sign}.2f}" if unit == "%" else f"{value:{sign}.4g}"
