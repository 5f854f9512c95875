"""Which process runs a run (:data:`PROCESS_TAG`), and runs whose process is gone, ended KILLED."""

from __future__ import annotations

import os
import socket
import sys

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from tlrun.tracking.store import every_run

#: The run tag naming the process that runs it, ``host:pid``; every run tlrun opens (and a sweep's parent) has it.
PROCESS_TAG = "process"


def this_process() -> str:
    """``host:pid`` of this process, as :data:`PROCESS_TAG` records it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(process: str) -> bool:
    """Whether the process ``host:pid`` may still run: True unless it is on this host and no such process exists
    (a process on another machine, or an unrecorded one, is assumed to run)."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return bool(process)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def end_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End KILLED every run of the experiment left RUNNING by a process of this host that is gone; their ids.

    Ctrl-C and SIGTERM end a run KILLED; SIGKILL (``kill -9``, the out-of-memory killer, a cluster's hard time
    limit) leaves the process no chance to, so the next run tlrun opens in the experiment ends them instead,
    with the tag ``error`` saying so. What those runs logged stays.
    """
    orphans = [
        record for record in every_run(client, [experiment_id], filter_string="attributes.status = 'RUNNING'")
        if PROCESS_TAG in record.data.tags and not process_alive(record.data.tags[PROCESS_TAG])
    ]
    for record in orphans:
        process = record.data.tags[PROCESS_TAG]
        client.set_tag(record.info.run_id, "error", f"its process {process} ended without ending the run "
                       "(killed with SIGKILL or out of memory?); ended KILLED by a later tlrun run")
        client.set_terminated(record.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        print(f"tlrun: run {record.info.run_id} was left RUNNING by process {process}, which is gone; "
              "marked it KILLED", file=sys.stderr)
    return [record.info.run_id for record in orphans]
