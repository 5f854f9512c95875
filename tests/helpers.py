"""Helpers shared by the tests: the checkout's root, the optional real benchmark data, the quick-run settings,
waiting on the processes a test starts (a free port, processes by command line, ``tlrun ui``'s address, runs
appearing in a store), and a tiny generated image tree."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``../shared/data`` beside the checkout, or ``$TLRUN_SHARED_DATA``; tests skip when it is absent."""
    return Path(os.environ.get("TLRUN_SHARED_DATA", REPO.parent / "shared" / "data"))


#: A deep run cut to seconds (``conf/debug/quick.yaml``): one epoch of three batches, no diagnostics, no progress bar.
QUICK = "debug=quick"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    """PIDs of the processes, this one left out, whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for_ui(ui: subprocess.Popen, port: int) -> str:
    """Read ``tlrun ui``'s output until it prints its address (or ends); returns what it read."""
    deadline, output = time.monotonic() + 180, []
    while time.monotonic() < deadline:
        line = ui.stdout.readline()
        output.append(line)
        if "MLflow UI at" in line or (not line and ui.poll() is not None):
            break
    assert f"MLflow UI at http://127.0.0.1:{port}" in "".join(output), "".join(output)[-3000:]
    return "".join(output)


def wait_for_runs(process: subprocess.Popen, store: str, experiment: str, until: Callable[[object, list], bool],
                  filter_string: str = "", timeout: float = 180, every: float = 0.1) -> list | None:
    """Poll the runs of ``experiment`` in ``store`` while ``process`` runs, until ``until(client, runs)`` holds;
    those runs, or ``None`` when the process ended or ``timeout`` seconds passed first."""
    from mlflow.tracking import MlflowClient

    client, deadline = MlflowClient(tracking_uri=store), time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], filter_string=filter_string) if found else []
        if until(client, runs):
            return runs
        time.sleep(every)
    return None


def first_run_logged(key: str, count: int) -> Callable[[object, list], bool]:
    """A :func:`wait_for_runs` condition: the first run has logged ``count`` values of metric ``key``."""
    return lambda client, runs: bool(runs) and len(client.get_metric_history(runs[0].info.run_id, key)) >= count


def office31_tree(root: Path, classes=("back_pack", "bike", "mug"), per_class: int = 4) -> Path:
    """A tiny Office-31 layout of generated JPEGs: a class is a colour, each domain a brightness."""
    from PIL import Image

    for d, domain in enumerate(("amazon", "dslr", "webcam")):
        for c, name in enumerate(classes):
            folder = root / domain / "images" / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = [40 + 60 * d, 40 + 60 * d, 40 + 60 * d]
                colour[c] = 250 - 10 * i
                Image.new("RGB", (24, 24), tuple(colour)).save(folder / f"{i}.jpg")
    return root
