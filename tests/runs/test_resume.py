"""Resumable runs: a deep run stopped midway goes on from its last checkpoint into the same MLflow run
(``tlrun resume=<run id>``); what cannot be resumed says why."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import first_run_logged, wait_for_runs
from tlrun.errors import DataError, TlrunError
from tlrun.runner.job import CHECKPOINT_TAG, run_job
from tlrun.tracking import PROCESS_TAG

ENTRY = "import sys; sys.argv = ['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"
EPOCHS = 6


@pytest.mark.parametrize("method", ["dann", "m3sda"])  # m3sda: several optimizer steps per batch, by hand
def test_a_run_stopped_midway_resumes_into_the_same_run(tmp_path, mlflow_store, compose, method):
    experiment = f"resume-{method}"  # the store is the session's: each case waits for its own run
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, f"method={method}", f"method.epochs={EPOCHS}", "+trainer.limit_train_batches=10",
         "trainer.enable_progress_bar=false", "diagnostics=false", f"logger.experiment={experiment}",
         f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    runs = wait_for_runs(process, mlflow_store, experiment, first_run_logged("train_loss", 2))
    if runs:
        process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert runs is not None, output
    run_id, client = runs[0].info.run_id, MlflowClient(tracking_uri=mlflow_store)
    stopped = client.get_run(run_id)
    assert stopped.info.status == "KILLED", output
    checkpoint = Path(stopped.data.tags[CHECKPOINT_TAG])
    assert checkpoint.is_file()
    done_before = {m.step for m in client.get_metric_history(run_id, "train_loss")}
    assert 2 <= len(done_before) < EPOCHS

    outcome = run_job(compose(f"resume={run_id}", experiment=experiment))
    assert outcome.run_id == run_id
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED" and "resumed" in resumed.data.tags
    steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
    assert sorted(set(steps)) == list(range(1, EPOCHS + 1))  # every epoch once, the early ones from before the stop
    assert len(steps) <= EPOCHS + 1  # at most the epoch cut by the stop is logged twice
    assert "target_acc" in resumed.data.metrics and len(client.search_runs([resumed.info.experiment_id])) == 1
    assert not checkpoint.parent.exists() and CHECKPOINT_TAG not in resumed.data.tags  # a finished run needs none

    with pytest.raises(TlrunError, match="already FINISHED"):
        run_job(compose(f"resume={run_id}", experiment=experiment))


def test_what_cannot_be_resumed_says_why(compose, mlflow_store, tmp_path):
    closed_form = run_job(compose("method=coral", experiment="resume-errors")).run_id  # the store exists from here
    with pytest.raises(TlrunError, match="^resume=0123456789abcdef: the MLflow store .* has no such run"):
        run_job(compose("resume=0123456789abcdef", experiment="resume-errors"))
    MlflowClient(tracking_uri=mlflow_store).set_terminated(closed_form, "KILLED")
    with pytest.raises(TlrunError, match="has no checkpoint"):
        run_job(compose(f"resume={closed_form}", experiment="resume-errors"))
    # A run still RUNNING in a live process (this one) is not resumed from under it.
    client = MlflowClient(tracking_uri=mlflow_store)
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"not read")
    client.set_tag(closed_form, CHECKPOINT_TAG, str(checkpoint))
    client.set_tag(closed_form, PROCESS_TAG, f"{socket.gethostname()}:{os.getpid()}")
    client.update_run(closed_form, status="RUNNING")
    with pytest.raises(TlrunError, match="still RUNNING"):
        run_job(compose(f"resume={closed_form}", experiment="resume-errors"))


def _interrupted_run(compose, client: MlflowClient, tmp_path: Path, experiment: str) -> str:
    """A closed-form run made to look interrupted with a checkpoint (KILLED, its checkpoint tag on a file), so that
    ``resume=`` reads its stored config: the id."""
    run_id = run_job(compose("method=coral", experiment=experiment)).run_id
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"not read")
    client.set_tag(run_id, CHECKPOINT_TAG, str(checkpoint))
    client.set_terminated(run_id, "KILLED")
    return run_id


def test_resume_builds_only_what_tlrun_configs_name(compose, mlflow_store, tmp_path):
    """A store's artifacts are data: a config.yaml edited to name a foreign _target_ is refused before anything is
    built (here ``builtins.open`` would create a marker file)."""
    import yaml

    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = _interrupted_run(compose, client, tmp_path, "resume-tampered")
    stored = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path))).read_text())
    marker = tmp_path / "marker"
    stored["dataset"] = {**stored["dataset"], "_target_": "builtins.open", "file": str(marker), "mode": "w"}
    client.log_text(run_id, yaml.safe_dump(stored), "config.yaml")

    with pytest.raises(TlrunError, match=r"refused: .*dataset\._target_=builtins\.open"):
        run_job(compose(f"resume={run_id}", experiment="resume-tampered"))
    assert not marker.exists()
    assert client.get_run(run_id).info.status == "KILLED"  # the refused resume did not reopen the run


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder_and_no_tag(compose, mlflow_store, tmp_path):
    cfg = compose("method=source_only", "method.lr=1e12", "method.epochs=2", "diagnostics=false", experiment="resume-failed")
    with pytest.raises(Exception):  # the loss diverges in the first epoch
        run_job(cfg)
    client = MlflowClient(tracking_uri=mlflow_store)
    (failed,) = client.search_runs([client.get_experiment_by_name("resume-failed").experiment_id])
    assert failed.info.status == "FAILED" and CHECKPOINT_TAG not in failed.data.tags
    assert not (tmp_path / "cache" / "checkpoints" / failed.info.run_id).exists()


def test_a_stored_config_that_no_longer_passes_the_checks_says_it_is_the_resumed_runs(compose, mlflow_store, tmp_path):
    """A run made by an earlier tlrun, whose method has since gained a setting (here ``m3sda``'s
    ``generator_steps`` dropped from its stored config), is refused with the resume named, not as a typo."""
    import yaml
    from omegaconf import OmegaConf

    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = _interrupted_run(compose, client, tmp_path, "resume-older")
    older = OmegaConf.to_container(compose("method=m3sda", "dataset.source=[original,rotate]",
                                           experiment="resume-older"), resolve=True)
    del older["method"]["generator_steps"]
    client.log_text(run_id, yaml.safe_dump(older), "config.yaml")

    with pytest.raises(TlrunError, match=rf"^resume={run_id}: the run's stored config.yaml does not pass .*sets no "
                                         r"generator_steps.*earlier version of tlrun"):
        run_job(compose(f"resume={run_id}", experiment="resume-older"))
    assert client.get_run(run_id).info.status == "KILLED"
    # Data that moved is a data error, as for a new run: not a config that an earlier version wrote.
    moved = OmegaConf.to_container(compose("method=coral", "dataset=features", f"dataset.root={tmp_path / 'moved'}",
                                           "dataset.source=a", "dataset.target=b", experiment="resume-older"),
                                   resolve=True)
    client.log_text(run_id, yaml.safe_dump(moved), "config.yaml")
    with pytest.raises(DataError, match="moved") as refused:
        run_job(compose(f"resume={run_id}", experiment="resume-older"))
    assert "does not pass" not in str(refused.value)
