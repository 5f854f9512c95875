"""Sweeps in MLflow: one parent run per --multirun with every job nested under it (basic and joblib launchers),
a relaunched sweep that adds only the jobs that did not finish, parallel writers to one sqlite store."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER
from omegaconf import OmegaConf

from tests.helpers import wait_for_runs
from tlrun.tracking.sweeps import PARENT_TAG, config_hash

TWO_BY_TWO = ["method=no_adaptation,coral", "dataset.target=thick,rotate"]
ENTRY = "import sys; sys.argv = ['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"


def _tlrun(tmp_path: Path, store: str, *args: str, wait: bool = True):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", ENTRY, "--multirun", *args, f"cache_dir={tmp_path / 'cache'}"]
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _runs(store: str, experiment: str) -> tuple[list, list]:
    """(parents, children) of the experiment."""
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    return parents, [r for r in runs if r.data.tags.get("sweep.role") != "parent"]


LAUNCHERS = {
    "basic": ([], "BasicLauncher"),
    "joblib": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "JoblibLauncher"),
    # submitit's local executor: each job a process started by submitit, as on Slurm.
    "submitit": (["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], "LocalLauncher"),
    # A local Ray instance (the ray extra): jobs are Ray tasks in Ray's worker processes.
    "ray": (["hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2"], "RayLauncher"),
}
#: Launchers checked only with -m slow: basic and joblib already show jobs in this and in other processes nesting
#: under the parent, and tests/test_threads.py checks submitit's threads.
SLOW_LAUNCHERS = ("submitit", "ray")


@pytest.mark.parametrize("launcher", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_LAUNCHERS else name
                                      for name in LAUNCHERS])
def test_a_two_by_two_sweep_is_one_parent_with_four_children(tmp_path, mlflow_store, launcher):
    if launcher == "ray":
        pytest.importorskip("ray", reason="Ray is not installed (pip install 'tlrun[ray]')")
        pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher is not installed")
    experiment = f"sweep-{launcher}"
    extra, launcher_class = LAUNCHERS[launcher]
    result = _tlrun(tmp_path, mlflow_store, *TWO_BY_TWO, *extra, f"logger.experiment={experiment}",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stdout + result.stderr
    (parent,), children = _runs(mlflow_store, experiment)
    assert len(children) == 4
    assert {c.data.tags[PARENT_TAG] for c in children} == {parent.info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert sorted((c.data.tags["method"], c.data.tags["target"]) for c in children) == sorted(
        (m, t) for m in ("no_adaptation", "coral") for t in ("thick", "rotate"))
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.status"] == "FINISHED"
    assert parent.data.metrics["jobs_finished"] == 4 and parent.data.metrics["jobs_failed"] == 0
    assert parent.data.params["method"] == "no_adaptation,coral"
    system_tags = (MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER, MLFLOW_GIT_COMMIT)
    assert parent.data.tags[MLFLOW_SOURCE_TYPE] == "LOCAL" and parent.data.tags[MLFLOW_USER]
    assert all(parent.data.tags.get(key) == children[0].data.tags.get(key) for key in system_tags)
    assert parent.data.tags["sweep.launcher"] == launcher_class
    assert parent.data.tags["sweep"] == str((tmp_path / "sweep").resolve())
    assert parent.info.end_time >= max(c.info.end_time for c in children)
    assert f"sweep run {parent.info.run_id} ended FINISHED" in result.stdout
    # The sweep ends with one methods x tasks table of the jobs' target accuracies, read back from MLflow.
    table = result.stdout[result.stdout.index("target_acc (%)"):]
    assert all(f"{100 * c.data.metrics['target_acc']:.2f}" in table for c in children) and "original→thick" in table
    if launcher == "submitit":  # its jobs all run at once here: one CPU thread each (hydra.launcher.cpus_per_task)
        assert {c.data.tags["threads"] for c in children} == {"1"}


def test_a_sweep_stopped_after_two_of_four_jobs_and_relaunched_adds_exactly_two_runs(tmp_path, mlflow_store):
    experiment = "sweep-relaunch"
    sweep = ["method=dann", "seed=0,1,2,3", "method.epochs=2", "+trainer.limit_train_batches=4",
             "trainer.enable_progress_bar=false", "diagnostics=false", "save_model=false", f"logger.experiment={experiment}"]
    process = _tlrun(tmp_path, mlflow_store, *sweep, f"hydra.sweep.dir={tmp_path / 'first'}", wait=False)
    # Two jobs done, the third has opened its run.
    if wait_for_runs(process, mlflow_store, experiment, lambda _, runs: len(runs) == 3, "tags.method = 'dann'", 240):
        process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    (parent,), children = _runs(mlflow_store, experiment)
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "KILLED"], output
    assert parent.info.status == "KILLED" and parent.data.metrics["jobs_finished"] == 2

    relaunch = _tlrun(tmp_path, mlflow_store, *sweep, f"hydra.sweep.dir={tmp_path / 'second'}")
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    assert relaunch.stdout.count("tlrun: skipped: run") == 2
    (same_parent,), after = _runs(mlflow_store, experiment)
    assert same_parent.info.run_id == parent.info.run_id
    new = {c.info.run_id for c in after} - {c.info.run_id for c in children}
    assert len(new) == 2
    finished = [c for c in after if c.info.status == "FINISHED"]
    assert sorted(c.data.tags["seed"] for c in finished) == ["0", "1", "2", "3"]
    assert same_parent.info.status == "FINISHED" and same_parent.data.metrics["jobs_finished"] == 4

    # Opting out: every job runs again, under a new parent.
    again = _tlrun(tmp_path, mlflow_store, *sweep[:1], "seed=0", *sweep[2:], "skip_finished=false",
                   f"hydra.sweep.dir={tmp_path / 'third'}")
    assert again.returncode == 0, again.stdout + again.stderr
    parents, latest = _runs(mlflow_store, experiment)
    assert len(parents) == 2 and len(latest) == len(after) + 1


def _wait_for_runs(process, store: str, experiment: str, count: int, filter_string: str) -> list:
    runs = wait_for_runs(process, store, experiment, lambda _, runs: len(runs) >= count, filter_string)
    if runs is not None:
        return runs
    raise AssertionError(f"no {count} runs ({filter_string}) appeared; output: {process.communicate(timeout=60)[0]}")


def test_a_sweep_killed_outright_is_ended_killed_and_its_relaunch_reopens_its_parent(tmp_path, mlflow_store):
    experiment = "sweep-sigkill"
    sweep = ["method=jda", "method.iterations=100000", "seed=0,1", f"logger.experiment={experiment}"]
    first = _tlrun(tmp_path, mlflow_store, *sweep, f"hydra.sweep.dir={tmp_path / 'first'}", wait=False)
    (killed,) = _wait_for_runs(first, mlflow_store, experiment, 1, "tags.method = 'jda'")
    first.kill()  # SIGKILL: the process cannot end its runs
    first.communicate(timeout=60)
    (parent,), children = _runs(mlflow_store, experiment)
    assert parent.info.status == "RUNNING" and [c.info.status for c in children] == ["RUNNING"]

    relaunch = _tlrun(tmp_path, mlflow_store, *sweep, f"hydra.sweep.dir={tmp_path / 'second'}", wait=False)
    _wait_for_runs(relaunch, mlflow_store, experiment, 2, "tags.method = 'jda'")
    relaunch.send_signal(signal.SIGINT)
    output, _ = relaunch.communicate(timeout=120)
    assert f"run {killed.info.run_id} was left RUNNING" in output
    (same_parent,), after = _runs(mlflow_store, experiment)
    assert same_parent.info.run_id == parent.info.run_id and same_parent.info.status == "KILLED"
    orphan = next(c for c in after if c.info.run_id == killed.info.run_id)
    assert orphan.info.status == "KILLED" and "SIGKILL" in orphan.data.tags["error"]
    assert "RUNNING" not in {c.info.status for c in after}


def test_a_failing_job_fails_the_parent_and_leaves_its_message_there(tmp_path, mlflow_store):
    result = _tlrun(tmp_path, mlflow_store, "method=no_adaptation", "dataset.target=nowhere,thick",
                    "logger.experiment=sweep-error", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode != 0
    (parent,), children = _runs(mlflow_store, "sweep-error")
    assert [(c.data.tags["target"], c.info.status) for c in children] == [("thick", "FINISHED")]
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["jobs_failed_before_run"] == 1 and parent.data.metrics["jobs_finished"] == 1
    assert "has no domain 'nowhere'" in parent.data.tags["sweep.failed_before_run.0"]


def test_the_job_hash_ignores_where_a_run_is_stored_but_not_what_it_computes(compose):
    base = config_hash(compose("method=coral"))
    assert config_hash(compose("method=coral", "logger.experiment=elsewhere", "trainer.enable_progress_bar=false")) == base
    assert config_hash(compose("method=coral", "seed=1")) != base
    assert config_hash(compose("method=coral", "dataset.target=rotate")) != base
    cfg = compose("method=coral")
    OmegaConf.update(cfg, "cache_dir", "/elsewhere")
    assert config_hash(cfg) == base


def _write_a_run(arguments: tuple[str, int]) -> str:
    store, number = arguments
    from tlrun.tracking import TrackedRun

    with TrackedRun("parallel-writers", tracking_uri=store, run_name=f"writer {number}") as run:
        run.log_params({f"param{i}": str(i) for i in range(30)})
        for step in range(60):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 60}, step)
        run.set_tags({"writer": str(number)})
        run.log_text("done", "note.txt")
    return run.run_id


def test_eight_jobs_writing_in_parallel_to_one_sqlite_store_all_finish_with_all_their_metrics(mlflow_store):
    MlflowClient(tracking_uri=mlflow_store).search_experiments()  # the store exists before the writers start
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        run_ids = pool.map(_write_a_run, [(mlflow_store, k) for k in range(8)])
    client = MlflowClient(tracking_uri=mlflow_store)
    for run_id in run_ids:
        record = client.get_run(run_id)
        assert record.info.status == "FINISHED"
        assert len(client.get_metric_history(run_id, "loss")) == 60
        assert len(client.get_metric_history(run_id, "acc")) == 60
        assert len(record.data.params) == 30


def test_a_relaunch_after_the_missing_data_arrived_ends_the_same_parent_finished(tmp_path, mlflow_store):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "src.npz", X=rng.normal(size=(40, 5)), y=np.arange(40) % 2)
    sweep = ["method=no_adaptation", "dataset=features", f"dataset.root={tmp_path}", "dataset.source=src",
             "dataset.target=tgt", "seed=0,1", "logger.experiment=sweep-data-arrives"]
    first = _tlrun(tmp_path, mlflow_store, *sweep, f"hydra.sweep.dir={tmp_path / 'first'}")
    assert first.returncode != 0
    (parent,), _ = _runs(mlflow_store, "sweep-data-arrives")
    assert parent.info.status == "FAILED" and parent.data.metrics["jobs_failed_before_run"] == 2

    np.savez(tmp_path / "tgt.npz", X=rng.normal(size=(30, 5)) + 1, y=np.arange(30) % 2)
    second = _tlrun(tmp_path, mlflow_store, *sweep, f"hydra.sweep.dir={tmp_path / 'second'}")
    assert second.returncode == 0, second.stdout + second.stderr
    (same,), children = _runs(mlflow_store, "sweep-data-arrives")
    assert same.info.run_id == parent.info.run_id and len(children) == 2
    assert same.info.status == "FINISHED"  # the first launch's errors are gone with its launch
    assert same.data.metrics["jobs_failed_before_run"] == 0 and same.data.metrics["jobs_finished"] == 2
    assert not any(key.startswith("sweep.failed_before_run.") for key in same.data.tags)
