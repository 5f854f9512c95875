"""The command line's garbage collector: off while a run sets up, on (with the set-up's survivors frozen) once the
method fits (tlrun.collector)."""

from __future__ import annotations

import gc

import pytest

from tlrun.collector import pause_collector, resume_collector


@pytest.fixture
def restored_collector():
    yield
    resume_collector(freeze=False)  # a pause a test left behind ends with it
    gc.unfreeze()
    gc.enable()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_resuming_collects_the_set_ups_cycles_freezes_the_survivors_and_turns_collection_on(restored_collector):
    pause_collector()
    assert not gc.isenabled()
    frozen_before = gc.get_freeze_count()
    import weakref

    garbage = Cycle()
    gone = weakref.ref(garbage)
    del garbage  # a cycle: reference counting alone never frees it
    assert gone() is not None
    resume_collector()
    assert gc.isenabled() and gone() is None and gc.get_freeze_count() > frozen_before


def test_resuming_is_a_no_op_when_the_collector_is_on(restored_collector):
    frozen_before = gc.get_freeze_count()
    resume_collector()
    assert gc.isenabled() and gc.get_freeze_count() == frozen_before


def test_a_run_started_with_the_collector_off_fits_with_it_on(compose, mlflow_store, monkeypatch, restored_collector):
    from tlrun.methods.no_adaptation import NoAdaptation
    from tlrun.run import run

    seen = []
    fit = NoAdaptation.fit
    monkeypatch.setattr(NoAdaptation, "fit", lambda self, *args: (seen.append(gc.isenabled()), fit(self, *args))[1])
    pause_collector()
    run(compose("method=no_adaptation", experiment="collector"))
    assert seen == [True]


@pytest.mark.parametrize("parent_opens", [True, False])
def test_a_sweeps_process_collects_once_its_parent_run_is_open(monkeypatch, restored_collector, parent_opens):
    """The process of a ``--multirun`` may wait on its jobs for hours: its collector is on once the sweep starts, even
    when opening the parent run fails (Hydra only warns, and the jobs run)."""
    import atexit
    import signal

    from omegaconf import OmegaConf

    from tlrun.tracking import callbacks, sweeps, uri

    def open_parent(config, tracking_uri):
        if not parent_opens:
            raise RuntimeError("the store is locked")
        return None, "parent"

    monkeypatch.setattr(sweeps, "open_parent", open_parent)
    monkeypatch.setattr(uri, "configured_uri", lambda config: "sqlite:///unused.db")
    tracking = callbacks.SweepTracking()
    sigterm = signal.getsignal(signal.SIGTERM)
    pause_collector()
    try:
        tracking.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": "unused"}}}))
    except RuntimeError:
        assert not parent_opens
    finally:
        atexit.unregister(tracking._end_early)
        signal.signal(signal.SIGTERM, sigterm)
    assert gc.isenabled()


def test_a_collector_the_program_turned_off_stays_off(restored_collector):
    gc.disable()
    pause_collector()
    resume_collector()
    assert not gc.isenabled()


@pytest.mark.parametrize("arguments", [["method=jda", "--cfg", "job"], ["--help"], ["method=no_such_method"]])
def test_the_command_line_hands_the_collector_back_on_every_path(monkeypatch, capsys, restored_collector, arguments):
    """``tlrun.cli.main`` called in-process (as tests and notebooks do) leaves the collector on, whether it printed a
    config, its help, or an error."""
    import sys

    from tlrun.cli import main

    monkeypatch.setattr(sys, "argv", ["tlrun", *arguments])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # main sets it; restored after, or later CLI tests print tracebacks
    try:
        main()
    except SystemExit:
        pass
    assert gc.isenabled()
