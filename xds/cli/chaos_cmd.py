"""``xds chaos``: replay a fault scenario (or random fault timelines) against a plan under a
recovery policy and judge the TPOT/TTFT SLA."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..pipeline import chaos_plan
from ..plan import plan_command
from ..report.html_pages import chaos_page
from ..spec.fileio import check_output_path
from . import options as opts
from . import report_opt
from .output import console, emit_json, write_out
from .progress import many_run_progress

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], target: float | None = None) -> str:
    """One block per window on a 0-based scale that includes ``target`` (the SLO), so noise of a
    few percent does not look like an outage."""
    vals = [v for v in values if v is not None]
    if not vals:
        return ""
    hi = max(max(vals), target or 0.0) or 1.0
    return "".join(" " if v is None else SPARK[min(int(v / hi * 7.999), 7)] for v in values)


def markers(doc: dict, n: int, window: float) -> str:
    row = [" "] * n
    for rec in doc.get("recovery", []):
        i = min(int(rec["at_s"] // window), n - 1)
        row[i] = "^"
        r = rec.get("recovered_at_s")
        if r is not None and r > rec["at_s"]:
            j = min(int(r // window), n - 1)
            if row[j] == " ":
                row[j] = "|"
    return "".join(row)


def register(app: typer.Typer) -> None:
    @app.command(
        "chaos",
        help="Replay a fault scenario mid-traffic under a recovery policy (restart, pd-failover, "
        "fine-grained, or all side by side): TPOT/TTFT over time, requests recomputed or lost, and the "
        "SLA verdict. Exit 1 when the SLA fails.\n\n"
        "Example: xds chaos plans/cloudmatrix-infer-pd.yaml --scenario fixtures/faults/die_down.yaml "
        "--policy all",
    )
    def chaos_cmd(
        ctx: typer.Context,
        plan: str = typer.Argument(..., help="Plan YAML file."),
        scenario: Optional[str] = typer.Option(None, "--scenario", help="Scenario YAML (events: ...)."),
        policy: Optional[str] = typer.Option(None, "--policy", help="restart, pd-failover, fine-grained or all (default: the plan's)."),
        random: bool = typer.Option(False, "--random", help="Draw fault timelines from rates instead of a scenario."),
        rate_per_1000_chip_days: Optional[float] = typer.Option(None, "--rate-per-1000-chip-days", help="--random: faults per 1000 chip-days (Llama 3: 0.47)."),
        hours: Optional[float] = typer.Option(None, "--hours", help="--random: hours of traffic per trial."),
        trials: int = typer.Option(10, "--trials", help="--random: number of timelines."),
        workers: Optional[int] = opts.WORKERS,
        ray: Optional[str] = opts.RAY,
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
        seed: int = opts.SEED,
        json_out: bool = opts.JSON,
        out: Optional[str] = opts.OUT,
        plot: Optional[str] = typer.Option(None, "--plot", help="TPOT/throughput timeline with fault markers (png/svg)."),
        report: Optional[str] = report_opt.REPORT,
    ) -> None:
        check_output_path(out, "--out")
        report_opt.check_report_path(report)
        with many_run_progress(random and not json_out, "chaos trials") as cb:
            doc = chaos_plan(plan, scenario=scenario, policy=policy, seed=seed, random=random,
                             rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                             trials=trials, plot=plot, workers=workers, ray=ray, progress=cb,
                             **opts.workload_options(locals()))
        code = 0 if doc["passed"] else 1
        if report:
            rows, files = report_opt.inputs(ctx, seed=seed, files={"plan": plan, "scenario": scenario,
                                                              "trace": trace})
            report_opt.write(report, chaos_page(doc, plan_command(plan), rows, files))
        if json_out:
            emit_json(doc, out)
        else:
            write_out(doc, out)
            _render(doc)
        raise typer.Exit(code)


def _render(doc: dict) -> None:
    c = console()
    if "trials" in doc:
        t = Table(title=f"xds chaos --random: {doc['plan']}, {doc['trials']} trials × {doc['hours']:g} h at "
                        f"{doc['rate_per_1000_chip_days']:g} faults / 1000 chip-days")
        for col in ("policy", "availability (95% CI)", "min", "p5", "failed mean", "failed / day",
                    "trials passing"):
            t.add_column(col, justify="left" if col == "policy" else "right")
        for p, d in doc["policies"].items():
            a, f, av = d["slo_attainment"], d["failed"], d["availability"]
            t.add_row(p, f"{av['mean']:.2%} [{av['ci95'][0]:.2%}, {av['ci95'][1]:.2%}]",
                      f"{a['min']:.1%}", f"{a['p5']:.1%}", f"{f['mean']:.1f}",
                      f"{d.get('failed_per_day', 0):,.0f}", f"{d['trials_passing']}/{doc['trials']}")
        c.print(t)
        c.print(f"faults drawn per trial: {doc['faults_per_trial']}")
        hit = [(i, evs) for i, evs in enumerate(doc.get("trial_faults", [])) if evs]
        for i, evs in hit[:10]:      # which fault hit what and when (--json has every trial)
            c.print(f"  trial {i}: " + "; ".join(f"{e['fault']} on {e['target']} at {e['at_s']:,.0f} s"
                                                 for e in evs))
        if len(hit) > 10:
            c.print(f"  ... {len(hit) - 10} more trials with faults (--json lists every trial's faults)")
        for msg in doc.get("warnings", []):
            c.print(f"[yellow]warning:[/] {msg}")
        return
    docs = doc["policies"] if "policies" in doc else {doc["policy"]: doc}
    first = next(iter(docs.values()))
    t = Table(title=f"xds chaos: {first['plan']} × {first['scenario']}")
    t.add_column("metric")
    for p in docs:
        t.add_column(p, justify="right")

    def row(label, fn):
        t.add_row(label, *[fn(d) for d in docs.values()])

    row("requests total", lambda d: f"{d['requests_total']:,}")
    row("completed", lambda d: f"{d['completed']:,}")
    row("failed", lambda d: (f"[red]{d['failed']:,}[/]" if d["failed"] else "0"))
    row("recomputed requests / tokens", lambda d: f"{d['recomputed']['requests']:,} / {d['recomputed']['tokens']:,}")
    row("p99 TTFT (ms)", lambda d: "-" if d["p99_ttft_ms"] is None else f"{d['p99_ttft_ms']:,.0f}")
    row("p99 TPOT (ms)", lambda d: "-" if d["p99_tpot_ms"] is None else f"{d['p99_tpot_ms']:,.1f}")
    row("output tok/s per chip", lambda d: "-" if d["output_throughput_per_chip"] is None else f"{d['output_throughput_per_chip']:,.1f}")
    row("SLO windows violated", lambda d: f"{d['slo']['windows_violated']} / {d['slo']['windows_total']}")
    row("SLO attainment", lambda d: f"{(d['slo_attainment'] or 0):.1%}")
    row("verdict", lambda d: "[bold green]PASS[/]" if d["passed"] else "[bold red]FAIL[/]")
    c.print(t)
    for p, d in docs.items():
        c.print(f"[bold]{p}[/]: recovery")
        for rec in d["recovery"]:
            back = rec["recovered_at_s"]
            c.print(f"  t={rec['at_s']:g}s {rec['fault']} {rec['target']}: detected {rec['detected_at_s']:g}s, "
                    f"recovered {'-' if back is None else f'{back:.1f}s'}, {rec['requests_affected']:,} requests "
                    f"affected — {rec['action']}")
        _blast_table(c, d["recovery"])
        rows = d["timeline"]
        w = d["slo"]["window_s"]
        c.print(f"  {'p99 TPOT per ' + format(w, 'g') + ' s (0..max, SLO ' + format(d['slo']['tpot_ms'], 'g') + ' ms):':<40}"
                f"{sparkline([r['p99_tpot_ms'] for r in rows], d['slo']['tpot_ms'])}")
        c.print(f"  {'faults (^) / recovery (|):':<40}{markers(d, len(rows), w)}")
        for msg in d.get("warnings", []):
            c.print(f"  [yellow]warning:[/] {msg}")


def _blast_table(c, records: list[dict]) -> None:
    """One row per fault: what it touched and what it cost (the JSON's ``blast_radius``)."""
    t = Table(title="blast radius")
    cols = ("fault", "dies", "expert slots", "instances", "requests", "recomputed tok", "failed",
            "detect s", "recover s", "full cap. s", "capacity lost tok/s")
    for col in cols:
        t.add_column(col, justify="left" if col == "fault" else "right")

    def s(v):
        return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

    for rec in records:
        b = rec["blast_radius"]
        t.add_row(f"{rec['fault']} {rec['target']}", s(b["dies"]), s(b["expert_slots_lost"]),
                  s(b["instances"]), s(b["requests_affected"]), s(b["recomputed_tokens"]),
                  s(b["failed"]), s(b["time_to_detect_s"]), s(b["time_to_recover_s"]),
                  s(b["time_to_full_capacity_s"]), s(b["capacity_lost_tok_s"]))
    c.print(t)
