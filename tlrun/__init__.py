"""tlrun: a command-line experiment runner for transfer learning (Hydra + PyTorch Lightning + MLflow)."""

import os
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads (torch's CPU pool) that wait for work sleep instead of spinning, unless the environment says
# otherwise. Read once, when torch loads its OpenMP runtime, so set here, before anything imports torch. On 2 cores
# with another process busy, a JDA fit took 8.3 s with 2 spinning threads against 1.4 s passive and 1.2 s with one
# thread (benchmarks/results/threads.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("tlrun")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
