"""The MLflow store: opened safely (:func:`open_client`), its failures named (:class:`StoreError`), its runs listed,
tlrun's experiments made.

Everything is logged through an explicit ``MlflowClient`` and run id, never the fluent API's process-global "active
run", so several runs can share a process (tests, sweeps) and Lightning's logger can write into the same run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
from typing import Any, Iterator

from mlflow.tracking import MlflowClient

from tlrun.errors import TlrunError
from tlrun.tracking.uri import sqlite_file


class StoreError(TlrunError):
    """The MLflow store cannot be read or written: it does not exist (for a reader), is read-only, or is full."""


#: What an OS error number says about a store that could not be written.
_OS_FAILURES = {errno.ENOSPC: "full (no space left on the device)", errno.EDQUOT: "over its disk quota",
                errno.EROFS: "read-only (a read-only file system)", errno.EACCES: "not writable (permission denied)",
                errno.EPERM: "not writable (operation not permitted)"}
#: The same for sqlite's errors, which MLflow passes on as the text of an ``MlflowException``.
_SQLITE_FAILURES = {"readonly database": "read-only", "disk is full": "full",
                    "unable to open database file": "not writable"}


def store_failure(error: BaseException) -> str | None:
    """What is wrong with the store when ``error``, or an error it was raised from, is a failure to write it
    (read-only, full, not permitted); ``None`` for any other error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _OS_FAILURES:
            return _OS_FAILURES[error.errno]
        for words, problem in _SQLITE_FAILURES.items():
            if words in str(error):
                return problem
        error = error.__cause__ or error.__context__
    return None


class _StoreFailuresLogged(logging.Filter):
    """MLflow logs a traceback for every sqlite error before raising it; a store failure is raised again as a
    :class:`StoreError`, whose one line says what to do, so its traceback is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and store_failure(record.exc_info[1]))


logging.getLogger("mlflow.store.db.utils").addFilter(_StoreFailuresLogged())


def open_client(tracking_uri: str, create: bool = True) -> MlflowClient:
    """An ``MlflowClient`` of the store ``tracking_uri``; a sqlite store is opened under an exclusive ``flock`` on
    ``<database>.lock`` beside it, its folder (parents included) made first.

    MLflow creates a new sqlite store's tables (and migrates an old one) when a process first opens it; two processes
    doing so at the same moment both run the migrations, and one fails (``duplicate column name: step``), so runs
    started side by side on a fresh store (two ``tlrun`` commands, a benchmark's worker processes) would fail
    before opening. ``create=False`` is for readers (``tlrun compare``, a resume's look-up): a sqlite store that does
    not exist is a :class:`StoreError` and nothing is created. An existing store whose lock cannot be opened (a
    read-only folder) is opened without it: reading needs no lock, and a write fails with a :class:`StoreError`.
    Other stores are opened as they are.
    """
    database = sqlite_file(tracking_uri)
    if database is None:
        return MlflowClient(tracking_uri=tracking_uri)
    if not create and not database.is_file():
        raise StoreError(f"there is no MLflow store at {database} ({tracking_uri}); nothing was created there. Name "
                         "the store that holds the runs: tracking_uri=sqlite:///<path> (logger.tracking_uri=... for a "
                         "run, or MLFLOW_TRACKING_URI)")
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        handle = open(f"{database}.lock", "a")
    except OSError as error:
        if database.is_file():
            return MlflowClient(tracking_uri=tracking_uri)
        raise StoreError(f"cannot create the MLflow store {tracking_uri}: {error.strerror} ({error.filename}). Track "
                         "into a writable folder: logger.tracking_uri=sqlite:///<folder>/mlflow.db") from error
    with _held(handle):
        return MlflowClient(tracking_uri=tracking_uri)


@contextlib.contextmanager
def _held(lock_file: Any) -> Iterator[None]:
    """An exclusive ``flock`` on the open ``lock_file`` while the block runs; the file is closed after."""
    with lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold the store's ``flock`` (sqlite stores; nothing for others, or when the lock cannot be opened) around a
    write MLflow does not make safe across processes: ``log_inputs`` inserts a dataset row after looking for it,
    so two jobs of a parallel sweep logging the same domain at once would both insert, and one would fail."""
    database = sqlite_file(tracking_uri)
    try:
        handle = open(f"{database}.lock", "a") if database is not None else None
    except OSError:
        handle = None
    with _held(handle) if handle is not None else contextlib.nullcontext():
        yield


def every_run(client: MlflowClient, experiment_ids: list[str] | None = None, filter_string: str = "") -> list[Any]:
    """Every active run of the experiments (default: all of the store) matching ``filter_string``, page after
    page, by start time."""
    if experiment_ids is None:
        experiment_ids = [experiment.experiment_id for experiment in client.search_experiments(max_results=50000)]
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda run: run.info.start_time or 0)


#: The shared view of the runs table that tlrun's experiments carry (MLflow's "share" button stores its views so):
#: the UI opens ``#/experiments/<id>/runs?viewStateShareKey=tlrun`` with these columns shown.
RUNS_VIEW = "tlrun"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW}"
RUNS_VIEW_COLUMNS = ["metrics.`target_acc`", "tags.`method`", "tags.`dataset`", "tags.`source`", "tags.`target`",
                     "tags.`seed`"]
#: The experiment tags tlrun sets: the runs table above; the experiment kind of MLflow 3 UIs before 3.17's
#: GenAI / machine-learning switch (which :mod:`tlrun.tracking.ui` sets in the address instead); the description.
EXPERIMENT_TAGS = {
    RUNS_VIEW_TAG: json.dumps({"selectedColumns": RUNS_VIEW_COLUMNS}),
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "Runs of tlrun, one per `tlrun` command, named `<method> <source>-><target>`. "
        "The headline metric is **target_acc**, the accuracy on the target domain's test split: `tlrun ui` prints "
        "the address of this runs table with it as a column; `tlrun compare experiment=<name>` tabulates it."
    ),
}


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created if needed, with :data:`EXPERIMENT_TAGS` (added where missing); in a
    sqlite store (tlrun's default ``outputs/mlflow.db`` or another), a new experiment keeps its artifacts beside the
    database, in ``mlartifacts/`` (MLflow's own default would be ``mlruns/`` in whatever directory the command ran
    from)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        database = sqlite_file(tracking_uri)
        artifact_location = None if database is None else database.resolve().parent.joinpath("mlartifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS)
        except Exception:  # created meanwhile by a parallel job of the same sweep
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():
        if key not in found.tags:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id
