"""tlrun: a command-line experiment runner for transfer learning (Hydra + PyTorch Lightning + MLflow)."""

import os
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads (torch's CPU pool) that wait for work spin briefly, then sleep, unless the environment says
# otherwise: PASSIVE (sleep) for any OpenMP runtime, and GNU OpenMP's (torch's on Linux) spin of 1000 rounds first.
# Read once, when torch loads its OpenMP runtime, so set here, before anything imports torch. Spinning threads slow a
# run that shares its cores with a busy process (1.4-1.7x in threads.md's last run, 4x in an earlier one); threads
# that sleep at once pay their wake-ups on an idle machine: the 12 Office+Caltech10 JDA tasks took 6.9 s so, 4.3 s
# with the brief spin (CHANGELOG, Speed; benchmarks/results/threads.md for every choice idle and busy). Beside a busy
# process a run uses one thread by default (tlrun.runner.threads), where the wait policy does not matter.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

try:
    __version__ = version("tlrun")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
