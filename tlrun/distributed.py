"""``trainer=ddp``: one run trained on every device of a node with Lightning's DDP, one process per device.

**How the processes come about.** Lightning's ``strategy: ddp`` uses its subprocess launcher: at the first
``Trainer.fit`` the process the user started (rank 0) re-executes the same ``tlrun`` command once for each other
device, with ``LOCAL_RANK=1..N-1``, ``WORLD_SIZE=N``, ``MASTER_ADDR``/``MASTER_PORT`` in the environment and
(Hydra) ``hydra.run.dir=<rank 0's run dir> hydra.output_subdir=null`` appended. Those *workers* run
:func:`tlrun.run.run` from the start: :func:`is_worker` recognises them, and :func:`join_training` has them load
the same data, build the same method and join ``trainer.fit``, then exit: no MLflow run, no evaluation, no
summary, no model. Rank 0 does everything a single-process run does, and records the run's tags
``trainer.strategy=ddp`` and ``trainer.world_size=N``.

A worker is a process whose trainer settings ask for several processes *and* whose environment names a rank other
than 0 (``RANK``, ``LOCAL_RANK``/``NODE_RANK``, ``SLURM_PROCID``): a stray ``LOCAL_RANK`` in the environment of a
single-process run changes nothing, one without ``MASTER_PORT`` (which launchers set) in a run on several processes
is an error, and a worker says on stderr what it is.

**What one epoch is.** Each process draws its own disjoint 1/N of every shuffled training loader
(:func:`shard_sampler`, a ``DistributedSampler`` reshuffled at each pass), so one pass over the data takes 1/N
of the steps per process and every optimizer step averages the gradients of N batches: the effective batch is
N × ``method.batch_size``. The learning rate is *not* scaled: raise ``method.lr`` yourself if you want the
linear-scaling rule. With ``method.iterations_per_epoch`` set, each process still takes that many steps per epoch
(an epoch then sees N times as many samples).

**Decisions at epoch end.** Only rank 0 predicts the target, scores the label-free selection criteria, keeps the
best epoch's weights and logs; the per-epoch means (``train_loss``...) are summed over the processes first;
early stopping and the non-finite-loss check are agreed by every process, so none is left waiting in a
collective. Rank 0's weights are the trained ones (DDP keeps the parameters equal; batch-norm statistics are
broadcast from rank 0 at every step).

**Closed-form methods** compute in the main process on the first device (a printed note says so); ``trainer=ddp``
on one device (no GPU and ``trainer.devices`` not set, or one GPU) is a normal single-process run.

**Sweeps.** In a ``--multirun`` job Lightning would re-execute the whole sweep in each worker; :func:`rank_zero`
makes it re-execute this job alone (its overrides, into its own output folder), and ends each job's processes
and process group, so that the next job starts its own.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from tlrun.errors import TlrunError

#: Strategies that train a run on several processes through Lightning's subprocess launcher.
DDP_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")
#: The environment Lightning's launcher sets up in rank 0 (and hands to the workers).
_LAUNCH_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
#: Hydra's flags that choose the config a command composes (kept when a sweep's job is re-executed alone).
_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
#: The worker processes this process launched (rank 0), across the Trainers of one run.
_workers: list[Any] = []


# ------------------------------------------------------------------------------------------- settings


def _uses_cuda(trainer: Mapping[str, Any]) -> bool:
    import torch

    return str(trainer.get("accelerator", "auto")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def process_count(trainer: Mapping[str, Any]) -> int:
    """How many processes Lightning runs for these Trainer settings: the devices (``auto``: every GPU, or one CPU
    process) times ``num_nodes`` (1 for ``strategy: single_device``)."""
    if str(trainer.get("strategy", "auto")) == "single_device":
        return 1
    devices = trainer.get("devices", "auto")
    try:
        if _uses_cuda(trainer):
            from pytorch_lightning.accelerators import CUDAAccelerator

            if str(devices) == "auto":
                devices = CUDAAccelerator.auto_device_count()
            count = len(CUDAAccelerator.parse_devices(devices) or [])
        else:
            from pytorch_lightning.accelerators import CPUAccelerator

            count = 1 if str(devices) == "auto" else CPUAccelerator.parse_devices(devices)
    except Exception as error:  # Lightning's MisconfigurationException: a device count it cannot use
        raise TlrunError(f"trainer.devices={devices}: {error}") from None
    return max(1, int(count)) * max(1, int(trainer.get("num_nodes", 1) or 1))


def _rank(per_node: int) -> int:
    """This process's global rank as the environment names it (0 when it names none)."""
    env = os.environ
    if "RANK" in env:  # torchrun
        return int(env["RANK"])
    if "LOCAL_RANK" in env:  # Lightning's launcher; NODE_RANK on nodes after the first
        return int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) * per_node + int(env["LOCAL_RANK"])
    for key in ("SLURM_PROCID", "JSM_NAMESPACE_RANK"):  # srun, jsrun: every process started by the scheduler
        if key in env:
            return int(env[key])
    return 0


def _trainer_settings(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    trainer = cfg.trainer
    return OmegaConf.to_container(trainer, resolve=True) if OmegaConf.is_config(trainer) else dict(trainer)


def is_worker(cfg: Any) -> bool:
    """Whether this process is a DDP worker (rank > 0) that Lightning, or an external launcher, started for the
    run: its trainer settings ask for several processes of a deep method, and its environment names a rank > 0."""
    if cfg.method.get("family") != "deep":
        return False
    trainer = _trainer_settings(cfg)
    count = process_count(trainer)
    if count <= 1:
        return False
    if "LOCAL_RANK" in os.environ and "MASTER_PORT" not in os.environ:  # launchers set both
        raise TlrunError(
            f"LOCAL_RANK={os.environ['LOCAL_RANK']} is set in the environment without MASTER_PORT: with several "
            "processes Lightning would take this process for one a launcher started and wait for the others; unset it "
            "(env -u LOCAL_RANK tlrun ...)"
        )
    return _rank_of(trainer, count) != 0


def _rank_of(trainer: Mapping[str, Any], count: int) -> int:
    """This process's global rank among the ``count`` processes of these Trainer settings."""
    return _rank(count // max(1, int(trainer.get("num_nodes", 1) or 1)))


def configure(trainer: dict[str, Any], method: str, family: str | None, device: str) -> dict[str, Any]:
    """The Trainer settings as a run uses them (called by :func:`tlrun.run._job_device`, accelerator already chosen).

    Several processes for a deep method: ``strategy`` ``ddp`` (``auto`` becomes ``ddp``: Lightning would pick it
    anyway). One process: DDP is dropped (a normal run). Closed-form methods ignore the settings and compute here.
    """
    count = process_count(trainer)
    asked = str(trainer.get("strategy", "auto")).startswith("ddp") or count > 1
    if not asked:
        return trainer
    if family != "deep":
        print(f"tlrun: {method} is closed-form: it computes in this one process on {device}; DDP trains deep "
              "methods only")
        trainer.pop("strategy", None)
        trainer["devices"] = 1
        return trainer
    if count == 1:
        print("tlrun: DDP on one device is a normal single-process run (on a machine without a GPU, set "
              "trainer.devices=N for N CPU processes)")
        trainer["strategy"] = "auto"
        return trainer
    if str(trainer.get("strategy", "auto")) == "auto":
        trainer["strategy"] = "ddp"
    return trainer


def tags(trainer: Mapping[str, Any]) -> dict[str, str]:
    """The run's tags for these (configured) Trainer settings: ``trainer.strategy`` and ``trainer.world_size``
    when it trains on several processes, else none."""
    count = process_count(trainer)
    if count <= 1:
        return {}
    return {"trainer.strategy": str(trainer.get("strategy", "ddp")), "trainer.world_size": str(count)}


def _check(cfg: Any) -> None:
    """What several processes need, checked before rank 0 opens its MLflow run."""
    from hydra.core.hydra_config import HydraConfig

    strategy = str(cfg.trainer.get("strategy", "auto"))
    if strategy != "auto" and strategy not in DDP_STRATEGIES:
        raise TlrunError(
            f"trainer.strategy={strategy}: tlrun trains on several processes with Lightning's DDP and its subprocess "
            f"launcher: use one of {', '.join(DDP_STRATEGIES)} (trainer=ddp), or trainer.devices=1"
        )
    if not HydraConfig.initialized():
        raise TlrunError(
            "trainer=ddp on several processes needs the tlrun command: Lightning starts the other processes by "
            "re-executing it (from Python, run with trainer.devices=1)"
        )
    if int(cfg.method.get("unfreeze_every", 0) or 0) > 0:
        raise TlrunError(
            "method.unfreeze_every (gradual unfreezing) with DDP: DistributedDataParallel synchronises only the "
            "parameters that train when it starts, so stages unfrozen later would drift apart between the "
            "processes; use method.unfreeze_every=0 or one device"
        )


# ------------------------------------------------------------------------------------------- rank 0


@contextlib.contextmanager
def rank_zero(cfg: Any) -> Iterator[None]:
    """Around rank 0's run when it trains on several processes (a no-op otherwise): checks first (before the run
    opens); in a ``--multirun`` job, has Lightning re-execute this job alone; at the end, stops any worker still
    there, ends the process group and restores the launch environment, so that the next run of the process
    (the sweep's next job) launches its own workers."""
    if cfg.method.get("family") != "deep" or process_count(_trainer_settings(cfg)) <= 1:
        yield
        return
    _check(cfg)
    saved_env = {key: os.environ.get(key) for key in _LAUNCH_ENV}
    saved_argv = list(sys.argv)
    restore_run_dir = _relaunch_this_job_alone()
    _workers.clear()
    try:
        yield
    finally:
        try:
            stop_workers(grace_s=10.0)  # they exit on their own after training
        finally:
            _end_process_group()
            sys.argv[:] = saved_argv
            restore_run_dir()
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _relaunch_this_job_alone() -> Any:
    """In a ``--multirun`` job: make Lightning's relaunch command (``sys.argv`` plus ``hydra.run.dir=<run dir>``)
    this job's own command (its overrides, without ``--multirun``) writing into the job's output folder. Returns
    what undoes the run-dir change."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return lambda: None
    flags, argv = [], sys.argv[1:]
    for index, token in enumerate(argv):
        name = token.split("=", 1)[0]
        if name in _CONFIG_FLAGS:
            flags.append(token)
            if "=" not in token and index + 1 < len(argv):
                flags.append(argv[index + 1])
    sys.argv[1:] = [*flags, *hydra_cfg.overrides.task]
    run_dir = hydra_cfg.run.dir
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(hydra_cfg.runtime.output_dir)

    def restore() -> None:
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = run_dir

    return restore


def _disarm_observers() -> None:
    """Lightning's launcher watches the workers from a thread that SIGKILLs rank 0 when one exits with an error;
    once rank 0 stops them itself, that would kill it before it ends its MLflow run. (Relies on Lightning's
    ``_ChildProcessObserver``; without it, nothing changes.)"""
    for thread in threading.enumerate():
        if thread.name == "child-process-observer" and hasattr(thread, "_child_processes"):
            thread._child_processes = []


def stop_workers(grace_s: float = 0.0) -> None:
    """Rank 0: let the workers this process launched exit by themselves for ``grace_s`` seconds, then kill the
    rest (SIGKILL: one may be blocked in a collective) and reap them."""
    _disarm_observers()
    deadline = time.monotonic() + grace_s
    for process in _workers:
        if process.poll() is None:
            with contextlib.suppress(Exception):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
    _workers.clear()


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def callbacks(trainer: Mapping[str, Any]) -> list[Any]:
    """The Lightning callbacks a deep method adds for these Trainer settings: the workers' supervision with DDP."""
    return [_supervision_class()()] if process_count(trainer) > 1 else []


@functools.cache
def _supervision_class() -> type:
    from pytorch_lightning import Callback

    class Supervision(Callback):
        """Rank 0 keeps track of the workers its Trainers launch, and stops them as soon as its training fails or is
        interrupted: before Lightning's own handling, whose process observer would otherwise kill rank 0 (SIGKILL)
        before it ends its MLflow run, and so that no worker is left waiting in a collective."""

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            _remember_workers(trainer)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if trainer.is_global_zero:
                _remember_workers(trainer)
                stop_workers()

    return Supervision


def _remember_workers(trainer: Any) -> None:
    for process in getattr(trainer.strategy.launcher, "procs", None) or []:
        if process not in _workers:
            _workers.append(process)


# ------------------------------------------------------------------------------------------- workers


class _Untracked:
    """Stands in for the MLflow run in a worker: the data loading sets tags, which only rank 0 records."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass


def _watch_parent() -> None:
    """A worker exits when the process that launched it is gone (killed without a chance to stop it)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="tlrun-ddp-parent-watch", daemon=True).start()


def join_training(plan: Any) -> None:
    """A worker's whole run: the same data, seed and method as rank 0, then ``method.fit`` (which joins
    ``trainer.fit``); no MLflow run, no evaluation, no summary, no model (rank 0 holds the result)."""
    from tlrun import run as runner
    from tlrun.methods.base import NullReporter, RunContext

    cfg = plan.cfg
    trainer = _trainer_settings(cfg)
    count = process_count(trainer)
    rank = _rank_of(trainer, count)
    print(f"tlrun: DDP process {rank} of {count} (pid {os.getpid()}): trains alongside process 0, which records the "
          "MLflow run", file=sys.stderr)
    _watch_parent()
    runner.seed_everything(cfg.seed)
    with contextlib.ExitStack() as stack:
        with contextlib.redirect_stdout(io.StringIO()):  # rank 0 already printed the notes
            device, trainer_kwargs = stack.enter_context(runner._job_device(cfg))
        training, _, source = runner._split_data(plan, runner.load_data(plan), _Untracked(), None)
        method = runner._build_deep_method(plan, source)
        # Saving a checkpoint is collective: a worker calls it when rank 0 does (only rank 0 writes), and a resumed
        # run's workers start from rank 0's checkpoint.
        resume = str(cfg.resume) if cfg.get("resume") else None
        checkpoint = None
        if cfg.get("checkpoints", True):
            unused = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tlrun-ddp-"))) / "unused.ckpt"
            checkpoint = runner._checkpoint_file(cfg, resume) if resume else unused
        context = RunContext(reporter=NullReporter(), device=device, seed=cfg.seed, trainer=trainer_kwargs,
                             lightning_logger=None, select=str(cfg.trainer.get("select", "last")), diagnostics=False,
                             checkpoint=checkpoint, resume_from=checkpoint if resume else None)
        # A failure here ends this process at once: its closed connections fail rank 0's next collective (gloo),
        # which then ends its run FAILED and stops the other workers (see _supervision_class).
        method.fit(training, context)
    _end_process_group()


# ------------------------------------------------------------------------------------------- training aids


def shard_sampler(dataset: Any, num_replicas: int, rank: int, seed: int) -> Any:
    """This process's share of a shuffled training loader under DDP: a ``DistributedSampler`` (each of the N
    processes draws a disjoint 1/N of a permutation, padded by repeating a few samples so all draw as many) whose
    permutation changes at every pass, as a generator-shuffled loader's does: ``seed`` plus the pass number
    (Lightning's per-epoch ``set_epoch`` is ignored: a loader cycling within an epoch passes several times)."""
    return _shard_sampler_class()(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                                  drop_last=False)


@functools.cache
def _shard_sampler_class() -> type:
    from torch.utils.data.distributed import DistributedSampler

    class ShardSampler(DistributedSampler):
        __doc__ = shard_sampler.__doc__
        _passes = 0

        def set_epoch(self, epoch: int) -> None:
            pass

        def __iter__(self) -> Iterator[int]:
            self.epoch, self._passes = self._passes, self._passes + 1
            return super().__iter__()

    return ShardSampler


def sum_over_processes(sums: dict[str, Any], trainer: Any) -> dict[str, Any]:
    """Per-name ``[total, count]`` tensors summed over the DDP processes (as they are with one process)."""
    if trainer.world_size <= 1:
        return sums
    import torch
    import torch.distributed as dist

    names: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(names, sorted(sums))
    union = sorted(set().union(*names))
    if not union:
        return {}
    device = trainer.strategy.root_device
    stacked = torch.stack([
        sums[name].to(device) if name in sums else torch.zeros(2, dtype=torch.float64, device=device) for name in union
    ])
    dist.all_reduce(stacked)
    return dict(zip(union, stacked))


def agree(trainer: Any, decision: bool, every: bool) -> bool:
    """One decision for every process: ``every`` process's, or ``any``'s (identity with one process)."""
    if trainer.world_size <= 1:
        return bool(decision)
    return bool(trainer.strategy.reduce_boolean_decision(bool(decision), all=every))
