"""``xds calibrate``: fit a hardware spec's efficiency factors to measured points."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..cost.calibrate import calibrate
from .output import console, emit_json


def register(app: typer.Typer) -> None:
    @app.command(
        "calibrate",
        help="Fit the cost model's efficiency factors to measured points (a CSV with estimate flags as "
        "columns plus metric and measured); prints per-point error and MAPE before and after, and "
        "writes a hardware YAML that --hardware accepts.\n\n"
        "Example: xds calibrate --hardware ascend-910c --points fixtures/calibration/ascend-910c.csv "
        "--out my-910c.yaml",
    )
    def calibrate_cmd(
        hardware: str = typer.Option(..., "--hardware", help="Built-in hardware or YAML path to start from."),
        points: str = typer.Option(..., "--points", help="CSV of measured points."),
        out: Optional[str] = typer.Option(None, "--out", help="Write the fitted hardware YAML here."),
        start: str = typer.Option("shipped", "--start", help="shipped (the spec's factors) or defaults."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:

        doc = calibrate(hardware, points, out=out, start=start)
        if json_out:
            emit_json(doc)
            return

        t = Table(title=f"calibration of {doc['hardware']}")
        for col in ("point", "metric", "measured", "before", "err %", "after", "err %", "tol %"):
            t.add_column(col, justify="right" if col not in ("point", "metric") else "left")
        for p in doc["points"]:
            ok = "green" if p["within_tolerance"] else "red"
            t.add_row(p["name"], p["metric"], f"{p['measured']:g}", f"{p['predicted_before']:g}",
                      f"{p['error_pct_before']:+.1f}", f"{p['predicted_after']:g}",
                      f"[{ok}]{p['error_pct_after']:+.1f}[/{ok}]", f"{p['tolerance_pct']:g}")
        c = console()
        c.print(t)
        c.print(f"MAPE {doc['mape_before_pct']:.2f} % → {doc['mape_after_pct']:.2f} %")
        c.print(f"{doc['free_parameters']} free parameters fitted to {doc['points_count']} points: "
                + ", ".join(f"{k}={doc['efficiency'][k]:g}" for k in doc["fitted"]))
        for k, b in doc["at_bound"].items():
            c.print(f"[yellow]{k} sits on its {b['side']} bound {b['bound']:g}: the data push against the "
                    f"bound ({b['source']})[/yellow]")
        if out:
            c.print(f"wrote {out}")
