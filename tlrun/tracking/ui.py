"""``tlrun ui``: the MLflow UI on tlrun's store, started light and stopped cleanly.

``mlflow ui`` with its defaults starts about 15 processes (~2 GB) and a job runner. ``tlrun ui`` starts one
server worker with job execution off, on the loopback interface (after checking that the port is free), waits until
the UI answers, prints its address and the address of the runs table of the experiment whose run started last (with
tlrun's columns: ``target_acc``, method, dataset, source, target, seed), and on Ctrl-C stops the server's whole process
group, so that nothing is left running::

    tlrun ui                                   # the store tlrun writes by default: ./outputs/mlflow.db
    tlrun ui port=5001 tracking_uri=sqlite:////data/runs/mlflow.db

Settings are ``key=value`` like every other tlrun option: ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``,
else ``sqlite:///<cwd>/outputs/mlflow.db``), ``host`` (default ``127.0.0.1``), ``port`` (default 5000),
``timeout`` (seconds to wait for the UI to answer, default 120).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from tlrun.errors import TlrunError
from tlrun.tracking.arguments import key_value_settings
from tlrun.tracking.signals import interrupts_stop_the_run
from tlrun.tracking.store import RUNS_VIEW, RUNS_VIEW_TAG, open_client

SETTINGS = {"tracking_uri": None, "host": "127.0.0.1", "port": 5000, "timeout": 120}


def parse_settings(arguments: list[str]) -> dict[str, Any]:
    """``key=value`` arguments over :data:`SETTINGS`; an unknown key or a malformed argument is a TlrunError."""
    return key_value_settings("ui", arguments, SETTINGS)


def server_command(tracking_uri: str, host: str, port: int) -> list[str]:
    """The MLflow UI with one worker (job execution is turned off through the environment, see :func:`serve`)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", str(tracking_uri), "--host", str(host),
            "--port", str(port), "--workers", "1"]


def port_free(host: str, port: int) -> bool:
    """Whether a server can listen on ``host:port`` (bound as servers bind, with ``SO_REUSEADDR``); a host that
    cannot be listened on at all is a TlrunError."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise TlrunError(f"tlrun ui cannot listen on {host}:{port}: {error.strerror}; check host= and port=") from None
    return True


def check_port(host: str, port: int) -> None:
    """A TlrunError when another program listens on ``host:port``, suggesting the next free port."""
    if port_free(host, port):
        return
    free = next((other for other in range(port + 1, min(port + 100, 65536)) if port_free(host, other)), None)
    suggestion = f"tlrun ui port={free}" if free else "tlrun ui port=<another>"
    raise TlrunError(f"port {port} on {host} is taken by another program (another MLflow UI?); "
                     f"open this one on a free port: {suggestion}")


def runs_table(tracking_uri: str, address: str) -> str | None:
    """The address of the runs table of the experiment whose run started last (``None`` when the store holds no
    run): MLflow 3's machine-learning view (``workflowType``, else it opens a GenAI overview), with tlrun's columns
    where the experiment has tlrun's shared view (:data:`~tlrun.tracking.store.RUNS_VIEW_TAG`)."""
    client = open_client(tracking_uri)  # a new store is made here, under tlrun's lock, rather than by the server
    experiments = [experiment.experiment_id for experiment in client.search_experiments(max_results=50000)]
    latest = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
    if not latest:
        return None
    experiment = client.get_experiment(latest[0].info.experiment_id)
    query = {"viewStateShareKey": RUNS_VIEW} if RUNS_VIEW_TAG in experiment.tags else {}
    query["workflowType"] = "machine_learning"
    return f"runs of experiment {experiment.name!r}: {address}/#/experiments/{experiment.experiment_id}/runs?{urlencode(query)}"


def answers(url: str) -> bool:
    """True when ``url`` answers an HTTP GET with a success status."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def stop(server: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop the server and every process it started (its process group): SIGTERM, then SIGKILL after the grace."""
    if server.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def serve(tracking_uri: str, host: str, port: int, timeout: float) -> int:
    """Run the UI until Ctrl-C or SIGTERM (exit code 0) or until the server dies (its exit code). Both signals are
    handled even when the shell started ``tlrun ui &`` with SIGINT ignored: the server never outlives it."""
    with interrupts_stop_the_run():
        return _serve(tracking_uri, host, port, timeout)


def _serve(tracking_uri: str, host: str, port: int, timeout: float) -> int:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    address = f"http://{host}:{port}"
    check_port(host, port)  # else the other program answers the probe below, and this server fails to bind
    runs = runs_table(tracking_uri, address)
    server = subprocess.Popen(server_command(tracking_uri, host, port), env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + float(timeout)
        while not answers(address + "/") or server.poll() is not None:  # the answer must be this server's
            if server.poll() is not None:
                raise TlrunError(
                    f"the MLflow UI stopped (exit code {server.returncode}) before answering on {address}; is port "
                    f"{port} taken? Try tlrun ui port=<another>"
                )
            if time.monotonic() > deadline:
                raise TlrunError(f"the MLflow UI did not answer on {address} within {timeout} s")
            time.sleep(0.5)
        print(f"tlrun: MLflow UI at {address} on {tracking_uri} (Ctrl-C stops it)", flush=True)
        if runs:
            print(f"tlrun: {runs}", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        print("tlrun: stopping the MLflow UI", flush=True)
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        stop(server)


def main(arguments: list[str]) -> int:
    """``tlrun ui key=value ...``; returns the exit code."""
    if arguments[:1] in (["--help"], ["-h"], ["help"]):
        print(__doc__)
        return 0
    settings = parse_settings(arguments)
    return serve(settings["tracking_uri"], settings["host"], int(settings["port"]), float(settings["timeout"]))
