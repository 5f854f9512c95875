"""CPU threads per run (the top-level ``threads`` setting): a run alone uses every core, runs side by side share them.

Oversubscribed cores are very costly for this work: the thread pools of torch and of the BLAS spin while they wait.
On 2 cores kept busy by other processes, a dense 800 × 800 ``eigh`` took 0.5 to 12 s with 2 threads against 0.17 s
with 1, and a sweep of 4 deep runs under the submitit local launcher (4 runs × 2 threads at once) took 10 times as
long as the same runs one after another (``benchmarks/results/sweep_launchers.md``). ``threads=auto`` (the default) gives each run:

- the threads the environment already sets (``OMP_NUM_THREADS``: the joblib launcher sets cores ÷ ``n_jobs`` in
  its workers, Ray sets a task's ``num_cpus``), unchanged;
- under Slurm, the job's ``SLURM_CPUS_PER_TASK``;
- under the submitit local launcher (every job of the sweep at once, on this machine), its
  ``hydra.launcher.cpus_per_task``, else 1;
- otherwise (a single run, the basic launcher) every core, as torch chooses.

``threads=N`` sets N threads for torch, and for the BLAS and OpenMP pools of numpy, SciPy and scikit-learn.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tlrun.errors import TlrunError

SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


def check_threads(value: Any) -> None:
    """``threads`` is ``auto`` or a positive number of threads."""
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise TlrunError(f"threads={value}: use auto or a positive number of CPU threads per run")


def run_threads(value: Any, launcher: DictConfig | None, environ: dict[str, str] | None = None) -> int | None:
    """The threads a run uses for ``threads=value`` (see the module docstring), or None to leave the default.

    ``launcher`` is ``hydra.launcher`` of a ``--multirun`` job (None for a single run)."""
    check_threads(value)
    if value != "auto":
        return int(value)
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        return None
    if environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(environ["SLURM_CPUS_PER_TASK"])
    if launcher is not None and launcher.get("_target_") == SUBMITIT_LOCAL:
        return int(launcher.get("cpus_per_task") or 1)
    return None


def current_launcher() -> DictConfig | None:
    """``hydra.launcher`` when this process runs a job of a ``--multirun``, else None."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return HydraConfig.get().launcher


@contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` CPU threads in torch and in the BLAS/OpenMP pools (None: as they are)."""
    if threads is None:
        yield
        return
    import torch  # imported by the run that limits its threads: this module is imported before the checks
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
