"""Write the layout ``xds plan --search`` found as a plan YAML that ``xds plan`` accepts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..cost import Layout
from ..spec.fileio import write_text_atomic
from ..spec.model import load_model
from .balance import LengthStats

SIM_DURATION_S = 120.0   # simulated seconds of the written plan's workload


def _whole(x: float) -> float | int:
    """A count written as an int when it is whole (``104``, not ``104.0``)."""
    return int(x) if float(x).is_integer() else float(x)


def _ref(name: str, out: str) -> str:
    """A built-in name stays a name; a path is written relative to the plan's folder (plans resolve
    relative paths from their own folder first)."""
    if "/" not in name and not name.endswith((".yaml", ".yml", ".json")):
        return name
    return os.path.relpath(Path(name).resolve(), Path(out).resolve().parent)


def workload_block(lengths: LengthStats, rate_rps: float, trace: str | None, out: str) -> dict[str, Any]:
    """The plan's workload at ``rate_rps`` (req/s): the trace itself (rescaled to that rate, or given
    it as the rate of a length-only trace) when there is one, else fixed mean lengths (tokens)."""
    rate = round(max(rate_rps, 1e-3), 3)
    if trace is None:
        return {"rate_rps": rate, "arrival": "poisson",
                "input": {"dist": "fixed", "value": int(round(lengths.input_mean))},
                "output": {"dist": "fixed", "value": int(round(lengths.output_mean))},
                "duration_s": SIM_DURATION_S}
    block: dict[str, Any] = {"trace": _ref(trace, out)}
    if lengths.rate_rps:
        block["rate_scale"] = round(rate / lengths.rate_rps, 6)
    else:
        block["rate_rps"] = rate
    block["duration_s"] = SIM_DURATION_S
    return block


def decode_pool(best: dict, model: str, instances: int = 1) -> dict[str, Any]:
    """The decode pool of a priced search row (``layout``, ``chips``, ``batch_per_rank``)."""
    lay: Layout = best["layout"]
    dec: dict[str, Any] = {"role": "decode", "instances": instances, "chips": best["chips"],
                           "layout": {"dp": lay.dp, "tp": lay.tp, "ep": lay.ep}, "microbatches": lay.microbatches,
                           "batch_per_rank": _whole(best["batch_per_rank"])}
    if lay.mtp:
        dec["mtp"] = {"draft_tokens": lay.mtp, "acceptance": lay.mtp_acceptance}
    n_exp = load_model(model).n_routed_experts
    dec["experts"] = {"redundant": max(lay.routed_slots - n_exp, 0), "shared_dies": lay.shared_dies}
    if lay.attention_dies:
        dec["ma"] = {"attention_dies": lay.attention_dies, "domains": lay.ma_domains, "moe_dies": lay.ep}
    return dec


def prefill_pool(p: dict, model: str, instances: int) -> dict[str, Any]:
    """The prefill pool of a search prefill candidate (``chips``, ``dies``, ``tp``, ``slots``,
    ``token_budget_per_die``)."""
    n_exp = load_model(model).n_routed_experts
    return {"role": "prefill", "instances": instances, "chips": p["chips"],
            "layout": {"dp": p["dies"] // p["tp"], "tp": p["tp"], "ep": p["dies"]},
            "microbatches": 2, "token_budget_per_die": p["token_budget_per_die"],
            "experts": {"redundant": max(p["slots"] - n_exp, 0)}}


def write_plan(out: str, doc: dict, best: dict, model: str, hardware: str, cluster: str,
               lengths: LengthStats, hot: float | None, trace: str | None = None) -> str:
    """Write the best decode layout (and the balanced prefill pool of ``doc``, if any) to ``out``
    atomically; the workload (the trace, or fixed mean lengths) runs at the rate the pair serves
    with the decode pool at its target fill (:mod:`.balance`). ``model`` is the name or path the user
    gave. Returns ``out``."""
    pools = [decode_pool(best, model)]
    p = doc.get("prefill")
    if p:
        pools.append(prefill_pool(p, model, p["instances"]))
    rate = (p or {}).get("system_request_rate_rps", 1.0)
    plan = {"name": Path(out).stem, "description": f"found by xds plan --search ({doc['candidates']} candidates)",
            "source": "xds plan --search", "model": _ref(model, out), "hardware": _ref(hardware, out),
            "cluster": _ref(cluster, out),
            "pools": pools, "balancing": {"loads": "synthetic", **({"hot_ratio": hot} if hot else {})},
            "slo": {"tpot_ms": doc["slo"]["tpot_ms"], "ttft_ms": doc["slo"]["ttft_ms"]},
            "workload": workload_block(lengths, rate, trace, out),
            "recovery": {"policy": "fine-grained"}}
    text = ("# Written by `xds plan --search`: best decode layout meeting the SLO, with a prefill pool\n"
            "# sized to feed it (xds/plan/balance.py); the workload runs at the rate that fills the\n"
            "# decode pool to its target batch.\n"
            + yaml.safe_dump(plan, sort_keys=False))
    write_text_atomic(out, text)
    return str(out)
