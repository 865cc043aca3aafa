"""Candidate layouts for ``xds plan --search``, priced in groups with the vectorized cost model.

Decode candidates: instance size in whole nodes; colocated (attention DP × TP and MoE EP over the same
dies) or MoE-attention disaggregated (attention dies in 1–3 DP domains + MoE dies); shared-expert dies
(0 or 32 when the model has a shared expert); redundant slots, a search dimension (none: the fewest
slots that fill every routed rank; the redundancy rule of :mod:`xds.experts.redundancy`; twice the
rule — HBM decides per batch which fit); TP 1/2; MTP off/on; batch per die on a grid. Candidates sharing
everything but the batch form one group: one :class:`~xds.cost.CostModel` prices the whole group in a
single broadcast call, with each batch's balancedness interpolated (in log sequences) from a few
samples of :func:`xds.experts.imbalance.step_balancedness` on the layout xds's balancer builds. Prefill
candidates (instance nodes, TP, token budget per die) are priced the same way.

Units: ms for times, tokens/s per chip for throughput, GB for memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from ..cost import CostModel, Fabric, Layout
from ..experts.imbalance import expert_layout, step_balancedness_many
from ..experts.redundancy import rule_slots
from ..spec.hardware import HardwareSpec
from ..spec.model import ModelSpec

# decode batch per DP rank (requests) every decode group is priced at
BATCH_GRID = np.array([1, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 72, 80, 88,
                       96, 104, 112, 128, 144, 160, 192, 224, 256], dtype=float)
BAL_SAMPLES = 5                              # balancedness samples per group (interpolated between)
PREFILL_BUDGETS = (2048, 4096, 8192, 16384)  # prefill tokens per chip per batch


def _balancedness(model: ModelSpec, slots: int, routed: int, seqs: np.ndarray, hot: float,
                  m: float) -> np.ndarray:
    """Expected balancedness for each entry of ``seqs`` (sequences per microbatch, ``m`` token-expert
    pairs each), interpolated in log space from ``BAL_SAMPLES`` exact values."""
    if not model.is_moe:
        return np.ones_like(seqs)
    phy, shares = expert_layout(model.n_routed_experts, slots, routed, hot)
    lo, hi = float(max(seqs.min(), 1.0)), float(max(seqs.max(), 1.0))
    xs = np.geomspace(lo, hi, BAL_SAMPLES) if hi > lo else np.array([lo])
    ys = step_balancedness_many(phy, shares, routed, xs, m)
    if len(xs) == 1:
        return np.full_like(seqs, max(ys[0], 1.0))
    return np.maximum(np.interp(np.log(np.maximum(seqs, 1.0)), np.log(xs), ys), 1.0)


def slot_options(model: ModelSpec, routed: int) -> list[int]:
    """Routed slot counts to try (the redundancy dimension): no redundancy (the fewest slots that fill
    every rank), the redundancy rule, and twice the rule; distinct values, ascending."""
    E = model.n_routed_experts
    if not model.is_moe:
        return [0]
    opts = {math.ceil(E / routed) * routed, rule_slots(E, routed), rule_slots(E, routed, 2.0)}
    return sorted(opts)


def decode_groups(model: ModelSpec, hw: HardwareSpec, topo: Any,
                  max_nodes: int) -> Iterator[tuple[str, int, Layout]]:
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
            for slots in slot_options(model, routed):
                for tp in (1, 2):
                    if dies % tp:
                        continue
                    for mtp in (0, 1) if model.mtp_layers else (0,):
                        lay = Layout(dies=dies, ep=dies, dp=dies // tp, tp=tp, shared_dies=sh,
                                     routed_slots=slots, mtp=mtp, quant=hw.default_quant)
                        yield f"DP{dies // tp} TP{tp} EP{dies}" + (f" ({sh} shared dies)" if sh else ""), \
                            dies // dpc, lay
    # MoE-attention disaggregation: MoE dies = routed (+ shared) experts, one per die
    if model.is_moe and topo.family.ub_spans_nodes:
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


def price_decode_group(model: ModelSpec, hw: HardwareSpec, fabric: Fabric, lay: Layout, chips: int,
                       I: float, O: float, hot: float) -> dict[str, np.ndarray] | None:
    """Price one group over BATCH_GRID at I input / O output tokens: arrays ``batch`` (per rank),
    ``tpot`` (ms), ``thr`` (tokens/s/chip), ``bal`` and ``step`` (ms) over the batches whose HBM fits;
    None when none fits."""
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
    bal = _balancedness(model, lay.routed_slots, routed, seqs, hot, model.top_k * (1 + lay.mtp))
    # one broadcast call: batch axis first, one representative rank on the last (reduced) axis;
    # balancedness broadcasts against the per-instance MoE load, shape batch.shape[:-1]
    cm.lay = replace(lay, balancedness=bal)
    ctx = I + O / 2.0
    step_ms = np.asarray(cm.decode_step_us(b[:, None], b[:, None] * ctx), dtype=float).reshape(-1) / 1e3
    tps = lay.tokens_per_step()
    tpot = step_ms / tps
    thr = b * ranks * tps / (step_ms / 1e3) / chips
    return {"batch": b, "tpot": tpot, "thr": thr, "bal": bal, "step": step_ms}


def prefill_candidates(model: ModelSpec, hw: HardwareSpec, topo: Any, fabric_fn: Callable[[int], Fabric],
                       I: float, hot: float, max_nodes: int) -> list[dict]:
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
            for slots in slot_options(model, dies):
                lay = Layout(dies=dies, ep=dies, dp=dies // tp, tp=tp, routed_slots=slots,
                             quant=hw.default_quant)
                seqs = budgets * dies / I / lay.microbatches
                bal = _balancedness(model, slots, dies, seqs, hot, model.top_k * I)
                cm = CostModel(model, hw, lay, fabric)
                free = np.array([cm.hbm_gb(0, 0, phase="prefill", prefill_tokens=n)["free"] for n in budgets])
                cm.lay = replace(lay, balancedness=bal)
                s = budgets / I
                t_ms = np.asarray(cm.prefill_batch_us(budgets, s * I * (I + 1) / 2.0, s), dtype=float) / 1e3
                for j in np.flatnonzero(free >= 0):
                    out.append({"nodes": nodes, "chips": dies // dpc, "dies": dies, "tp": tp, "slots": int(slots),
                                "redundant_experts": max(int(slots) - model.n_routed_experts, 0),
                                "token_budget_per_die": int(budgets[j]), "ttft_full_batch_ms": float(t_ms[j]),
                                "input_throughput_per_chip": float(budgets[j] * dpc / (t_ms[j] / 1e3)),
                                "balancedness": float(bal[j]), "label": f"DP{dies // tp} TP{tp} EP{dies}"})
    return out
