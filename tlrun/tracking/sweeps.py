"""Sweeps in the MLflow store: one parent run per ``--multirun``, every job a child of it, finished jobs skipped.

**Parent and children.** When a ``--multirun`` starts, :func:`open_parent` creates the sweep's parent run (tag
``sweep.role=parent``; params: the sweep's overrides; tags: launcher, sweeper, sweep folder, MLflow's system tags)
and puts its id in the environment variable :data:`PARENT_ENV`. Every job reads it there (:func:`parent_of_job`)
and tags its run ``mlflow.parentRunId=<parent>``, MLflow's own link, so the UI groups the jobs under the sweep. The
environment reaches the jobs whatever runs them: the same process (basic launcher), worker processes (joblib), Ray
workers started by the sweep, or Slurm jobs (``sbatch`` exports the submitting environment). When the sweep ends,
:func:`close_parent` counts the jobs by the status of their latest run (metrics ``jobs_finished``,
``jobs_failed``, ``jobs_killed``, ``jobs_reused``, ``jobs_failed_before_run``) and ends the parent FINISHED when every job
finished, FAILED when one failed, KILLED when the sweep was interrupted; it also runs when the process exits
without the sweep's normal end (a failed job, Ctrl-C, SIGTERM), so only SIGKILL leaves a parent RUNNING.

**Job identity and relaunching.** A job is identified by :func:`config_hash`, a hash of its resolved config
without the keys that do not change its results (:data:`VOLATILE_KEYS`), and every run carries it as the tag
``config_hash``. A sweep is identified by its overrides and experiment (:func:`sweep_identity`). Relaunching
the same sweep reopens its parent (unless that launch is still RUNNING), which then records the jobs of this
launch (``sweep.job.<n>=<config hash>``) and counts only those; each job whose config already has a FINISHED run in the experiment is
skipped (its old run is counted as the sweep's: tag ``sweep.reused.<job>=<run id>`` on the parent when it is
a child of another sweep), and FAILED or KILLED jobs run again. ``skip_finished=false`` opts out: a new
parent, and every job runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: The environment variable that carries the sweep's parent run id to its jobs.
PARENT_ENV = "TLRUN_SWEEP_PARENT_RUN_ID"
#: MLflow's parent-run tag (the UI nests a run under the run it names).
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "sweep.role"
IDENTITY_TAG = "sweep.identity"
HASH_TAG = "config_hash"
REUSED_TAG_PREFIX = "sweep.reused."
FAILED_BEFORE_RUN_TAG_PREFIX = "sweep.failed_before_run."
#: ``sweep.job.<job number>=<config hash>`` on the parent: the jobs of the sweep's latest launch.
JOB_TAG_PREFIX = "sweep.job."
#: Hydra overrides that change how or where a sweep runs, not which jobs it runs (left out of its identity).
_PLACEMENT_OVERRIDES = ("hydra/launcher", "hydra.launcher", "hydra.sweep", "hydra.run", "hydra.mode", "hydra.verbose",
                        "hydra.job_logging", "hydra.hydra_logging", "hydra.output_subdir")
#: Top-level config keys (and ``trainer`` keys) that change how a run is watched or stored, not its results.
VOLATILE_KEYS = ("logger", "cache_dir", "skip_finished", "resume", "checkpoints", "published", "resources")
VOLATILE_TRAINER_KEYS = ("enable_progress_bar", "log_every_n_steps", "enable_model_summary", "jobs_per_gpu")


def sweep_tag(sweep_dir: str | Path) -> str:
    """The ``sweep`` tag shared by the runs of one ``--multirun``: its sweep folder, made absolute.

    Jobs write it and the end-of-sweep summary filters on it, so both must build it here.
    """
    return str(Path(sweep_dir).resolve())


def config_hash(cfg: DictConfig) -> str:
    """A job's identity: SHA-256 (first 16 hex digits) of its resolved config as sorted JSON, less
    :data:`VOLATILE_KEYS` and :data:`VOLATILE_TRAINER_KEYS`."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in VOLATILE_KEYS:
        tree.pop(key, None)
    for key in VOLATILE_TRAINER_KEYS:
        tree.get("trainer", {}).pop(key, None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sweep_identity(config: DictConfig) -> str:
    """A sweep's identity: its experiment, command-line overrides (less those that only place it: launcher, sweep
    folder...), and the sweeper's own parameters (recipes list their sweep there), hashed. A relaunch of the same
    command has the same identity, whatever launcher runs it."""
    overrides = sorted(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    hydra_overrides = sorted(
        override for override in OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False)
        if not override.lstrip("+~").startswith(_PLACEMENT_OVERRIDES)
    )
    params = _sweeper_params(config)
    text = json.dumps({"experiment": str(config.logger.experiment), "overrides": overrides, "hydra": hydra_overrides,
                       "params": params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sweeper_params(config: DictConfig) -> dict[str, Any]:
    """The sweeper's ``params`` (where recipes list their sweep), as written."""
    params = config.hydra.sweeper.get("params")
    return OmegaConf.to_container(params, resolve=False) if params is not None else {}


def parent_of_job() -> str | None:
    """The parent run id of the sweep this process runs a job of (``None`` outside a ``--multirun``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return os.environ.get(PARENT_ENV) or None


def client_for(config: DictConfig) -> Any:
    """An ``MlflowClient`` on the store a composed config names (the search logs its trials on the sweep's parent)."""
    from tlrun.tracking.store import open_client
    from tlrun.tracking.uri import configured_uri

    return open_client(configured_uri(config))


def open_parent(config: DictConfig, tracking_uri: str) -> tuple[Any, str]:
    """Create (or, for a relaunched sweep, reopen) the sweep's parent run in the store ``tracking_uri`` and export
    its id to the jobs.

    Returns ``(client, parent run id)``.
    """
    from mlflow.entities import Param, RunStatus

    from tlrun.tracking.processes import PROCESS_TAG, end_orphaned_runs, this_process
    from tlrun.tracking.records import batched, flatten, safe_key, source_tags
    from tlrun.tracking.signals import interrupts_deferred
    from tlrun.tracking.store import ensure_experiment, open_client

    client = open_client(tracking_uri)
    identity = sweep_identity(config)
    overrides = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    with interrupts_deferred():
        experiment_id = ensure_experiment(client, tracking_uri, str(config.logger.experiment))
        end_orphaned_runs(client, experiment_id)  # e.g. a parent whose launch was killed with SIGKILL: reopened below
        earlier = []
        if config.get("skip_finished", True):
            earlier = client.search_runs(
                [experiment_id], filter_string=f"tags.`{IDENTITY_TAG}` = '{identity}'",
                order_by=["attributes.start_time DESC"], max_results=1,
            )
        # A parent still RUNNING belongs to a launch of the same sweep that is still going: this one gets its own.
        placement = {
            PROCESS_TAG: this_process(),
            "sweep": sweep_tag(config.hydra.sweep.dir),
            "sweep.launcher": str(config.hydra.launcher.get("_target_", "?")).rsplit(".", 1)[-1],
            "sweep.sweeper": str(config.hydra.sweeper.get("_target_", "?")).rsplit(".", 1)[-1],
        }
        if earlier and earlier[0].info.status != "RUNNING":
            parent_id = earlier[0].info.run_id
            client.update_run(parent_id, status=RunStatus.to_string(RunStatus.RUNNING))
            for key in earlier[0].data.tags:  # the last launch's jobs and errors; this launch writes its own
                if key.startswith((JOB_TAG_PREFIX, FAILED_BEFORE_RUN_TAG_PREFIX)):
                    client.delete_tag(parent_id, key)
            for key, value in (placement | {"sweep.relaunched": time.strftime("%Y-%m-%d %H:%M:%S")}).items():
                client.set_tag(parent_id, key, value)
        else:
            tags = source_tags() | {
                ROLE_TAG: "parent",
                IDENTITY_TAG: identity,
                **placement,
                "sweep.overrides": " ".join(overrides)[:5000],
            }
            parent_id = client.create_run(experiment_id, run_name=f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                          tags=tags).info.run_id
            params = {override.partition("=")[0].lstrip("+~"): override.partition("=")[2] for override in overrides}
            params |= flatten(_sweeper_params(config), "sweeper.params.")
            for batch in batched([Param(safe_key(key), value) for key, value in params.items()]):
                client.log_batch(parent_id, params=batch)
    os.environ[PARENT_ENV] = parent_id
    return client, parent_id


def note_job(tracking_uri: str, digest: str) -> None:
    """Record on the sweep's parent (in the store ``tracking_uri``) that this launch's job (its number) is the
    config ``digest``."""
    parent = parent_of_job()
    if parent:
        from tlrun.tracking.store import open_client  # MLflow: only in a sweep

        open_client(tracking_uri).set_tag(parent, f"{JOB_TAG_PREFIX}{job_number()}", digest)


def launched_hashes(parent_tags: dict[str, str]) -> set[str] | None:
    """The config hashes of the jobs of the sweep's latest launch (``None``: not recorded, count every child)."""
    hashes = {value for key, value in parent_tags.items() if key.startswith(JOB_TAG_PREFIX)}
    return hashes or None


def job_number() -> str:
    """This job's number in its sweep."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().job.num)


def reuse_finished(tracking_uri: str, experiment_name: str, digest: str, skip_finished: bool = True) -> Any | None:
    """In a ``--multirun`` with ``skip_finished`` (the default): the latest FINISHED run of the experiment whose
    ``config_hash`` is ``digest``, counted as this job's run (noted on the sweep's parent when it is not already
    one of its children). ``None``: the job must run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from tlrun.tracking.store import open_client

    if not skip_finished or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    client = open_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{HASH_TAG} = '{digest}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not found:
        return None
    parent = parent_of_job()
    if parent and found[0].data.tags.get(PARENT_TAG) != parent:
        client.set_tag(parent, f"{REUSED_TAG_PREFIX}{job_number()}", found[0].info.run_id)
    return found[0]


def record_failed_before_run(tracking_uri: str, message: str) -> None:
    """A job that failed before its run opened (a configuration error) leaves its message on the sweep's parent."""
    parent = parent_of_job()
    if not parent:
        return
    from tlrun.tracking.store import open_client  # MLflow: only in a sweep (a config error stays light)

    try:
        open_client(tracking_uri).set_tag(parent, f"{FAILED_BEFORE_RUN_TAG_PREFIX}{job_number()}", message[:5000])
    except Exception as error:  # the job's own error matters more than this note
        print(f"tlrun: could not note the error on the sweep run {parent}: {error}")


def sweep_runs(client: Any, parent_run_id: str) -> list[Any]:
    """The runs of a sweep, by start time, each once: the parent's children (in any experiment: a sweep may set
    ``logger.experiment`` per job) and the FINISHED runs that a relaunch reused from elsewhere (parent tags
    ``sweep.reused.<job>=<run_id>``); when the parent records its latest launch's jobs (``sweep.job.<n>=<config
    hash>``), only runs of those configs."""
    from mlflow.exceptions import MlflowException

    from tlrun.tracking.store import every_run

    tags = client.get_run(parent_run_id).data.tags
    runs = {run.info.run_id: run for run in every_run(client, filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'")}
    for key, run_id in tags.items():
        if key.startswith(REUSED_TAG_PREFIX) and run_id not in runs:
            try:
                reused = client.get_run(run_id)
            except MlflowException:  # deleted since: the relaunch's table simply lacks it
                continue
            if reused.info.lifecycle_stage == "active":
                runs[run_id] = reused
    launched = launched_hashes(tags)  # a relaunch after a config change: only its own jobs
    if launched is not None:
        runs = {run_id: run for run_id, run in runs.items() if run.data.tags.get(HASH_TAG) in launched}
    return sorted(runs.values(), key=lambda run: run.info.start_time or 0)


def close_parent(client: Any, parent_id: str, completed: bool) -> str:
    """End the parent with the sweep's aggregate status and log its job counts; returns the status.

    ``completed``: the sweep ran to its end. Otherwise (the process is exiting early) children still RUNNING
    are ended KILLED, and the parent ends FAILED if a job failed, else KILLED.
    """
    from mlflow.entities import Metric, RunStatus

    from tlrun.tracking.signals import interrupts_deferred

    with interrupts_deferred():
        runs = sweep_runs(client, parent_id)
        if not completed:
            for run in runs:
                if run.info.status == "RUNNING":
                    client.set_tag(run.info.run_id, "error", "the sweep stopped before this job ended")
                    client.set_terminated(run.info.run_id, "KILLED")
            runs = sweep_runs(client, parent_id)
        tags = client.get_run(parent_id).data.tags
        failed_early = sum(key.startswith(FAILED_BEFORE_RUN_TAG_PREFIX) for key in tags)
        # A job's latest run counts: a relaunch replaces a FAILED or KILLED run by a new one of the same config.
        latest = {run.data.tags.get(HASH_TAG, run.info.run_id): run for run in runs}
        counts = {status: sum(r.info.status == status for r in latest.values()) for status in ("FINISHED", "FAILED", "KILLED")}
        if counts["FAILED"] or failed_early:
            status = "FAILED"
        elif counts["KILLED"] or not completed:
            status = "KILLED"
        else:
            status = "FINISHED"
        now = int(time.time() * 1000)
        metrics = {"jobs_finished": counts["FINISHED"], "jobs_failed": counts["FAILED"], "jobs_killed": counts["KILLED"],
                   "jobs_reused": sum(run.data.tags.get(PARENT_TAG) != parent_id for run in latest.values()),
                   "jobs_failed_before_run": failed_early}
        client.log_batch(parent_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()])
        client.set_tag(parent_id, "sweep.status", status)
        client.set_terminated(parent_id, RunStatus.to_string(getattr(RunStatus, status)))
    return status
