"""The comparison's plots: bars per task; the metric against the one hyperparameter that varies."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from tlrun.tracking.compare.table import Comparison


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
