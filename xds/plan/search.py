"""``xds plan --search``: price every candidate layout (:mod:`.candidates`) and return the Pareto front
of decode tokens/s/chip vs TPOT, the best layout that meets the SLO, a matching prefill pool (PD
split: both pools sized to each other by :mod:`.balance` for the workload's length distribution, so
the decode pool runs near the batch it was priced at), and that layout as a plan file ``xds plan``
accepts (:mod:`.write`; on a trace, the plan replays that trace at the balanced rate).

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
from ..spec.fileio import check_output_path
from ..spec.hardware import HardwareSpec, load_hardware
from ..spec.model import ModelSpec, load_model
from ..spec.plan import load_plan
from ..topology import build_topology
from ..workload import plan_workload, read_trace
from .balance import DECODE_FILL, LengthStats, best_prefill, decode_rate_at, pool_counts
from .candidates import (
    BATCH_GRID,
    decode_groups,
    prefill_candidates,
    price_decode_group,
)
from .inputs import DEFAULT_LENGTHS, chip_mismatch, spec_ref
from .write import write_plan


@dataclass(frozen=True)
class _Query:
    """What one search prices against: specs, the workload's mean input/output lengths (tokens) and
    length statistics (:class:`~.balance.LengthStats`), the SLO (ms), the plan's hottest-expert ratio
    (None: the default), the model as the user named it (built-in name or path) and the trace (if
    any) the lengths came from."""

    model: ModelSpec
    hw: HardwareSpec
    topo: Any                   # xds.topology.Topology
    cluster: str
    input_len: float
    output_len: float
    tpot_ms: float
    ttft_ms: float
    hot: float | None
    lengths: LengthStats
    model_ref: str
    trace: str | None = None
    hardware_ref: str | None = None    # the hardware as the user named it (built-in name or path)


def run_search(plan: str | None = None, *, model: str | None = None, hardware: str | None = None,
               cluster: str | None = None, input_len: int | None = None, output_len: int | None = None,
               trace: str | None = None, tpot_ms: float | None = None, ttft_ms: float | None = None,
               out: str | None = None, front_limit: int = 40) -> dict[str, Any]:
    """Search layouts; returns the ``xds plan --search --json`` document (``candidates``, ``seconds``,
    ``candidates_per_s``, ``pareto``, ``best``, ``prefill``, ``plan_file``). Flags override a plan
    file's model / hardware / cluster / SLO / workload lengths."""
    t0 = time.perf_counter()
    check_output_path(out, "--out")
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
        "output_len": q.output_len, "lengths": q.lengths.to_json(), "slo": {"tpot_ms": q.tpot_ms, "ttft_ms": q.ttft_ms},
        "candidates": n_cand, "feasible": len(rows) + len(pre), "seconds": round(seconds, 4),
        "candidates_per_s": round(n_cand / seconds, 1) if seconds > 0 else None,
        "pareto": front_rows, "best": _public(best, q.tpot_ms) if best else None, "prefill": None,
        "plan_file": None,
    }
    if best is not None:
        doc["prefill"] = _pd_split(q, fab, hot_v, best, pre)
        if out:
            # the hardware and cluster as the user named them: a path stays a path
            doc["plan_file"] = write_plan(out, doc, best, q.model_ref, q.hardware_ref or hw.name, q.cluster,
                                          q.lengths, q.hot, q.trace)
    doc["seconds_total"] = round(time.perf_counter() - t0, 4)
    return doc


def size_query(*, model: str, hardware: str | None, cluster: str | None, lengths: LengthStats,
               tpot_ms: float, ttft_ms: float, nodes: int | None = None) -> _Query:
    """A search query for ``xds size``: the workload's length statistics given directly."""
    m = load_model(model)
    hw = load_hardware(hardware or "ascend-910c")
    cluster = cluster or default_cluster(hw)
    topo = build_topology(cluster, nodes)
    why = chip_mismatch(hw, topo)
    if why:
        raise XdsError(why, file="--hardware")
    return _Query(m, hw, topo, cluster, lengths.input_mean, lengths.output_mean, float(tpot_ms),
                  float(ttft_ms), None, lengths, model)


def best_layouts(q: _Query) -> dict[str, Any] | None:
    """The layouts ``xds size`` sizes with: the best decode row meeting TPOT (``decode``, with its
    requests/s per instance at the target fill, ``decode_rps``), the prefill candidate with the most
    req/s per chip within TTFT (``prefill``, with ``rate_rps``), and ``candidates`` priced; None when
    no decode layout meets TPOT or no prefill candidate meets TTFT."""
    hot_v = _hot(q.hot)

    @lru_cache(maxsize=None)
    def fab(ep: int) -> Fabric:
        return fabric_for(q.cluster, q.hw, ep)

    rows, thr, tp, n_cand = _price_decode(q, fab, hot_v)
    pre = prefill_candidates(q.model, q.hw, q.topo, fab, q.input_len, hot_v, q.topo.n_nodes)
    ok = np.flatnonzero(tp <= q.tpot_ms)
    p = best_prefill(pre, q.lengths, q.ttft_ms)
    if not ok.size or p is None:
        return None
    best = rows[int(ok[np.argmax(thr[ok])])]
    lay = best["layout"]
    r = price_decode_group(q.model, q.hw, fab(lay.ep), lay, best["chips"], q.lengths.decode_input,
                           q.lengths.decode_output, hot_v)
    rps = decode_rate_at(r["batch"], r["thr"], best["chips"], q.output_len, DECODE_FILL * best["batch_per_rank"])
    return {"decode": best, "decode_public": _public(best, q.tpot_ms), "decode_rps": rps, "prefill": p,
            "candidates": n_cand + len(pre), "topology": q.topo}


def _query(plan: str | None, model: str | None, hardware: str | None, cluster: str | None,
           input_len: int | None, output_len: int | None, trace: str | None, tpot_ms: float | None,
           ttft_ms: float | None) -> _Query:
    """Resolve flags over the plan file (if any) over the defaults, and check them. Lengths given
    as flags are fixed; otherwise the trace's (or the plan workload's) distribution is used."""
    hot = None
    nodes_cap = None
    pct = 99.0
    arrays = None
    for flag, v in (("--input-len", input_len), ("--output-len", output_len)):
        if v is not None and not v > 0:
            raise XdsError(f"must be a whole number > 0 (got {v})", file=flag)
    if plan is not None:
        lp = load_plan(plan)
        s = lp.spec
        model = model or spec_ref(lp, s.model)
        hardware = hardware or spec_ref(lp, s.hardware)
        cluster = cluster or spec_ref(lp, s.cluster)
        tpot_ms = tpot_ms if tpot_ms is not None else s.slo.tpot_ms
        ttft_ms = ttft_ms if ttft_ms is not None else s.slo.ttft_ms
        hot = s.balancing.hot_ratio
        nodes_cap = s.nodes
        pct = s.slo.percentile
        if trace is None and s.workload is not None:
            try:
                w = plan_workload(lp, seed=0)
            except XdsError as exc:
                raise exc.at(file=lp.path, where="workload") from None
            arrays = (w.input_len, w.output_len, w.summary()["rate_rps"] or None)
    if trace is not None:
        w = _read_lengths(trace)
        arrays = (w.input_len, w.output_len, w.summary()["rate_rps"] or None)
    model_ref = model or "deepseek-r1"
    hardware = hardware or "ascend-910c"
    tpot_ms = float(tpot_ms if tpot_ms is not None else 50.0)
    ttft_ms = float(ttft_ms if ttft_ms is not None else 2000.0)
    for flag, v in (("--tpot-ms", tpot_ms), ("--ttft-ms", ttft_ms)):
        if not (v > 0) or not math.isfinite(v):
            raise XdsError(f"must be a positive number (got {v:g})", file=flag)
    if arrays is not None and input_len is None and output_len is None:
        lengths = LengthStats.of(arrays[0], arrays[1], percentile=pct, rate_rps=arrays[2])
    else:
        I = float(input_len if input_len is not None else
                  arrays[0].mean() if arrays is not None else DEFAULT_LENGTHS[0])
        O = float(output_len if output_len is not None else
                  arrays[1].mean() if arrays is not None else DEFAULT_LENGTHS[1])
        lengths = LengthStats.fixed(I, O, percentile=pct)
        trace = None                   # flags fixed the lengths: the plan gets a fixed workload
    m = load_model(model_ref)
    hw = load_hardware(hardware)
    cluster = cluster or default_cluster(hw)
    topo = build_topology(cluster, nodes_cap)
    why = chip_mismatch(hw, topo)
    if why:
        raise XdsError(why, file="--hardware")
    I, O = lengths.input_mean, lengths.output_mean
    if I + O > m.max_context:
        raise XdsError(f"input + output = {I + O:g} tokens exceeds {m.name}'s context of {m.max_context}",
                       file="--input-len")
    return _Query(m, hw, topo, cluster, I, O, tpot_ms, ttft_ms, hot, lengths, model_ref,
                  trace if plan is None or trace is not None else None, hardware)


def _read_lengths(trace: str) -> Any:
    """A trace's requests (a length-only trace gets a placeholder 1 req/s arrival process: only its
    lengths are used, and the plan then runs it at the balanced rate)."""
    try:
        return read_trace(trace)
    except XdsError as exc:
        if "length-only" not in exc.message:
            raise exc.at(file="--trace") from None
        return read_trace(trace, rate_rps=1.0)


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
        r = price_decode_group(q.model, q.hw, fab(lay.ep), lay, chips, q.lengths.decode_input,
                               q.lengths.decode_output, hot)
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


def _pd_split(q: _Query, fab: Callable[[int], Fabric], hot: float, best: dict,
              pre: list[dict]) -> dict[str, Any] | None:
    """Balanced PD split (:mod:`.balance`): the rate that fills the best decode instance to
    ``DECODE_FILL`` of its priced batch, and the prefill instances (of the candidate with the most
    req/s per chip within the TTFT target at the workload's percentile prompt) that rate needs. None
    when no candidate meets TTFT or no node is left for one instance."""
    topo, lay = q.topo, best["layout"]
    p = best_prefill(pre, q.lengths, q.ttft_ms)
    if p is None:
        return None
    r = price_decode_group(q.model, q.hw, fab(lay.ep), lay, best["chips"], q.lengths.decode_input,
                           q.lengths.decode_output, hot)
    fill_batch = DECODE_FILL * best["batch_per_rank"]
    dec_rate = decode_rate_at(r["batch"], r["thr"], best["chips"], q.output_len, fill_batch)
    inst, _ = pool_counts(dec_rate, dec_rate, p["rate_rps"])
    free_nodes = topo.n_nodes - lay.dies // topo.dies_per_node
    cap = free_nodes // p["nodes"]
    capped = inst > cap
    inst = min(inst, cap)
    if not inst:
        return None
    system = min(dec_rate, inst * p["rate_rps"])
    return {**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()},
            "instances": inst, "ttft_ms": round(p["ttft_full_batch_ms"], 2),
            "decode_request_rate_rps": round(dec_rate, 2), "decode_fill_batch_per_rank": round(fill_batch, 2),
            # the pair serves the smaller of the two rates (prefill may be capped by the nodes the
            # decode instance leaves free)
            "system_request_rate_rps": round(system, 2), "prefill_capped_by_nodes": capped,
            # the decode pool's expected mean batch over its priced batch at that rate (Little's law:
            # concurrency scales with the rate)
            "decode_fill_fraction": round(DECODE_FILL * system / dec_rate, 3) if dec_rate > 0 else 0.0}
