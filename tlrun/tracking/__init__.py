"""The record: what tlrun keeps in MLflow, and the commands that read it back.

One MLflow run per tlrun run, always ended FINISHED, FAILED or KILLED; one parent run per ``--multirun``, its jobs
nested under it; the Optuna search; ``tlrun compare`` and ``tlrun ui``. The modules, lowest first:

- :mod:`~tlrun.tracking.uri`: which store (a setting, else ``$MLFLOW_TRACKING_URI``, else ``outputs/mlflow.db``);
- :mod:`~tlrun.tracking.signals`: Ctrl-C and SIGTERM stop a run, never in the middle of a store write;
- :mod:`~tlrun.tracking.records`: how values become params, tags and dataset inputs;
- :mod:`~tlrun.tracking.store`: opening the store, its failures, its runs and experiments;
- :mod:`~tlrun.tracking.processes`: the process behind each run; runs orphaned by a killed process;
- :mod:`~tlrun.tracking.weights` and :mod:`~tlrun.tracking.tracked_run`: a run's weights; the run itself;
- :mod:`~tlrun.tracking.sweeps` and :mod:`~tlrun.tracking.callbacks`: sweeps as parent and child runs;
- :mod:`~tlrun.tracking.search`, :mod:`~tlrun.tracking.compare`, :mod:`~tlrun.tracking.ui`: the search, the
  comparison table, the MLflow UI.

The names the runner uses are importable from here (``from tlrun.tracking import TrackedRun``); each is loaded
from its module on first use, so that importing a light module of the package (the sweep callback, which Hydra
loads for every command) does not import MLflow.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before any module of the package imports MLflow
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per model download buries the output

_EXPORTS = {
    "uri": ("configured_uri", "default_tracking_uri", "resolve_tracking_uri"),
    "signals": ("interrupted_by", "interrupts_deferred", "interrupts_stop_the_run"),
    "records": ("DataInput", "flatten", "git_commit", "run_params", "safe_key"),
    "store": ("RUNS_VIEW", "RUNS_VIEW_TAG", "StoreError", "ensure_experiment", "every_run", "open_client",
              "store_failure"),
    "processes": ("PROCESS_TAG", "end_orphaned_runs", "process_alive", "this_process"),
    "weights": ("MODEL_ARTIFACT", "MODEL_FILE", "fetch_run_weights"),
    "tracked_run": ("TrackedRun",),
    "sweeps": ("sweep_tag",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """A re-exported name, read from its module each time (``interrupted_by`` changes while a process runs)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
