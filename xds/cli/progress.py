"""Progress on stderr for commands that run many cells (``xds chaos --random``, ``xds gate``,
``xds sweep``): one Rich bar with cells done / total, failed, elapsed and ETA.

Usage::

    with many_run_progress(not json_out, "chaos trials") as cb:
        doc = chaos_plan(..., progress=cb)       # Executor.map(progress=cb) calls cb(done, total)

``cb(done, total, failed=None)``: ``failed`` is optional, for callers that count failed cells
themselves while iterating outcomes. The bar is silent (``cb`` does nothing) when ``enabled`` is
false (``--json``) or stderr is not a terminal, so pipes, CI logs and tests see no progress bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressCallback = Callable[..., None]


def _noop(done: int, total: int, failed: int | None = None) -> None:
    return None


@contextmanager
def many_run_progress(enabled: bool, label: str, parallel: int | None = None
                      ) -> Iterator[ProgressCallback]:
    """Yield a ``cb(done, total, failed=None)`` that draws a progress bar on stderr; with
    ``parallel`` (cells in flight at once) it also shows how many are running."""
    if not enabled or not sys.stderr.isatty():
        yield _noop
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None, failed="")

        def cb(done: int, total: int, failed: int | None = None) -> None:
            notes = [f"{min(parallel, total - done)} running"] if parallel else []
            if failed:
                notes.append(f"[red]{failed} failed[/]")
            bar.update(task, completed=done, total=total, failed=", ".join(notes))

        yield cb
