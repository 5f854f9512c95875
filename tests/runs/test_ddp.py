"""``trainer=ddp``: rank detection, the device/strategy mapping, the training loaders' shards, and real DDP runs
on two CPU processes (gloo) through the command: as Lightning re-executes it, and as ``srun`` starts it on two
nodes (two local processes with the environment Slurm gives its tasks): one MLflow run, workers gone.

Each end-to-end test starts two Python processes, about 35 s of CPU on two cores; the unit tests take about 15 s.
An interrupted run resumed, a two-job sweep, and jobs in the joblib and submitit launchers' workers, 20 to 60 s
each, are marked slow (``pytest tests/runs/test_ddp.py -m slow``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from tests.helpers import QUICK, REPO, free_port, processes_mentioning

from tlrun.methods.deep_ddp import shard_sampler
from tlrun.runner import ddp
from tlrun.errors import TlrunError
from tlrun.run import run
from tlrun.runner.steps import job_device

DDP = ["method=dann", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
#: Two nodes of one CPU process each, as ``srun`` starts them (:func:`_srun_env`).
TWO_NODES = ["method=dann", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2"]
RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
            "JSM_NAMESPACE_RANK")


def _launch_env(key: str) -> bool:
    """Whether the variable tells a process its place among a run's processes (the tests set their own)."""
    return key in RANK_ENV or key.startswith("SLURM_")


@pytest.fixture
def no_rank_env(monkeypatch):
    for key in filter(_launch_env, list(os.environ)):
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ------------------------------------------------------------------------------------------- unit


def _device(cfg):
    """The device and trainer settings a run uses (the GPU claim, if any, released at once)."""
    with job_device(cfg) as pair:
        return pair


def test_a_worker_is_a_nonzero_rank_of_a_run_that_asks_for_several_processes(compose, no_rank_env, no_gpu):
    several = compose(*DDP)
    assert not ddp.is_worker(several)  # the command the user started: rank 0
    port = {"MASTER_PORT": "12910"}  # Lightning's launcher, torchrun: with the rank, the address of rank 0
    for env in ({"LOCAL_RANK": "1", **port}, {"RANK": "1", "LOCAL_RANK": "1", **port},
                {"LOCAL_RANK": "0", "NODE_RANK": "1", **port}):
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            assert ddp.is_worker(several), env
    no_rank_env.setenv("LOCAL_RANK", "0")
    no_rank_env.setenv("MASTER_PORT", "12910")
    assert not ddp.is_worker(several)
    # A stray LOCAL_RANK changes nothing unless the run asks for several processes of a deep method...
    no_rank_env.setenv("LOCAL_RANK", "1")
    no_rank_env.delenv("MASTER_PORT")
    assert not ddp.is_worker(compose("method=dann"))  # trainer=cpu
    assert not ddp.is_worker(compose("method=dann", "trainer=ddp"))  # no GPU: one process
    assert not ddp.is_worker(compose("method=jda", "trainer=ddp", "trainer.devices=2"))  # closed-form
    # ... and there, without MASTER_PORT, it is an error rather than a silent worker (or a wait for one).
    with pytest.raises(TlrunError, match="LOCAL_RANK=1 is set in the environment without MASTER_PORT"):
        ddp.is_worker(several)


def test_under_srun_the_ranks_are_slurms_and_its_tasks_must_match_the_settings(compose, no_rank_env, no_gpu):
    two_nodes = compose(*TWO_NODES)
    for key, value in {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0",
                       "LOCAL_RANK": "0", "MASTER_PORT": "12910"}.items():  # a cluster's LOCAL_RANK does not count
        no_rank_env.setenv(key, value)
    assert not ddp.is_worker(two_nodes)
    no_rank_env.setenv("SLURM_PROCID", "1")
    assert ddp.is_worker(two_nodes)
    assert ddp.tags(_device(two_nodes)[1]) == {"trainer.strategy": "ddp", "trainer.world_size": "2",
                                               "trainer.num_nodes": "2"}
    # Lightning runs one process per Slurm task: other counts stop every task before a run opens.
    for overrides, asked in (([], "1"), ([*DDP, "trainer.num_nodes=2"], "4 (trainer.devices=2 x trainer.num_nodes=2)")):
        with pytest.raises(TlrunError, match=rf"SLURM_NTASKS=2\).* ask for {re.escape(asked)}"):
            ddp.is_worker(compose("method=dann", *overrides))
    # A job named interactive (or bash: salloc's shell): Lightning starts the processes itself, as without Slurm.
    no_rank_env.setenv("SLURM_JOB_NAME", "interactive")
    assert not ddp.is_worker(compose("method=dann"))
    assert not ddp.is_worker(compose(*DDP))


def test_a_sweep_job_in_a_launchers_worker_has_lightning_relaunch_tlrun(mlflow_store, monkeypatch, tmp_path):
    # Ray runs each job in its worker program (ray/_private/workers/default_worker.py, run as a script, whose
    # required options the relaunch would lack); joblib and submitit in theirs: Lightning re-executes __main__.
    import __main__
    from hydra import compose, initialize_config_dir
    from lightning_fabric.strategies.launchers.subprocess_script import _hydra_subprocess_cmd

    from tlrun.config import config_dir

    monkeypatch.setattr(__main__, "__spec__", None)
    monkeypatch.setattr(sys, "argv", ["/ray/_private/workers/default_worker.py", "--node-ip-address=127.0.0.1"])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*DDP, "seed=1"], return_hydra_config=True)
    job_dir = tmp_path / "sweep" / "0"
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = RunMode.MULTIRUN, str(job_dir), str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    try:
        restore = ddp._relaunch_this_job_alone()
        command, cwd = _hydra_subprocess_cmd(local_rank=1)
        restore()
    finally:
        HydraConfig.instance().cfg = None
    assert command[:3] == [sys.executable, "-m", "tlrun.cli"] and cwd == str(tmp_path)
    assert command[3:] == [*DDP, "seed=1", f'hydra.run.dir="{job_dir}"', "hydra.job.name=train_ddp_process_1",
                           "hydra.output_subdir=null"]
    assert __main__.__spec__ is None


def test_device_maps_auto_and_ddp_on_a_machine_without_gpu(compose, no_gpu, capsys):
    device, trainer = _device(compose("method=dann", "trainer=ddp"))
    assert device == "cpu" and trainer["accelerator"] == "cpu" and trainer["precision"] == "32-true"
    assert trainer["strategy"] == "auto" and ddp.tags(trainer) == {}  # one CPU process: a normal run
    assert "normal single-process run" in capsys.readouterr().out
    device, trainer = _device(compose(*DDP))
    assert (device, trainer["strategy"], trainer["devices"], trainer["precision"]) == ("cpu", "ddp", 2, "32-true")
    assert ddp.tags(trainer) == {"trainer.strategy": "ddp", "trainer.world_size": "2"}
    device, trainer = _device(compose("method=jda", "trainer=ddp", "trainer.devices=2"))
    assert device == "cpu" and "strategy" not in trainer and ddp.tags(trainer) == {}
    assert "jda is closed-form: it computes in this one process on cpu" in capsys.readouterr().out
    _, trainer = _device(compose("method=dann", "trainer.devices=2"))  # Lightning would start DDP for it anyway
    assert trainer["strategy"] == "ddp"
    assert _device(compose("method=dann"))[1]["accelerator"] == "cpu"  # trainer=cpu as it was
    capsys.readouterr()
    assert _device(compose("method=dann", "trainer=gpu"))[1]["precision"] == "32-true"
    assert "no GPU here" in capsys.readouterr().out


def test_device_takes_every_gpu_for_ddp(compose, monkeypatch, tmp_path):
    from pytorch_lightning.accelerators import CUDAAccelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(CUDAAccelerator, "auto_device_count", staticmethod(lambda: 4))
    monkeypatch.setattr(CUDAAccelerator, "parse_devices",
                        staticmethod(lambda devices: list(range(4 if devices in (-1, 4) else int(devices)))))
    device, trainer = _device(compose("method=dann", "trainer=ddp"))
    assert (device, trainer["accelerator"], trainer["precision"], trainer["strategy"]) == ("cuda", "gpu", "16-mixed", "ddp")
    assert ddp.tags(trainer)["trainer.world_size"] == "4"
    assert ddp.process_count({**trainer, "devices": -1}) == 4
    monkeypatch.setattr("tlrun.runner.devices.visible_gpu_ids", lambda: ["GPU-stand-in"])
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    device, trainer = _device(compose("method=dann", "trainer=ddp", "trainer.devices=1"))
    assert trainer["strategy"] == "auto"  # one GPU: a normal run, on the GPU it claims
    assert (device, trainer["devices"]) == ("cuda:0", [0])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "needs the tlrun command"),  # from Python, Lightning would re-execute the caller (pytest) as the workers
        (["trainer.strategy=ddp_spawn"], "trainer.strategy=ddp_spawn"),
        (["trainer.strategy=fsdp"], "trainer.strategy=fsdp"),
        (["trainer.devices=-1"], "trainer.devices=-1"),
    ],
)
def test_what_ddp_cannot_do_fails_before_a_run(compose, mlflow_store, no_rank_env, no_gpu, overrides, message):
    client = MlflowClient(tracking_uri=mlflow_store)
    with pytest.raises(TlrunError, match=message):
        run(compose(*DDP, *overrides, experiment="ddp-errors"))
    experiment = client.get_experiment_by_name("ddp-errors")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_gradual_unfreezing_is_refused_on_several_processes(compose, no_gpu, monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    cfg = compose("method=finetune", "backbone=mlp", "trainer=ddp", "trainer.devices=2", "method.unfreeze_every=1")
    with pytest.raises(TlrunError, match="gradual unfreezing"):
        ddp._check(cfg)


def test_each_process_draws_its_own_share_reshuffled_at_every_pass():
    dataset = torch.utils.data.TensorDataset(torch.arange(11))
    shares = [shard_sampler(dataset, 2, rank, seed=5) for rank in (0, 1)]
    first = [list(share) for share in shares]
    assert [len(order) for order in first] == [6, 6]  # padded to as many samples each
    assert set(first[0]) | set(first[1]) == set(range(11)) and len(set(first[0]) & set(first[1])) <= 1
    second = [list(share) for share in shares]
    assert second != first and set(second[0]) | set(second[1]) == set(range(11))
    again = shard_sampler(dataset, 2, 0, seed=5)
    assert list(again) == first[0]  # deterministic from the seed


def test_a_deep_method_shards_its_shuffled_loaders_only(compose):
    from tlrun.backbones import MLP
    from tlrun.config import instantiate

    method = instantiate(compose("method=source_only", "method.batch_size=4").method,
                         backbone=MLP(input_shape=(3,), hidden=[4]))
    X, y = np.zeros((20, 3), dtype=np.float32), np.arange(20) % 2
    method._shard = (1, 2)
    assert len(method.make_loader(X, y, shuffle=True, drop_last=True)) == 2  # 10 of the 20 samples, batches of 4
    assert len(method.make_loader(X, shuffle=False)) == 5  # prediction sees everything
    method._shard = None
    assert len(method.make_loader(X, y, shuffle=True, drop_last=True)) == 5


# ------------------------------------------------------------------------------------------- end to end


def _env(store: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not _launch_env(key)}
    path = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1"}


def _srun_env(store: str, rank: int, port: int) -> dict[str, str]:
    """What ``srun`` gives task ``rank`` of a job step on two nodes, one task each (``sbatch --nodes=2
    --ntasks-per-node=1``; Lightning reads the first node's name from the node list, and the port from
    ``MASTER_PORT`` when set, else from the job id)."""
    return {**_env(store), "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "tlrun-ddp", "SLURM_NNODES": "2",
            "SLURM_NODELIST": "localhost", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_PROCID": str(rank), "SLURM_NODEID": str(rank), "SLURM_LOCALID": "0", "MASTER_PORT": str(port)}


def _command(tmp_path: Path, *overrides: str, processes: list[str] = DDP, run_dir: str = "run") -> list[str]:
    # `python -m tlrun.cli`: Lightning re-executes the workers as `python -m <the same module> <the same arguments>`.
    return [sys.executable, "-m", "tlrun.cli", *processes, QUICK, f"hydra.run.dir={tmp_path / run_dir}",
            f"cache_dir={tmp_path / 'cache'}", "logger.experiment=ddp", *overrides]


def _no_process_left(tmp_path: Path, within_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _runs(store: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=store)
    return client, [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def test_ddp_on_two_cpu_processes_is_one_tracked_run(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # iterations_per_epoch: each process cycles through its own share (3 steps of 2 x 32 samples per epoch).
    result = subprocess.run(_command(tmp_path, "method.epochs=2", "method.iterations_per_epoch=3"), cwd=tmp_path,
                            env=_env(store), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tlrun: DDP process 1 of 2" in result.stderr  # the worker said what it is, once
    assert result.stdout.count("tlrun: dann on digits") == 1  # one summary (rank 0's)
    assert not _no_process_left(tmp_path)
    client, runs = _runs(store)
    assert len(runs) == 1, [(r.info.run_name, r.info.status) for r in runs]  # the worker opened none
    record = runs[0]
    assert record.info.status == "FINISHED"
    tags, metrics = record.data.tags, record.data.metrics
    assert tags["trainer.strategy"] == "ddp" and tags["trainer.world_size"] == "2"
    assert record.data.params["trainer.strategy"] == "ddp" and record.data.params["trainer.devices"] == "2"
    assert {"target_acc", "source_acc", "train_loss", "transfer_loss", "select.source_val"} <= set(metrics)
    for key in ("train_loss", "source_train_acc", "select.entropy"):  # per epoch, logged once (by rank 0)
        assert [m.step for m in client.get_metric_history(record.info.run_id, key)] == [1, 2], key
    assert sorted(m.step for m in client.get_metric_history(record.info.run_id, "target_acc")) == [1, 2]  # once a step
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png"} <= artifacts
    assert len(record.outputs.model_outputs) == 1  # rank 0 logged the model (a LoggedModel, the run's output)


@pytest.mark.parametrize("batches", [[], ["method.source_batches=pooled", "method.batch_size=2"]])
def test_m3sdas_source_batches_and_alternating_steps_train_on_two_cpu_processes(tmp_path, batches):
    """Per-source batches: a batch sampler of tlrun's own (``PerDomainBatches``), to which Lightning must not add its
    sampler; pooled batches of 2, many of which lack a source, and so that source's classifier pair's gradient. And
    optimizer steps taken by hand, each backward pass reaching every parameter that trains in it."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    processes = ["method=m3sda", *DDP[1:], "dataset.source=[original,rotate]", "dataset.target=thick", *batches]
    result = subprocess.run(_command(tmp_path, processes=processes), cwd=tmp_path, env=_env(store),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _no_process_left(tmp_path)
    _, (record,) = _runs(store)
    assert record.info.status == "FINISHED" and record.data.tags["trainer.world_size"] == "2"
    assert {"classifier_discrepancy", "transfer_loss", "target_acc"} <= set(record.data.metrics)


def test_two_nodes_under_slurm_are_one_tracked_run(tmp_path):
    # srun starts the command once per task on every node; each resolves its own Hydra output folder, as
    # docs/sweeps.md's sbatch script has them do.
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    command = _command(tmp_path, processes=TWO_NODES, run_dir="run/${oc.env:SLURM_PROCID}")
    tasks = [subprocess.Popen(command, cwd=tmp_path, env=_srun_env(store, rank, port), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    try:
        outputs = [task.communicate(timeout=300) for task in tasks]
    finally:
        for task in tasks:
            if task.poll() is None:
                task.kill()
    assert [task.returncode for task in tasks] == [0, 0], [stderr[-3000:] for _, stderr in outputs]
    (first_out, first_err), (second_out, second_err) = outputs
    assert "tlrun: DDP process 1 of 2" in second_err and "tlrun: DDP process" not in first_err
    assert first_out.count("tlrun: dann on digits") == 1 and "tlrun: dann on digits" not in second_out
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in second_out  # Lightning took the rank from SLURM_PROCID
    assert not _no_process_left(tmp_path)
    _, runs = _runs(store)
    assert [(r.info.status, r.data.tags["trainer.world_size"], r.data.tags["trainer.num_nodes"]) for r in runs] == [
        ("FINISHED", "2", "2")]  # rank 0's run alone
    assert runs[0].data.params["trainer.num_nodes"] == "2" and len(runs[0].outputs.model_outputs) == 1
    assert (tmp_path / "run" / "0" / ".hydra" / "config.yaml").is_file() and (tmp_path / "run" / "1").is_dir()


def _interrupt_once_trained_past(command: list[str], tmp_path: Path, store: str, epoch: int) -> tuple[str, str]:
    """Start ``command``, interrupt it (SIGINT) once its run has logged ``train_loss`` past ``epoch`` (both processes
    train) while its worker is there; the run's id and the command's stderr."""
    process = subprocess.Popen(command, cwd=tmp_path, env=_env(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        client, deadline, run_id = MlflowClient(tracking_uri=store), time.monotonic() + 240, None
        while time.monotonic() < deadline and process.poll() is None and run_id is None:
            time.sleep(1.0)
            runs = _runs(store)[1] if (tmp_path / "mlflow.db").exists() else []
            if runs and any(m.step > epoch for m in client.get_metric_history(runs[0].info.run_id, "train_loss")):
                run_id = runs[0].info.run_id
        assert run_id is not None, process.communicate(timeout=30)
        workers = [pid for pid in processes_mentioning(str(tmp_path)) if pid != process.pid]
        assert workers
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    assert not _no_process_left(tmp_path), "a worker outlived the run"
    return run_id, stderr


@pytest.mark.slow
def test_an_interrupted_ddp_run_ends_killed_its_worker_goes_and_it_resumes_on_both(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, stderr = _interrupt_once_trained_past(_command(tmp_path, "method.epochs=10000"), tmp_path, store, 0)
    _, runs = _runs(store)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "KILLED")], stderr[-3000:]
    last = max(m.step for m in MlflowClient(tracking_uri=store).get_metric_history(run_id, "train_loss"))
    # Rank 0 reopens the run before Lightning starts the worker, which finds it RUNNING and joins.
    resumed = [sys.executable, "-m", "tlrun.cli", f"resume={run_id}", f"hydra.run.dir={tmp_path / 'resumed'}"]
    again, stderr = _interrupt_once_trained_past(resumed, tmp_path, store, last)
    assert again == run_id and "tlrun: DDP process 1 of 2" in stderr
    assert [r.info.status for r in _runs(store)[1]] == ["KILLED"]


@pytest.mark.slow
def test_a_sweep_of_ddp_jobs_has_each_job_start_its_own_workers(tmp_path):
    # Lightning alone would re-execute the whole `--multirun` command in each worker (a second sweep of its own).
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "tlrun.cli", "--multirun", *DDP, "seed=0,1", QUICK, f"hydra.sweep.dir={tmp_path / 'sweep'}",
               f"cache_dir={tmp_path / 'cache'}", "logger.experiment=ddp"]
    result = subprocess.run(command, cwd=tmp_path, env=_env(store), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("tlrun: DDP process 1 of 2") == 2
    assert not _no_process_left(tmp_path)
    _, runs = _runs(store)
    runs = [run for run in runs if "sweep_job" in run.data.tags]  # the jobs, not the sweep's parent run
    assert sorted((r.data.tags["seed"], r.data.tags["sweep_job"], r.info.status) for r in runs) == [
        ("0", "0", "FINISHED"), ("1", "1", "FINISHED")]
    assert {r.data.tags["trainer.world_size"] for r in runs} == {"2"}
    assert sorted(path.name for path in (tmp_path / "sweep").iterdir()) == ["0", "1", "comparison", "multirun.yaml"]
    assert (tmp_path / "sweep" / "1" / "train_ddp_process_1.log").exists()  # the worker ran in its job's folder


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]],
                         ids=["joblib", "submitit_local"])
def test_a_ddp_job_in_a_launchers_worker_relaunches_tlrun(tmp_path, launcher):
    # Lightning would re-execute the launcher's worker program (loky's, submitit's; a Ray worker's likewise).
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "tlrun.cli", "--multirun", *launcher, *DDP, QUICK, f"hydra.sweep.dir={tmp_path / 'sweep'}",
               f"cache_dir={tmp_path / 'cache'}", "logger.experiment=ddp"]
    result = subprocess.run(command, cwd=tmp_path, env=_env(store), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _no_process_left(tmp_path)
    _, runs = _runs(store)
    assert [(r.info.status, r.data.tags["trainer.world_size"]) for r in runs if "sweep_job" in r.data.tags] == [
        ("FINISHED", "2")]
    # The worker ran tlrun's Hydra job, logging into the job's folder.
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (tmp_path / "sweep" / "0" / "train_ddp_process_1.log").read_text()


@pytest.mark.parametrize("devices", [1, 2, "3", " 4 ", 0, -1, "two", [0, 1], "1.5", True])
def test_cpu_process_count_reads_devices_as_lightning_does(devices):
    """The count closed-form runs take without importing Lightning: Lightning's own where it has one, an error
    where it refuses the value."""
    from pytorch_lightning.accelerators import CPUAccelerator

    try:
        expected = CPUAccelerator.parse_devices(devices)
    except Exception:
        with pytest.raises(ValueError, match="int > 0"):
            ddp.cpu_process_count(devices)
    else:
        assert ddp.cpu_process_count(devices) == expected
