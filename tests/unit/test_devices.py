"""The GPU claim rule of parallel jobs (tlrun.runner.devices), on stand-in GPU ids (no GPU needed), and the CPU fallback."""

from __future__ import annotations

import threading
import time

import pytest

from tlrun.runner.devices import claimed_gpu, wants_one_gpu
from tlrun.runner.steps import job_device

GPUS = ["GPU-aaaa", "GPU-bbbb"]


def test_jobs_take_different_gpus_and_a_third_waits_for_one_to_free(tmp_path):
    with claimed_gpu(GPUS, lock_folder=tmp_path) as first, claimed_gpu(GPUS, lock_folder=tmp_path) as second:
        assert {first, second} == {0, 1}
        taken, waited = [], threading.Event()

        def third_job() -> None:
            with claimed_gpu(GPUS, lock_folder=tmp_path, poll_s=0.05, on_wait=waited.set) as index:
                taken.append(index)

        worker = threading.Thread(target=third_job)
        worker.start()
        assert waited.wait(5)
        time.sleep(0.2)
        assert taken == []  # every GPU is held
    worker.join(5)
    assert taken in ([0], [1])


def test_gpus_are_spread_before_any_is_shared(tmp_path):
    with claimed_gpu(GPUS, jobs_per_gpu=2, lock_folder=tmp_path) as a, claimed_gpu(GPUS, jobs_per_gpu=2, lock_folder=tmp_path) as b:
        with claimed_gpu(GPUS, jobs_per_gpu=2, lock_folder=tmp_path) as c:
            assert sorted([a, b]) == [0, 1] and c == 0


def test_the_lock_folder_and_files_are_shared_by_every_user(tmp_path):
    folder = tmp_path / "locks"
    with claimed_gpu(GPUS, lock_folder=folder):
        pass
    assert folder.stat().st_mode & 0o7777 == 0o1777
    assert {path.stat().st_mode & 0o777 for path in folder.iterdir()} == {0o666}


def test_a_claim_is_released_when_its_job_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with claimed_gpu(GPUS[:1], lock_folder=tmp_path):
            raise RuntimeError("the job failed")
    with claimed_gpu(GPUS[:1], lock_folder=tmp_path, poll_s=0.05, on_wait=pytest.fail) as index:
        assert index == 0


def test_bad_claims_are_errors(tmp_path):
    with pytest.raises(ValueError, match="jobs_per_gpu"):
        with claimed_gpu(GPUS, jobs_per_gpu=0, lock_folder=tmp_path):
            pass
    with pytest.raises(ValueError, match="no GPU"):
        with claimed_gpu([], lock_folder=tmp_path):
            pass


def test_only_one_gpu_trainers_claim():
    assert wants_one_gpu({"accelerator": "gpu", "devices": 1})
    assert not wants_one_gpu({"accelerator": "gpu", "devices": -1, "strategy": "ddp"})
    assert not wants_one_gpu({"accelerator": "cpu", "devices": 1})


def test_trainer_gpu_falls_back_to_the_cpu_without_a_gpu(compose, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with job_device(compose("trainer=gpu")) as (device, trainer):
        assert device == "cpu"
        assert trainer["accelerator"] == "cpu" and trainer["precision"] == "32-true"
        assert "select" not in trainer and "jobs_per_gpu" not in trainer
    assert "no GPU here" in capsys.readouterr().out


needs_gpu = pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")


@needs_gpu
def test_trainer_gpu_trains_on_a_claimed_gpu_and_closed_form_agrees_with_the_cpu(compose, mlflow_store):
    from mlflow.tracking import MlflowClient

    from tlrun.run import run_job

    deep = run_job(compose("method=dann", "trainer=gpu", "method.epochs=2", "diagnostics=false", experiment="gpu"))
    tags = MlflowClient(tracking_uri=mlflow_store).get_run(deep.run_id).data.tags
    assert tags["device"].startswith("cuda:")
    assert 0.0 < deep.metrics["target_acc"] <= 1.0
    on_gpu = run_job(compose("method=jda", "trainer=gpu", experiment="gpu")).metrics["target_acc"]
    on_cpu = run_job(compose("method=jda", experiment="gpu")).metrics["target_acc"]
    assert on_gpu == pytest.approx(on_cpu, abs=0.01)  # float64 on both; ties may break differently


@needs_gpu
def test_a_nan_loss_on_the_gpu_stops_training_with_the_step_it_happened_at():
    import numpy as np

    from tests.unit.test_source_only import Recorder, digits
    from tlrun.backbones import Identity
    from tlrun.methods.base import RunContext
    from tlrun.methods.source_only import SourceOnly
    from tlrun.scenarios import Labeled, TrainingData, Unlabeled

    X, y, X_test, _ = digits()
    X = X.copy()
    X[5, 3] = np.nan
    data = TrainingData(Labeled(X, y), Unlabeled(X_test), 10, tuple("0123456789"), (1, 8, 8))
    trainer = {"accelerator": "gpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False}
    with pytest.raises(FloatingPointError, match=r"epoch 1, optimizer step \d+.*training diverged"):
        SourceOnly(Identity(input_shape=(1, 8, 8)), epochs=2, lr=0.05).fit(
            data, RunContext(reporter=Recorder(), device="cuda", seed=0, trainer=trainer))
