"""``xds gate``: CI capacity gates with a JUnit report."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..gate import run_gate
from ..report.html_pages import gate_page
from . import options as opts
from . import report_opt
from .output import console, emit_json
from .progress import many_run_progress


def _margin(v, th) -> str:
    if v is None:
        return "-"
    parts = []
    if th.get("max") is not None:
        parts.append(f"{th['max'] - v:+.4g} to max")
    if th.get("min") is not None:
        parts.append(f"{v - th['min']:+.4g} over min")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    @app.command(
        "gate",
        help="Run a suite of capacity checks (plan + optional workload, fault scenario and policy, with "
        "thresholds on result fields) in parallel; print pass/fail with margins, write JUnit XML. Exit 0 "
        "when all pass, 1 when any fails, 2 on bad input.\n\n"
        "Example: xds gate gates/ci.yaml --junit gate-report.xml",
    )
    def gate_cmd(
        ctx: typer.Context,
        suite: str = typer.Argument(..., help="Suite YAML (checks: [...])."),
        junit: Optional[str] = typer.Option(None, "--junit", help="Write a JUnit XML report here (atomically)."),
        workers: Optional[int] = opts.WORKERS,
        ray: Optional[str] = opts.RAY,
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
        report: Optional[str] = report_opt.REPORT,
    ) -> None:
        report_opt.check_report_path(report)
        with many_run_progress(not json_out, "gate checks") as cb:
            doc = run_gate(suite, junit=junit, workers=workers, ray=ray, progress=cb)
        code = 0 if doc["passed"] else 1
        if report:
            rows, files = report_opt.inputs(ctx, files={"suite": suite})
            report_opt.write(report, gate_page(doc, rows, files))
        if json_out:
            emit_json(doc)
            raise typer.Exit(code)

        t = Table(title=f"xds gate: {doc['suite']} ({len(doc['checks'])} checks, {doc['seconds']:.1f} s)")
        for col in ("check", "result", "field", "threshold", "measured", "margin"):
            t.add_column(col, justify="right" if col in ("measured",) else "left")
        for c in doc["checks"]:
            verdict = "[bold green]PASS[/]" if c["passed"] else "[bold red]FAIL[/]"
            if c["error"]:
                t.add_row(c["name"], "[bold red]ERROR[/]", "", "", "", c["error"])
                continue
            first = True
            for k, th in c["thresholds"].items():
                v = c["measured"].get(k)
                lim = " ".join(f"{n} {x:g}" for n, x in th.items() if x is not None)
                t.add_row(c["name"] if first else "", verdict if first else "", k, lim,
                          "-" if v is None else f"{v:g}", _margin(v, th))
                first = False
        c = console()
        c.print(t)
        c.print("[bold green]all checks passed[/]" if doc["passed"] else
                f"[bold red]{len(doc['failed_checks'])} check(s) failed:[/] {', '.join(doc['failed_checks'])}")
        if junit:
            c.print(f"JUnit report: {junit}")
        raise typer.Exit(code)
