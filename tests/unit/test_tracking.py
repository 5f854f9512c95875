"""The MLflow run life cycle: every run ends FINISHED, FAILED or KILLED, and keeps what it logged."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tlrun.tracking import (PROCESS_TAG, RUNS_VIEW_TAG, StoreError, TrackedRun, configured_uri, flatten,
                            interrupts_deferred, interrupts_stop_the_run, resolve_tracking_uri)


def _ended(store: str, exception: BaseException | None) -> tuple[TrackedRun, object]:
    run = TrackedRun(experiment="tracking-tests", tracking_uri=store, tags={"method": "x"})
    try:
        with run:
            run.log_metrics({"target_acc": 0.5}, step=3)
            if exception is not None:
                raise exception
    except BaseException:
        pass
    return run, run.client.get_run(run.run_id)


def test_finished(mlflow_store):
    run, record = _ended(mlflow_store, None)
    assert record.info.status == "FINISHED"
    assert record.data.metrics["target_acc"] == 0.5 and record.data.tags["method"] == "x"


def test_failed_logs_the_error(mlflow_store, tmp_path):
    run, record = _ended(mlflow_store, ValueError("loss is NaN"))
    assert record.info.status == "FAILED"
    assert record.data.tags["error"] == "ValueError: loss is NaN"
    assert record.data.metrics["target_acc"] == 0.5
    path = run.client.download_artifacts(run.run_id, "error.txt", str(tmp_path))
    assert "loss is NaN" in open(path).read()


def test_a_run_whose_process_was_killed_outright_is_ended_killed_by_the_next_run(mlflow_store):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid names no process any more
    client = MlflowClient(tracking_uri=mlflow_store)
    with TrackedRun(experiment="orphans", tracking_uri=mlflow_store) as first:
        first.log_metrics({"loss": 1.0}, step=1)
    assert client.get_run(first.run_id).data.tags[PROCESS_TAG] == f"{socket.gethostname()}:{os.getpid()}"
    experiment = client.get_experiment_by_name("orphans").experiment_id
    orphan = client.create_run(experiment, tags={PROCESS_TAG: f"{socket.gethostname()}:{gone.pid}"}).info.run_id
    client.log_metric(orphan, "loss", 0.5, step=3)
    alive = client.create_run(experiment, tags={PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}).info.run_id
    elsewhere = client.create_run(experiment, tags={PROCESS_TAG: "another-host:1"}).info.run_id
    with TrackedRun(experiment="orphans", tracking_uri=mlflow_store):
        pass
    record = client.get_run(orphan)
    assert record.info.status == "KILLED" and "SIGKILL" in record.data.tags["error"]
    assert record.data.metrics["loss"] == 0.5  # what it logged stays
    assert client.get_run(alive).info.status == client.get_run(elsewhere).info.status == "RUNNING"
    for run_id in (alive, elsewhere):
        client.set_terminated(run_id)

    # Resuming a run its dead process left RUNNING continues it: it is not taken for an orphan on the way.
    stranded = client.create_run(experiment, tags={PROCESS_TAG: f"{socket.gethostname()}:{gone.pid}"}).info.run_id
    with TrackedRun(experiment="orphans", tracking_uri=mlflow_store, run_id=stranded):
        pass
    resumed = client.get_run(stranded)
    assert resumed.info.status == "FINISHED" and "error" not in resumed.data.tags


def test_a_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "elsewhere" / "runs.db"
    store.parent.mkdir()
    with TrackedRun(experiment="beside", tracking_uri=f"sqlite:///{store}") as run:
        run.log_text("hello", "note.txt")
    assert list((store.parent / "mlartifacts").rglob("note.txt"))
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(1)])
def test_interrupted_runs_end_killed(mlflow_store, interrupt):
    _, record = _ended(mlflow_store, interrupt)
    assert record.info.status == "KILLED"
    assert record.data.metrics["target_acc"] == 0.5


def test_flatten_nested_config():
    assert flatten({"method": {"dim": 100}, "method_info": {"name": "jda"}, "seed": 0, "dims": [1, 2]}) == {
        "method.dim": "100", "method_info.name": "jda", "seed": "0", "dims": "[1, 2]",
    }


def test_the_store_is_the_setting_else_the_environment_s_else_tlrun_s_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri(None) == "sqlite:///from-env.db"
    assert resolve_tracking_uri("sqlite:///set.db") == "sqlite:///set.db"
    cfg = OmegaConf.create({"logger": {"tracking_uri": None}})
    assert configured_uri(cfg) == "sqlite:///from-env.db"


def test_the_package_gives_every_name_it_lists_and_the_signal_as_it_is_now(monkeypatch):
    import tlrun.tracking as tracking
    from tlrun.tracking import signals

    assert all(getattr(tracking, name) is not None for name in tracking.__all__ if name != "interrupted_by")
    monkeypatch.setattr(signals, "interrupted_by", signal.SIGTERM)
    assert tracking.interrupted_by == signal.SIGTERM  # read where it changes, not a copy made at import
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tracking.nothing


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test: a process started in the background (``nohup``, ``cmd &`` in a
    script) inherits SIGINT ignored, and an ignored signal, delivered after a write as it came, stays ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_during_a_store_write_is_delivered_after_the_write():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            finished.append("write")  # an interrupt inside the write would leave SQLite locked
    assert finished == ["write"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("python_sigint")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_whose_keyboard_interrupt_python_swallowed_still_ends_the_run_killed(mlflow_store):
    """Python ignores exceptions raised in garbage-collection callbacks; the signal must not be lost with it."""

    class RaisesInFinalizer:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is printed as "Exception ignored" and lost

    with interrupts_stop_the_run():
        with pytest.raises(KeyboardInterrupt):
            with TrackedRun("swallowed", tracking_uri=mlflow_store) as run:
                run.log_metrics({"loss": 1.0}, step=0)
                RaisesInFinalizer()
                # the interrupt was swallowed; the run's end still sees it
        assert MlflowClient(tracking_uri=mlflow_store).get_run(run.run_id).info.status == "KILLED"

        with pytest.raises(KeyboardInterrupt):
            with TrackedRun("swallowed", tracking_uri=mlflow_store) as run:
                RaisesInFinalizer()
                run.log_metrics({"loss": 1.0}, step=0)  # the next store write raises it
                pytest.fail("the write after a swallowed Ctrl-C must raise")
        assert MlflowClient(tracking_uri=mlflow_store).get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _open_at_the_barrier(barrier, uri: str, results) -> None:
    """A forked process: wait for the others, then open the store and create a run in it."""
    from tlrun.tracking import ensure_experiment, open_client

    barrier.wait()
    try:
        client = open_client(uri)
        experiment_id = ensure_experiment(client, uri, "race")
        client.create_run(experiment_id)
        results.put("ok")
    except Exception as error:  # noqa: BLE001 - reported to the test
        results.put(f"{type(error).__name__}: {error}")


def _open_a_fresh_store_side_by_side(folder, processes: int = 4) -> list[str]:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    workers = [context.Process(target=_open_at_the_barrier, args=(barrier, uri, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return outcomes


def test_runs_opened_side_by_side_on_a_fresh_sqlite_store_all_open(tmp_path):
    """MLflow builds a new sqlite store's tables in whichever process opens it first; processes opening it at once
    all ran the migrations and all but one failed (``duplicate column name: step``), which lost the first runs of
    a benchmark's parallel workers. tlrun opens a sqlite store under a lock beside it."""
    assert _open_a_fresh_store_side_by_side(tmp_path) == ["ok"] * 4
    assert (tmp_path / "mlflow.db.lock").exists()


def test_runs_opened_side_by_side_on_a_store_whose_folder_does_not_exist_all_open(tmp_path):
    """The lock was skipped when the store's folder (parents included) did not exist yet: 7 of 8 runs failed."""
    folder = tmp_path / "new" / "dir"
    assert _open_a_fresh_store_side_by_side(folder, processes=8) == ["ok"] * 8
    assert (folder / "mlflow.db.lock").exists()


def test_a_successful_resume_clears_the_error_of_the_failed_attempt(mlflow_store):
    run, record = _ended(mlflow_store, ValueError("out of memory"))
    assert record.data.tags["error"] and [item.path for item in run.client.list_artifacts(run.run_id)] == ["error.txt"]
    with TrackedRun(experiment="tracking-tests", tracking_uri=mlflow_store, run_id=run.run_id) as resumed:
        resumed.log_metrics({"target_acc": 0.75}, step=4)
    record = run.client.get_run(run.run_id)
    assert record.info.status == "FINISHED" and "error" not in record.data.tags
    assert run.client.list_artifacts(run.run_id) == []


def test_delete_tag_removes_a_tag_and_tolerates_a_missing_one(mlflow_store):
    with TrackedRun(experiment="tracking-tests", tracking_uri=mlflow_store, tags={"checkpoint": "/gone.ckpt"}) as run:
        run.delete_tag("checkpoint")
        run.delete_tag("checkpoint")
    assert "checkpoint" not in run.client.get_run(run.run_id).data.tags


def test_experiments_open_on_a_runs_table_with_target_acc(mlflow_store):
    """MLflow 3's runs table shows no metric column unless a view selects it; tlrun's experiments carry one (the
    form MLflow's "share" button stores), the experiment kind of MLflow 3 UIs, and a description; an experiment made
    before gets them with its next run."""
    client = MlflowClient(tracking_uri=mlflow_store)
    earlier = client.create_experiment("made-before")
    for name in ("made-before", "made-now"):
        with TrackedRun(experiment=name, tracking_uri=mlflow_store):
            pass
        tags = client.get_experiment_by_name(name).tags
        assert json.loads(tags[RUNS_VIEW_TAG])["selectedColumns"][0] == "metrics.`target_acc`"
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        assert "target_acc" in tags["mlflow.note.content"]
    assert client.get_experiment_by_name("made-before").experiment_id == earlier


@contextmanager
def _new_sqlite_connections(store: str, pragma: str):
    """Every new sqlite connection of this process runs ``pragma`` (``PRAGMA query_only``: writes fail as on a
    read-only database; ``max_page_count``: as on a full disk); the store's open connections are closed first."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(connection, record):
        cursor = connection.cursor()
        cursor.execute(pragma.format(pages=cursor.execute("PRAGMA page_count").fetchone()[0]))
        cursor.close()

    MlflowClient(tracking_uri=store)._tracking_client.store.engine.dispose()
    event.listen(Engine, "connect", on_connect)
    try:
        yield
    finally:
        event.remove(Engine, "connect", on_connect)
        MlflowClient(tracking_uri=store)._tracking_client.store.engine.dispose()


def test_a_read_only_store_is_a_store_error_naming_it(mlflow_store, capfd):
    """sqlite's own "attempt to write a readonly database" (``PRAGMA query_only``), through MLflow's store."""
    store = mlflow_store
    run = TrackedRun(experiment="tracking-tests", tracking_uri=store)
    with _new_sqlite_connections(store, "PRAGMA query_only = ON"):
        with pytest.raises(StoreError) as raised:
            with run:
                run.log_metrics({"loss": 1.0})
    message = str(raised.value)
    assert f"the MLflow store {store} is read-only" in message and "logger.tracking_uri=" in message
    assert "could not even be ended FAILED" in message  # the store took no write, the end included
    assert "Traceback" not in capfd.readouterr().err  # MLflow's logged traceback of the sqlite error is left out


def test_a_full_store_is_a_store_error_and_the_run_ends_failed(mlflow_store):
    """sqlite's own "database or disk is full" (``PRAGMA max_page_count``), through MLflow's store."""
    store = mlflow_store
    run = TrackedRun(experiment="tracking-tests", tracking_uri=store)
    with _new_sqlite_connections(store, "PRAGMA max_page_count = {pages}"):
        with pytest.raises(StoreError, match=f"the MLflow store {store} is full: .*Free space there"):
            with run:
                run.log_params({f"p{index}": "v" * 500 for index in range(2000)})
    assert run.client.get_run(run.run_id).info.status == "FAILED"


def test_an_artifact_write_out_of_space_is_a_store_error_naming_the_folder(mlflow_store, monkeypatch):
    """The OS's ENOSPC raised where MLflow's local artifact repository copies the file."""
    import shutil

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = TrackedRun(experiment="tracking-tests", tracking_uri=mlflow_store)
    monkeypatch.setattr(shutil, "copyfileobj", no_space)
    with pytest.raises(StoreError) as raised:
        with run:
            run.log_text("x: 1\n", "config.yaml")
    folder = run.artifact_uri.removeprefix("file://")
    assert f"the artifact folder {folder} of run {run.run_id} is full (no space left on the device)" in str(raised.value)
    record = run.client.get_run(run.run_id)
    assert record.info.status == "FAILED" and "StoreError" in record.data.tags["error"]


def _log_the_same_domain_at_the_barrier(barrier, uri: str, results) -> None:
    """A forked process: open a run, wait for the others, then log the domain every process logs."""
    from tlrun.tracking import DataInput

    try:
        with TrackedRun("inputs-race", tracking_uri=uri) as run:
            barrier.wait()
            run.log_inputs([DataInput("digits/thick", "target", {"thick.npz": "ab" * 32})])
        results.put("ok")
    except Exception as error:  # noqa: BLE001 - reported to the test
        results.put(f"{type(error).__name__}: {error}")


def test_parallel_jobs_logging_the_same_domain_all_succeed(tmp_path):
    """MLflow inserts a dataset row after looking for it; two jobs of a parallel sweep logging the same domain at
    once both inserted, and one failed (``UNIQUE constraint failed: datasets...``). The store lock serialises it."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    TrackedRun("inputs-race", tracking_uri=uri).__enter__().__exit__(None, None, None)  # the experiment exists
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_log_the_same_domain_at_the_barrier, args=(barrier, uri, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["ok"] * 6
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("inputs-race").experiment_id])
    assert sum(len(run.inputs.dataset_inputs) for run in runs) == 6
