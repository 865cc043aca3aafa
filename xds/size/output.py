"""The ``xds size`` document and the plan file it writes (``--out``): one pod of the sized fleet,
with the workload at that pod's share of the rate, so ``xds simulate PLAN`` reproduces the
verification run.

Units: ms, req/s, tokens/s, USD.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..cost.bands import add_intervals
from ..spec.fileio import write_text_atomic
from .verify import Verifier, with_counts


def _minimal(ver: Verifier, n_p: int, n_d: int) -> dict[str, Any]:
    """Whether one instance fewer in each pool (same other pool) was simulated and missed the SLO."""
    out = {}
    for role, k in (("prefill", (n_p - 1, n_d)), ("decode", (n_p, n_d - 1))):
        r = ver.results.get(k)
        # True: one fewer missed the SLO (or is impossible: the pool has one instance)
        out[role] = True if k[0] < 1 or k[1] < 1 else (None if r is None else not r["passed"])
    return out


def _cost(usd: float | None, chips: int, base_chips: int, tok_s: float) -> dict[str, Any] | None:
    """Cost per hour and per million output tokens at ``chips`` (and what the headroom above
    ``base_chips`` costs)."""
    if usd is None:
        return None
    per_h = usd * chips
    per_m = per_h / (tok_s * 3600.0) * 1e6 if tok_s > 0 else None
    return {"chip_hour_usd": usd, "usd_per_hour": round(per_h, 2),
            "usd_per_million_output_tokens": round(per_m, 4) if per_m else None,
            "headroom_usd_per_hour": round(usd * (chips - base_chips), 2),
            "headroom_share": round((chips - base_chips) / chips, 4) if chips else 0.0}


def _predicted(hw: Any, dec: dict, pre: dict) -> dict[str, Any]:
    """The cost model's TPOT, throughput and full-batch TTFT of the sized layouts, each with its 90 %
    band (xds.cost.bands: leave-one-out residuals of xds validate for this hardware x phase x batch class)."""
    out = {"tpot_ms": round(dec["tpot_ms"], 2),
           "output_throughput_per_chip": round(dec["output_throughput_per_chip"], 1),
           "ttft_full_batch_ms": round(pre["ttft_full_batch_ms"], 1)}
    add_intervals(out, hw, "decode", float(dec["batch_per_rank"]), ("tpot_ms", "output_throughput_per_chip"))
    add_intervals(out, hw, "prefill", None, ("ttft_full_batch_ms",))
    if any(k.endswith("_interval") for k in out):
        out["interval_note"] = "90 % band of the cost model (xds validate leave-one-out residuals)"
    return out


def document(ctx: dict, lay: dict, analytic: dict, ver: Verifier, plan: dict, pods: int, n_p: int, n_d: int,
             head: dict | None, survive: str, usd: float | None, hw: Any) -> dict[str, Any]:
    """The ``xds size --json`` document for the sized (n_p, n_d) per pod over ``pods`` pods."""
    dec, pre = lay["decode"], lay["prefill"]
    topo = lay["topology"]
    inst = head["instances"] if head else {"prefill": n_p, "decode": n_d}
    pods_total = pods + (1 if survive == "pod" else 0)
    c_pod = inst["prefill"] * pre["chips"] + inst["decode"] * dec["chips"]
    c_base = (n_p * pre["chips"] + n_d * dec["chips"]) * pods
    chips = c_pod * pods_total
    sim = ver.results[(n_p, n_d)]
    nodes_pod = inst["prefill"] * pre["nodes"] + inst["decode"] * dec["layout"].dies // topo.dies_per_node
    tok_s = float(sim["output_throughput"]) * pods
    return {**ctx, "passed": bool(head["passed"]) if head else True,
            "pods": pods_total, "pods_serving": pods, "pod_nodes": topo.n_nodes,
            "chips": chips, "dies": chips * topo.dies_per_chip, "nodes": nodes_pod * pods_total,
            "per_pod": {"prefill_instances": inst["prefill"], "decode_instances": inst["decode"],
                        "chips": c_pod, "nodes": nodes_pod},
            "instances": {"prefill": inst["prefill"] * pods_total, "decode": inst["decode"] * pods_total},
            "layouts": {"decode": lay["decode_public"],
                        "prefill": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in pre.items()}},
            "analytic": analytic,
            "predicted": _predicted(hw, dec, pre),
            "sized_without_headroom": {"prefill": n_p, "decode": n_d},
            "simulated": {**sim, "output_throughput_fleet": round(tok_s, 1),
                          "output_throughput_per_chip": round(float(sim["output_throughput"]) / sim["chips"], 1)},
            "simulation_scope": (f"one pod simulated at 1/{pods} of the rate (the trace time-stretched to it); "
                                 f"fleet totals are that pod x {pods}" if pods > 1 else "the whole deployment simulated"),
            "minimal": _minimal(ver, n_p, n_d),
            "headroom": _headroom_doc(head, survive, pods),
            "cost": _cost(usd, chips, c_base, tok_s),
            "simulations": len(ver.results) + (len(head["replays"]) if head else 0)}


def _headroom_doc(head: dict | None, survive: str, pods: int) -> dict[str, Any]:
    if survive == "none":
        return {"survive": "none"}
    if survive == "pod":
        return {"survive": "pod", "passed": True, "added_pods": 1,
                "method": f"{pods} + 1 pods: each survivor carries 1/{pods} of the rate, as verified"}
    return {"survive": survive, "passed": head["passed"], "added": head["added"],
            "worst_fault": {k: head["worst"].get(k) for k in ("fault", "target", "pool", "method", "slo_attainment",
                                                           "attainment_after_recovery", "recovered_at_s",
                                                           "transient_windows_violated", "p99_ttft_ms", "p99_tpot_ms", "passed")},
            "replays": [{k: r.get(k) for k in ("fault", "target", "pool", "method", "instances", "slo_attainment",
                                                "attainment_after_recovery", "transient_windows_violated", "p99_ttft_ms", "p99_tpot_ms", "failed", "passed", "error")}
                        for r in head["replays"]]}


def _rel(path: str, out: str) -> str:
    return os.path.relpath(Path(path).resolve(), Path(out).resolve().parent)


def write_size_plan(out: str, plan: dict, n_p: int, n_d: int, pods: int, trace: str | None, doc: dict) -> str:
    """Write one pod's plan (``n_p`` prefill, ``n_d`` decode instances; paths relative to ``out``)
    atomically; returns ``out``."""
    p = with_counts(plan, n_p, n_d)
    p = {**p, "name": Path(out).stem,
         "description": f"xds size: {doc['chips']} chips in {doc['pods']} pod(s); this file is one pod"}
    for key in ("model", "cluster"):
        if "/" in p[key]:
            p[key] = _rel(p[key], out)
    w = dict(p["workload"])
    if "trace" in w:
        w["trace"] = _rel(w["trace"], out)
    p["workload"] = w
    head = (f"# Written by `xds size`: one pod of {doc['pods']} ({doc['pods_serving']} serving the load);\n"
            f"# the workload is this pod's share of the rate. `xds simulate` on this file reproduces the\n"
            f"# verification run.\n")
    write_text_atomic(out, head + yaml.safe_dump(p, sort_keys=False))
    return str(out)
