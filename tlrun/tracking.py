"""MLflow tracking: one MLflow run per tlrun run, always ended FINISHED, FAILED or KILLED.

:class:`TrackedRun` owns the run's life cycle (a context manager). Everything is logged through an explicit
``MlflowClient`` and run id, never the fluent API's process-global "active run", so several runs can share a
process (tests, sweeps) and Lightning's logger can write into the same run.

Default store: ``sqlite:///<cwd>/outputs/mlflow.db`` with artifacts in ``<cwd>/outputs/mlartifacts``, unless
``logger.tracking_uri`` or ``MLFLOW_TRACKING_URI`` names another (a sqlite store keeps its artifacts beside it).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from tlrun.config import RUN_URI_PREFIX  # noqa: E402
from tlrun.errors import TlrunError  # noqa: E402

#: MLflow's limits (mlflow.utils.validation): values longer than this are cut, batches split.
_MAX_PARAM_VALUE = 6000
_MAX_BATCH = 100


def default_tracking_uri(cwd: Path | None = None) -> str:
    """The local store used when no URI is configured: ``outputs/mlflow.db`` under the working directory (made by
    the first run, see :func:`open_client`)."""
    return f"sqlite:///{(cwd or Path.cwd()) / 'outputs' / 'mlflow.db'}"


def configured_uri(cfg: Any) -> str:
    """The store a composed config tracks into: ``logger.tracking_uri`` (from ``MLFLOW_TRACKING_URI`` by default),
    else :func:`default_tracking_uri`."""
    return cfg.logger.get("tracking_uri") or default_tracking_uri()


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


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested dict/list config as ``{"a.b.c": "value"}`` (lists are kept whole, as their text)."""
    if isinstance(tree, dict):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: str(tree)[:_MAX_PARAM_VALUE]}


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding ``path`` (with ``-dirty`` when it has changes), if any."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def sweep_tag(sweep_dir: str | Path) -> str:
    """The ``sweep`` tag shared by the runs of one ``--multirun``: its sweep folder, made absolute.

    Jobs write it and the end-of-sweep summary filters on it, so both must build it here.
    """
    return str(Path(sweep_dir).resolve())


def safe_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in keys (all but ``\\w - . space : /``) replaced by ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", name)


#: Signals received while :func:`interrupts_stop_the_run` is active and not yet accounted for by a run's end.
_pending_signals: list[int] = []
#: The last signal that interrupted a run in this process (the CLI exits with 128 + it).
interrupted_by: int | None = None


def _remember_and_interrupt(signum: int, frame: Any) -> None:
    global interrupted_by
    _pending_signals.append(signum)
    interrupted_by = signum
    raise KeyboardInterrupt(f"signal {signum}")


def _take_pending_signal() -> int | None:
    """The first signal received and not yet acted on (and forget them all), or ``None``."""
    first = _pending_signals[0] if _pending_signals else None
    _pending_signals.clear()
    return first


def _raise_if_interrupted() -> None:
    signum = _take_pending_signal()
    if signum is not None:
        raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _signals_handled_by(handler: Any) -> Iterator[bool]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM call ``handler``; the previous handlers come back after.
    Yields whether it took effect: signals can only be handled in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield True
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier if earlier is not None else signal.SIG_DFL)


@contextmanager
def interrupts_stop_the_run() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM raise ``KeyboardInterrupt`` and are remembered.

    Python ignores an exception raised inside a garbage-collection callback or ``__del__`` (it prints
    "Exception ignored in ..." and goes on), so a Ctrl-C that lands there would be lost and the run would go on
    to end FINISHED. Remembering the signal lets the next store write (every metric, every epoch) and the
    run's end raise it again, so the run still stops and ends KILLED. Outside the main thread it does nothing.
    """
    try:
        with _signals_handled_by(_remember_and_interrupt):
            yield
    finally:
        _pending_signals.clear()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs, and deliver them when it ends.

    A ``KeyboardInterrupt`` raised inside an SQLite write leaves the store locked for the rest of the process,
    so the run could no longer be ended KILLED. Every store write of this module runs inside this block; the
    signal still takes effect, right after the write, as does one received earlier whose ``KeyboardInterrupt``
    Python swallowed (see :func:`interrupts_stop_the_run`). Outside the main thread it does nothing.
    """
    received: list[int] = []
    try:
        with _signals_handled_by(lambda signum, frame: received.append(signum)) as handled:
            yield
    finally:
        if received:
            signal.raise_signal(received[0])
    if handled:
        _raise_if_interrupted()


#: Where a run's trained weights are logged: ``<artifacts>/model/state_dict.pt``.
MODEL_ARTIFACT = "model"
MODEL_FILE = "state_dict.pt"


def fetch_run_weights(uri: str, tracking_uri: str, destination: Path) -> tuple[str, Path]:
    """Download the weights an earlier run logged: ``runs:/<run_id>/model`` (the folder) or
    ``runs:/<run_id>/model/state_dict.pt`` (the file). Returns ``(run_id, local state-dict file)``.

    Raises :class:`~tlrun.errors.TlrunError` naming the store when the run or its artifact does not exist.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    run_id, _, artifact_path = uri.removeprefix(RUN_URI_PREFIX).strip("/").partition("/")
    if not run_id or not artifact_path:
        raise TlrunError(f"backbone.weights={uri}: expected runs:/<run_id>/{MODEL_ARTIFACT} (or .../{MODEL_ARTIFACT}/{MODEL_FILE})")
    client = open_client(tracking_uri, create=False)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise TlrunError(
            f"backbone.weights={uri}: the MLflow store {tracking_uri} has no run {run_id}. Copy the run id from the "
            "MLflow UI or from the end of the earlier run's output, and track into the same store (logger.tracking_uri)."
        ) from None
    try:
        folder = destination / run_id  # one folder per run: parallel jobs chaining from different runs
        folder.mkdir(parents=True, exist_ok=True)
        local = Path(download_artifacts(run_id=run_id, artifact_path=artifact_path, tracking_uri=tracking_uri,
                                        dst_path=str(folder)))
    except (MlflowException, OSError):
        raise TlrunError(
            f"backbone.weights={uri}: run {run_id} has no artifact {artifact_path!r}. Runs of deep methods log their "
            f"weights as {MODEL_ARTIFACT}/{MODEL_FILE} (unless save_model=false); closed-form methods have none."
        ) from None
    files = sorted(local.rglob("*.pt")) if local.is_dir() else [local]
    if len(files) != 1:
        raise TlrunError(f"backbone.weights={uri}: expected one .pt file in the artifact, found {len(files)}")
    return run_id, files[0]


def _batched(items: list, size: int = _MAX_BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store; ``None`` for another store or an in-memory one."""
    database = tracking_uri.removeprefix("sqlite:///")
    if not tracking_uri.startswith("sqlite:///") or database == ":memory:":
        return None
    return Path(database)


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
    database = _sqlite_file(tracking_uri)
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
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=tracking_uri)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: The shared view of the runs table that tlrun's experiments carry (MLflow's "share" button stores its views so):
#: the UI opens ``#/experiments/<id>/runs?viewStateShareKey=tlrun`` with these columns shown.
RUNS_VIEW = "tlrun"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW}"
RUNS_VIEW_COLUMNS = ["metrics.`target_acc`", "tags.`method`", "tags.`dataset`", "tags.`source`", "tags.`target`",
                     "tags.`seed`"]
#: The experiment tags tlrun sets: the runs table above; the experiment kind of MLflow 3 UIs before 3.17's
#: GenAI / machine-learning switch (which :mod:`tlrun.ui` sets in the address instead); the description.
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
        database = _sqlite_file(tracking_uri)
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


#: The run tag naming the process that runs it, ``host:pid``; every run tlrun opens (and a sweep's parent) has it.
PROCESS_TAG = "process"


def this_process() -> str:
    """``host:pid`` of this process, as :data:`PROCESS_TAG` records it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(process: str) -> bool:
    """Whether the process ``host:pid`` may still run: True unless it is on this host and no such process exists
    (a process on another machine, or an unrecorded one, is assumed to run)."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return bool(process)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def end_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End KILLED every run of the experiment left RUNNING by a process of this host that is gone; their ids.

    Ctrl-C and SIGTERM end a run KILLED; SIGKILL (``kill -9``, the out-of-memory killer, a cluster's hard time
    limit) leaves the process no chance to, so the next run tlrun opens in the experiment ends them instead,
    with the tag ``error`` saying so. What those runs logged stays.
    """
    orphans = [
        record for record in every_run(client, [experiment_id], filter_string="attributes.status = 'RUNNING'")
        if PROCESS_TAG in record.data.tags and not process_alive(record.data.tags[PROCESS_TAG])
    ]
    for record in orphans:
        process = record.data.tags[PROCESS_TAG]
        client.set_tag(record.info.run_id, "error", f"its process {process} ended without ending the run "
                       "(killed with SIGKILL or out of memory?); ended KILLED by a later tlrun run")
        client.set_terminated(record.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        print(f"tlrun: run {record.info.run_id} was left RUNNING by process {process}, which is gone; "
              "marked it KILLED", file=sys.stderr)
    return [record.info.run_id for record in orphans]


class TrackedRun:
    """An MLflow run that always ends with a final status.

    ``with TrackedRun(...) as run:`` creates the run; leaving the block ends it FINISHED, FAILED (the error's
    traceback is logged as ``error.txt`` and its message as the tag ``error``), or KILLED on
    ``KeyboardInterrupt`` / ``SystemExit`` (Ctrl-C, SIGTERM, Lightning's graceful shutdown). What was logged
    before the end stays. A process killed outright cannot end its run: the run's :data:`PROCESS_TAG` lets the
    next ``TrackedRun`` in the experiment end it (:func:`end_orphaned_runs`). A store that cannot be written
    (read-only, full) raises :class:`StoreError` from the write, naming the store or the artifact folder; the run
    still ends FAILED where the store allows it.
    """

    def __init__(
        self,
        experiment: str,
        tracking_uri: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> None:
        """Create a run in ``experiment``, or with ``run_id``, reopen that run (status RUNNING again) to go on
        logging into it (a resumed run)."""
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.resumed = run_id is not None
        tags = (tags or {}) | {PROCESS_TAG: this_process()}
        with self._writing():
            self.client = open_client(self.tracking_uri)
            if run_id is not None:
                self.run_id = run_id
                info = self.client.get_run(run_id).info
                self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
                self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])
            else:
                experiment_id = ensure_experiment(self.client, self.tracking_uri, experiment)
                info = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info
                self.run_id = info.run_id
            self.experiment_id, self.artifact_uri = info.experiment_id, info.artifact_uri
            # After this run carries this process's tag: a resumed run, left RUNNING by its dead process, is not
            # taken for an orphan.
            end_orphaned_runs(self.client, self.experiment_id)
        self.status: str = "RUNNING"

    @contextmanager
    def _writing(self, artifacts: bool = False) -> Iterator[None]:
        """A write to the store (``artifacts``: to the run's artifact folder), signals deferred
        (:func:`interrupts_deferred`); a store failure is raised as a :class:`StoreError` that says where and what
        to do."""
        with interrupts_deferred():
            try:
                yield
            except StoreError:
                raise
            except Exception as error:
                problem = store_failure(error)
                if problem is None:
                    raise
                if artifacts:
                    where = f"the artifact folder {self.artifact_uri.removeprefix('file://')} of run {self.run_id}"
                else:
                    where = f"the MLflow store {self.tracking_uri}"
                remedy = "free space there" if problem.startswith(("full", "over")) else "make it writable"
                raise StoreError(
                    f"{where} is {problem}: {str(error).splitlines()[0][:300]}. {remedy.capitalize()}, or track into "
                    "another store: logger.tracking_uri=sqlite:///<writable folder>/mlflow.db (or MLFLOW_TRACKING_URI)"
                ) from error

    # -- logging -------------------------------------------------------------------------------------------
    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(safe_key(key), value) for key, value in params.items()]
        with self._writing():
            for batch in _batched(items):
                self.client.log_batch(self.run_id, params=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        items = [RunTag(safe_key(key), str(value)) for key, value in tags.items()]
        with self._writing():
            for batch in _batched(items):
                self.client.log_batch(self.run_id, tags=batch)

    def delete_tag(self, key: str) -> None:
        """Remove the run's tag ``key`` (nothing when it has none), e.g. one naming a file that was deleted."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

        with self._writing():
            try:
                self.client.delete_tag(self.run_id, key)
            except MlflowException as error:
                if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                    raise

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        with self._writing():
            for batch in _batched(items):
                self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with self._writing(artifacts=True):
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._writing(artifacts=True):
            self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        with self._writing(artifacts=True):
            self.client.log_figure(self.run_id, figure, artifact_file)

    def log_model(self, module: Any) -> None:
        """Log the module's weights as the artifact ``model/state_dict.pt`` (a plain file ``torch.load`` reads;
        a later run starts from it with ``backbone.weights=runs:/<run_id>/model``): ``module.saved_state()`` when
        it has one (deep methods leave out frozen copies), else its ``state_dict()``."""
        import tempfile

        import torch

        with tempfile.TemporaryDirectory() as scratch:
            file = Path(scratch) / MODEL_FILE
            state = module.saved_state() if hasattr(module, "saved_state") else module.state_dict()
            torch.save({key: value.detach().cpu() for key, value in state.items()}, file)
            self.log_artifact(file, MODEL_ARTIFACT)

    def lightning_logger(self) -> Any:
        """A Lightning logger writing into this run (it never ends the run: :class:`TrackedRun` does)."""
        from pytorch_lightning.loggers import MLFlowLogger

        run = self

        class _RunOwnedMLFlowLogger(MLFlowLogger):
            def log_metrics(self, metrics: Any, step: int | None = None) -> None:
                with run._writing():
                    super().log_metrics(metrics, step)

            def log_hyperparams(self, params: Any) -> None:  # the composed config is already the run's params
                pass

            def finalize(self, status: str = "success") -> None:  # the run's status is TrackedRun's to set
                pass

        return _RunOwnedMLFlowLogger(tracking_uri=self.tracking_uri, run_id=self.run_id)

    # -- life cycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> "TrackedRun":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        with interrupts_deferred():  # a second Ctrl-C must not keep the run from ending
            swallowed = _take_pending_signal()
            if exc_type is None and swallowed is not None:  # its KeyboardInterrupt was lost on the way
                interrupt = KeyboardInterrupt(f"signal {swallowed}")
                self._end(KeyboardInterrupt, interrupt, None)
                raise interrupt
            self._end(exc_type, exc, tb)
        return False

    def _end(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None or (exc_type is SystemExit and exc.code in (0, None)):
            self.status = "FINISHED"
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self.status = "KILLED"
            self._record_error(f"interrupted ({exc_type.__name__})", exc_type, exc, tb)
        else:
            self.status = "FAILED"
            self._record_error(f"{exc_type.__name__}: {exc}", exc_type, exc, tb)
        try:
            with self._writing():
                if self.resumed and self.status == "FINISHED":
                    self._clear_earlier_error()
                self.client.set_terminated(self.run_id, RunStatus.to_string(getattr(RunStatus, self.status)))
        except StoreError as failure:
            raise StoreError(
                f"{exc if isinstance(exc, StoreError) else failure}. Run {self.run_id} could not even be ended "
                f"{self.status}: it shows RUNNING until the next tlrun run in its experiment marks it KILLED"
            ) from failure

    def _clear_earlier_error(self) -> None:
        """A resumed run that finishes: the error an earlier attempt recorded (tag ``error``, artifact
        ``error.txt``) is no longer true. The artifact is deleted through MLflow's artifact repository of the run
        (local folders, S3, GCS, Azure, ... implement it); where it cannot be, it is overwritten with a note."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.delete_tag("error")
        try:
            get_artifact_repository(self.artifact_uri).delete_artifacts("error.txt")
        except Exception:  # noqa: BLE001 - a repository without deletion
            self.log_text("An earlier attempt of this run failed; the run was resumed and FINISHED.\n", "error.txt")

    def _record_error(self, message: str, exc_type: type, exc: BaseException | None, tb: Any) -> None:
        try:
            self.set_tags({"error": message[:5000]})
            self.log_text("".join(traceback.format_exception(exc_type, exc, tb)), "error.txt")
        except Exception:  # the store itself failed: still try to set the final status
            pass
