"""The MLflow run life cycle: every run ends FINISHED, FAILED or KILLED, and keeps what it logged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from mlflow.tracking import MlflowClient

from tlrun.tracking import PROCESS_TAG, TrackedRun, flatten, interrupts_deferred, interrupts_stop_the_run


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
    assert flatten({"method": {"name": "jda", "dim": 100}, "seed": 0, "dims": [1, 2]}) == {
        "method.name": "jda", "method.dim": "100", "seed": "0", "dims": "[1, 2]",
    }


def test_ctrl_c_during_a_store_write_is_delivered_after_the_write():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            finished.append("write")  # an interrupt inside the write would leave SQLite locked
    assert finished == ["write"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


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
