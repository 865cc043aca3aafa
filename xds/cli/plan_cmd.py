"""``xds plan``: place a plan on the topology and predict it, or search layouts (``--search``)."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from ..cost.bands import fmt_interval
from ..errors import XdsError
from ..plan import plan_command
from ..report.html_pages import plan_page
from ..report.tables import pool_nodes
from . import report_opt
from .output import console, emit_json, write_out


def _render_plan(doc: dict[str, Any]) -> None:

    c = console()
    pred = doc["predicted"]
    c.print(f"plan {doc['plan']}: {doc['model']} on {doc['hardware']} / {doc['cluster']} "
            f"({doc['nodes_used']} of {doc['cluster_nodes']} nodes, {doc['chips']} chips, {doc['dies']} dies); "
            f"workload mean {pred['input_len']:.0f} in / {pred['output_len']:.0f} out tokens"
            + (f" at {pred['rate_rps']:.2f} req/s" if pred.get("rate_rps") else ""))
    t = Table(title="pools")
    for col in ("", *[p["role"] for p in doc["pools"]]):
        t.add_column(col, justify="right" if col else "left")

    def row(label, fn):
        t.add_row(label, *[fn(p) for p in doc["pools"]])

    row("instances x chips", lambda p: f"{len(p['instances'])} x {p['chips'] // len(p['instances'])}")
    row("chips / dies / nodes", lambda p: f"{p['chips']} / {p['dies']} / {p['nodes']}")
    row("on nodes", pool_nodes)
    row("layout", lambda p: "DP{dp} TP{tp} EP{ep}".format(**p["instances"][0]["layout"])
        + (" MA {attention_dies}+{moe} dies x{ma_domains} domains".format(
            moe=p["instances"][0]["layout"]["ep"], **p["instances"][0]["layout"])
           if p["instances"][0]["layout"]["attention_dies"] else ""))
    row("HBM used / free per die (GB)", lambda p: f"{p['hbm_gb_per_die']['total']:.1f} / {p['hbm_gb_per_die']['free']:.1f}")
    row("  weights (attn+dense+embed / experts)", lambda p: "{:.1f} / {:.1f}".format(
        p["hbm_gb_per_die"]["weights_attention"] + p["hbm_gb_per_die"]["weights_dense_ffn"]
        + p["hbm_gb_per_die"]["weights_embedding_lm_head"], p["hbm_gb_per_die"]["weights_experts"]))
    row("  KV / comm buffers / reserve", lambda p: "{kv_cache:.1f} / {comm_buffers:.1f} / {reserve:.1f}".format(**p["hbm_gb_per_die"]))
    row("MoE die HBM used / free (GB)", lambda p: f"{p['hbm_gb_per_moe_die']['total']:.1f} / {p['hbm_gb_per_moe_die']['free']:.1f}"
        if "hbm_gb_per_moe_die" in p else "-")
    row("KV capacity per rank (tokens)", lambda p: f"{p['kv_tokens_per_rank']:,}")
    row("max concurrent requests", lambda p: f"{p['max_concurrent']:,}" if p["role"] == "decode"
        else f"{p['prompts_per_full_batch']:,} prompts / batch")
    row("batch cap", lambda p: f"{p['batch_cap_per_rank']} / rank" if p["role"] == "decode"
        else f"{p['token_budget_per_die']} tokens / die")
    row("expert slots per rank (+shared dies)", lambda p: f"{p['expert_map']['slots_per_rank']} (+{p['expert_map']['shared_dies']})"
        if p["expert_map"] else "-")
    row("redundant experts (rule)", lambda p: "{} ({})".format(
        p["expert_map"].get("redundant_experts", "-"), p["expert_map"].get("redundant_rule", "-"))
        if p["expert_map"] else "-")
    row("replicas min / max, balancedness", lambda p: "{}/{}, {:.3f}".format(
        p["expert_map"]["replicas"]["min"], p["expert_map"]["replicas"]["max"], p["expert_map"]["balancedness"])
        if p["expert_map"] else "-")

    def perf(p):
        if p["role"] == "decode":
            d = pred["decode"]
            return (f"TPOT {fmt_interval(d['tpot_ms'], d.get('tpot_ms_interval'), 1)} ms, "
                    f"{fmt_interval(d['output_throughput_per_chip'], d.get('output_throughput_per_chip_interval'), 0)}"
                    " tok/s/chip (90 % bands)")
        q = pred["prefill"]
        ttft = "overloaded" if q.get("ttft_ms") is None else f"{fmt_interval(q['ttft_ms'], q.get('ttft_ms_interval'), 0)} ms"
        return (f"TTFT {ttft} at the workload's rate (a full token-budget batch would take "
                f"{q['ttft_full_batch_ms']:.0f} ms), "
                f"{fmt_interval(q['input_throughput_per_chip'], q.get('input_throughput_per_chip_interval'), 0)}"
                " tok/s/chip at full batch (90 % bands)")
    row("predicted", perf)
    c.print(t)
    s = pred["slo"]
    parts = [f"TPOT target {s['tpot_ms']:g} ms (margin {s['tpot_margin']:+.1%})"]
    if "ttft_ms" in s:
        parts.append(f"TTFT target {s['ttft_ms']:g} ms" + (f" (margin {s['ttft_margin']:+.1%})"
                                                         if s.get("ttft_margin") is not None else " (overloaded)"))
    else:
        parts.append("TTFT not predicted (prefill outside the plan)")
    c.print(("SLO: MET — " if pred["meets_slo"] else "SLO: NOT MET — ") + "; ".join(parts))


def _render_search(doc: dict[str, Any]) -> None:

    c = console()
    c.print(f"searched {doc['candidates']:,} layouts in {doc['seconds']:.2f} s "
            f"({doc['candidates_per_s']:,.0f}/s); {doc['feasible']:,} fit HBM")
    t = Table(title=f"Pareto front (decode, TPOT <= {doc['slo']['tpot_ms']:g} ms marked *)")
    for col in ("", "chips", "layout", "redundant", "batch/rank", "MTP", "TPOT ms", "tok/s/chip"):
        t.add_column(col, justify="right")
    for p in doc["pareto"]:
        t.add_row("*" if p["meets_tpot"] else "", str(p["chips"]), p["label"], str(p.get("redundant_experts", "-")),
                  f"{p['batch_per_rank']:g}", str(p["mtp"]), f"{p['tpot_ms']:.1f}",
                  f"{p['output_throughput_per_chip']:,.0f}")
    c.print(t)
    b = doc.get("best")
    if b is None:
        c.print("no layout meets the SLO")
        return
    c.print(f"best decode layout meeting the SLO: {b['label']}, {b.get('redundant_experts', 0)} redundant experts, "
            f"batch {b['batch_per_rank']:g}/DP rank, MTP {b['mtp']}: "
            f"TPOT {b['tpot_ms']:.1f} ms, {b['output_throughput_per_chip']:,.0f} tok/s/chip")
    if doc.get("prefill"):
        p = doc["prefill"]
        c.print(f"prefill: {p['instances']} x {p['chips']} chips ({p['label']}), TTFT {p['ttft_ms']:.0f} ms, "
                f"{p['input_throughput_per_chip']:,.0f} tok/s/chip")
        if p.get("prefill_capped_by_nodes"):
            c.print(f"note: the nodes the decode instance leaves free hold only {p['instances']} prefill "
                    f"instances; they feed {p['system_request_rate_rps']:g} req/s, so the decode pool runs at "
                    f"~{p['decode_fill_fraction']:.0%} of its priced batch (more nodes: a larger --cluster; "
                    "several pods: xds size)")
    if doc.get("plan_file"):
        c.print(f"wrote {doc['plan_file']}")


def register(app: typer.Typer) -> None:
    @app.command(
        "plan",
        help="Place a plan's instances on concrete dies, its expert slots on EP ranks, check HBM and predict "
        "TPOT/TTFT and tokens/s/chip against the SLO (exit 1 if the prediction misses it). With --search, "
        "enumerate layouts, print the Pareto front and write the best as a plan (--out).\n\n"
        "Example: xds plan plans/cloudmatrix-infer-pd.yaml --json\n\n"
        "Example: xds plan --search --model deepseek-r1 --hardware ascend-910c --tpot-ms 50 "
        "--input-len 4096 --output-len 256 --out best.yaml",
    )
    def plan_cmd(
        ctx: typer.Context,
        plan: Optional[str] = typer.Argument(None, help="Plan YAML (with --search: optional, supplies model, hardware, cluster, SLO, lengths)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
        out: Optional[str] = typer.Option(None, "--out", help="Write the JSON document (with --search: the best plan as YAML)."),
        search: bool = typer.Option(False, "--search", help="Search layouts instead of placing one plan."),
        model: Optional[str] = typer.Option(None, "--model", help="--search: model name or HF config.json."),
        hardware: Optional[str] = typer.Option(None, "--hardware", help="--search: hardware name or file."),
        cluster: Optional[str] = typer.Option(None, "--cluster", help="--search: cluster (default by hardware)."),
        input_len: Optional[int] = typer.Option(None, "--input-len", help="--search: mean prompt tokens (default 4096)."),
        output_len: Optional[int] = typer.Option(None, "--output-len", help="--search: mean output tokens (default 256)."),
        trace: Optional[str] = typer.Option(None, "--trace", help="--search: take the mean lengths from a trace file."),
        tpot_ms: Optional[float] = typer.Option(None, "--tpot-ms", help="--search: TPOT target in ms (default 50)."),
        ttft_ms: Optional[float] = typer.Option(None, "--ttft-ms", help="--search: TTFT target in ms (default 2000)."),
        report: Optional[str] = report_opt.REPORT,
    ) -> None:
        report_opt.check_report_path(report)

        if search:
            if report:
                raise XdsError("--report describes one plan; with --search, write the best plan with "
                               "--out and run xds plan BEST.yaml --report", file="--report")
            doc = plan_command(plan, search=True, model=model, hardware=hardware, cluster=cluster,
                               input_len=input_len, output_len=output_len, trace=trace, tpot_ms=tpot_ms,
                               ttft_ms=ttft_ms, out=out)
            if json_out:
                emit_json(doc)
            else:
                _render_search(doc)
            raise typer.Exit(0 if doc.get("best") is not None else 1)
        for flag, v in (("--model", model), ("--hardware", hardware), ("--cluster", cluster),
                        ("--input-len", input_len), ("--output-len", output_len), ("--trace", trace),
                        ("--tpot-ms", tpot_ms), ("--ttft-ms", ttft_ms)):
            if v is not None:

                raise XdsError(f"{flag} applies to --search; a plan file carries its own", file=flag)
        doc = plan_command(plan)
        if report:
            rows, files = report_opt.inputs(ctx, files={"plan": plan})
            report_opt.write(report, plan_page(doc, rows, files))
        if json_out:
            emit_json(doc, out)
        else:
            write_out(doc, out)
            _render_plan(doc)
        raise typer.Exit(0 if doc["predicted"]["meets_slo"] else 1)
