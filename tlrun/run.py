"""The entry points user scripts and benchmarks import: :func:`run` and :func:`run_job` (:mod:`tlrun.runner.job`)."""

from tlrun.runner.job import run, run_job

__all__ = ["run", "run_job"]
