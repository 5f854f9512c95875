"""Python's cyclic garbage collector during a command's set-up.

A run imports torch, MLflow, Hydra and scikit-learn (deep methods Lightning too): millions of long-lived objects.
With the collector on, each wave of them triggers full collections that scan everything imported so far, about 1 s
of CPU in a `tlrun method=jda` command on the digits, a seventh of it. So the command line pauses the collector while
a run sets up (:func:`pause_collector`, called by :func:`tlrun.cli.main` just before Hydra runs the job) and resumes
it just before the method fits (:func:`resume_collector`; a ``--multirun`` sweep's process as its parent run opens):
what exists then is collected once, then frozen (``gc.freeze``: later collections never scan it again), and what the
run allocates from there is collected as usual. Only a pause of tlrun's own is resumed: a program that turned the
collector off itself keeps it off, and the Python API (``tlrun.run``, ``tlrun.api``) never pauses it.
"""

from __future__ import annotations

import gc

#: Whether the collector is off because :func:`pause_collector` turned it off.
_paused = False


def pause_collector() -> None:
    """Turn the cyclic garbage collector off for the set-up (reference counting still frees everything acyclic);
    nothing to do when it is off already."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector(freeze: bool = True) -> None:
    """End tlrun's pause: collect the set-up's cyclic garbage once, freeze what survives (``freeze``) and collect as
    usual from here on. Nothing to do without a pause of tlrun's (a later job of a sweep in the same process, the
    Python API, a collector the program turned off itself). ``freeze=False``: just turn it back on (the command
    ends, or returns to an in-process caller)."""
    global _paused
    if not _paused:
        return
    _paused = False
    if freeze:
        gc.collect()
        gc.freeze()
    gc.enable()
