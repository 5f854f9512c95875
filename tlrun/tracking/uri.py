"""Which MLflow store tlrun reads and writes, worked out in one place (:func:`resolve_tracking_uri`).

The order: the setting given (``logger.tracking_uri`` of a run, ``tracking_uri=`` of ``tlrun ui`` and
``tlrun compare``), else ``$MLFLOW_TRACKING_URI``, else tlrun's own store, ``sqlite:///<cwd>/outputs/mlflow.db``
(artifacts beside it, in ``outputs/mlartifacts``). Everything below receives the URI as a value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The environment variable MLflow itself reads; tlrun reads it too, after an explicit setting.
ENV = "MLFLOW_TRACKING_URI"


def default_tracking_uri(cwd: Path | None = None) -> str:
    """The local store used when no URI is configured: ``outputs/mlflow.db`` under the working directory (made by
    the first run, see :func:`tlrun.tracking.store.open_client`)."""
    return f"sqlite:///{(cwd or Path.cwd()) / 'outputs' / 'mlflow.db'}"


def resolve_tracking_uri(setting: str | None = None) -> str:
    """The store to use: ``setting`` when given, else ``$MLFLOW_TRACKING_URI``, else :func:`default_tracking_uri`."""
    return str(setting or os.environ.get(ENV) or default_tracking_uri())


def configured_uri(cfg: Any) -> str:
    """The store a composed config tracks into: :func:`resolve_tracking_uri` of its ``logger.tracking_uri``."""
    return resolve_tracking_uri(cfg.logger.get("tracking_uri"))


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store; ``None`` for another store or an in-memory one."""
    database = tracking_uri.removeprefix("sqlite:///")
    if not tracking_uri.startswith("sqlite:///") or database == ":memory:":
        return None
    return Path(database)
