"""``trainer=ddp``: one run trained with Lightning's DDP on every device of a node, or of several nodes
(``trainer.num_nodes``), one process per device.

This module controls the processes; what :class:`~tlrun.methods.deep.DeepMethod` does on sharded data is in
:mod:`tlrun.methods.deep_ddp`.

**How the processes come about.** Lightning's ``strategy: ddp`` uses its subprocess launcher: at the first
``Trainer.fit`` the process the user started (rank 0) re-executes the same ``tlrun`` command once for each other
device, with ``LOCAL_RANK=1..N-1``, ``WORLD_SIZE=N``, ``MASTER_ADDR``/``MASTER_PORT`` in the environment and
(Hydra) ``hydra.run.dir=<rank 0's run dir> hydra.output_subdir=null`` appended. Those *workers* run
:func:`tlrun.runner.job.run_job` from the start: :func:`is_worker` recognises them, and
:func:`tlrun.runner.job.join_training` has them load the same data, build the same method and join
``trainer.fit``, then exit: no MLflow run, no evaluation, no summary, no model. Rank 0 does everything a
single-process run does, and records the run's tags ``trainer.strategy=ddp`` and ``trainer.world_size=N`` (with ``trainer.num_nodes`` on
several nodes).

**Several nodes (Slurm).** Inside a Slurm job step, Lightning takes the processes from Slurm instead (its
``SLURMEnvironment``: ``SLURM_NTASKS`` set, the job not named ``bash`` or ``interactive``): ``srun`` starts the
``tlrun`` command once per task, one task per device on every node (directly, or through the submitit launcher's
``tasks_per_node``/``nodes``), and each process reads its rank from ``SLURM_PROCID`` (the first node's address from
``SLURM_NODELIST`` or ``MASTER_ADDR``). Every process first checks that Slurm started as many tasks as the settings
ask for processes (``trainer.devices`` × ``trainer.num_nodes``): other counts would fail in Lightning after the run
opened, or train on fewer processes than tagged.

A worker is a process whose trainer settings ask for several processes *and* whose environment names a rank other
than 0, read in the order Lightning picks its cluster environment (``SLURM_PROCID`` under Slurm, ``RANK``,
``LOCAL_RANK``/``NODE_RANK``, ``JSM_NAMESPACE_RANK``): a stray ``LOCAL_RANK`` in the environment of a
single-process run changes nothing, one without ``MASTER_PORT`` (which launchers set) in a run on several processes
is an error, and a worker says on stderr what it is. A worker of a resumed run (``resume=<run id>``) joins the
run its rank 0 has reopened.

**What one epoch is.** Each process draws its own disjoint 1/N of every shuffled training loader
(:func:`tlrun.methods.deep_ddp.shard_sampler`, a ``DistributedSampler`` reshuffled at each pass), so one pass over
the data takes 1/N of the steps per process and every optimizer step averages the gradients of N batches: the
effective batch is N × ``method.batch_size``. The learning rate is *not* scaled: raise ``method.lr`` yourself if you want the
linear-scaling rule. With ``method.iterations_per_epoch`` set, each process still takes that many steps per epoch
(an epoch then sees N times as many samples).

**Decisions at epoch end.** Only rank 0 predicts the target, scores the label-free selection criteria, keeps the
best epoch's weights and logs; the per-epoch means (``train_loss``...) are summed over the processes first;
early stopping and the non-finite-loss check are agreed by every process, so none is left waiting in a
collective. Rank 0's weights are the trained ones (DDP keeps the parameters equal; batch-norm statistics are
broadcast from rank 0 at every step).

**Closed-form methods** compute in the main process on the first device (a printed note says so); ``trainer=ddp``
on one device (no GPU and ``trainer.devices`` not set, or one GPU) is a normal single-process run.

**Sweeps.** In a ``--multirun`` job Lightning would re-execute the whole sweep in each worker, or, where the
launcher runs the job in a worker program of its own (joblib, Ray, submitit), that program; :func:`rank_zero`
makes it re-execute this job alone (``python -m tlrun.cli`` with its overrides, into its own output folder), and
ends each job's processes and process group, so that the next job starts its own.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import threading
import time
import warnings
from typing import Any, Iterator, Mapping

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, read_write

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


# torch and Lightning are imported by the functions that use them: the CLI imports this module before any check.


def _uses_cuda(trainer: Mapping[str, Any]) -> bool:
    import torch

    return str(trainer.get("accelerator", "auto")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def cpu_process_count(devices: Any) -> int:
    """The processes of ``trainer.devices`` on the CPU, as Lightning's ``CPUAccelerator`` reads it (``auto``: one;
    else a whole number > 0, or its text), without importing Lightning: closed-form runs never need it."""
    if str(devices) == "auto":
        return 1
    whole = isinstance(devices, int) or (isinstance(devices, str) and devices.strip().isdigit())
    if not whole or int(devices) <= 0:
        raise ValueError("`devices` selected with CPUAccelerator should be an int > 0.")
    return int(devices)


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
            count = cpu_process_count(devices)
    except Exception as error:  # Lightning's MisconfigurationException: a device count it cannot use
        raise TlrunError(f"trainer.devices={devices}: {error}") from None
    return max(1, int(count)) * max(1, int(trainer.get("num_nodes", 1) or 1))


def _slurm_tasks() -> int | None:
    """How many processes Slurm started for this job step when Lightning takes the ranks from Slurm (its
    ``SLURMEnvironment``: ``SLURM_NTASKS`` set by ``srun`` or ``sbatch``, the job not named ``bash`` or
    ``interactive``), else ``None``: Lightning then starts the other processes itself."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its hint to use srun: Lightning gives it again when the Trainer starts
        return int(os.environ["SLURM_NTASKS"]) if SLURMEnvironment.detect() else None


def _rank(per_node: int) -> int:
    """This process's global rank as the environment names it (0 when it names none), read in the order Lightning
    picks its cluster environment."""
    env = os.environ
    if _slurm_tasks() is not None:  # srun started every process
        return int(env.get("SLURM_PROCID", 0))
    if "RANK" in env:  # torchrun
        return int(env["RANK"])
    if "LOCAL_RANK" in env:  # Lightning's launcher; NODE_RANK on nodes after the first
        return int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) * per_node + int(env["LOCAL_RANK"])
    return int(env.get("JSM_NAMESPACE_RANK", 0))  # jsrun (LSF)


def _trainer_settings(cfg: Any) -> dict[str, Any]:
    trainer = cfg.trainer
    return OmegaConf.to_container(trainer, resolve=True) if OmegaConf.is_config(trainer) else dict(trainer)


def is_worker(cfg: Any) -> bool:
    """Whether this process is a DDP worker (rank > 0) that Lightning, or an external launcher, started for the
    run: its trainer settings ask for several processes of a deep method, and its environment names a rank > 0.
    Under ``srun`` every process first checks that Slurm started as many as the settings ask for."""
    if cfg.method_info.get("family") != "deep":
        return False
    trainer = _trainer_settings(cfg)
    count = process_count(trainer)
    _check_slurm_tasks(trainer, count)
    if count <= 1:
        return False
    if "LOCAL_RANK" in os.environ and "MASTER_PORT" not in os.environ:  # launchers set both
        raise TlrunError(
            f"LOCAL_RANK={os.environ['LOCAL_RANK']} is set in the environment without MASTER_PORT: with several "
            "processes Lightning would take this process for one a launcher started and wait for the others; unset it "
            "(env -u LOCAL_RANK tlrun ...)"
        )
    return _rank_of(trainer, count) != 0


def _check_slurm_tasks(trainer: Mapping[str, Any], count: int) -> None:
    """Lightning takes the processes of a run inside a Slurm job step from Slurm, one per task; a task count other
    than the settings' process count would fail in Lightning once the run is open (or, with fewer tasks, train on
    fewer processes than tagged), and tasks without DDP would each record the same run."""
    tasks = _slurm_tasks()
    if tasks is None or tasks == count:
        return
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1)
    raise TlrunError(
        f"this Slurm job step has {tasks} task(s) (SLURM_NTASKS={tasks}), and Lightning runs one process per task, "
        f"but the trainer settings ask for {count} (trainer.devices={devices} x trainer.num_nodes={nodes}): start "
        "one task per device on each node (sbatch --nodes=N --ntasks-per-node=D, then srun tlrun ... trainer=ddp "
        "trainer.devices=D trainer.num_nodes=N), or one task for a single-device run"
    )


def _rank_of(trainer: Mapping[str, Any], count: int) -> int:
    """This process's global rank among the ``count`` processes of these Trainer settings."""
    return _rank(count // max(1, int(trainer.get("num_nodes", 1) or 1)))


def configure(trainer: dict[str, Any], method: str, family: str | None, device: str) -> dict[str, Any]:
    """The Trainer settings as a run uses them (called by :func:`tlrun.runner.steps.job_device`, accelerator already chosen).

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
    when it trains on several processes (with ``trainer.num_nodes`` when they span several nodes), else none."""
    count = process_count(trainer)
    if count <= 1:
        return {}
    nodes = int(trainer.get("num_nodes", 1) or 1)
    return ({"trainer.strategy": str(trainer.get("strategy", "ddp")), "trainer.world_size": str(count)}
            | ({"trainer.num_nodes": str(nodes)} if nodes > 1 else {}))


def _check(cfg: Any) -> None:
    """What several processes need, checked before rank 0 opens its MLflow run."""
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
    if cfg.method_info.get("family") != "deep" or process_count(_trainer_settings(cfg)) <= 1:
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
            end_process_group()
            sys.argv[:] = saved_argv
            restore_run_dir()
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _relaunch_this_job_alone() -> Any:
    """In a ``--multirun`` job: make Lightning's relaunch command (``python -m <__main__'s module> <sys.argv[1:]>``
    plus ``hydra.run.dir=<run dir>``) this job's own ``tlrun`` command (its overrides, without ``--multirun``)
    writing into the job's output folder. A launcher that runs the job in a process of its own (joblib, Ray,
    submitit) has its worker program as ``__main__``, which Lightning would re-execute: the module becomes
    ``tlrun.cli`` for the job. Returns what undoes the changes to ``__main__`` and the run dir (``sys.argv`` is the
    caller's)."""
    import __main__

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return lambda: None
    main_spec = getattr(__main__, "__spec__", None)
    __main__.__spec__ = importlib.util.find_spec("tlrun.cli")
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
        __main__.__spec__ = main_spec
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


def end_process_group() -> None:
    """End this process's DDP process group, if it has one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def callbacks(trainer: Mapping[str, Any]) -> list[Any]:
    """The Lightning callbacks the runner hands a deep method (``RunContext.callbacks``) for these Trainer settings:
    the workers' supervision with DDP."""
    return [_supervision_class()()] if process_count(trainer) > 1 else []


@functools.cache
def _supervision_class() -> type:
    """The supervision callback's class, built at first use: Lightning is imported only then."""
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


def become_worker(cfg: Any) -> None:
    """In a worker (:func:`is_worker`): say on stderr what this process is, and exit when the process that launched
    it is gone (killed without a chance to stop it)."""
    trainer = _trainer_settings(cfg)
    count = process_count(trainer)
    print(f"tlrun: DDP process {_rank_of(trainer, count)} of {count} (pid {os.getpid()}): trains alongside process 0, "
          "which records the MLflow run", file=sys.stderr)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="tlrun-ddp-parent-watch", daemon=True).start()
