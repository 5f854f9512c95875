"""The runner: one composed config becomes one tracked job.

- :mod:`~tlrun.runner.preflight`: the checks that need no data and no heavy import (torch-free), giving a
  :class:`~tlrun.runner.preflight.Plan`;
- :mod:`~tlrun.runner.steps`: the job's steps shared by rank 0 and the DDP workers (weights, device, data, split,
  method, its context);
- :mod:`~tlrun.runner.job`: :func:`~tlrun.runner.job.run_job`, the job itself: the steps inside an MLflow run, the
  tags, resume, and a DDP worker's share;
- :mod:`~tlrun.runner.ddp`: the DDP processes (ranks, Trainer settings, rank 0's supervision of its workers);
- :mod:`~tlrun.runner.devices`: one GPU per job for parallel sweeps; :mod:`~tlrun.runner.threads`: CPU threads per
  run;
- :mod:`~tlrun.runner.evaluation`: scoring a fitted method, the label-blind reporter, the terminal summary.

Dependencies point down: ``job`` → ``steps`` → ``preflight``; ``ddp``, ``devices``, ``threads`` and ``evaluation``
import no other runner module. Outside the runner, only the CLI and :mod:`tlrun.run` (the entry point user scripts
import) import it.
"""
