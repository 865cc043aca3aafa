"""``xds model``: parameter, KV-cache and FLOP accounting of a model config."""

from __future__ import annotations

import typer
from rich.table import Table

from ..spec.model import model_summary
from .output import console, emit_json


def _fmt_params(n: int) -> str:
    return f"{n:,} ({n / 1e9:.2f} B)"


def register(app: typer.Typer) -> None:
    @app.command(
        "model",
        help="Parameters, activated parameters, KV-cache bytes and decode FLOPs of a model.\n\n"
        "MODEL is a built-in name (deepseek-v3, deepseek-r1, kimi-k2, qwen3-235b-a22b, qwen3-30b-a3b, "
        "glm-4.5, minimax-m2, llama-3.1-70b, qwen2.5-72b) or a path to a Hugging Face config.json.\n\n"
        "Example: xds model deepseek-r1 --kv-dtype int8 --context 4096",
    )
    def model_cmd(
        model: str = typer.Argument(..., help="Built-in model name or path to a HF config.json."),
        kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV-cache dtype: bf16, int8 or fp8."),
        context: int = typer.Option(4096, "--context", help="Context length (tokens) for decode FLOPs."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:

        doc = model_summary(model, kv_dtype=kv_dtype, context=context)
        if json_out:
            emit_json(doc)
            return

        t = Table(title=f"{doc['model']} ({doc['family']}, {doc['attention'].upper()})", show_header=False)
        t.add_column("quantity")
        t.add_column("value", justify="right")
        t.add_row("total parameters (MTP excluded)", _fmt_params(doc["total_params"]))
        t.add_row("activated per token (embedding + LM head incl.)", _fmt_params(doc["active_params"]))
        t.add_row("routed-expert (MoE) parameters", _fmt_params(doc["moe_params"]))
        t.add_row("dense (non-expert) parameters", _fmt_params(doc["dense_params"]))
        t.add_row("parameters per routed expert", f"{doc['params_per_expert']:,}")
        t.add_row("MTP parameters", _fmt_params(doc["mtp_params"]))
        t.add_row("layers (dense + MoE)", f"{doc['layers']} ({doc['dense_layers']} + {doc['moe_layers']})")
        t.add_row("routed experts / per token", f"{doc['routed_experts']} / {doc['experts_per_token']}")
        t.add_row(f"KV cache per token ({doc['kv_dtype']})", f"{doc['kv_bytes_per_token']:,} B")
        t.add_row(f"decode FLOPs per token @ {doc['context']:,} ctx",
                  f"{doc['decode_flops_per_token'] / 1e9:.2f} GFLOP")
        t.add_row("max context", f"{doc['max_context']:,}")
        console().print(t)
