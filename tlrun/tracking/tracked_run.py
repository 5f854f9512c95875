"""One MLflow run per tlrun run, always ended FINISHED, FAILED or KILLED: :class:`TrackedRun` owns the run's life
cycle (a context manager)."""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from mlflow.entities import Metric, Param, RunStatus, RunTag

from tlrun.tracking.processes import PROCESS_TAG, end_orphaned_runs, this_process
from tlrun.tracking.records import DataInput, batched, safe_key, source_tags
from tlrun.tracking.signals import interrupts_deferred, take_pending_signal
from tlrun.tracking.store import StoreError, ensure_experiment, open_client, store_failure, store_lock
from tlrun.tracking.uri import resolve_tracking_uri

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
        """Create a run in ``experiment`` (with MLflow's system tags: :func:`source_tags`), or with ``run_id``,
        reopen that run (status RUNNING again) to go on logging into it (a resumed run)."""
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
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
                info = self.client.create_run(experiment_id, run_name=run_name, tags=source_tags() | tags).info
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
            for batch in batched(items):
                self.client.log_batch(self.run_id, params=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        items = [RunTag(safe_key(key), str(value)) for key, value in tags.items()]
        with self._writing():
            for batch in batched(items):
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

    def log_inputs(self, inputs: Iterable[DataInput]) -> None:
        """Log the domains the run read as MLflow dataset inputs (the UI's Dataset column)."""
        entities = [data_input.entity() for data_input in inputs]
        with self._writing(), store_lock(self.tracking_uri):
            for batch in batched(entities):
                self.client.log_inputs(self.run_id, datasets=batch)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_metrics_at({step or 0: metrics})

    def log_metrics_at(self, metrics_by_step: dict[int, dict[str, float]]) -> None:
        """Log the metrics of several steps at once (one write to the store)."""
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for step, metrics in metrics_by_step.items()
                 for key, value in metrics.items()]
        with self._writing():
            for batch in batched(items):
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

    def log_model(self, predictor: Any, input_example: Any) -> None:
        """Log the run's model (:mod:`tlrun.tracking.models`): ``predictor`` as an MLflow pyfunc model ``model``,
        with a deep network's weights (``saved_state()``: frozen copies left out) as its ``state_dict.pt``."""
        from tlrun.tracking.models import log_run_model

        saved_state = getattr(predictor.method, "saved_state", None)
        with self._writing(artifacts=True):
            log_run_model(self.run_id, self.tracking_uri, predictor, input_example,
                          saved_state() if saved_state is not None else None)

    @contextmanager
    def system_metrics(self, enabled: bool) -> Iterator[None]:
        """While the block runs, when ``enabled``: MLflow's system metrics (``system/cpu_utilization_percentage``,
        ``system/system_memory_usage_megabytes``, GPU utilisation and memory with ``nvidia-ml-py``...), sampled in a
        thread every ``$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (MLflow's default: 10)."""
        if not enabled:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(self.run_id, resume_logging=self.resumed, tracking_uri=self.tracking_uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

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
            swallowed = take_pending_signal()
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
