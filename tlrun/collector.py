"""Python's cyclic garbage collector during a command's set-up.

A run imports torch, MLflow, Hydra and scikit-learn (deep methods Lightning too): millions of long-lived objects.
With the collector on, each wave of them triggers full collections that scan everything imported so far, about 1 s
of CPU in a `tlrun method=jda` command on the digits, a seventh of it. So the command line starts with the collector
off (:func:`pause_collector`, called by :func:`tlrun.cli.main` for runs) and turns it on again once the run is set
up, just before the method fits (:func:`resume_collector`; a ``--multirun`` sweep's process when its parent run is
open): what exists then is collected once, then frozen (``gc.freeze``: later collections never scan it again), and
what the run allocates from there is collected as usual. The Python API (``tlrun.run``, ``tlrun.api``) leaves the
collector alone.
"""

from __future__ import annotations

import gc


def pause_collector() -> None:
    """Turn the cyclic garbage collector off for the set-up (reference counting still frees everything acyclic)."""
    gc.disable()


def resume_collector() -> None:
    """After the set-up: collect the set-up's cyclic garbage once, freeze what survives, and collect as usual from
    here on. Nothing to do when the collector is on (a later job of a sweep in the same process, the Python API)."""
    if gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    gc.enable()
