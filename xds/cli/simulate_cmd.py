"""``xds simulate``: run a plan over a workload (its own ``workload:`` block, a trace, or synthetic
flags) and report vLLM-style metrics, SLO windows and a timeline. Exit 1 when the SLO is missed."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..cost.bands import fmt_interval
from ..pipeline import simulate_plan
from ..plan import plan_command
from ..report.html_pages import simulate_page
from ..spec.fileio import check_output_path
from ..workload.source import source_line
from . import options as opts
from . import report_opt
from .output import console, emit_json, err_console, write_out


def _progress_bar(enabled: bool):
    """A rich progress bar on stderr that appears only for runs longer than ~2 s."""
    if not enabled or not sys.stderr.isatty():
        return None, None

    state: dict[str, Any] = {"t0": time.perf_counter(), "prog": None, "task": None}

    def cb(sim_t: float, done: int, total: int) -> None:
        if state["prog"] is None:
            if time.perf_counter() - state["t0"] < 2.0:
                return
            state["prog"] = Progress(TextColumn("simulating"), BarColumn(),
                                     TextColumn("{task.completed:,}/{task.total:,} requests"),
                                     TextColumn("t={task.fields[sim]:.0f}s"), TimeElapsedColumn(),
                                     console=err_console(), transient=True)
            state["prog"].start()
            state["task"] = state["prog"].add_task("sim", total=total, sim=0.0)
        state["prog"].update(state["task"], completed=done, sim=sim_t)

    def close() -> None:
        if state["prog"] is not None:
            state["prog"].stop()

    return cb, close


def register(app: typer.Typer) -> None:
    @app.command(
        "simulate",
        help="Simulate a plan over a workload (the plan's own, a trace, or synthetic flags) and report "
        "TTFT/TPOT/throughput, SLO windows and a timeline. Exit 1 when the SLO is missed.\n\n"
        "Example: xds simulate plans/cloudmatrix-infer-pd.yaml --rate 40 --input-len 4096 "
        "--output-len 256 --duration 120 --json",
    )
    def simulate_cmd(
        ctx: typer.Context,
        plan: str = typer.Argument(..., help="Plan YAML file."),
        trace: Optional[str] = opts.TRACE,
        fmt: str = opts.FORMAT,
        rate_scale: Optional[float] = opts.RATE_SCALE,
        duration: Optional[float] = opts.DURATION,
        requests: Optional[int] = opts.REQUESTS,
        rate: Optional[float] = opts.RATE,
        arrival: Optional[str] = opts.ARRIVAL,
        cv: Optional[float] = opts.CV,
        input_len: Optional[int] = opts.INPUT_LEN,
        output_len: Optional[int] = opts.OUTPUT_LEN,
        input_dist: Optional[str] = opts.INPUT_DIST,
        output_dist: Optional[str] = opts.OUTPUT_DIST,
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Closed loop: keep N requests in flight, running the workload's requests in order (arrival times ignored); size it with --requests M."),
        seed: int = opts.SEED,
        json_out: bool = opts.JSON,
        out: Optional[str] = opts.OUT,
        requests_out: Optional[str] = typer.Option(None, "--requests-out", help="Write per-request records to this CSV."),
        plot: Optional[str] = typer.Option(None, "--plot", help="Write TTFT/TPOT CDFs and the timeline to FILE.png|svg (matplotlib)."),
        timing: bool = typer.Option(False, "--timing", help="Include wall_seconds (non-deterministic) in the JSON."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar on stderr."),
        report: Optional[str] = report_opt.REPORT,
    ) -> int:
        workload = opts.workload_options(locals())
        check_output_path(out, "--out")
        report_opt.check_report_path(report)
        cb, close = _progress_bar(not (no_progress or json_out))
        try:
            doc, res = simulate_plan(plan, seed=seed, concurrency=concurrency, progress=cb, timing=timing,
                                     requests_out=requests_out, plot=plot, **workload)
        finally:
            if close:
                close()
        if report:
            rows, files = report_opt.inputs(ctx, seed=seed, files={"plan": plan, "trace": workload["trace"]},
                                            workload=source_line(doc["workload_source"]))
            report_opt.write(report, simulate_page(doc, res, plan_command(plan), rows, files))
        code = 0 if doc["passed"] else 1
        if json_out:
            emit_json(doc, out)
            raise typer.Exit(code)
        write_out(doc, out)
        _render(doc)
        raise typer.Exit(code)


def _fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"


def _band(doc: dict, key: str, nd: int = 1) -> str:
    """``value (lo–hi)`` with the cost model's 90 % band when the document has one."""
    v = doc.get(key)
    return "-" if v is None else fmt_interval(v, doc.get(key + "_interval"), nd)


def _render(doc: dict) -> None:
    c = console()
    slo = doc["slo"]
    t = Table(title=f"xds simulate: {doc['plan']} ({doc['model']} on {doc['chips']} chips / "
                    f"{doc['dies']} dies)", show_header=False)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    w = doc.get("workload_summary") or {}
    if w:
        t.add_row("workload", f"{w.get('name') or 'synthetic'}: {w['requests']:,} requests over {w['span_s']:,.0f} s "
                              f"({w['rate_rps']:,.1f} req/s), mean {w['input_mean']:,.0f} in / {w['output_mean']:,.0f} out")
    src = doc.get("workload_source")
    if src:
        t.add_row("workload from", source_line(src))
        t.add_row("mode", f"closed loop: {doc['concurrency']:,} requests in flight (arrival times ignored)"
                  if src["mode"] == "closed loop" else "open loop: requests arrive at the workload's times")
        for note in src["notes"]:
            t.add_row("note", note)
    t.add_row("requests completed / failed", f"{doc['completed']:,} / {doc['failed']:,}")
    if doc["failed_reasons"]:
        t.add_row("failure reasons", ", ".join(f"{k}: {v}" for k, v in doc["failed_reasons"].items()))
    t.add_row("simulated duration", f"{doc['duration']:,.1f} s")
    t.add_row("output throughput", f"{_fmt(doc['output_throughput'])} tok/s "
                                   f"({_band(doc, 'output_throughput_per_chip')} per chip)")
    t.add_row("input throughput per chip", f"{_band(doc, 'input_throughput_per_chip')} tok/s")
    for pool, d in doc["pools"].items():
        k = "output_throughput_per_chip" if pool == "decode" else "input_throughput_per_chip"
        t.add_row(f"  {pool} pool ({d['chips']} chips) per chip", f"{_fmt(d.get(k))} tok/s")
        if pool == "decode" and d.get("mean_batch_per_rank") is not None:
            cap = d.get("batch_cap_per_rank") or []
            t.add_row("  decode batch per DP rank mean / peak",
                      f"{d['mean_batch_per_rank']:,.1f} / {d['peak_batch_per_rank']:,.1f} (cap {', '.join(f'{c:g}' for c in cap)})")
    t.add_row("TTFT mean / p50 / p99", f"{_band(doc, 'mean_ttft_ms')} / {_fmt(doc['median_ttft_ms'])} / "
                                       f"{_band(doc, 'p99_ttft_ms')} ms")
    t.add_row("TPOT mean / p50 / p99", f"{_band(doc, 'mean_tpot_ms', 2)} / {_fmt(doc['median_tpot_ms'], 2)} / "
                                       f"{_band(doc, 'p99_tpot_ms', 2)} ms")
    t.add_row("ITL mean / p99", f"{_fmt(doc['mean_itl_ms'], 2)} / {_fmt(doc['p99_itl_ms'], 2)} ms")
    t.add_row("E2E latency mean / p99", f"{_fmt(doc['mean_e2el_ms'])} / {_fmt(doc['p99_e2el_ms'])} ms")
    if doc.get("prefix_cache_hit_rate") is not None:
        t.add_row("prefix cache hit rate", f"{doc['prefix_cache_hit_rate']:.1%}")
    if doc["recomputed_requests"]:
        t.add_row("recomputed requests / tokens", f"{doc['recomputed_requests']:,} / {doc['recomputed_tokens']:,}")
    verdict = "[bold green]PASS[/]" if doc["passed"] else "[bold red]FAIL[/]"
    t.add_row("SLO", f"p{slo['percentile']:g} TTFT ≤ {slo['ttft_ms']:g} ms, TPOT ≤ {slo['tpot_ms']:g} ms "
                     f"per {slo['window_s']:g} s window")
    t.add_row("SLO attainment", f"{(doc['slo_attainment'] or 0):.1%} of {slo['windows_total']} windows "
                                f"(target {slo['target']:.0%}) {verdict}")
    if doc.get("interval_note"):
        t.add_row("(lo–hi)", doc["interval_note"])
    if "wall_seconds" in doc:
        t.add_row("wall time", f"{doc['wall_seconds']:.2f} s ({doc['simulated_requests_per_wall_second']:,.0f} req/s)")
    c.print(t)
