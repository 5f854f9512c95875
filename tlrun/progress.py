"""Progress bars on stderr, drawn by Rich: the one look of tlrun's long steps (features from a frozen backbone, an
autoencoder's epochs, an archive's download); and a status line with a spinner and the time spent for work whose
length is unknown (a closed-form solver).

``with progress_bar("features", total=n) as bar: ... bar.update(k)``. A bar counts steps (``done/total``) or bytes
(``unit="bytes"``: MiB done of the total, and the speed); its total may be unknown (``None``: the bar pulses) or set
later. A *transient* bar vanishes when done, and is not drawn at all where stderr is no terminal (a log would keep
only blank lines); with ``delay_s`` a bar appears only once the work has lasted that long, so quick work stays
silent. Any other bar is printed once, finished, where stderr is no terminal.

A :class:`Bar` answers to tqdm's names (``total``, ``update``, ``reset``, ``close``), so a library that drives a
tqdm-like bar (pooch's downloaders) drives it too.

Imports Rich only when a bar starts.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Literal


class Bar:
    """One bar: a Rich ``Progress`` of one task."""

    def __init__(self, progress: Any, delay_s: float) -> None:
        self._progress = progress
        self._shown_from = time.perf_counter() + delay_s

    @property
    def _task(self) -> Any:
        return self._progress.tasks[0]

    @property
    def total(self) -> float | None:
        return self._task.total

    @total.setter
    def total(self, value: float | None) -> None:
        """``None`` or 0: unknown."""
        self._progress.update(self._task.id, total=value or None)

    def update(self, amount: float = 1) -> None:
        """``amount`` more done."""
        self._progress.update(self._task.id, advance=amount, visible=time.perf_counter() >= self._shown_from)

    def reset(self) -> None:
        """Back to nothing done, the total kept."""
        self._progress.reset(self._task.id)

    def close(self) -> None:
        """Nothing to do: the bar ends with its ``with`` block (tqdm's name, for libraries that call it)."""


@contextmanager
def progress_bar(
    description: str,
    total: float | None = None,
    *,
    unit: Literal["steps", "bytes"] = "steps",
    show: bool = True,
    transient: bool = False,
    delay_s: float = 0.0,
) -> Iterator[Bar]:
    """A progress bar on stderr for the ``with`` block (see the module's docstring); ``show=False``: none."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    counts = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), *counts, TimeRemainingColumn(), console=console,
                  transient=transient, disable=not show or (transient and not console.is_terminal)) as progress:
        progress.add_task(description, total=total, visible=delay_s <= 0)
        yield Bar(progress, delay_s)


@contextmanager
def status_line(description: str) -> Iterator[None]:
    """A spinner, ``description`` and the seconds spent on stderr for the ``with`` block, where stderr is a terminal
    (nothing otherwise: a log keeps the lines printed, not a spinner); it vanishes when the block ends."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as progress:
        progress.add_task(description, total=None)
        yield
