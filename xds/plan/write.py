"""Write the layout ``xds plan --search`` found as a plan YAML that ``xds plan`` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..cost import Layout
from ..spec.fileio import write_text_atomic
from ..spec.model import load_model


def _whole(x: float) -> float | int:
    """A count written as an int when it is whole (``104``, not ``104.0``)."""
    return int(x) if float(x).is_integer() else float(x)


def write_plan(out: str, doc: dict, best: dict, model: str, hardware: str, cluster: str, I: float, O: float,
               hot: float | None) -> str:
    """Write the best decode layout (and the prefill pool of ``doc``, if any) to ``out`` atomically;
    the workload is fixed I input / O output tokens at half the request rate (req/s) the pair serves.
    Returns ``out``."""
    lay: Layout = best["layout"]
    E_slots = lay.routed_slots
    dec: dict[str, Any] = {"role": "decode", "instances": 1, "chips": best["chips"],
                           "layout": {"dp": lay.dp, "tp": lay.tp, "ep": lay.ep}, "microbatches": lay.microbatches,
                           "batch_per_rank": _whole(best["batch_per_rank"])}
    if lay.mtp:
        dec["mtp"] = {"draft_tokens": lay.mtp, "acceptance": lay.mtp_acceptance}
    n_exp = load_model(model).n_routed_experts
    dec["experts"] = {"redundant": max(E_slots - n_exp, 0), "shared_dies": lay.shared_dies}
    if lay.attention_dies:
        dec["ma"] = {"attention_dies": lay.attention_dies, "domains": lay.ma_domains, "moe_dies": lay.ep}
    pools = [dec]
    p = doc.get("prefill")
    if p:
        pools.append({"role": "prefill", "instances": p["instances"], "chips": p["chips"],
                      "layout": {"dp": p["dies"] // p["tp"], "tp": p["tp"], "ep": p["dies"]},
                      "microbatches": 2, "token_budget_per_die": p["token_budget_per_die"],
                      "experts": {"redundant": max(p["slots"] - n_exp, 0)}})
    plan = {"name": Path(out).stem, "description": f"found by xds plan --search ({doc['candidates']} candidates)",
            "source": "xds plan --search", "model": model, "hardware": hardware, "cluster": cluster,
            "pools": pools, "balancing": {"loads": "synthetic", **({"hot_ratio": hot} if hot else {})},
            "slo": {"tpot_ms": doc["slo"]["tpot_ms"], "ttft_ms": doc["slo"]["ttft_ms"]},
            "workload": {"rate_rps": round(max(0.5 * (p or {}).get("system_request_rate_rps", 1.0), 0.1), 3),
                         "arrival": "poisson", "input": {"dist": "fixed", "value": int(round(I))},
                         "output": {"dist": "fixed", "value": int(round(O))}, "duration_s": 120},
            "recovery": {"policy": "fine-grained"}}
    text = ("# Written by `xds plan --search`: best decode layout meeting the SLO, with a prefill pool\n"
            "# sized to feed it; the workload runs at half the request rate the pair can serve.\n"
            + yaml.safe_dump(plan, sort_keys=False))
    write_text_atomic(out, text)
    return str(out)
