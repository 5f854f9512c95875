"""A machine kept busy on purpose (the benchmarks' ``--busy``): one other process spinning on a core while they
measure, as another job, a test suite or an editor would keep it."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def one_busy_core(enabled: bool = True) -> Iterator[None]:
    """One other Python process spinning while the block runs (nothing when not ``enabled``). It is running before
    the block starts, so a count of the free cores made in the block leaves its core out."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if enabled else None
    try:
        if spinner is not None:
            time.sleep(0.5)
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
