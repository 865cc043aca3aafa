"""``xds plan --search``: price every candidate layout (:mod:`.candidates`) and return the Pareto front
of decode tokens/s/chip vs TPOT, the best layout that meets the SLO, a matching prefill pool (PD
split: sized so it feeds the best decode instance at the workload's lengths), and that layout as a
plan file ``xds plan`` accepts (:mod:`.write`).

Units: ms for times, tokens/s per chip for throughput, req/s for rates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..cost import Fabric, default_cluster, fabric_for
from ..errors import XdsError
from ..experts.skew import DEFAULT_HOT
from ..spec.hardware import HardwareSpec, load_hardware
from ..spec.model import ModelSpec, load_model
from ..spec.plan import load_plan
from ..topology import build_topology
from ..workload import read_trace
from .candidates import (
    BATCH_GRID,
    decode_groups,
    prefill_candidates,
    price_decode_group,
)
from .inputs import DEFAULT_LENGTHS, chip_mismatch, workload_lengths
from .write import write_plan


@dataclass(frozen=True)
class _Query:
    """What one search prices against: specs, the workload's mean input/output lengths (tokens), the
    SLO (ms) and the plan's hottest-expert ratio (None: the default)."""

    model: ModelSpec
    hw: HardwareSpec
    topo: Any                   # xds.topology.Topology
    cluster: str
    input_len: float
    output_len: float
    tpot_ms: float
    ttft_ms: float
    hot: float | None


def run_search(plan: str | None = None, *, model: str | None = None, hardware: str | None = None,
               cluster: str | None = None, input_len: int | None = None, output_len: int | None = None,
               trace: str | None = None, tpot_ms: float | None = None, ttft_ms: float | None = None,
               out: str | None = None, front_limit: int = 40) -> dict[str, Any]:
    """Search layouts; returns the ``xds plan --search --json`` document (``candidates``, ``seconds``,
    ``candidates_per_s``, ``pareto``, ``best``, ``prefill``, ``plan_file``). Flags override a plan
    file's model / hardware / cluster / SLO / workload lengths."""
    t0 = time.perf_counter()
    q = _query(plan, model, hardware, cluster, input_len, output_len, trace, tpot_ms, ttft_ms)
    m, hw, topo = q.model, q.hw, q.topo
    hot_v = _hot(q.hot)

    @lru_cache(maxsize=None)
    def fab(ep: int) -> Fabric:
        return fabric_for(q.cluster, hw, ep)

    rows, thr, tp, n_cand = _price_decode(q, fab, hot_v)
    pre = prefill_candidates(m, hw, topo, fab, q.input_len, hot_v, topo.n_nodes)
    n_cand += len(pre)
    seconds = time.perf_counter() - t0
    front = pareto(thr, tp) if thr.size else np.zeros(0, dtype=int)
    ok = np.flatnonzero(tp <= q.tpot_ms)
    best = rows[int(ok[np.argmax(thr[ok])])] if ok.size else None
    front_rows = [_public(rows[int(i)], q.tpot_ms) for i in front]
    if len(front_rows) > front_limit:  # thin the printed front evenly, always keeping both ends
        keep = np.unique(np.linspace(0, len(front_rows) - 1, front_limit).round().astype(int))
        front_rows = [front_rows[i] for i in keep]
    doc: dict[str, Any] = {
        "model": m.name, "hardware": hw.name, "cluster": topo.name, "input_len": q.input_len,
        "output_len": q.output_len, "slo": {"tpot_ms": q.tpot_ms, "ttft_ms": q.ttft_ms},
        "candidates": n_cand, "feasible": len(rows) + len(pre), "seconds": round(seconds, 4),
        "candidates_per_s": round(n_cand / seconds, 1) if seconds > 0 else None,
        "pareto": front_rows, "best": _public(best, q.tpot_ms) if best else None, "prefill": None,
        "plan_file": None,
    }
    if best is not None:
        doc["prefill"] = _pd_split(q, best, pre)
        if out:
            doc["plan_file"] = write_plan(out, doc, best, m.name, hw.name, topo.name, q.input_len,
                                          q.output_len, q.hot)
    doc["seconds_total"] = round(time.perf_counter() - t0, 4)
    return doc


def _query(plan: str | None, model: str | None, hardware: str | None, cluster: str | None,
           input_len: int | None, output_len: int | None, trace: str | None, tpot_ms: float | None,
           ttft_ms: float | None) -> _Query:
    """Resolve flags over the plan file (if any) over the defaults, and check them."""
    hot = None
    nodes_cap = None
    if plan is not None:
        lp = load_plan(plan)
        s = lp.spec
        model = model or s.model
        hardware = hardware or s.hardware
        cluster = cluster or s.cluster
        tpot_ms = tpot_ms if tpot_ms is not None else s.slo.tpot_ms
        ttft_ms = ttft_ms if ttft_ms is not None else s.slo.ttft_ms
        hot = s.balancing.hot_ratio
        nodes_cap = s.nodes
        if trace is None and (input_len is None or output_len is None):
            lens = workload_lengths(lp)
            input_len = input_len or lens["input_len"]
            output_len = output_len or lens["output_len"]
    if trace is not None:
        w = read_trace(trace).summary()
        input_len = input_len or w["input"]["mean"]
        output_len = output_len or w["output"]["mean"]
    model = model or "deepseek-r1"
    hardware = hardware or "ascend-910c"
    I = float(input_len if input_len is not None else DEFAULT_LENGTHS[0])
    O = float(output_len if output_len is not None else DEFAULT_LENGTHS[1])
    tpot_ms = float(tpot_ms if tpot_ms is not None else 50.0)
    ttft_ms = float(ttft_ms if ttft_ms is not None else 2000.0)
    for flag, v in (("--input-len", I), ("--output-len", O), ("--tpot-ms", tpot_ms), ("--ttft-ms", ttft_ms)):
        if not (v > 0) or not math.isfinite(v):
            raise XdsError(f"must be a positive number (got {v:g})", file=flag)
    m = load_model(model)
    hw = load_hardware(hardware)
    cluster = cluster or default_cluster(hw)
    topo = build_topology(cluster, nodes_cap)
    why = chip_mismatch(hw, topo)
    if why:
        raise XdsError(why, file="--hardware")
    if I + O > m.max_context:
        raise XdsError(f"input + output = {I + O:g} tokens exceeds {m.name}'s context of {m.max_context}",
                       file="--input-len")
    return _Query(m, hw, topo, cluster, I, O, tpot_ms, ttft_ms, hot)


def _hot(h: float | None) -> float:
    """Hottest expert's share over the mean share (the plan's, else the default)."""
    return float(DEFAULT_HOT if h is None else h)


def _price_decode(q: _Query, fab: Callable[[int], Fabric],
                  hot: float) -> tuple[list[dict], np.ndarray, np.ndarray, int]:
    """Price every decode group: one row per feasible (layout, batch), their throughputs
    (tokens/s/chip) and TPOTs (ms) in row order, and the number of candidates (incl. infeasible)."""
    rows: list[dict] = []
    thr_all, tpot_all = [], []
    n_cand = 0
    for label, chips, lay in decode_groups(q.model, q.hw, q.topo, q.topo.n_nodes):
        n_cand += len(BATCH_GRID)
        r = price_decode_group(q.model, q.hw, fab(lay.ep), lay, chips, q.input_len, q.output_len, hot)
        if r is None:
            continue
        for j in range(len(r["batch"])):
            rows.append({"label": label + (f" MTP{lay.mtp}" if lay.mtp else ""), "chips": chips, "layout": lay,
                         "batch_per_rank": float(r["batch"][j]), "mtp": lay.mtp,
                         "tpot_ms": float(r["tpot"][j]), "output_throughput_per_chip": float(r["thr"][j]),
                         "redundant_experts": max(lay.routed_slots - q.model.n_routed_experts, 0),
                         "balancedness": float(r["bal"][j]), "step_time_ms": float(r["step"][j])})
        thr_all.append(r["thr"])
        tpot_all.append(r["tpot"])
    thr = np.concatenate(thr_all) if thr_all else np.zeros(0)
    tp = np.concatenate(tpot_all) if tpot_all else np.zeros(0)
    return rows, thr, tp, n_cand


def pareto(thr: np.ndarray, tpot: np.ndarray) -> np.ndarray:
    """Indices of the Pareto front: maximise throughput, minimise TPOT (sorted by TPOT)."""
    order = np.lexsort((-thr, tpot))
    best = np.maximum.accumulate(thr[order])
    keep = np.r_[True, thr[order][1:] > best[:-1]]
    return order[keep]


def _public(r: dict, tpot_ms: float) -> dict[str, Any]:
    """A decode row as printed: floats to 3 decimals, the layout as a dict, ``meets_tpot``."""
    lay = r["layout"]
    d = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "layout"}
    d["meets_tpot"] = r["tpot_ms"] <= tpot_ms
    d["layout"] = {"dies": lay.dies, "dp": lay.dp, "tp": lay.tp, "ep": lay.ep, "shared_dies": lay.shared_dies,
                   "routed_slots": lay.routed_slots, "attention_dies": lay.attention_dies,
                   "ma_domains": lay.ma_domains}
    return d


def _pd_split(q: _Query, best: dict, pre: list[dict]) -> dict[str, Any] | None:
    """PD split: prefill instances that feed the best decode instance at these lengths, chosen as the
    prefill candidate with the highest input tokens/s/chip whose full batch meets TTFT; None when no
    candidate meets it or no node is left for one instance."""
    I, O, topo = q.input_len, q.output_len, q.topo
    okp = [p for p in pre if p["ttft_full_batch_ms"] <= q.ttft_ms]
    if not okp:
        return None
    p = max(okp, key=lambda c: c["input_throughput_per_chip"])
    req_rate = best["output_throughput_per_chip"] * best["chips"] / O
    need_chips = req_rate * I / p["input_throughput_per_chip"]
    inst = max(1, math.ceil(need_chips / p["chips"]))
    free_nodes = topo.n_nodes - best["layout"].dies // topo.dies_per_node
    inst = min(inst, free_nodes // p["nodes"]) if free_nodes >= p["nodes"] else 0
    if not inst:
        return None
    return {**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()},
            "instances": inst, "ttft_ms": round(p["ttft_full_batch_ms"], 2),
            "decode_request_rate_rps": round(req_rate, 2),
            # the pair serves the smaller of the two rates (prefill may be capped by the nodes the
            # decode instance leaves free)
            "system_request_rate_rps": round(min(req_rate, inst * p["chips"] * p["input_throughput_per_chip"] / I), 2)}
