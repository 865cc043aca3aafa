"""``xds sweep``: run a declarative grid (plan/workload fields × scenario × policy × seed) on the
executor, with a resumable ``--cache``; print the table and the best cell per objective."""

from __future__ import annotations

import os
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import XdsError
from ..parallel import Executor
from ..spec.fileio import check_output_path, check_plot_path, write_text_atomic
from ..sweep import csv_text, load_sweep, run_sweep, write_plot
from ..sweep.table import check_plot_args
from . import options as opts
from .output import console, emit_json, write_out
from .progress import many_run_progress


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _render(doc: dict[str, Any]) -> None:
    c = console()
    s = doc["summary"]
    t = Table(title=f"xds sweep: {doc['name']} ({doc['run']}, {s['cells']} cells)")
    for col in ("cell", *doc["axes"], *doc["collect"], "error"):
        t.add_column(col, justify="left" if col in ("error",) else "right")
    for row in doc["rows"]:
        res = row["result"] or {}
        t.add_row(str(row["cell"]), *(_fmt(row["axes"][a]) for a in doc["axes"]),
                  *(_fmt(res.get(f)) for f in doc["collect"]), row["error"] or "")
    c.print(t)
    b = Table(title="best cell per objective")
    for col in ("objective", "value", "cell", "axes"):
        b.add_column(col)
    for key, best in doc["best"].items():
        if best is None:
            b.add_row(key, "-", "-", "no cell has a value")
            continue
        b.add_row(f"{best['goal']} {key}", _fmt(best["value"]), str(best["cell"]),
                  ", ".join(f"{a}={_fmt(v)}" for a, v in best["axes"].items()))
    if doc["best"]:
        c.print(b)
    c.print(f"{s['completed']} completed, {s['failed']} failed, {s['cached']} cached "
            f"({s['computed']} computed this run)")


def register(app: typer.Typer) -> None:
    @app.command(
        "sweep",
        help="Run a grid of plan/workload fields, fault scenarios, policies and seeds (SWEEP.yaml: base, "
        "axes, run: simulate|chaos|estimate, collect) on local processes or Ray; one row per cell, the "
        "best cell per objective. --cache DIR makes it resumable. Exit 0 when every cell ran, 1 if "
        "any cell failed, 2 on bad input.\n\n"
        "Example: xds sweep sweeps/pd-batch-rate.yaml --cache .sweep-cache --csv pd.csv",
    )
    def sweep_cmd(
        sweep: str = typer.Argument(..., help="Sweep YAML (base, axes, run, collect)."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Folder of finished cells (one JSON per cell, keyed by a hash of its inputs); a re-run computes only the missing ones."),
        workers: Optional[int] = opts.WORKERS,
        ray: Optional[str] = opts.RAY,
        json_out: bool = opts.JSON,
        out: Optional[str] = opts.OUT,
        csv_out: Optional[str] = typer.Option(None, "--csv", help="Write the table as CSV (axes, fields, error) to this file (atomically)."),
        plot: Optional[str] = typer.Option(None, "--plot", help="Plot a collected field against an axis to FILE.png|svg|pdf (matplotlib)."),
        x: Optional[str] = typer.Option(None, "--x", help="--plot: the axis on the x axis (default: the first axis)."),
        y: Optional[str] = typer.Option(None, "--y", help="--plot: the collected field on the y axis (default: the first)."),
    ) -> None:
        check_output_path(out, "--out")
        check_output_path(csv_out, "--csv")
        check_plot_path(plot)
        executor = Executor(workers=workers, ray=ray)
        loaded = load_sweep(sweep)
        if not plot and (x or y):
            raise XdsError("--x and --y choose what --plot draws; give --plot FILE.png too",
                           file="--x" if x else "--y")
        if plot:
            x, y = check_plot_args(list(loaded.axes), loaded.spec.fields, x, y)
        parallel = None if ray else (workers or os.cpu_count() or 1)
        with many_run_progress(not json_out, "sweep", parallel) as cb:
            doc = run_sweep(loaded, executor=executor, cache=cache, progress=cb)
        if csv_out:
            write_text_atomic(csv_out, csv_text(doc))
        if plot:
            write_plot(doc, plot, x, y)
        code = 1 if doc["summary"]["failed"] else 0
        if json_out:
            emit_json(doc, out)
            raise typer.Exit(code)
        write_out(doc, out)
        _render(doc)
        raise typer.Exit(code)
