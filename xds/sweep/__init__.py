"""``xds sweep``: a declarative grid of runs over a base plan (DESIGN.md §3; issue 16).

Modules, bottom up: :mod:`.grid` (load and check a sweep, expand its cells with content-hash
keys), :mod:`.cell` (one cell in a worker: estimate, simulate or chaos), :mod:`.run` (the executor,
the ``--cache`` folder, rows and best cells) and :mod:`.table` (CSV and plot). This file only
re-exports.

Example::

    from xds.parallel import Executor
    from xds.sweep import run_sweep
    doc = run_sweep("sweeps/pd-batch-rate.yaml", executor=Executor(workers=2), cache=".sweep-cache")
    for row in doc["rows"]:
        print(row["axes"], row["result"], row["error"])
"""

from __future__ import annotations

from .cell import run_cell
from .grid import Sweep, load_sweep
from .run import best_cells, run_sweep
from .table import csv_text, write_plot

__all__ = ["Sweep", "best_cells", "csv_text", "load_sweep", "run_cell", "run_sweep", "write_plot"]
