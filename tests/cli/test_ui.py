"""``tlrun ui``: the MLflow UI answers on loopback (the page and the REST API), and Ctrl-C leaves no process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port, processes_mentioning, wait_for_ui
from tlrun.errors import TlrunError
from tlrun.tracking import TrackedRun
from tlrun.tracking.ui import parse_settings, runs_table


def test_settings_are_key_value_and_checked(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = parse_settings(["port=5001"])
    assert settings["port"] == 5001 and settings["host"] == "127.0.0.1"
    assert settings["tracking_uri"] == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    with pytest.raises(TlrunError, match="unknown setting prot"):
        parse_settings(["prot=5001"])
    with pytest.raises(TlrunError, match="key=value"):
        parse_settings(["5001"])


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks leftover processes through /proc")
# Ctrl-C; and `kill` of a `tlrun ui &` started by a script, which inherits SIGINT ignored.
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill-of-a-background-ui"])
def test_ui_answers_on_loopback_and_stopping_it_leaves_no_process(mlflow_store, tmp_path, stop_signal):
    port = free_port()
    command = [sys.executable, "-c", "from tlrun.cli import main; main()", "ui", f"port={port}",
               f"tracking_uri={mlflow_store}"]
    as_background_job = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if stop_signal == signal.SIGTERM else None
    ui = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, preexec_fn=as_background_job)
    try:
        wait_for_ui(ui, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "experiments" in json.loads(response.read())
        assert processes_mentioning(mlflow_store.removeprefix("sqlite:///"))  # the server runs
    finally:
        ui.send_signal(stop_signal)
        returncode = ui.wait(timeout=60)
    assert returncode == 0
    time.sleep(1)
    assert processes_mentioning(f"--port {port}") == []


def test_a_port_taken_by_another_program_is_an_error_before_the_server_starts(tmp_path):
    """The other program answered the readiness probe, tlrun printed the address as its own, then its server failed
    to bind and tlrun exited 0."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run([sys.executable, "-c", "from tlrun.cli import main; main()", "ui", f"port={port}",
                               f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"tlrun: error: port {port} on 127.0.0.1 is taken by another program")
    assert "open this one on a free port: tlrun ui port=" in done.stderr and "MLflow UI at" not in done.stdout
    assert list(tmp_path.iterdir()) == []  # stopped before the store was touched


def test_the_runs_table_address_is_the_latest_experiments_in_the_machine_learning_view(mlflow_store):
    store = mlflow_store
    for name in ("older", "latest"):
        with TrackedRun(name, tracking_uri=store) as run:
            pass
    assert runs_table(store, "http://h:1") == (f"runs of experiment 'latest': http://h:1/#/experiments/"
                                               f"{run.experiment_id}/runs?viewStateShareKey=tlrun&workflowType=machine_learning")
