"""Hydra callbacks: the summary printed when a ``--multirun`` sweep ends.

Every job of a sweep tags its MLflow run with ``sweep=<sweep dir>``; :class:`SweepSummary` reads those runs back
and prints one table, methods as rows and tasks (source → target) as columns, with the average last: the shape
of the papers' tables. Imports MLflow and Rich only when the sweep ends.
"""

from __future__ import annotations

import statistics
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_table(runs: list[Any]) -> tuple[list[str], dict[str, dict[str, list[float]]], int]:
    """``(tasks, {method: {task: [target_acc, ...]}}, unfinished)`` from MLflow runs of one sweep."""
    tasks: list[str] = []
    table: dict[str, dict[str, list[float]]] = {}
    unfinished = 0
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.info.status != "FINISHED" or "target_acc" not in run.data.metrics:
            unfinished += 1
            continue
        tags = run.data.tags
        task = f"{tags.get('source', '?')}→{tags.get('target', '?')}"
        if task not in tasks:
            tasks.append(task)
        table.setdefault(tags.get("method", "?"), {}).setdefault(task, []).append(run.data.metrics["target_acc"])
    return tasks, table, unfinished


class SweepSummary(Callback):
    """At the end of a multirun, print the sweep's target accuracies as a methods × tasks table."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient
        from rich.console import Console
        from rich.table import Table

        from tlrun.tracking import default_tracking_uri, sweep_tag

        uri = config.logger.tracking_uri or default_tracking_uri()
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(config.logger.experiment)
        if experiment is None:
            return
        sweep = sweep_tag(config.hydra.sweep.dir)
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.sweep = '{sweep}'", max_results=10000)
        tasks, table, unfinished = sweep_table(runs)
        if not table:
            return
        several = any(len(scores) > 1 for row in table.values() for scores in row.values())
        summary = Table(title=f"target accuracy (%) of the sweep{' (mean ± std over repeats)' if several else ''}")
        summary.add_column("method")
        for task in tasks:
            summary.add_column(task, justify="right")
        summary.add_column("avg", justify="right")
        for method, row in table.items():
            cells, means = [], []
            for task in tasks:
                scores = [100 * score for score in row.get(task, [])]
                if not scores:
                    cells.append("—")
                    continue
                means.append(statistics.mean(scores))
                spread = f" ± {statistics.stdev(scores):.1f}" if len(scores) > 1 else ""
                cells.append(f"{means[-1]:.2f}{spread}")
            average = f"{statistics.mean(means):.2f}" if len(means) == len(tasks) else "—"
            summary.add_row(method, *cells, average)
        console = Console()
        console.print(summary)
        if unfinished:
            console.print(f"{unfinished} run(s) of this sweep did not finish; see them in the MLflow UI.")
        console.print(f"Sweep tag: sweep = {sweep}")
        console.print("See the runs in the MLflow UI:")
        console.print(f"  mlflow ui --backend-store-uri {uri}", soft_wrap=True, highlight=False)
