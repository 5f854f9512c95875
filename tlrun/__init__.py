"""tlrun: a command-line experiment runner for transfer learning (Hydra + PyTorch Lightning + MLflow)."""

import os
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads (torch's CPU pool) that wait for work spin briefly, then sleep, unless the environment says
# otherwise: PASSIVE (sleep) for any OpenMP runtime, and GNU OpenMP's (torch's on Linux) spin of 1000 rounds first.
# Read once, when torch loads its OpenMP runtime, so set here, before anything imports torch. On 2 cores with another
# process busy, a JDA fit took 8.3 s with 2 spinning threads against 1.4 s passive; on an idle machine the 12
# Office+Caltech10 JDA tasks took 6.9 s passive against 3.4 s with the brief spin (benchmarks/results/threads.md).
# Beside a busy process a run uses one thread by default (tlrun.runner.threads), where the wait policy does not matter.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

try:
    __version__ = version("tlrun")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
