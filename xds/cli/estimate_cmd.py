"""``xds estimate``: steady-state step time and throughput of one pool (DESIGN.md §3.3)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..cost.bands import fmt_interval
from ..cost.estimate import EstimateArgs, estimate
from .output import console, emit_json


def render(doc: dict) -> None:
    """Rich view: headline numbers, then the per-operator breakdown with each operator's bound."""

    c = console()
    lay = doc["layout"]
    head = (f"{doc['model']} {doc['phase']} on {doc['chips']} × {doc['hardware']} ({doc['dies']} dies), "
            f"EP{lay['ep']} DP{lay['dp']} TP{lay['tp']}, {lay['quant']}, MTP {lay['mtp']}, "
            f"EPLB {lay['eplb']} (balancedness {lay['balancedness']:.3f})")
    c.print(head)
    if "redundant_experts" in lay and doc.get("model"):
        c.print(f"redundant experts {lay['redundant_experts']} ({lay['redundant_rule']}); expert skew: hottest "
                f"{lay['hot_ratio']:g}x mean, concentration {lay['concentration']:g}")
    t = Table(show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("step time", f"{doc['step_time_ms']:.2f} ms")
    t.add_row("roofline step (ceiling)", f"{doc['roofline_step_ms']:.2f} ms")
    if doc["phase"] == "decode":
        t.add_row("tokens per step (MTP)", f"{doc['tokens_per_step']:.3f}")
        t.add_row("TPOT (90 % band)", fmt_interval(doc["tpot_ms"], doc.get("tpot_ms_interval"), 1) + " ms")
        t.add_row("output tokens/s per chip (90 % band)", fmt_interval(
            doc["output_throughput_per_chip"], doc.get("output_throughput_per_chip_interval"), 0))
        t.add_row("MoE layer time", f"{doc['moe_layer_us']:.0f} µs")
    else:
        t.add_row("TTFT (one batch, 90 % band)", fmt_interval(doc["ttft_ms"], doc.get("ttft_ms_interval"), 1) + " ms")
        t.add_row("input tokens/s per chip (90 % band)", fmt_interval(
            doc["input_throughput_per_chip"], doc.get("input_throughput_per_chip_interval"), 0))
    fits = "[green]fits[/green]" if doc["fits"] else f"[red]does not fit (short {doc['hbm_shortfall_gb']:.1f} GB)[/red]"
    t.add_row("HBM per die", f"{doc['hbm_used_gb_per_die']:.1f} / {doc['hbm_breakdown_gb']['capacity']:.0f} GB, {fits}")
    t.add_row("max batch per die (HBM)", str(doc["max_batch_per_die"]))
    c.print(t)
    b = Table(title="breakdown of one step")
    b.add_column("operator")
    b.add_column("ms", justify="right")
    b.add_column("share", justify="right")
    b.add_column("bound")
    total = doc["step_time_ms"] or 1.0
    for k, v in doc["breakdown_ms"].items():
        b.add_row(k, f"{v:.3f}", f"{100 * v / total:.1f} %", doc["bound"].get(k, ""))
    c.print(b)


def register(app: typer.Typer) -> None:
    @app.command(
        "estimate",
        help="Steady-state step time, TPOT/TTFT and throughput per chip of one pool, with the per-operator "
        "breakdown, HBM use and the roofline ceiling.\n\n"
        "Example: xds estimate --model deepseek-r1 --hardware ascend-910c --phase decode --chips 160 "
        "--batch-per-chip 96 --mtp 1 --shared-expert-dies 32 --redundant-experts 32",
    )
    def estimate_cmd(
        model: str = typer.Option("deepseek-r1", "--model", help="Built-in model or HF config.json path."),
        hardware: str = typer.Option("ascend-910c", "--hardware", help="Built-in hardware or YAML path."),
        cluster: Optional[str] = typer.Option(None, "--cluster", help="Default: cloudmatrix384 (Ascend), h800-ib (NVIDIA)."),
        phase: str = typer.Option("decode", "--phase", help="decode or prefill."),
        chips: Optional[int] = typer.Option(None, "--chips", help="Chips in the instance."),
        ep: Optional[int] = typer.Option(None, "--ep", help="EP ranks (= dies); default all dies."),
        dp: Optional[int] = typer.Option(None, "--dp", help="Attention DP ranks; default dies / TP."),
        tp: int = typer.Option(1, "--tp", help="Attention tensor parallelism."),
        batch_per_die: Optional[float] = typer.Option(None, "--batch-per-die", help="Decode requests in flight per die."),
        batch_per_chip: Optional[float] = typer.Option(None, "--batch-per-chip", help="Decode requests in flight per chip."),
        tokens_per_chip: Optional[float] = typer.Option(None, "--tokens-per-chip", help="Prefill token batch per chip (default 16384)."),
        input_len: int = typer.Option(4096, "--input-len", help="Prompt tokens."),
        output_len: int = typer.Option(256, "--output-len", help="Output tokens (decode context spreads over [I, I+O])."),
        mtp: int = typer.Option(0, "--mtp", help="MTP draft tokens per step."),
        mtp_acceptance: float = typer.Option(0.7, "--mtp-acceptance", help="Acceptance probability per draft token."),
        microbatches: int = typer.Option(2, "--microbatches", help="Overlapped microbatches."),
        eplb: str = typer.Option("default", "--eplb", help="perfect, default or none."),
        quant: Optional[str] = typer.Option(None, "--quant", help="w8a8, fp8 or bf16 (default: hardware's)."),
        kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV-cache dtype: bf16, int8, fp8."),
        shared_expert_dies: int = typer.Option(0, "--shared-expert-dies", help="EP dies holding only shared-expert copies."),
        redundant_experts: Optional[int] = typer.Option(None, "--redundant-experts", help="Redundant routed slots (default: the rule, >= E/8 filling every routed rank; 0 means none)."),
        hot_ratio: Optional[float] = typer.Option(None, "--hot-ratio", help="Most skewed layer's hottest / mean expert share (default 6; xds calibrate --expert-counts fits it)."),
        concentration: Optional[float] = typer.Option(None, "--concentration", help="Per-sequence expert concentration kappa (default 22; fitted from per-step counts)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:

        doc = estimate(EstimateArgs(
            model=model, hardware=hardware, cluster=cluster, phase=phase, chips=chips, ep=ep, dp=dp,
            tp=tp, batch_per_die=batch_per_die, batch_per_chip=batch_per_chip,
            tokens_per_chip=tokens_per_chip, input_len=input_len, output_len=output_len, mtp=mtp,
            mtp_acceptance=mtp_acceptance, microbatches=microbatches, eplb=eplb, quant=quant,
            kv_dtype=kv_dtype, shared_expert_dies=shared_expert_dies,
            redundant_experts=redundant_experts, hot_ratio=hot_ratio, concentration=concentration))
        if json_out:
            emit_json(doc)
        else:
            render(doc)
