"""Run a sweep on the executor: cached cells are read from ``--cache DIR``, the others run and are
written there (atomically) as they finish; the rows come back in cell order, whatever the backend."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from ..errors import XdsError
from ..parallel import Executor, Outcome
from ..spec.fileio import write_text_atomic
from ..spec.yamlio import load_json
from .cell import run_cell
from .grid import Sweep, load_sweep

#: ``progress(done, total, failed)``: called after each cell (cached ones at the start).
Progress = Callable[[int, int, int], None]


def check_cache_dir(cache: str | None) -> None:
    """``--cache DIR`` is a writable folder (created if missing, its parent must exist)."""
    if not cache:
        return
    p = Path(cache)
    if p.exists() and not p.is_dir():
        raise XdsError(f"{cache!r} is a file; give a folder", file="--cache")
    if not p.exists():
        if not (p.parent if str(p.parent) else Path(".")).is_dir():
            raise XdsError(f"the parent folder of {cache!r} does not exist", file="--cache")
        try:
            p.mkdir()
        except OSError as exc:
            raise XdsError(f"cannot create the folder: {exc.strerror}", file="--cache") from None


def _read_cached(cache: str, key: str) -> dict[str, Any] | None:
    """A cached cell (``{"value"|"error"}``), or None when absent or unreadable (then it reruns)."""
    path = Path(cache) / f"{key}.json"
    if not path.is_file():
        return None
    try:
        doc = load_json(path, what="cached sweep cell")
    except XdsError:
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or ("value" not in doc and "error" not in doc):
        return None
    return doc


def _write_cached(cache: str, cell: dict[str, Any], out: Outcome) -> None:
    if out.error is not None and out.error.startswith("internal error"):
        return                                   # not a property of the inputs: run it again
    doc = {"key": cell["key"], "axes": cell["axes"], "value": out.value, "error": out.error}
    write_text_atomic(Path(cache) / f"{cell['key']}.json",
                      json.dumps(doc, indent=1, allow_nan=False) + "\n")


def run_cells(sweep: Sweep, *, executor: Executor | None = None, cache: str | None = None,
              progress: Progress | None = None) -> tuple[list[Outcome], int, int]:
    """Every cell's outcome (in cell order), how many came from the cache and how many ran (cells
    with equal keys, e.g. fault-free cells under different policies, run once)."""
    cells = sweep.cells
    results: dict[int, Outcome] = {}
    if cache:
        for c in cells:
            hit = _read_cached(cache, c["key"])
            if hit is not None:
                results[c["index"]] = Outcome(c["index"], value=hit.get("value"), error=hit.get("error"))
    cached = len(results)
    same: dict[str, list[dict[str, Any]]] = {}       # cells with equal keys run once
    for c in cells:
        if c["index"] not in results:
            same.setdefault(c["key"], []).append(c)
    todo = [group[0] for group in same.values()]
    failed = sum(1 for o in results.values() if o.error is not None)
    if progress is not None:
        progress(cached, len(cells), failed)
    batch = None if sweep.spec.run == "estimate" else 1
    for out in (executor or Executor(workers=1)).map(run_cell, todo, batch=batch):
        cell = todo[out.index]
        if cache:
            _write_cached(cache, cell, out)
        for c in same[cell["key"]]:
            results[c["index"]] = Outcome(c["index"], value=out.value, error=out.error)
            failed += out.error is not None
        if progress is not None:
            progress(len(results), len(cells), failed)
    return [results[c["index"]] for c in cells], cached, len(todo)


def best_cells(rows: list[dict[str, Any]], goals: dict[str, str]) -> dict[str, Any]:
    """Per objective, the first cell with the lowest (``min``) or highest (``max``) value."""
    best: dict[str, Any] = {}
    for key, goal in goals.items():
        top = None
        for row in rows:
            v = row["result"].get(key) if row["result"] else None
            if isinstance(v, bool):
                v = float(v)
            if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
                continue
            if top is None or (v < top[0] if goal == "min" else v > top[0]):
                top = (v, row)
        best[key] = None if top is None else {"goal": goal, "value": top[1]["result"][key],
                                              "cell": top[1]["cell"], "axes": top[1]["axes"]}
    return best


def run_sweep(path: str | Sweep, *, executor: Executor | None = None, cache: str | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """``xds sweep`` as a function: validate the sweep (nothing runs on bad input), run its cells on
    ``executor`` (default: in this process; ``path`` may be a loaded :class:`Sweep`), reading and filling ``cache`` (a folder), and return
    ``{name, run, axes, collect, rows, best, summary}``; rows are in cell order."""
    check_cache_dir(cache)
    sweep = path if isinstance(path, Sweep) else load_sweep(path)
    outcomes, cached, computed = run_cells(sweep, executor=executor, cache=cache, progress=progress)
    rows = [{"cell": c["index"], "key": c["key"], "axes": c["axes"],
             "result": o.value, "error": o.error} for c, o in zip(sweep.cells, outcomes)]
    failed = sum(1 for r in rows if r["error"] is not None)
    spec = sweep.spec
    return {"name": spec.name or Path(sweep.path).stem, "run": spec.run, "axes": spec.axes,
            "collect": spec.fields, "rows": rows, "best": best_cells(rows, spec.goals),
            "summary": {"cells": len(rows), "completed": len(rows) - failed, "failed": failed,
                        "cached": cached, "computed": computed}}
