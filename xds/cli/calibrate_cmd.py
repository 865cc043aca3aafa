"""``xds calibrate``: fit a hardware spec's efficiency factors to measured points."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..cost.calibrate import calibrate
from ..errors import XdsError
from ..experts.skew import balancing_yaml, fit_skew, load_expert_counts
from ..spec.fileio import write_text_atomic
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
        hardware: Optional[str] = typer.Option(None, "--hardware", help="Built-in hardware or YAML path to start from."),
        points: Optional[str] = typer.Option(None, "--points", help="CSV of measured points."),
        out: Optional[str] = typer.Option(None, "--out", help="Write the fitted hardware YAML here."),
        start: str = typer.Option("shipped", "--start", help="shipped (the spec's factors) or defaults."),
        expert_counts: Optional[str] = typer.Option(
            None, "--expert-counts", help="Fit the expert-popularity skew (and, from [steps, layers, experts] "
            "counts, the per-sequence concentration) from a .npy/.csv expert-count matrix."),
        pairs_per_sequence: float = typer.Option(
            8.0, "--pairs-per-sequence", help="--expert-counts: token-expert pairs one sequence routes per "
            "recorded step (top_k x tokens per step; decode without MTP: 8)."),
        balancing_out: Optional[str] = typer.Option(
            None, "--balancing-out", help="--expert-counts: write the fitted `balancing:` block (YAML) here."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:

        # --- expert-popularity skew (issue 17, part B): a separate block from the factor fit
        skew = None
        if expert_counts is not None:
            skew = fit_skew(load_expert_counts(expert_counts), pairs_per_sequence=pairs_per_sequence,
                            file=expert_counts)
            if balancing_out:
                write_text_atomic(balancing_out, balancing_yaml(skew))
        elif balancing_out:
            raise XdsError("needs --expert-counts FILE", file="--balancing-out")
        if hardware is None or points is None:
            if skew is None:
                raise XdsError("give --hardware and --points (factor fit) and/or --expert-counts FILE",
                               file="--hardware" if hardware is None else "--points")
            if json_out:
                emit_json({"balancing": skew})
            else:
                _print_skew(skew, balancing_out)
            return

        doc = calibrate(hardware, points, out=out, start=start)
        if skew is not None:
            doc["balancing"] = skew
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
        if skew is not None:
            _print_skew(skew, balancing_out)


def _print_skew(skew: dict, out: str | None) -> None:
    """Table view of a fitted expert-popularity skew (``xds calibrate --expert-counts``)."""
    c = console()
    phi = f", overdispersion {skew['phi']:g} -> concentration {skew['kappa'] if skew['kappa'] is not None else 'inf'}" \
        if skew["phi"] is not None else " (long-run counts: no per-step overdispersion to fit)"
    c.print(f"expert skew: hottest / mean {skew['hot_ratio']:g} (most skewed of {skew['layers']} layers){phi}")
    if out:
        c.print(f"wrote {out} (a plan's balancing: block)")
