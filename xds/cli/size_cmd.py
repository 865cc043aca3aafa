"""``xds size``: how many chips, nodes and pods a load needs (thin layer over :func:`xds.size.size`)."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from ..size import size
from .options import ARRIVAL, CV, INPUT_LEN, JSON, OUTPUT_LEN, RATE_SCALE, RAY, SEED, TRACE, WORKERS
from .output import console, emit_json, err_console


def _render(doc: dict[str, Any]) -> None:
    c = console()
    if doc.get("analytic") is None or "per_pod" not in doc:
        c.print(f"NOT SIZED: {doc.get('reason', 'no deployment meets the SLO')}")
        for r in doc.get("candidates", []):
            c.print(f"  {r['prefill']}P+{r['decode']}D: {'ok' if r['passed'] else 'miss'} "
                    f"{r.get('error', '')}")
        return
    pp, lay = doc["per_pod"], doc["layouts"]
    c.print(f"{doc['model']} on {doc['hardware']} / {doc['cluster']}: {doc['rate_rps']:.1f} req/s, "
            f"SLO p{doc['slo']['percentile']:g} TTFT {doc['slo']['ttft_ms']:g} ms / TPOT "
            f"{doc['slo']['tpot_ms']:g} ms in {doc['slo']['attainment']:.0%} of {doc['slo']['window_s']:g} s windows, "
            f"survive {doc['survive']}")
    c.print(f"answer: {doc['chips']:,} chips ({doc['dies']:,} dies, {doc['nodes']:,} nodes) in {doc['pods']} pod(s); "
            f"per pod {pp['prefill_instances']} prefill x {lay['prefill']['chips']} chips ({lay['prefill']['label']}) "
            f"+ {pp['decode_instances']} decode x {lay['decode']['chips']} chips ({lay['decode']['label']}, "
            f"batch {lay['decode']['batch_per_rank']:g}/rank, MTP {lay['decode']['mtp']})")
    s, p = doc["simulated"], doc["predicted"]
    c.print(f"predicted: TPOT {p['tpot_ms']:.1f} ms at the batch cap, {p['output_throughput_per_chip']:,.0f} tok/s/chip "
            f"(decode); simulated: p99 TTFT {s['p99_ttft_ms']:.0f} ms, p99 TPOT {s['p99_tpot_ms']:.1f} ms, "
            f"attainment {s['slo_attainment']:.3f}, {s['output_throughput_fleet']:,.0f} output tok/s")
    c.print(f"simulation: {doc['simulation_scope']}; analytic first guess "
            f"{doc['analytic']['prefill']}P+{doc['analytic']['decode']}D per pod")
    pc = doc.get("pod_count") or {}
    if pc.get("at_pods"):
        fewer = ", ".join(f"{r['prefill']}P+{r['decode']}D {'ok' if r['passed'] else 'miss'}"
                          for r in pc["at_pods_minus_one"])
        c.print(f"pod count: a full pod ({pc['full_pod']['prefill']}P+{pc['full_pod']['decode']}D) meets the SLO "
                f"at 1/{pc['at_pods']['pods']} of the rate; at 1/{pc['at_pods']['pods'] - 1}: {fewer}"
                f" ({'minimal' if pc['minimal'] else 'NOT shown minimal'})")
    h = doc["headroom"]
    if h["survive"] != "none":
        extra = h.get("added") or {"pods": h.get("added_pods")}
        wf = h.get("worst_fault") or {}
        c.print(f"headroom ({h['survive']}): {'MET' if h['passed'] else 'NOT MET'}; added {extra}"
                + (f"; worst fault {wf.get('fault')} {wf.get('target')} ({wf.get('pool')}): attainment "
                   f"{wf.get('attainment_after_recovery', wf.get('slo_attainment'))} after recovery, "
                   f"{wf.get('transient_windows_violated')} window(s) lost to the transient" if wf else ""))
    if doc.get("cost"):
        k = doc["cost"]
        c.print(f"cost: ${k['usd_per_hour']:,.0f}/h, ${k['usd_per_million_output_tokens']:.3f} per M output tokens; "
                f"headroom ${k['headroom_usd_per_hour']:,.0f}/h ({k['headroom_share']:.1%})")
    t = Table(title="deployments simulated (per pod)")
    for col in ("pods", "prefill", "decode", "chips", "attainment", "p99 TTFT ms", "p99 TPOT ms", "verdict"):
        t.add_column(col, justify="right")
    for r in doc["candidates_table"]:
        t.add_row(str(r.get("pods", "-")), str(r["prefill"]), str(r["decode"]), str(r.get("chips", "-")), str(r.get("slo_attainment", "-")),
                  f"{r['p99_ttft_ms']:.0f}" if r.get("p99_ttft_ms") is not None else "-",
                  f"{r['p99_tpot_ms']:.1f}" if r.get("p99_tpot_ms") is not None else "-",
                  "ok" if r["passed"] else r.get("error", "miss"))
    c.print(t)
    if doc.get("plan_file"):
        c.print(f"wrote {doc['plan_file']}")


def register(app: typer.Typer) -> None:
    @app.command(
        "size",
        help="How many chips, nodes and pods for this load, SLO and fault class: price layouts, size the "
        "prefill/decode pools to each other, then verify by simulation (bisecting the instance counts) and "
        "replay the worst single fault of --survive. Exit 1 when nothing meets the SLO.\n\n"
        "Example: xds size --model deepseek-r1 --trace fixtures/traces/azure_llm_2023_conv.csv "
        "--rate-scale 20 --tpot-ms 50 --ttft-ms 2000 --survive node --out sized.yaml",
    )
    def size_cmd(
        model: str = typer.Option(..., "--model", help="Model name or HF config.json."),
        hardware: Optional[str] = typer.Option(None, "--hardware", help="Hardware name or file (default ascend-910c)."),
        cluster: Optional[str] = typer.Option(None, "--cluster", help="Pod type: cluster name or file (default by hardware)."),
        trace: Optional[str] = TRACE,
        rate: Optional[float] = typer.Option(None, "--rate", help="Target rate (req/s): rescales a trace to it, or the synthetic rate."),
        rate_scale: Optional[float] = RATE_SCALE,
        input_len: Optional[int] = INPUT_LEN,
        output_len: Optional[int] = OUTPUT_LEN,
        arrival: Optional[str] = ARRIVAL,
        cv: Optional[float] = CV,
        duration: Optional[float] = typer.Option(None, "--duration", help="Simulated seconds per verification run (default 60)."),
        tpot_ms: float = typer.Option(50.0, "--tpot-ms", help="TPOT target (ms)."),
        ttft_ms: float = typer.Option(2000.0, "--ttft-ms", help="TTFT target (ms)."),
        percentile: float = typer.Option(99.0, "--percentile", help="SLO percentile within a window."),
        window_s: float = typer.Option(10.0, "--window-s", help="SLO window (s)."),
        attainment: float = typer.Option(0.99, "--attainment", help="Fraction of windows that must meet the SLO."),
        survive: str = typer.Option("none", "--survive", help="Headroom for one failure: none, die, node or pod."),
        policy: str = typer.Option("fine-grained", "--policy", help="Recovery policy: restart, pd-failover, fine-grained."),
        chip_hour_cost: Optional[float] = typer.Option(None, "--chip-hour-cost", help="USD per chip-hour: adds cost per million output tokens."),
        out: Optional[str] = typer.Option(None, "--out", help="Write one pod's plan (YAML) that xds simulate reproduces."),
        json_out: bool = JSON,
        workers: Optional[int] = WORKERS,
        ray: Optional[str] = RAY,
        seed: int = SEED,
        timing: bool = typer.Option(False, "--timing", help="Add wall-clock seconds to the output."),
    ) -> None:
        prog = None if json_out else (lambda m: err_console().print(f"[dim]{m}[/dim]"))
        doc = size(model=model, hardware=hardware, cluster=cluster, tpot_ms=tpot_ms, ttft_ms=ttft_ms,
                   percentile=percentile, window_s=window_s, attainment=attainment, survive=survive,
                   policy=policy, chip_hour_cost=chip_hour_cost, out=out, workers=workers, ray=ray, seed=seed,
                   progress=prog, timing=timing, trace=trace, rate=rate, rate_scale=rate_scale, input_len=input_len,
                   output_len=output_len, duration=duration, arrival=arrival, cv=cv)
        if json_out:
            emit_json(doc)
        else:
            _render(doc)
        raise typer.Exit(0 if doc["passed"] else 1)
