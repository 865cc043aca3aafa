"""``xds plan --search``: enumerate deployment layouts, price them with the vectorized cost model and
return the Pareto front of decode tokens/s/chip vs TPOT, the best layout that meets the SLO, a
matching prefill pool (PD split), and that layout as a plan file ``xds plan`` accepts.

Candidates (decode): instance size in whole nodes; colocated (attention DP × TP and MoE EP over the
same dies) or MoE-attention disaggregated (attention dies in 1–3 DP domains + MoE dies); shared-expert
dies (0 or 32 when the model has a shared expert); redundant slots (the fewest that divide over the
routed ranks, or one more slot per rank); TP 1/2; MTP off/on; batch per die on a grid. Candidates
sharing everything but the batch form one group: one :class:`~xds.cost.CostModel` prices the whole
group in a single broadcast call, with each batch's balancedness interpolated (in log sequences) from
a few samples of :func:`xds.imbalance.batch_balancedness` on the layout xds's balancer builds.
Prefill candidates (instance nodes, TP, token budget per die) are priced the same way; the PD split
sizes the prefill pool so it feeds the best decode instance at the workload's lengths.

Units: ms for times, tokens/s per chip for throughput, GB for memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .cost import CostModel, Layout
from .errors import XdsError

BATCH_GRID = np.array([1, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 72, 80, 88,
                       96, 104, 112, 128, 144, 160, 192, 224, 256], dtype=float)
BAL_SAMPLES = 5
PREFILL_BUDGETS = (2048, 4096, 8192, 16384)


@lru_cache(maxsize=1024)
def _expert_layout(experts: int, slots: int, routed: int, hot: float):
    from .experts import balance
    from .imbalance import long_run_shares

    shares = long_run_shares(experts, hot)
    return balance(shares * 1e6, slots, routed).phy2log, shares


def _balancedness(model, slots: int, routed: int, seqs: np.ndarray, hot: float) -> np.ndarray:
    """Balancedness for each entry of ``seqs`` (sequences per microbatch), interpolated in log space
    from ``BAL_SAMPLES`` sampled values."""
    if not model.is_moe:
        return np.ones_like(seqs)
    from .imbalance import batch_balancedness

    phy, shares = _expert_layout(model.n_routed_experts, slots, routed, hot)
    lo, hi = float(max(seqs.min(), 1.0)), float(max(seqs.max(), 1.0))
    xs = np.geomspace(lo, hi, BAL_SAMPLES) if hi > lo else np.array([lo])
    ys = np.array([batch_balancedness(phy, shares, routed, float(x)) for x in xs])
    if len(xs) == 1:
        return np.full_like(seqs, max(ys[0], 1.0))
    return np.maximum(np.interp(np.log(np.maximum(seqs, 1.0)), np.log(xs), ys), 1.0)


def _slot_options(model, routed: int) -> list[int]:
    E = model.n_routed_experts
    if not model.is_moe:
        return [0]
    spr = math.ceil(E / routed)
    return [spr * routed, (spr + 1) * routed]


def _decode_groups(model, hw, topo, max_nodes: int):
    """Yield (label, chips, Layout) for every decode layout group (batch still free)."""
    dpn = topo.dies_per_node
    dpc = hw.dies_per_chip
    shared_opts = [0] + ([32] if model.is_moe and model.shared_intermediate else [])
    for nodes in range(1, max_nodes + 1):
        dies = nodes * dpn
        for sh in shared_opts:
            routed = dies - sh
            if model.is_moe and (routed < 1 or sh and sh * 4 > dies):
                continue
            for slots in _slot_options(model, routed):
                for tp in (1, 2):
                    if dies % tp:
                        continue
                    for mtp in (0, 1) if model.mtp_layers else (0,):
                        lay = Layout(dies=dies, ep=dies, dp=dies // tp, tp=tp, shared_dies=sh,
                                     routed_slots=slots, mtp=mtp, quant=hw.default_quant)
                        yield f"DP{dies // tp} TP{tp} EP{dies}" + (f" ({sh} shared dies)" if sh else ""), \
                            dies // dpc, lay
    # MoE-attention disaggregation: MoE dies = routed (+ shared) experts, one per die
    if model.is_moe and topo.builder == "cloudmatrix":
        for sh in shared_opts:
            moe = model.n_routed_experts + sh
            for domains in (1, 2, 3):
                for dp in (64, 96, 128, 160, 192):
                    att = dp * domains
                    dies = att + moe
                    if dies % dpn or dies // dpn > max_nodes:
                        continue
                    for mtp in (0, 1) if model.mtp_layers else (0,):
                        lay = Layout(dies=dies, ep=moe, dp=dp, tp=1, shared_dies=sh,
                                     routed_slots=model.n_routed_experts, mtp=mtp, quant=hw.default_quant,
                                     attention_dies=att, ma_domains=domains)
                        yield f"MA {att} attention ({domains}x DP{dp}) + {moe} MoE dies", dies // dpc, lay


def _price_decode_group(model, hw, fabric, lay: Layout, chips: int, I: float, O: float, hot: float):
    """Price one group over BATCH_GRID; returns dict of arrays (feasible batches only)."""
    cm = CostModel(model, hw, lay, fabric)
    ctx_full = I + O
    if lay.attention_dies:
        h = cm.hbm_gb(BATCH_GRID, ctx_full)
        fits = np.asarray(h["free"]) >= 0
    else:
        base = cm.hbm_gb(0, ctx_full)
        per = cm.hbm_gb(1, ctx_full)["total"] - base["total"]
        fits = BATCH_GRID * per <= base["capacity"] - base["total"]
    b = BATCH_GRID[fits]
    if b.size == 0:
        return None
    ranks = lay.dp * lay.ma_domains
    seqs = b * ranks / lay.microbatches / lay.ma_domains
    routed = lay.ep - lay.shared_dies
    bal = _balancedness(model, lay.routed_slots, routed, seqs, hot)
    # one broadcast call: batch axis first, one representative rank on the last (reduced) axis;
    # balancedness broadcasts against the per-instance MoE load, shape batch.shape[:-1]
    cm.lay = replace(lay, balancedness=bal)
    ctx = I + O / 2.0
    step_ms = np.asarray(cm.decode_step_us(b[:, None], b[:, None] * ctx), dtype=float).reshape(-1) / 1e3
    tps = lay.tokens_per_step()
    tpot = step_ms / tps
    thr = b * ranks * tps / (step_ms / 1e3) / chips
    return {"batch": b, "tpot": tpot, "thr": thr, "bal": bal, "step": step_ms}


def _pareto(thr: np.ndarray, tpot: np.ndarray) -> np.ndarray:
    """Indices of the Pareto front: maximise throughput, minimise TPOT (sorted by TPOT)."""
    order = np.lexsort((-thr, tpot))
    best = np.maximum.accumulate(thr[order])
    keep = np.r_[True, thr[order][1:] > best[:-1]]
    return order[keep]


def _prefill_candidates(model, hw, topo, fabric_fn, I: float, hot: float, max_nodes: int) -> list[dict]:
    """Prefill instance candidates (1/2/4 nodes × TP 1/2/4 × redundancy × token budget per die),
    priced per group in one broadcast call; only those whose HBM fits at their budget."""
    out = []
    dpn, dpc = topo.dies_per_node, hw.dies_per_chip
    budgets = np.array(PREFILL_BUDGETS, dtype=float) / dpc       # tokens per die
    for nodes in (1, 2, 4):
        if nodes > max_nodes:
            continue
        dies = nodes * dpn
        fabric = fabric_fn(dies)
        for tp in (1, 2, 4):
            for slots in _slot_options(model, dies):
                lay = Layout(dies=dies, ep=dies, dp=dies // tp, tp=tp, routed_slots=slots,
                             quant=hw.default_quant)
                seqs = budgets * dies / I / lay.microbatches
                bal = _balancedness(model, slots, dies, seqs, hot)
                cm = CostModel(model, hw, lay, fabric)
                free = np.array([cm.hbm_gb(0, 0, phase="prefill", prefill_tokens=n)["free"] for n in budgets])
                cm.lay = replace(lay, balancedness=bal)
                s = budgets / I
                t_ms = np.asarray(cm.prefill_batch_us(budgets, s * I * (I + 1) / 2.0, s), dtype=float) / 1e3
                for j in np.flatnonzero(free >= 0):
                    out.append({"nodes": nodes, "chips": dies // dpc, "dies": dies, "tp": tp, "slots": int(slots),
                                "token_budget_per_die": int(budgets[j]), "ttft_full_batch_ms": float(t_ms[j]),
                                "input_throughput_per_chip": float(budgets[j] * dpc / (t_ms[j] / 1e3)),
                                "balancedness": float(bal[j]), "label": f"DP{dies // tp} TP{tp} EP{dies}"})
    return out


def _hot(h):
    from .imbalance import DEFAULT_HOT

    return float(DEFAULT_HOT if h is None else h)


def run_search(plan: str | None = None, *, model: str | None = None, hardware: str | None = None,
               cluster: str | None = None, input_len: int | None = None, output_len: int | None = None,
               trace: str | None = None, tpot_ms: float | None = None, ttft_ms: float | None = None,
               out: str | None = None, front_limit: int = 40) -> dict[str, Any]:
    """Search layouts; returns the ``xds plan --search --json`` document (``candidates``, ``seconds``,
    ``candidates_per_s``, ``pareto``, ``best``, ``prefill``, ``plan_file``). Flags override a plan
    file's model / hardware / cluster / SLO / workload lengths."""
    from .cost import default_cluster, fabric_for
    from .spec.model import load_model
    from .spec.hardware import load_hardware
    from .topology import build_topology

    t0 = time.perf_counter()
    hot = None
    nodes_cap = None
    if plan is not None:
        from .plan import workload_lengths
        from .spec.plan import load_plan

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
        from .workload import read_trace

        w = read_trace(trace).summary()
        input_len = input_len or w["input"]["mean"]
        output_len = output_len or w["output"]["mean"]
    model = model or "deepseek-r1"
    hardware = hardware or "ascend-910c"
    I = float(input_len if input_len is not None else 4096)
    O = float(output_len if output_len is not None else 256)
    tpot_ms = float(tpot_ms if tpot_ms is not None else 50.0)
    ttft_ms = float(ttft_ms if ttft_ms is not None else 2000.0)
    for flag, v in (("--input-len", I), ("--output-len", O), ("--tpot-ms", tpot_ms), ("--ttft-ms", ttft_ms)):
        if not (v > 0) or not math.isfinite(v):
            raise XdsError(f"must be a positive number (got {v:g})", file=flag)
    m = load_model(model)
    hw = load_hardware(hardware)
    cluster = cluster or default_cluster(hw)
    topo = build_topology(cluster, nodes_cap)
    if topo.dies_per_chip != hw.dies_per_chip:
        raise XdsError(f"{hw.name} has {hw.dies_per_chip} dies per chip but cluster {topo.name} is built of "
                       f"{topo.dies_per_chip}-die chips", file="--hardware")
    if I + O > m.max_context:
        raise XdsError(f"input + output = {I + O:g} tokens exceeds {m.name}'s context of {m.max_context}",
                       file="--input-len")
    hot_v = _hot(hot)

    @lru_cache(maxsize=None)
    def fab(ep: int):
        return fabric_for(cluster, hw, ep)

    rows: list[dict] = []
    thr_all, tpot_all = [], []
    n_cand = 0
    for label, chips, lay in _decode_groups(m, hw, topo, topo.n_nodes):
        n_cand += len(BATCH_GRID)
        r = _price_decode_group(m, hw, fab(lay.ep), lay, chips, I, O, hot_v)
        if r is None:
            continue
        for j in range(len(r["batch"])):
            rows.append({"label": label + (f" MTP{lay.mtp}" if lay.mtp else ""), "chips": chips, "layout": lay,
                         "batch_per_rank": float(r["batch"][j]), "mtp": lay.mtp,
                         "tpot_ms": float(r["tpot"][j]), "output_throughput_per_chip": float(r["thr"][j]),
                         "balancedness": float(r["bal"][j]), "step_time_ms": float(r["step"][j])})
        thr_all.append(r["thr"])
        tpot_all.append(r["tpot"])
    pre = _prefill_candidates(m, hw, topo, fab, I, hot_v, topo.n_nodes)
    n_cand += len(pre)
    seconds = time.perf_counter() - t0
    thr = np.concatenate(thr_all) if thr_all else np.zeros(0)
    tp = np.concatenate(tpot_all) if tpot_all else np.zeros(0)
    front = _pareto(thr, tp) if thr.size else np.zeros(0, dtype=int)
    ok = np.flatnonzero(tp <= tpot_ms)
    best = rows[int(ok[np.argmax(thr[ok])])] if ok.size else None

    def pub(r):
        lay = r["layout"]
        d = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "layout"}
        d["meets_tpot"] = r["tpot_ms"] <= tpot_ms
        d["layout"] = {"dies": lay.dies, "dp": lay.dp, "tp": lay.tp, "ep": lay.ep, "shared_dies": lay.shared_dies,
                       "routed_slots": lay.routed_slots, "attention_dies": lay.attention_dies,
                       "ma_domains": lay.ma_domains}
        return d

    pareto = [pub(rows[int(i)]) for i in front]
    if len(pareto) > front_limit:  # thin the printed front evenly, always keeping both ends
        keep = np.unique(np.linspace(0, len(pareto) - 1, front_limit).round().astype(int))
        pareto = [pareto[i] for i in keep]
    doc: dict[str, Any] = {
        "model": m.name, "hardware": hw.name, "cluster": topo.name, "input_len": I, "output_len": O,
        "slo": {"tpot_ms": tpot_ms, "ttft_ms": ttft_ms},
        "candidates": n_cand, "feasible": len(rows) + len(pre), "seconds": round(seconds, 4),
        "candidates_per_s": round(n_cand / seconds, 1) if seconds > 0 else None,
        "pareto": pareto, "best": pub(best) if best else None, "prefill": None, "plan_file": None,
    }
    if best is not None:
        # PD split: prefill instances that feed the best decode instance at these lengths, chosen as
        # the prefill candidate with the highest input tokens/s/chip whose full batch meets TTFT.
        okp = [p for p in pre if p["ttft_full_batch_ms"] <= ttft_ms]
        if okp:
            p = max(okp, key=lambda q: q["input_throughput_per_chip"])
            req_rate = best["output_throughput_per_chip"] * best["chips"] / O
            need_chips = req_rate * I / p["input_throughput_per_chip"]
            inst = max(1, math.ceil(need_chips / p["chips"]))
            free_nodes = topo.n_nodes - best["layout"].dies // topo.dies_per_node
            inst = min(inst, free_nodes // p["nodes"]) if free_nodes >= p["nodes"] else 0
            if inst:
                doc["prefill"] = {**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()},
                                  "instances": inst, "ttft_ms": round(p["ttft_full_batch_ms"], 2),
                                  "decode_request_rate_rps": round(req_rate, 2),
                                  # the pair serves the smaller of the two rates (prefill may be capped
                                  # by the nodes the decode instance leaves free)
                                  "system_request_rate_rps": round(min(
                                      req_rate, inst * p["chips"] * p["input_throughput_per_chip"] / I), 2)}
        if out:
            doc["plan_file"] = write_plan(out, doc, best, m.name, hw.name, topo.name, I, O, hot)
    doc["seconds_total"] = round(time.perf_counter() - t0, 4)
    return doc


def write_plan(out: str, doc: dict, best: dict, model: str, hardware: str, cluster: str, I: float, O: float,
               hot: float | None) -> str:
    """Write the best layout (and its prefill pool) as a plan YAML that ``xds plan`` accepts."""
    import yaml

    from .spec.fileio import write_text_atomic

    lay: Layout = best["layout"]
    E_slots = lay.routed_slots
    dec: dict[str, Any] = {"role": "decode", "instances": 1, "chips": best["chips"],
                           "layout": {"dp": lay.dp, "tp": lay.tp, "ep": lay.ep}, "microbatches": lay.microbatches,
                           "batch_per_die": best["batch_per_rank"]}
    if lay.mtp:
        dec["mtp"] = {"draft_tokens": lay.mtp, "acceptance": lay.mtp_acceptance}
    from .spec.model import load_model

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
