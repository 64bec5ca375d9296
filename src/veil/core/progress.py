"""Progress bars for long work (rich), silenced by ``--quiet`` or ``quiet=True``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_quiet = os.environ.get("VEIL_QUIET", "") not in ("", "0")


def set_quiet(value: bool) -> None:
    """Silence (or restore) every progress bar in this process; the CLI's ``--quiet`` calls it."""
    global _quiet
    _quiet = value


def is_quiet(quiet: bool | None = None) -> bool:
    """The effective setting: an explicit ``quiet`` wins over the process-wide one."""
    return _quiet if quiet is None else quiet


class _Task:
    """A handle on one bar; ``advance`` and ``note`` are no-ops when quiet."""

    def __init__(self, progress, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._id, status=text)


@contextmanager
def progress(description: str, total: float | None, quiet: bool | None = None) -> Iterator[_Task]:
    """A progress bar for ``total`` units of work, transient, written to stderr."""
    if is_quiet(quiet):
        yield _Task(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _Task(bar, bar.add_task(description, total=total, status=""))
