"""CPU threads per run: every core for a run alone, shared cores for runs a launcher starts side by side."""

from __future__ import annotations

import os

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from threadpoolctl import threadpool_info

from tlrun.errors import TlrunError
from tlrun.run import run
from tlrun.runner.threads import SUBMITIT_LOCAL, free_cores, limited_threads, run_threads

JOBLIB = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2})


def test_auto_leaves_a_run_alone_and_what_a_scheduler_set_but_shares_the_cores_under_submitit_local():
    free = free_cores()  # a single run: the cores no other process uses (all of them: torch's own choice, None)
    assert run_threads("auto", None, environ={}) == (None if free == len(os.sched_getaffinity(0)) else free)
    assert run_threads("auto", JOBLIB, environ={"OMP_NUM_THREADS": "1"}) is None  # joblib's worker already says 1
    assert run_threads("auto", None, environ={"SLURM_CPUS_PER_TASK": "6"}) == 6
    submitit = OmegaConf.create({"_target_": SUBMITIT_LOCAL, "cpus_per_task": None})
    assert run_threads("auto", submitit, environ={}) == 1  # every job of the array at once
    submitit.cpus_per_task = 4
    assert run_threads("auto", submitit, environ={}) == 4
    assert run_threads(3, submitit, environ={"OMP_NUM_THREADS": "8"}) == 3  # a number always wins


@pytest.mark.parametrize("value", [0, -2, "two", True, 1.5])
def test_a_bad_thread_count_is_an_error(value):
    with pytest.raises(TlrunError, match="use auto or a positive number of CPU threads"):
        run_threads(value, None, environ={})


def test_limited_threads_sets_torch_and_the_blas_pools_for_the_block_only():
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.get_num_threads() == before
    with limited_threads(None):
        assert torch.get_num_threads() == before


def test_a_run_records_its_threads_and_a_bad_setting_opens_no_run(compose, mlflow_store):
    run(compose("method=no_adaptation", "threads=1", experiment="threads"))
    client = MlflowClient(tracking_uri=mlflow_store)
    (finished,) = client.search_runs([client.get_experiment_by_name("threads").experiment_id])
    assert finished.data.tags["threads"] == "1" and "threads" not in finished.data.params  # a tag, not a param
    with pytest.raises(TlrunError, match="threads=0"):
        run(compose("method=no_adaptation", "threads=0", experiment="threads-bad"))
    assert client.get_experiment_by_name("threads-bad") is None


def test_free_cores_are_the_cores_less_the_other_processes_running_threads(tmp_path, monkeypatch):
    cores = len(os.sched_getaffinity(0))
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 1/300 4242\n")  # this process alone runs
    assert free_cores(loadavg) == cores
    loadavg.write_text(f"2.00 1.00 0.50 {cores + 5}/300 4242\n")  # more busy threads than cores: still one
    assert free_cores(loadavg) == 1
    if cores >= 2:
        loadavg.write_text("1.00 1.00 1.00 2/300 4242\n")  # one other process running
        assert free_cores(loadavg) == cores - 1
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))  # no /proc/loadavg: the 1-minute load average
    assert free_cores(tmp_path / "absent") == max(1, cores - 1)
