"""``xds validate``: the cost model against the table of published figures (in sample and
leave-one-out), the regression check CI runs, and the writer of the shipped error bands."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..plan.validate import check, load_thresholds, validate, write_bands, write_thresholds
from .output import console, emit_json


def _fmt(v: float, kind: str) -> str:
    if kind == "effect":
        return f"×{v:.3f}"
    return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"


def render(doc: dict) -> None:
    """Rich view: one line per figure, then median / worst |error| per vendor."""
    t = Table(title=f"xds validate: {len(doc['rows'])} published figures "
              f"(leave-one-out: {doc['loo']}; * = calibration point)")
    for col in ("figure", "hardware", "metric", "published", "in-sample", "err %", "LOO", "LOO err %"):
        t.add_column(col, justify="left" if col in ("figure", "hardware", "metric") else "right")
    for r in doc["rows"]:
        k = r["kind"]
        t.add_row(r["name"] + (" *" if r["calibration"] else ""), r["hardware"],
                  r["metric"] + (" ratio" if k == "effect" else ""), _fmt(r["published"], k),
                  _fmt(r["in_sample"], k), f"{r['in_sample_error_pct']:+.1f}", _fmt(r["loo"], k),
                  f"{r['loo_error_pct']:+.1f}")
    c = console()
    c.print(t)
    s = Table(title="error per hardware (|error| over figures; effects: sign right and size within half)")
    for col in ("hardware", "figures", "in-sample median %", "worst %", "LOO median %", "LOO worst %",
                "end-to-end LOO median / worst %", "effects ok (in-sample / LOO)"):
        s.add_column(col, justify="left" if col == "hardware" else "right")
    for vendor, v in doc["summary"].items():
        s.add_row(vendor, str(v["rows"]), _pct(v["in_sample_median_pct"]), _pct(v["in_sample_worst_pct"]),
                  _pct(v["loo_median_pct"]), _pct(v["loo_worst_pct"]),
                  f"{_pct(v['end_to_end_loo_median_pct'])} / {_pct(v['end_to_end_loo_worst_pct'])} "
                  f"({v['end_to_end_rows']})",
                  f"{v['in_sample_effects_ok']} / {v['loo_effects_ok']} of {v['effects']}")
    c.print(s)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def register(app: typer.Typer) -> None:
    @app.command(
        "validate",
        help="Predict every published figure in the validation table with the shipped efficiency "
        "factors (in-sample) and with factors refitted on all other figures (leave-one-out); print each "
        "error and the median / worst per hardware. --check exits 1 when the leave-one-out figures "
        "regress past the stored thresholds.\n\n"
        "Example: xds validate --hardware nvidia --check",
    )
    def validate_cmd(
        hardware: Optional[str] = typer.Option(None, "--hardware", help="Only rows of this hardware (ascend-910c, h800, h100) or vendor (ascend, nvidia)."),
        rows: Optional[str] = typer.Option(None, "--rows", help="A validation table CSV (default: the shipped one)."),
        do_check: bool = typer.Option(False, "--check", help="Exit 1 when the LOO median/worst or effects regress past --thresholds."),
        thresholds: Optional[str] = typer.Option(None, "--thresholds", help="Thresholds YAML (default: the shipped one)."),
        bands: bool = typer.Option(False, "--write-bands", help="Write the error bands (package data bands.json) from this run."),
        write_th: bool = typer.Option(False, "--write-thresholds", help="Write today's LOO values + margin as the thresholds YAML."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        lim = load_thresholds(thresholds) if do_check else None
        if (bands or write_th) and (rows or hardware):
            raise typer.BadParameter("--write-bands/--write-thresholds need the whole shipped table "
                                     "(drop --rows and --hardware)")
        doc = validate(rows, hardware=hardware)
        code = 0
        if lim is not None:
            doc["regressions"] = check(doc, lim)
            code = 1 if doc["regressions"] else 0
        if bands:
            doc["bands_written"] = write_bands(doc)
        if write_th:
            doc["thresholds_written"] = write_thresholds(doc, thresholds)
        if json_out:
            emit_json(doc)
            raise typer.Exit(code)
        render(doc)
        c = console()
        for key, what in (("bands_written", "bands"), ("thresholds_written", "thresholds")):
            if key in doc:
                c.print(f"wrote {what}: {doc[key]}")
        if lim is not None:
            c.print("[bold green]no regression past the thresholds[/]" if not code else
                    "[bold red]regression:[/] " + "; ".join(doc["regressions"]))
        raise typer.Exit(code)
