"""Hydra callbacks: a ``--multirun`` sweep as one MLflow parent run, compared when it ends.

:class:`SweepTracking` opens the sweep's parent run when the multirun starts
(:func:`tlrun.tracking.sweeps.open_parent`) and ends it with the sweep's aggregate status when the sweep ends, or
when the process exits without the sweep's normal end (a failed job, Ctrl-C, SIGTERM): no parent is left RUNNING.
Either way the sweep's comparison table (:func:`tlrun.tracking.compare.compare_sweep`: methods as rows, tasks as
columns, mean ± std over seeds) is printed, written to ``<sweep dir>/comparison`` and logged as artifacts of the
parent. Imports MLflow only when a sweep starts; the store is resolved once, when it starts.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from tlrun.collector import resume_collector


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class SweepTracking(Callback):
    """One MLflow parent run per multirun (see :mod:`tlrun.tracking.sweeps`), its jobs' runs nested under it."""

    def __init__(self) -> None:
        self.client: Any = None
        self.parent_id: str | None = None
        self.uri = ""
        self.comparison_dir: Path | None = None
        self.previous_sigterm: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from tlrun.tracking.sweeps import PARENT_ENV, open_parent
        from tlrun.tracking.uri import configured_uri

        resume_collector()  # the sweep is set up: its process may wait on its jobs for hours (tlrun.collector)
        os.environ.pop(PARENT_ENV, None)  # if opening fails (Hydra only warns), jobs must not link to a stale sweep
        self.uri = configured_uri(config)
        self.comparison_dir = Path(str(config.hydra.sweep.dir)) / "comparison"
        self.client, self.parent_id = open_parent(config, self.uri)
        atexit.register(self._end_early)
        if threading.current_thread() is threading.main_thread():  # SIGTERM ends the sweep as Ctrl-C does
            self.previous_sigterm = signal.signal(signal.SIGTERM, _stop)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close(completed=True)

    def _end_early(self) -> None:
        """At exit without the sweep's normal end: a job failed, or the sweep was interrupted."""
        self._close(completed=False)

    def _close(self, completed: bool) -> None:
        """End the parent, then compare its runs; signals stay handled until both are done."""
        from tlrun.tracking.compare import compare_sweep
        from tlrun.tracking.sweeps import PARENT_ENV, close_parent

        if self.parent_id is None:
            return
        parent = self.parent_id
        try:
            status = close_parent(self.client, parent, completed)
            self.parent_id = None
            atexit.unregister(self._end_early)
            compare_sweep(self.client, parent, out_dir=self.comparison_dir)
            print(f"tlrun: sweep run {parent} ended {status}; its jobs are nested under it. See them in the MLflow UI:")
            print(f"  tlrun ui tracking_uri={self.uri}", flush=True)
        finally:
            if os.environ.get(PARENT_ENV) == parent:
                del os.environ[PARENT_ENV]
            if self.previous_sigterm is not None and self.parent_id is None:
                signal.signal(signal.SIGTERM, self.previous_sigterm)
                self.previous_sigterm = None
