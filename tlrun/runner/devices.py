"""GPUs for parallel jobs: one job per GPU, on one machine (joblib launcher) or under Ray.

**The rule.** A run with ``trainer=gpu`` (one device) claims a GPU before it starts: the first GPU, in order,
that no other tlrun process on this machine holds, and holds it until it ends. Claims are ``flock`` locks on
files named by the GPU's UUID in ``$TMPDIR/tlrun-gpu-locks``, so they hold across processes and launchers and
vanish with their process, even one that is killed. When every GPU is held the run waits for one to free.
``trainer.jobs_per_gpu`` (default 1) lets that many jobs share a GPU; jobs are spread over the GPUs before any
GPU takes a second one. So ``tlrun --multirun hydra/launcher=joblib hydra.launcher.n_jobs=<GPUs> trainer=gpu ...``
keeps every GPU busy with one job, whatever order the jobs finish in.

The claims are seen by the processes that share that folder: one machine's tlrun jobs, of every user. Where
each job has its own temporary folder (Slurm's per-job ``TMPDIR``, a container's ``/tmp``) the scheduler gives
it its own GPUs anyway. ``trainer=ddp`` takes every GPU of the node and claims none.

Under Ray (``hydra/launcher=ray``) each job asks Ray for one GPU (``${tlrun.gpus_per_job:}``) and Ray makes only that
GPU visible to it, so the claim simply takes it. Without a GPU, nothing is claimed and the run uses the CPU.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

LOCK_FOLDER = "tlrun-gpu-locks"
# torch is imported by the functions that ask it about GPUs: the CLI imports this module before any check.


def visible_gpu_ids() -> list[str]:
    """A stable id of every visible CUDA GPU (its UUID; the same GPU has the same id whatever
    ``CUDA_VISIBLE_DEVICES`` makes its index)."""
    import torch

    ids = []
    for index in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        ids.append(str(uuid) if uuid is not None else f"index-{index}")
    return ids


@contextmanager
def claimed_gpu(
    gpu_ids: Sequence[str],
    jobs_per_gpu: int = 1,
    lock_folder: Path | None = None,
    poll_s: float = 2.0,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[int]:
    """Hold a free GPU for the block; yields its index in ``gpu_ids`` (the visible GPUs).

    Tries slot 0 of every GPU, then slot 1 of every GPU... up to ``jobs_per_gpu``; when all are held, calls
    ``on_wait`` once and retries every ``poll_s`` seconds.
    """
    if not gpu_ids:
        raise ValueError("no GPU to claim")
    if jobs_per_gpu < 1:
        raise ValueError(f"trainer.jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    folder = lock_folder or Path(tempfile.gettempdir()) / LOCK_FOLDER
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        try:  # shared by every user of the machine, like /tmp itself
            folder.chmod(0o1777)
        except OSError:
            pass
    waiting = False
    while True:
        for slot in range(jobs_per_gpu):
            for index, gpu in enumerate(gpu_ids):
                descriptor = _open_lock(folder / f"{gpu}.{slot}.lock")
                if descriptor is None:
                    continue
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(descriptor)
                    continue
                try:
                    yield index
                finally:
                    fcntl.flock(descriptor, fcntl.LOCK_UN)
                    os.close(descriptor)
                return
        if not waiting and on_wait is not None:
            on_wait()
        waiting = True
        time.sleep(poll_s)


def _open_lock(path: Path) -> int | None:
    """A descriptor on the lock file, created readable and writable by every user; another user's file is
    opened read-only (``flock`` works on it too). ``None`` when it cannot be opened at all."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None
    except OSError:
        return None
    try:
        os.fchmod(descriptor, 0o666)  # past the umask: the next user must open it too
    except OSError:
        pass
    return descriptor


def wants_one_gpu(trainer: dict) -> bool:
    """Whether a trainer config asks for exactly one GPU (``trainer=gpu``), the case a job claims one for."""
    devices = trainer.get("devices", 1)
    return trainer.get("accelerator") in ("gpu", "cuda") and devices in (1, "1") and "ddp" not in str(trainer.get("strategy", ""))
