"""``xds experts``: expert-parallel load balancing (redundant experts + slot placement on ranks)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..experts import run_experts
from .output import console, emit_json, write_out


def register(app: typer.Typer) -> None:
    @app.command(
        "experts",
        help="Choose redundant experts and place expert slots on EP ranks from a per-layer load matrix; "
        "report balancedness (max / mean rank load) next to DeepSeek EPLB's.\n\n"
        "Example: xds experts --loads synthetic:58x256:30 --slots 288 --ranks 32 --nodes 4 --groups 8",
    )
    def experts_cmd(
        loads: str = typer.Option(..., "--loads", help="Token counts [layers, experts] (or [experts]), .npy or .csv; or synthetic:LAYERSxEXPERTS[:HOT_RATIO[:SEED]] for realistic skewed loads (e.g. synthetic:58x256:30)."),
        slots: Optional[int] = typer.Option(None, "--slots", help="Physical expert slots in total (>= experts, multiple of --ranks); required unless --layout."),
        ranks: int = typer.Option(..., "--ranks", help="EP ranks (dies); slot p lives on rank p // (slots/ranks)."),
        nodes: int = typer.Option(1, "--nodes", help="Nodes the ranks span (must divide --ranks)."),
        groups: int = typer.Option(1, "--groups", help="Expert groups for group-limited routing (must divide experts)."),
        evaluate: Optional[str] = typer.Option(None, "--evaluate", help="Also score the layout on this load matrix (out-of-sample); synthetic:... with another seed works too."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Score a saved layout (JSON from --out, or .npy) instead of balancing."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
        out: Optional[str] = typer.Option(None, "--out", help="Write the JSON document to this file (atomically)."),
        timing: bool = typer.Option(False, "--timing", help="Include the wall time `seconds` (non-deterministic) in the JSON and the table."),
    ) -> None:

        doc = run_experts(loads, slots, ranks, nodes=nodes, groups=groups, evaluate=evaluate, layout=layout,
                          timing=timing)
        if json_out:
            emit_json(doc, out)
            return
        write_out(doc, out)

        b = doc["balancedness"]
        t = Table(title=f"expert layout ({doc['policy']} policy)", show_header=False)
        t.add_column("quantity")
        t.add_column("value", justify="right")
        t.add_row("layers x experts", f"{doc['layers']} x {doc['experts']}")
        t.add_row("slots / ranks (slots per rank)", f"{doc['slots']} / {doc['ranks']} ({doc['slots_per_rank']})")
        t.add_row("nodes / groups", f"{doc['nodes']} / {doc['groups']}")
        t.add_row("balancedness mean / worst", f"{b['mean']:.4f} / {b['worst']:.4f}")
        if "eplb_balancedness" in doc:
            e = doc["eplb_balancedness"]
            t.add_row("DeepSeek EPLB mean / worst", f"{e['mean']:.4f} / {e['worst']:.4f}")
        if "balancedness_out_of_sample" in doc:
            o = doc["balancedness_out_of_sample"]
            t.add_row("out-of-sample mean / worst", f"{o['mean']:.4f} / {o['worst']:.4f}")
        if "seconds" in doc:
            t.add_row("time", f"{doc['seconds'] * 1e3:.1f} ms")
        console().print(t)
