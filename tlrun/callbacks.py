"""Hydra callbacks: a ``--multirun`` sweep as one MLflow parent run, with a summary table when it ends.

:class:`SweepTracking` opens the sweep's parent run when the multirun starts (:func:`tlrun.sweeps.open_parent`),
and ends it with the sweep's aggregate status when it ends, or when the process exits without the sweep's normal
end (a failed job, Ctrl-C, SIGTERM): no parent is left RUNNING. It then prints one table of the jobs' target
accuracies, methods as rows and tasks (source → target) as columns, with the average last: the shape of the
papers' tables. Imports MLflow and Rich only when a sweep starts.
"""

from __future__ import annotations

import atexit
import signal
import statistics
import threading
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


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class SweepTracking(Callback):
    """One MLflow parent run per multirun (see :mod:`tlrun.sweeps`), its jobs' runs nested under it."""

    def __init__(self) -> None:
        self.client: Any = None
        self.parent_id: str | None = None
        self.uri = ""
        self.previous_sigterm: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from tlrun.sweeps import open_parent, tracking_uri

        self.uri = tracking_uri(config)
        self.client, self.parent_id = open_parent(config)
        atexit.register(self._end_early)
        if threading.current_thread() is threading.main_thread():  # SIGTERM ends the sweep as Ctrl-C does
            self.previous_sigterm = signal.signal(signal.SIGTERM, _stop)

    def _close(self, completed: bool) -> None:
        from tlrun.sweeps import close_parent

        if self.parent_id is None:
            return
        parent, self.parent_id = self.parent_id, None
        atexit.unregister(self._end_early)
        if self.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self.previous_sigterm)
        status = close_parent(self.client, parent, completed)
        print(f"tlrun: sweep run {parent} ended {status}", flush=True)

    def _end_early(self) -> None:
        """At exit without the sweep's normal end: a job failed, or the sweep was interrupted."""
        self._close(completed=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.console import Console
        from rich.table import Table

        from tlrun.sweeps import sweep_runs

        parent = self.parent_id
        self._close(completed=True)
        if parent is None:
            return
        tasks, table, unfinished = sweep_table(sweep_runs(self.client, parent))
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
        console.print(f"Sweep run: {parent} (its jobs are nested under it). See them in the MLflow UI:")
        console.print(f"  tlrun ui tracking_uri={self.uri}", soft_wrap=True, highlight=False)
