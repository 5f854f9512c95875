"""Which runs ``tlrun compare`` tabulates: a sweep (the latest, by its parent run id or its folder), an
experiment, runs with given tags; parent runs never count as results."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from tlrun.errors import TlrunError
from tlrun.tracking.store import every_run
from tlrun.tracking.sweeps import ROLE_TAG, sweep_runs, sweep_tag

#: ``tag.<key>=<value>``: keep the runs whose tag ``key`` is ``value``.
TAG_PREFIX = "tag."
PARENT_FILTER = f"tags.`{ROLE_TAG}` = 'parent'"


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
    """The runs ``tlrun compare`` compares (parent runs never count as results). Filters combine: ``experiment``
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
