"""``logger.system_metrics=true``: MLflow's system metrics (CPU, memory...) logged into the run while it lasts; off by
default; without psutil (the ``system-metrics`` extra) the run stops before it opens, naming the extra."""

from __future__ import annotations

import importlib.util

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK
from tlrun.errors import TlrunError
from tlrun.runner.job import run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_system_metrics_are_logged_when_asked_and_only_then(compose, mlflow_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    client = MlflowClient(tracking_uri=mlflow_store)
    watched = run_job(compose("method=source_only", QUICK, "logger.system_metrics=true", experiment="system"))
    plain = run_job(compose("method=source_only", QUICK, experiment="system"))
    logged = client.get_run(watched.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in logged and "system/system_memory_usage_megabytes" in logged
    assert not any(key.startswith("system/") for key in client.get_run(plain.run_id).data.metrics)


def test_without_psutil_the_run_stops_before_it_opens_naming_the_extra(compose, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "psutil" else find_spec(name, *rest))
    with pytest.raises(TlrunError, match=r'needs psutil: pip install "tlrun\[system-metrics\]"'):
        run_job(compose("method=coral", "logger.system_metrics=true", experiment="system-missing"))
