"""One job, end to end: check the composition, open the MLflow run, load, split, fit, evaluate, report.

:func:`run_job` checks the config (:func:`~tlrun.runner.preflight.preflight`: about a second, no MLflow run on a
bad command line), resolves the MLflow store the job tracks into once, then takes the job's steps
(:mod:`tlrun.runner.steps`) inside a :class:`~tlrun.tracking.TrackedRun`, which ends FINISHED, FAILED or KILLED
whatever happens. A DDP worker (rank > 0, :mod:`tlrun.runner.ddp`) takes the same steps up to training, and
records nothing (:func:`join_training`).

torch, scikit-learn, MLflow and tlrun's record (:mod:`tlrun.tracking`, :mod:`tlrun.tracking.sweeps`, which import MLflow)
are imported inside the functions, once the checks have passed: a config error answers without them.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from tlrun import __version__
from tlrun.collector import resume_collector
from tlrun.config import foreign_targets, instantiate, with_method_info
from tlrun.data.base import source_label
from tlrun.errors import DataError, TlrunError
from tlrun.methods.base import NullReporter
from tlrun.progress import status_line
from tlrun.runner import ddp
from tlrun.runner.evaluation import EvaluationReporter, evaluate, print_summary, target_scorer, task_name
from tlrun.runner.model import run_predictor
from tlrun.runner.preflight import Plan, construct, preflight
from tlrun.runner.resources import check_loaded_memory
from tlrun.runner.steps import (build_deep_method, checkpoint_file, job_device, load_data, method_context,
                                seed_everything, split_data, with_run_weights)
from tlrun.runner.threads import current_launcher, limited_threads, run_threads
from tlrun.tracking.uri import configured_uri


@dataclass(frozen=True)
class RunOutcome:
    """What a job returns to Hydra (and its sweeper): the MLflow run and its final metrics."""

    run_id: str
    #: The run's metrics, latest values (``target_acc``, ``source_acc``, ``select.*``, ``selected.*``...).
    metrics: dict[str, float]
    #: True when a FINISHED run of the same config existed and nothing ran (a relaunched sweep).
    skipped: bool = False


def run(cfg: DictConfig) -> float:
    """Run one composed config; returns the target accuracy (a fraction)."""
    return run_job(cfg).metrics["target_acc"]


#: The run tag naming a deep run's resumable checkpoint (deleted when the run finishes).
CHECKPOINT_TAG = "checkpoint"


def _discard_checkpoint(checkpoint: Path, tracked: Any) -> None:
    """After the run: a FINISHED run needs no checkpoint, and one that stopped before its first has none to resume
    from; either way its folder goes, and the run's checkpoint tag with it. An interrupted run keeps both."""
    if tracked.status != "FINISHED" and checkpoint.is_file():
        return
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    try:
        tracked.delete_tag(CHECKPOINT_TAG)
    except TlrunError as error:  # the store failed: the run's own end has said so, or says so now
        print(f"tlrun: the run's checkpoint tag could not be removed: {error}", file=sys.stderr)


def _resumed_config(cfg: DictConfig, run_id: str, uri: str) -> DictConfig:
    """``resume=<run id>``: the interrupted run's own config (its ``config.yaml`` artifact), tracked into this
    command's store ``uri``, after checking that the run stopped before finishing and that its checkpoint is there."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from tlrun.tracking import PROCESS_TAG, open_client, process_alive

    try:
        record = open_client(uri, create=False).get_run(run_id)
    except MlflowException:
        raise TlrunError(f"resume={run_id}: the MLflow store {uri} has no such run (set logger.tracking_uri to the "
                         "store the run was tracked in)") from None
    if record.info.status == "FINISHED":
        raise TlrunError(f"resume={run_id}: the run already FINISHED; there is nothing to resume")
    with tempfile.TemporaryDirectory() as scratch:
        stored = OmegaConf.load(download_artifacts(run_id=run_id, artifact_path="config.yaml", tracking_uri=uri,
                                                   dst_path=scratch))
    # The store is data, not code: anyone who can write its artifacts could name any callable as a _target_.
    tree = OmegaConf.to_container(stored, resolve=True)
    refused = foreign_targets(tree)
    if refused:
        raise TlrunError(f"resume={run_id}: refused: the run's stored config.yaml names {', '.join(refused)}, which "
                         "none of tlrun's configs does (was the artifact edited?); nothing was built or run")
    resumed = OmegaConf.create(with_method_info(tree))
    with open_dict(resumed):
        resumed.logger = cfg.logger
        resumed.resume = run_id
    # A DDP worker of the resumed run (tlrun.runner.ddp) finds it RUNNING: its rank 0 has reopened it.
    if (record.info.status == "RUNNING" and process_alive(record.data.tags.get(PROCESS_TAG, ""))
            and not ddp.is_worker(resumed)):
        raise TlrunError(f"resume={run_id}: the run is still RUNNING (process {record.data.tags[PROCESS_TAG]}); stop it "
                         "first (Ctrl-C ends it KILLED)")
    checkpoint = record.data.tags.get(CHECKPOINT_TAG)
    if not checkpoint:
        raise TlrunError(f"resume={run_id}: the run has no checkpoint. Deep methods write one after every epoch "
                         "(checkpoints=true); a closed-form run is simply run again")
    if not Path(checkpoint).is_file():
        raise TlrunError(f"resume={run_id}: its checkpoint {checkpoint} is gone (was the cache_dir cleaned, or is "
                         "this another machine?); run it again instead")
    return resumed


def _tags(cfg: DictConfig, weights_run: str | None = None) -> dict[str, str]:
    """The run's tags (besides the lineage tags every run gets, :func:`~tlrun.tracking.records.source_tags`);
    model selection by target accuracy is marked ``selection.oracle=true``; a backbone that starts from an earlier
    run's weights names that run (``lineage.weights_run``)."""
    import sklearn
    import torch

    tags = {
        "method": cfg.method_info.name,
        "dataset": cfg.dataset.name,
        "scenario": cfg.scenario.name,
        "source": source_label(cfg.dataset.get("source")),
        "target": str(cfg.dataset.get("target", "")),
        "backbone": cfg.backbone.name,
        "seed": str(cfg.seed),
        "selection": str(cfg.trainer.get("select", "last")),
        "version.tlrun": __version__,
        "version.torch": torch.__version__,
        "version.sklearn": sklearn.__version__,
        "threads": str(torch.get_num_threads()),
    }
    if tags["selection"] == "oracle":
        tags["selection.oracle"] = "true"
    if weights_run:
        tags["lineage.weights_run"] = weights_run
    tags.update(_sweep_tags())
    return tags


def _sweep_tags() -> dict[str, str]:
    """Tags that tie the runs of one ``--multirun`` together (empty for a single run): the sweep folder, the
    job's number, and the link to the sweep's parent run (see :mod:`tlrun.tracking.sweeps`)."""
    from tlrun.tracking.sweeps import PARENT_TAG, parent_of_job
    from tlrun.tracking import sweep_tag

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    parent = parent_of_job()
    return {"sweep": sweep_tag(hydra_cfg.sweep.dir), "sweep_job": str(hydra_cfg.job.num)} | ({PARENT_TAG: parent} if parent else {})


def _checked_plan(cfg: DictConfig, resume: str | None, tracking_uri: str) -> Plan:
    """The job's checked plan. A resumed run's config is read from the store ``tracking_uri`` (the resumed config
    keeps this command's logger: the same store); any other config is checked first, so that a config error
    answers without importing MLflow. A stored config that this tlrun's checks refuse (e.g. a run made by an earlier
    version, whose method has since gained a setting) says it is the resumed run's; a data error is as for a new run."""
    if not resume:
        return with_run_weights(preflight(cfg), tracking_uri)
    resumed = _resumed_config(cfg, resume, tracking_uri)
    try:
        plan = preflight(resumed)
    except DataError:  # its data are not where they were: where to put them, as for a new run
        raise
    except TlrunError as error:
        raise TlrunError(f"resume={resume}: the run's stored config.yaml does not pass this tlrun's checks: {error} (a "
                         "run made by an earlier version of tlrun, whose method has since gained a setting, cannot be "
                         "resumed: run it again)") from error
    return with_run_weights(plan, tracking_uri)


def _log_config(tracked: Any, cfg: DictConfig, resolved: dict[str, Any], weights_run: str | None) -> None:
    """A new run's config: its params (less the bookkeeping keys, :data:`~tlrun.tracking.records.UNCOMPARED_PARAMS`),
    the resolved config as the artifact ``config.yaml`` and, under Hydra, the command line's overrides as
    ``hydra/overrides.yaml`` (Hydra's own record of the command)."""
    from tlrun.tracking import run_params

    tracked.log_params(run_params(resolved) | ({"lineage.weights_run": weights_run} if weights_run else {}))
    tracked.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    if HydraConfig.initialized():
        tracked.log_text(OmegaConf.to_yaml(HydraConfig.get().overrides.task), "hydra/overrides.yaml")


def _write_resolved_config(cfg: DictConfig) -> None:
    """Hydra's record of the job's config (``<output dir>/.hydra/config.yaml``) rewritten with what ``auto``
    resolved to (backbone, scenario), so that it shows what ran, as the MLflow run's ``config.yaml`` does."""
    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is None:
        return
    hydra_cfg = HydraConfig.get()
    record = Path(hydra_cfg.runtime.output_dir) / str(hydra_cfg.output_subdir) / "config.yaml"
    if record.is_file():
        record.write_text(OmegaConf.to_yaml(cfg))


def run_job(cfg: DictConfig) -> RunOutcome:
    """Run one composed config into a new MLflow run, unless a relaunched sweep finds it FINISHED already;
    with ``resume=<run id>``, continue that interrupted deep run from its last checkpoint, into the same run."""
    from tlrun.tracking.sweeps import HASH_TAG, config_hash, note_job, record_failed_before_run, reuse_finished

    resume = str(cfg.resume) if cfg.get("resume") else None
    tracking_uri = configured_uri(cfg)  # the MLflow store, resolved once for the job and handed down
    try:
        plan = _checked_plan(cfg, resume, tracking_uri)
    except TlrunError as error:  # no run opens: the sweep's parent keeps the message
        record_failed_before_run(tracking_uri, str(error))
        raise
    cfg = plan.cfg
    if ddp.is_worker(cfg):  # a process DDP started for rank > 0 (trainer=ddp): it only joins the training
        join_training(plan)
        return RunOutcome("", {})

    _write_resolved_config(cfg)
    print(f"tlrun: running {cfg.method_info.name} on {cfg.dataset.name} {task_name(cfg)} (scenario "
          f"{cfg.scenario.name})", flush=True)
    digest = config_hash(cfg)
    note_job(tracking_uri, digest)
    earlier = None if resume else reuse_finished(tracking_uri, str(cfg.logger.experiment), digest,
                                                 bool(cfg.get("skip_finished", True)))
    if earlier is not None:
        print(f"tlrun: skipped: run {earlier.info.run_id} of this config already FINISHED (skip_finished=false reruns it)")
        return RunOutcome(earlier.info.run_id, dict(earlier.data.metrics), skipped=True)
    import torch

    from tlrun.tracking import TrackedRun, interrupts_stop_the_run

    deep = cfg.method_info.family == "deep"
    # The data is read and checked (and its size against the memory the method would need), and closed-form methods
    # are built (what only their constructor checks fails here), before a run opens; deep methods need the data to
    # size their network.
    try:
        loaded = load_data(plan)
        approximation = check_loaded_memory(cfg, loaded)
        method = None if deep else construct(lambda: instantiate(cfg.method), "method")
    except TlrunError as error:  # as in preflight: no run opens, the sweep's parent keeps the message
        record_failed_before_run(tracking_uri, str(error))
        raise
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_name = f"{cfg.method_info.name} {task_name(cfg)}"
    with (
        ExitStack() as after_the_run,  # left last, once the run has its final status
        interrupts_stop_the_run(),
        ddp.rank_zero(cfg),
        job_device(cfg) as (device, trainer_kwargs),
        limited_threads(run_threads(cfg.get("threads", "auto"), current_launcher())),
        TrackedRun(
            experiment=cfg.logger.experiment, tracking_uri=tracking_uri, run_name=run_name,
            tags={"resumed": time.strftime("%Y-%m-%d %H:%M:%S")} if resume else _tags(cfg, plan.weights_run) | {HASH_TAG: digest},
            run_id=resume,
        ) as tracked,
        tracked.system_metrics(bool(cfg.logger.get("system_metrics", False))),
    ):
        if not resume:
            _log_config(tracked, cfg, resolved, plan.weights_run)
        checkpoint = checkpoint_file(cfg, tracked.run_id) if deep and cfg.get("checkpoints", True) else None
        if checkpoint is not None:
            after_the_run.callback(_discard_checkpoint, checkpoint, tracked)
        placement = ddp.tags(trainer_kwargs)  # trainer.strategy=ddp, trainer.world_size=N
        if checkpoint is not None and not resume:
            placement[CHECKPOINT_TAG] = str(checkpoint)
        if device != "cpu":
            placement["device"] = f"{device} ({torch.cuda.get_device_name(device)})"
        tracked.set_tags(placement | approximation)
        started = time.perf_counter()  # after the GPU claim: duration_s leaves out any wait for a free GPU
        seed_everything(cfg.seed)

        data = split_data(plan, loaded, None if deep else device)
        training, evaluation = data.training, data.evaluation
        tracked.set_tags(data.tags)
        if not resume:
            tracked.log_inputs(data.inputs)
        tracked.log_params({"data.n_source_train": str(len(training.source)), "data.n_target_train": str(len(training.target)),
                            "data.n_target_val": str(len(training.target_val) if training.target_val else 0),
                            "data.n_target_test": str(len(evaluation.target_test))})
        reporter = EvaluationReporter(tracked, target_scorer(evaluation), oracle=str(cfg.trainer.get("select", "last")) == "oracle",
                                      oracle_val=evaluation.oracle_val)
        context = method_context(cfg, device, trainer_kwargs, reporter, lightning_logger=tracked.lightning_logger,
                                 diagnostics=cfg.get("diagnostics", False), checkpoint=checkpoint, resume=bool(resume))
        if deep:
            method = build_deep_method(plan, data.sizing_domain)
        try:
            with contextlib.nullcontext() if deep else status_line(  # deep methods draw Lightning's progress bar
                    f"{cfg.method_info.name}: fitting on {len(training.source)} + {len(training.target)} samples"):
                resume_collector()
                method.fit(training, context)
        except BaseException:
            reporter.write_held_target_acc()
            raise
        # Deep methods log their epochs through Lightning's logger, which the reporter does not see.
        final_step = max(reporter.last_step, int(getattr(method, "epochs", 0)))
        reporter.write_held_target_acc(unless_at=final_step)  # the final evaluation's target_acc is that step's
        result = evaluate(method, evaluation, training.source, training.classes, tracked, step=final_step)
        if cfg.get("save_model", True):
            tracked.log_model(*run_predictor(plan, loaded, data, method))
        tracked.log_metrics({"duration_s": time.perf_counter() - started}, final_step)
    print_summary(cfg, result, tracked)
    return RunOutcome(tracked.run_id, dict(tracked.client.get_run(tracked.run_id).data.metrics))


def join_training(plan: Plan) -> None:
    """A DDP worker's whole job: the same data, seed and method as rank 0, then ``method.fit`` (which joins
    ``trainer.fit``); no MLflow run, no evaluation, no summary, no model (rank 0 holds the result)."""
    cfg = plan.cfg
    ddp.become_worker(cfg)
    seed_everything(cfg.seed)
    with ExitStack() as stack:
        with contextlib.redirect_stdout(io.StringIO()):  # rank 0 already printed the notes
            device, trainer_kwargs = stack.enter_context(job_device(cfg))
        data = split_data(plan, load_data(plan), None)
        method = build_deep_method(plan, data.sizing_domain)
        # Saving a checkpoint is collective: a worker calls it when rank 0 does (only rank 0 writes), and a resumed
        # run's workers start from rank 0's checkpoint.
        resume = str(cfg.resume) if cfg.get("resume") else None
        checkpoint = None
        if cfg.get("checkpoints", True):
            unused = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tlrun-ddp-"))) / "unused.ckpt"
            checkpoint = checkpoint_file(cfg, resume) if resume else unused
        context = method_context(cfg, device, trainer_kwargs, NullReporter(), lightning_logger=None, diagnostics=None,
                                 checkpoint=checkpoint, resume=bool(resume))
        # A failure here ends this process at once: its closed connections fail rank 0's next collective (gloo),
        # which then ends its run FAILED and stops the other workers (see tlrun.runner.ddp.callbacks).
        resume_collector()
        method.fit(data.training, context)
    ddp.end_process_group()
