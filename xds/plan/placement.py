"""Placement: put a plan's instances on concrete dies of the topology, its expert slots on EP ranks,
and check HBM per die (GB). Data flow: ``load_plan`` (spec) → :func:`place` →
:class:`~xds.plan.placed.PlacedPlan`, which the engine simulates and chaos perturbs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..cost import CostModel, Fabric, Layout, fabric_for
from ..experts import balance
from ..experts.imbalance import step_balancedness
from ..experts.redundancy import REDUNDANT_RULE, rule_slots
from ..experts.skew import DEFAULT_KAPPA
from ..spec.hardware import HardwareSpec, load_hardware
from ..spec.model import ModelSpec, load_model
from ..spec.plan import LoadedPlan, PoolSpec
from ..topology import build_topology
from .inputs import (
    chip_mismatch,
    expert_shares,
    located,
    plan_error,
    spec_ref,
    workload_lengths,
)
from .placed import PlacedInstance, PlacedPlan, PlacedPool, cross_pod_kv

PREFILL_TOKENS_PER_CHIP = 16384  # CMv2 §5.2: 16K tokens per NPU prefill batch


@dataclass(frozen=True)
class _Setting:
    """What every pool of one plan is placed against: specs, topology, the workload's mean input and
    output lengths (tokens), long-run expert shares and KV bytes per token."""

    loaded: LoadedPlan
    model: ModelSpec
    hw: HardwareSpec
    topo: Any                   # xds.topology.Topology
    input_len: float
    output_len: float
    shares: np.ndarray | None   # [layers, experts], rows sum to 1; None for a dense model
    shares_source: str | None
    kv_tok: float               # KV bytes per token incl. MTP layers


def place(loaded: LoadedPlan) -> PlacedPlan:
    """Place every instance of ``loaded`` on concrete dies, its expert slots on EP ranks, and check
    HBM per die. Raises :class:`XdsError` (file = the plan, where = the field) naming the violated
    constraint and its numbers."""
    spec = loaded.spec
    model, hw, topo = _load_specs(loaded)
    lens = workload_lengths(loaded)
    shares = src = None
    if model.is_moe:
        shares, src = expert_shares(loaded, model)
    kv_tok = model.kv_bytes_per_token_with_mtp(spec.kv_dtype)
    s = _Setting(loaded, model, hw, topo, lens["input_len"], lens["output_len"], shares, src, kv_tok)
    alloc = _NodeAllocator(loaded, topo)
    order = sorted(range(len(spec.pools)), key=lambda j: spec.pools[j].role != "decode")
    pools: dict[str, PlacedPool] = {}
    for i in order:
        pools[spec.pools[i].role] = _place_pool(s, alloc, i)
    summ = topo.summary()
    plane = spec.kv_transfer.plane
    kv_bw = float(summ["ub_gb_s_per_die"] if plane == "ub" else summ["rdma_gb_s_per_die"])
    pools_list = [p for p in (pools.get("prefill"), pools["decode"]) if p is not None]
    return PlacedPlan(loaded=loaded, spec=spec, model=model, hw=hw, topology=topo,
                      prefill=pools.get("prefill"), decode=pools["decode"], kv_transfer_gb_s=kv_bw,
                      kv_bytes_per_token=float(kv_tok), fits=True,
                      chips=sum(p.chips for p in pools_list), dies=sum(p.dies for p in pools_list),
                      lengths=lens, kv_pair=cross_pod_kv(topo, pools.get("prefill"), pools["decode"], kv_bw))


def _load_specs(loaded: LoadedPlan) -> tuple[ModelSpec, HardwareSpec, Any]:
    """The plan's model, hardware and topology, checked against each other."""
    spec = loaded.spec
    model = located(loaded, "model", load_model, spec_ref(loaded, spec.model))
    hw = located(loaded, "hardware", load_hardware, spec_ref(loaded, spec.hardware))
    topo = located(loaded, "nodes" if spec.nodes else "cluster", build_topology,
                   spec_ref(loaded, spec.cluster), spec.nodes)
    why = chip_mismatch(hw, topo)
    if why:
        raise plan_error(loaded, "hardware", why)
    if spec.quant == "fp8" and hw.peak_tflops_per_die.fp8 is None and hw.peak_tflops_per_die.int8 is None:
        raise plan_error(loaded, "quant", f"{hw.name} has no 8-bit tensor cores for fp8")
    return model, hw, topo


def _place_pool(s: _Setting, alloc: _NodeAllocator, i: int) -> PlacedPool:
    """Place pool ``i`` of the plan: layout, dies, expert map, cost model, budgets and HBM."""
    pool = s.loaded.spec.pools[i]
    w = f"pools[{i}]"
    lay = _pool_layout(s.loaded, i, pool, s.model, s.hw, s.topo)
    dies_sets = alloc.take(w, pool.role, pool.pods or [pool.pod or 0], pool.instances, pool.chips,
                           pool.pods is not None)
    fabric = fabric_for(spec_ref(s.loaded, s.loaded.spec.cluster), s.hw, lay.ep)
    # sequences in one microbatch decide how far a batch's expert load strays from the long run
    budget = 0
    if pool.role == "decode":
        seqs = lay.dp * float(pool.batch_per_die) / lay.microbatches  # one domain's (MA: domains take turns)
        m = s.model.top_k * (1 + lay.mtp)           # token-expert pairs per sequence per step
    else:
        budget = pool.token_budget_per_die or PREFILL_TOKENS_PER_CHIP // s.hw.dies_per_chip
        seqs = lay.dies * budget / max(s.input_len, 1.0) / lay.microbatches
        m = s.model.top_k * max(s.input_len, 1.0)
    emap: dict[str, Any] = {}
    if s.model.is_moe:
        rule = REDUNDANT_RULE if pool.experts.redundant is None else f"plan: {w}.experts.redundant"
        lay, emap = _expert_map(s, lay, seqs, m, rule)
    cm = CostModel(s.model, s.hw, lay, fabric)
    placed: list[PlacedInstance] = []
    for k, (pod, d) in enumerate(dies_sets):
        attn = d[:lay.attention_dies] if lay.attention_dies else d
        rank_dies = attn[:lay.dp * lay.tp * lay.ma_domains].reshape(-1, lay.tp)
        placed.append(PlacedInstance(role=pool.role, index=k, dies=d, rank_dies=rank_dies, layout=lay,
                                     cost=cm, long_prompts=k >= pool.instances - pool.long_instances,
                                     pod=pod))
    pp = PlacedPool(role=pool.role, spec=pool, instances=placed, chips=pool.chips * pool.instances,
                    dies=lay.dies * pool.instances, expert_map=emap)
    if pool.role == "decode":
        hbm = _decode_budget(s, w, pp, cm, fabric)
    else:
        hbm = _prefill_budget(s, w, pp, cm, budget)
    pp.hbm = {k: round(v, 3) for k, v in hbm.items()}
    return pp


def _expert_map(s: _Setting, lay: Layout, seqs: float, m: float, rule: str) -> tuple[Layout, dict[str, Any]]:
    """Balance the expert slots over the routed EP ranks; the layout with the expected balancedness of
    a step of ``seqs`` sequences per microbatch x ``m`` token-expert pairs each
    (:func:`xds.experts.imbalance.step_balancedness`), and the pool's expert map."""
    routed = lay.ep - lay.shared_dies
    el = balance(s.shares * 1e6, lay.routed_slots, routed)
    kappa = s.loaded.spec.balancing.concentration or DEFAULT_KAPPA
    b = step_balancedness(el.phy2log, s.shares, routed, seqs, m, kappa)
    lay = replace(lay, balancedness=max(b, 1.0))
    return lay, {"loads": s.shares_source, "layers": el.layers, "experts": s.model.n_routed_experts,
                 "routed_slots": lay.routed_slots, "routed_ranks": routed,
                 "redundant_experts": lay.routed_slots - s.model.n_routed_experts, "redundant_rule": rule,
                 "concentration": kappa, "pairs_per_sequence": round(float(m), 1),
                 "slots_per_rank": lay.routed_slots // routed, "shared_dies": lay.shared_dies,
                 "replicas": {"min": int(el.replicas.min()), "max": int(el.replicas.max())},
                 "balancedness": round(float(lay.balancedness), 4),
                 "balancedness_long_run": round(float(el.balancedness.mean()), 4),
                 "sequences_per_microbatch": round(float(seqs), 1),
                 "phy2log": el.phy2log, "replica_counts": el.replicas}


def _decode_budget(s: _Setting, w: str, pp: PlacedPool, cm: CostModel, fabric: Fabric) -> dict[str, float]:
    """Check HBM (GB) at the decode pool's batch cap and set its KV capacity and concurrency; returns
    the per-die HBM breakdown."""
    pool, lay = pp.spec, pp.instances[0].layout
    I, O = s.input_len, s.output_len
    cap_i = int(pool.batch_per_die)
    hbm = cm.hbm_gb(cap_i, I + O)   # per DP rank; the cost model splits KV over TP as the attention allows
    _hbm_check(s.loaded, w + ".batch_per_die", s.hw, "attention" if lay.attention_dies else "decode",
               hbm, f"batch {cap_i} per rank x {I + O:.0f} tokens (mean input+output)")
    if lay.attention_dies:
        moe = _moe_die_hbm(s.model, s.hw, lay, fabric, cap_i)
        _hbm_check(s.loaded, w + ".ma.moe_dies", s.hw, "MoE", moe, f"batch {cap_i} per attention rank")
        pp.hbm_moe = {k: round(v, 3) for k, v in moe.items()}
    pp.batch_cap_per_rank = cap_i
    pp.kv_tokens_per_rank = _kv_tokens_per_rank(hbm, cm, s.kv_tok)
    pp.max_concurrent = int(min(cap_i, pp.kv_tokens_per_rank // max(I + O, 1.0))
                            * lay.dp * lay.ma_domains * pool.instances)
    return hbm


def _prefill_budget(s: _Setting, w: str, pp: PlacedPool, cm: CostModel, budget: int) -> dict[str, float]:
    """Check HBM (GB) with ``budget`` prompt tokens per die in flight and set the prefill pool's token
    budget, KV capacity and prompts per full batch; returns the per-die HBM breakdown."""
    pool, lay = pp.spec, pp.instances[0].layout
    pp.token_budget_per_die = int(budget)
    hbm = cm.hbm_gb(0, 0, phase="prefill", prefill_tokens=budget)
    _hbm_check(s.loaded, w + ".token_budget_per_die", s.hw, "prefill", hbm,
               f"{budget} prompt tokens per die in flight")
    pp.kv_tokens_per_rank = _kv_tokens_per_rank(hbm, cm, s.kv_tok)
    pp.max_concurrent = int(pool.instances * lay.dies * budget // max(s.input_len, 1.0))
    return hbm


def _kv_tokens_per_rank(hbm: dict[str, float], cm: CostModel, kv_tok: float) -> int:
    """KV capacity per DP rank (tokens): HBM left per die after everything but the KV cache (GB),
    times the dies that share a rank's KV (GQA by head; MLA holds it whole), over KV bytes per token."""
    free = hbm["capacity"] - (hbm["total"] - hbm["kv_cache"])
    return int(max(free, 0.0) * 1e9 * cm.kv_split // kv_tok)


class _NodeAllocator:
    """Hands out whole nodes from the front of each pod (decode first, then prefill) and packs
    sub-node instances onto shared nodes, spreading them so a node loss hits as few as possible.
    Die ids are fleet-wide: pod K's die d is ``K * dies_per_pod + d`` (pod 0's ids are the
    topology's own; an instance never leaves its pod's UB domain)."""

    def __init__(self, loaded: LoadedPlan, topo: Any):
        self.loaded, self.topo = loaded, topo
        self.next_node: dict[int, int] = {}

    def take(self, where: str, role: str, pods: list[int], instances: int, chips: int, listed: bool
             ) -> list[tuple[int, np.ndarray]]:
        """(pod, fleet-wide die ids (int64)) of each of ``instances`` instances of ``chips`` chips;
        ``pods`` holds each instance's pod when ``listed`` (the pool's ``pods:``), else the one pod
        of them all (its ``pod:``)."""
        t = self.topo
        for j, k in enumerate(pods):
            if k >= t.n_pods:
                raise plan_error(self.loaded, where + (f".pods[{j}]" if listed else ".pod"),
                                 f"pod {k} does not exist: cluster {t.name} has {t.n_pods} pod(s) "
                                 f"(0..{t.n_pods - 1}; a fleet is a cluster file with pods: N)")
        if not listed:          # one pod: checked for room before any per-instance list exists
            return [(pods[0], d + pods[0] * t.n_dies) for d in self._take_on(where, role, pods[0], instances, chips)]
        out: list[tuple[int, np.ndarray] | None] = [None] * len(pods)
        for k in sorted(set(pods)):
            idx = [j for j, q in enumerate(pods) if q == k]
            for j, d in zip(idx, self._take_on(where, role, k, len(idx), chips)):
                out[j] = (k, d + k * t.n_dies)
        return out  # type: ignore[return-value]

    def _take_on(self, where: str, role: str, pod: int, instances: int, chips: int) -> list[np.ndarray]:
        """Pod-local die ids of ``instances`` instances of ``chips`` chips on ``pod``."""
        t = self.topo
        cpn = t.chips_per_node
        dies = chips * t.dies_per_chip
        if chips >= cpn:
            if chips % cpn:
                raise plan_error(self.loaded, where + ".chips",
                                 f"a {role} instance of {chips} chips spans more than one node but is not a "
                                 f"whole number of {cpn}-chip nodes (instances are placed on whole nodes)")
            per = chips // cpn
            need = per * instances
        else:
            if cpn % chips:
                raise plan_error(self.loaded, where + ".chips",
                                 f"{chips}-chip {role} instances do not tile a {cpn}-chip node "
                                 f"(use a divisor of {cpn} or whole nodes)")
            need = -(-instances * chips // cpn)
        first = self.next_node.get(pod, 0)
        if first + need > t.n_nodes:
            on = f" on pod {pod}" if t.n_pods > 1 else ""
            raise plan_error(self.loaded, where,
                             f"{role} needs {need} nodes ({instances} x {chips} chips){on} but only "
                             f"{t.n_nodes - first} of the {'pod' if t.n_pods > 1 else 'cluster'}'s "
                             f"{t.n_nodes} nodes are left ({first} already used)")
        self.next_node[pod] = first + need
        out = []
        if chips >= cpn:
            for i in range(instances):
                n0 = first + i * per
                out.append(np.arange(n0 * t.dies_per_node, (n0 + per) * t.dies_per_node, dtype=np.int64))
        else:
            # round-robin over the nodes: node j holds instances j, j+need, ... in consecutive slots
            fill = np.zeros(need, dtype=int)
            for i in range(instances):
                n = first + i % need
                d0 = n * t.dies_per_node + fill[i % need] * dies
                fill[i % need] += 1
                out.append(np.arange(d0, d0 + dies, dtype=np.int64))
        return out


def _pool_layout(loaded: LoadedPlan, i: int, pool: PoolSpec, model: ModelSpec, hw: HardwareSpec,
                 topo: Any) -> Layout:
    """Validate one pool's layout against its dies and the model; return the cost-model layout
    (balancedness still 1)."""
    spec = loaded.spec
    w = f"pools[{i}]"
    lay = pool.layout
    dies = pool.chips * hw.dies_per_chip
    E = model.n_routed_experts
    if lay.tp > topo.dies_per_node or topo.dies_per_node % lay.tp:
        raise plan_error(loaded, w + ".layout.tp",
                         f"TP{lay.tp} groups must fit inside one {topo.dies_per_node}-die node (TP must divide "
                         f"{topo.dies_per_node})")
    if pool.ma is not None:
        ma = pool.ma
        if ma.attention_dies + ma.moe_dies != dies:
            raise plan_error(loaded, w + ".ma",
                             f"attention_dies {ma.attention_dies} + moe_dies {ma.moe_dies} = "
                             f"{ma.attention_dies + ma.moe_dies} must equal the instance's {dies} dies "
                             f"({pool.chips} chips x {hw.dies_per_chip})")
        if lay.dp * lay.tp * ma.domains != ma.attention_dies:
            raise plan_error(loaded, w + ".layout.dp",
                             f"DP{lay.dp} x TP{lay.tp} x {ma.domains} domains = {lay.dp * lay.tp * ma.domains} "
                             f"must equal the {ma.attention_dies} attention dies")
        if lay.ep != ma.moe_dies:
            raise plan_error(loaded, w + ".layout.ep",
                             f"EP{lay.ep} must equal the {ma.moe_dies} MoE dies of the MA layout")
    else:
        if lay.dp * lay.tp != dies:
            raise plan_error(loaded, w + ".layout.dp",
                             f"DP{lay.dp} x TP{lay.tp} = {lay.dp * lay.tp} must equal the instance's {dies} dies "
                             f"({pool.chips} chips x {hw.dies_per_chip})")
        if lay.ep != dies:
            raise plan_error(loaded, w + ".layout.ep",
                             f"EP{lay.ep} must equal the instance's {dies} dies ({pool.chips} chips x "
                             f"{hw.dies_per_chip}); xds runs MoE over every die of an instance")
    ex = pool.experts
    slots = 0
    if model.is_moe:
        if ex.shared_dies >= lay.ep:
            raise plan_error(loaded, w + ".experts.shared_dies",
                             f"{ex.shared_dies} shared-expert dies leave no die for routed experts in EP{lay.ep}")
        if ex.shared_dies and not model.shared_intermediate:
            raise plan_error(loaded, w + ".experts.shared_dies",
                             f"{model.name} has no shared expert; shared_dies must be 0")
        routed = lay.ep - ex.shared_dies
        slots = rule_slots(E, routed) if ex.redundant is None else E + ex.redundant
        if slots < routed:
            raise plan_error(loaded, w + ".experts.redundant",
                             f"{E} experts + {ex.redundant} redundant = {slots} slots leave some of the "
                             f"{routed} routed EP ranks empty (need at least {routed - E} redundant)")
        if slots % routed:
            lo = (slots // routed) * routed - E
            raise plan_error(loaded, w + ".experts.redundant",
                             f"{E} experts + {ex.redundant} redundant = {slots} slots do not divide over "
                             f"{routed} routed EP ranks (EP{lay.ep} - {ex.shared_dies} shared dies); "
                             f"use redundant {max(lo, 0) if lo >= 0 and lo + E >= routed else ''}"
                             f"{' or ' if lo >= 0 and lo + E >= routed else ''}{lo + routed}")
    elif (ex.redundant or 0) or ex.shared_dies:
        raise plan_error(loaded, w + ".experts", f"{model.name} is a dense model; it has no experts to place")
    mtp = pool.mtp.draft_tokens if (pool.mtp and pool.role == "decode") else 0
    acc = pool.mtp.acceptance if pool.mtp else 0.7
    quant = spec.quant or hw.default_quant
    ma = pool.ma
    return Layout(dies=dies, ep=lay.ep, dp=lay.dp, tp=lay.tp, shared_dies=ex.shared_dies,
                  routed_slots=slots, mtp=mtp, mtp_acceptance=acc, microbatches=pool.microbatches,
                  quant=quant, kv_dtype=spec.kv_dtype,
                  attention_dies=ma.attention_dies if ma else 0, ma_domains=ma.domains if ma else 1)


def _hbm_check(loaded: LoadedPlan, where: str, hw: HardwareSpec, die_type: str, hbm: dict[str, float],
               what: str) -> None:
    """Raise, located at ``where``, when the per-die HBM breakdown ``hbm`` (GB) exceeds capacity;
    ``what`` names the load it was priced at."""
    if hbm["total"] > hbm["capacity"] + 1e-9:
        fill = ", ".join(f"{k} {v:.1f}" for k, v in hbm.items()
                         if k not in ("total", "capacity", "free") and v > 0.05)
        raise plan_error(loaded, where,
                         f"does not fit HBM: each {hw.name} {die_type} die needs {hbm['total']:.1f} GB but has "
                         f"{hbm['capacity']:.0f} GB at {what} ({fill})")


def _moe_die_hbm(model: ModelSpec, hw: HardwareSpec, lay: Layout, fabric: Fabric, batch: float) -> dict:
    """HBM of an MA MoE die: expert weights + dispatch/combine buffers + reserve (GB)."""
    plain = CostModel(model, hw, replace(lay, attention_dies=0, ma_domains=1, dp=lay.ep, dies=lay.ep), fabric)
    # every MoE die receives the tokens of all attention ranks of one domain
    per_die_batch = batch * lay.dp / lay.ep
    h = plain.hbm_gb(per_die_batch, 0)
    out = {"weights_experts": h["weights_experts"], "comm_buffers": h["comm_buffers"],
           "reserve": h["reserve"]}
    out["total"] = sum(out.values())
    out["capacity"] = h["capacity"]
    out["free"] = out["capacity"] - out["total"]
    return out
