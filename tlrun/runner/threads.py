"""CPU threads per run (the top-level ``threads`` setting): a run alone uses the cores no other process is using,
runs side by side share them.

Oversubscribed cores are very costly for this work: the thread pools of torch and of the BLAS spin while they wait.
On 2 cores kept busy by other processes, a dense 800 × 800 ``eigh`` took 0.5 to 12 s with 2 threads against 0.17 s
with 1, and a sweep of 4 deep runs under the submitit local launcher (4 runs × 2 threads at once) took 10 times as
long as the same runs one after another (``benchmarks/results/sweep_launchers.md``). ``threads=auto`` (the default) gives each run:

- the threads the environment already sets (``OMP_NUM_THREADS``: the joblib launcher sets cores ÷ ``n_jobs`` in
  its workers, Ray sets a task's ``num_cpus``), unchanged;
- under Slurm, the job's ``SLURM_CPUS_PER_TASK``;
- under the submitit local launcher (every job of the sweep at once, on this machine), its
  ``hydra.launcher.cpus_per_task``, else 1;
- otherwise (a single run, or the basic launcher's jobs, one at a time) the cores this process may use less those
  other processes are running on as it starts (:func:`free_cores`), at least 1; with every core free, torch's own
  choice is left as it is. On 2 cores: 2 threads on an idle machine, 1 beside another busy process (a JDA fit took
  1.5 s idle with 2 threads against 2.5 s with 1, and 2.5 s busy with 1 against 2.6–3.6 s with 2;
  ``benchmarks/results/threads.md``).

``threads=N`` sets N threads for torch, and for the BLAS and OpenMP pools of numpy, SciPy and scikit-learn. The
run's ``threads`` tag records the number used.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
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
    free = free_cores()
    return None if free == available_cores() else free  # every core free: torch's own pool, nothing to limit


def available_cores() -> int:
    """The cores this process may use: its CPU affinity where the platform has one, else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_cores(loadavg: Path = Path("/proc/loadavg")) -> int:
    """The cores this process may use (its CPU affinity) less the threads other processes are running now, at least
    1. Linux counts the running threads in ``/proc/loadavg`` (its fourth field, ``running/total``, this process's
    one included); elsewhere the 1-minute load average stands in for them."""
    cores = available_cores()
    try:
        busy = int(loadavg.read_text().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, cores - max(0, busy))


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
