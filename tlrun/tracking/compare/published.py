"""Published numbers: the ``published`` block of a recipe, read from the ``config.yaml`` artifact of a run."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tlrun.tracking.compare.table import ARROW, Published

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
