"""Planner: place a plan's instances, ranks and expert slots on concrete dies of the topology, check
HBM, and predict steady-state performance with the cost model.

Data flow: ``load_plan`` (spec) → :func:`place` → :class:`PlacedPlan`, which the engine simulates and
chaos perturbs. The dataclasses below are the interface later layers rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .cost import CostModel, Fabric, Layout
from .errors import XdsError
from .spec.model import ModelSpec
from .spec.hardware import HardwareSpec
from .spec.plan import LoadedPlan, PlanSpec, PoolSpec, load_plan
from .workload import plan_workload


@dataclass
class PlacedInstance:
    """One instance on concrete dies."""

    role: str                   # "prefill" | "decode"
    index: int                  # index within its pool
    dies: np.ndarray            # global die ids of the instance (int64), attention dies first for MA
    rank_dies: np.ndarray       # [dp, tp] global die ids of each attention DP rank
    layout: Layout              # cost-model layout (balancedness filled in from the expert map)
    cost: CostModel             # prices this instance's iterations
    long_prompts: bool = False  # prefill instance reserved for long prompts


@dataclass
class PlacedPool:
    """All instances of one role, with the per-die budgets the engine enforces."""

    role: str
    spec: PoolSpec
    instances: list[PlacedInstance]
    chips: int                  # over all instances
    dies: int
    batch_cap_per_rank: int = 0         # decode: max requests in flight per DP rank
    kv_tokens_per_rank: int = 0         # decode: KV capacity per DP rank (tokens) after weights/buffers
    token_budget_per_die: int = 0       # prefill: max new tokens per batch per die
    hbm: dict[str, float] = field(default_factory=dict)       # per-die HBM breakdown (GB)
    expert_map: dict[str, Any] = field(default_factory=dict)  # slots per rank, phy2log, replicas, ...
    max_concurrent: int = 0             # decode: requests held at once at the workload's mean lengths;
                                        # prefill: prompts in one full batch over all instances
    hbm_moe: dict[str, float] = field(default_factory=dict)   # MA: per-MoE-die HBM breakdown (GB)

    def ranks_total(self) -> int:
        """Attention DP ranks over all instances."""
        lay = self.instances[0].layout
        return lay.dp * lay.ma_domains * len(self.instances)


@dataclass
class PlacedPlan:
    """A plan placed on a topology (see :func:`place`)."""

    loaded: LoadedPlan
    spec: PlanSpec
    model: ModelSpec
    hw: HardwareSpec
    topology: Any               # xds.topology.Topology
    prefill: PlacedPool | None  # None: prefill runs elsewhere (requests arrive prefilled)
    decode: PlacedPool
    kv_transfer_gb_s: float     # per-die bandwidth of the P→D KV transfer (GB/s)
    kv_bytes_per_token: float   # KV bytes per token incl. MTP layers (bytes)
    fits: bool
    chips: int
    dies: int
    lengths: dict[str, Any] = field(default_factory=dict)  # mean input/output tokens, rate (req/s)

    def pools(self) -> list[PlacedPool]:
        return [p for p in (self.prefill, self.decode) if p is not None]

    # ------------------------------------------------------------------ prediction
    def predicted(self) -> dict[str, Any]:
        """Steady-state performance per pool from the cost model at the pool's caps and the workload's
        mean lengths, and the verdict against the SLO.

        Decode: one iteration with every DP rank at ``batch_cap_per_rank`` and context at the mean of
        [I, I + O] → ``step_time_ms``, ``tpot_ms`` (step / tokens per step), ``output_throughput_per_chip``.
        Prefill: ``ttft_full_batch_ms`` is one full batch (``token_budget_per_die`` tokens per die) and
        ``input_throughput_per_chip`` its throughput; with an offered rate (the workload's), the batch
        that accumulates during one batch time is the fixed point B = rate_per_die × T(B), and
        ``ttft_ms`` = 1.5 × T(B) (on average half of the batch in flight, then its own) + the P→D KV
        transfer; without a rate ``ttft_ms`` is the full batch. Margins are (target − predicted) / target.
        """
        I = float(self.lengths.get("input_len", DEFAULT_LENGTHS[0]))
        O = float(self.lengths.get("output_len", DEFAULT_LENGTHS[1]))
        rate = self.lengths.get("rate_rps")
        slo = self.spec.slo
        doc: dict[str, Any] = {"input_len": round(I, 1), "output_len": round(O, 1),
                               "rate_rps": None if rate is None else round(rate, 3)}
        d = self.decode
        lay, cm = d.instances[0].layout, d.instances[0].cost
        b = float(d.batch_cap_per_rank)
        ctx = I + O / 2.0
        step_ms = float(np.ravel(cm.decode_step_us(np.array([b]), np.array([b * ctx])))[0]) / 1e3
        tps = lay.tokens_per_step()
        tpot = step_ms / tps
        chips_inst = d.chips / len(d.instances)
        ranks = lay.dp * lay.ma_domains
        dec = {"batch_per_rank": b, "step_time_ms": round(step_ms, 3), "tokens_per_step": round(tps, 4),
               "tpot_ms": round(tpot, 3),
               "output_throughput_per_chip": round(b * ranks * tps / (step_ms / 1e3) / chips_inst, 1),
               "output_throughput": round(b * ranks * tps / (step_ms / 1e3) * len(d.instances), 1),
               "balancedness": round(float(lay.balancedness), 4)}
        if rate:
            # Little's law: requests in decode = rate × decode time per request
            need = rate * O * tpot / 1e3
            dec["decode_utilization"] = round(need / max(d.max_concurrent, 1), 4)
        doc["decode"] = dec
        ttft = None
        kv_ms = I * self.kv_bytes_per_token / (self.kv_transfer_gb_s * 1e9) * 1e3
        if self.prefill is not None:
            p = self.prefill
            pl, pc = p.instances[0].layout, p.instances[0].cost
            n = float(p.token_budget_per_die)
            grid = np.geomspace(max(I / pl.dies, 1.0), n, 96)
            grid[-1] = n
            seqs = grid / I
            t_us = np.asarray(pc.prefill_batch_us(grid, seqs * I * (I + 1) / 2.0, seqs), dtype=float)
            t_full = float(t_us[-1]) / 1e3
            dpc = self.hw.dies_per_chip
            pre = {"token_budget_per_die": int(n), "ttft_full_batch_ms": round(t_full, 2),
                   "input_throughput_per_chip": round(n * dpc / (t_full / 1e3), 1),
                   "kv_transfer_ms": round(kv_ms, 3), "balancedness": round(float(pl.balancedness), 4)}
            ttft = t_full + kv_ms
            if rate:
                lam = rate * I / p.dies               # prompt tokens per second per prefill die
                ok = lam * t_us / 1e6 <= grid
                pre["prefill_utilization"] = round(lam * t_full / 1e3 / n, 4)
                if ok.any():
                    t_b = float(t_us[int(np.argmax(ok))]) / 1e3
                    ttft = 1.5 * t_b + kv_ms
                    pre["batch_tokens_per_die"] = round(float(grid[int(np.argmax(ok))]), 1)
                else:
                    ttft = float("inf")
                    pre["overloaded"] = True
            pre["ttft_ms"] = round(ttft, 2) if np.isfinite(ttft) else None
            doc["prefill"] = pre
        verdict: dict[str, Any] = {"tpot_ms": slo.tpot_ms, "tpot_margin": round((slo.tpot_ms - tpot) / slo.tpot_ms, 4)}
        meets = tpot <= slo.tpot_ms
        if ttft is not None:
            verdict["ttft_ms"] = slo.ttft_ms
            verdict["ttft_margin"] = round((slo.ttft_ms - ttft) / slo.ttft_ms, 4) if np.isfinite(ttft) else None
            meets = meets and bool(np.isfinite(ttft)) and ttft <= slo.ttft_ms
        else:
            verdict["ttft"] = "not predicted: prefill runs outside this plan"
        if rate and dec.get("decode_utilization", 0) > 1:
            meets = False
            verdict["decode_overloaded"] = True
        verdict["meets_slo"] = bool(meets)
        doc["slo"] = verdict
        doc["meets_slo"] = bool(meets)
        return doc

    # ------------------------------------------------------------------ JSON
    def to_json(self, *, phy2log: bool = True) -> dict[str, Any]:
        """The ``xds plan --json`` document: which dies serve which role, layouts, HBM per die,
        KV capacity, expert maps, ``fits`` and ``predicted``."""
        topo = self.topology
        spec = self.spec
        pools = []
        for p in self.pools():
            insts = []
            for inst in p.instances:
                lay = inst.layout
                insts.append({
                    "index": inst.index, "dies": inst.dies, "nodes": np.unique(topo.die_node[inst.dies]),
                    "rank_dies": inst.rank_dies, "long_prompts": inst.long_prompts,
                    "layout": {"dies": lay.dies, "dp": lay.dp, "tp": lay.tp, "ep": lay.ep,
                               "shared_dies": lay.shared_dies, "routed_slots": lay.routed_slots,
                               "mtp": lay.mtp, "mtp_acceptance": lay.mtp_acceptance,
                               "microbatches": lay.microbatches, "quant": lay.quant,
                               "kv_dtype": lay.kv_dtype, "balancedness": round(float(lay.balancedness), 4),
                               "attention_dies": lay.attention_dies, "ma_domains": lay.ma_domains}})
            em = {k: v for k, v in p.expert_map.items() if phy2log or k not in ("phy2log", "replica_counts")}
            if "replica_counts" in em:
                em.pop("replica_counts")
            all_dies = np.concatenate([i.dies for i in p.instances])
            doc = {"role": p.role, "instances": insts, "chips": p.chips, "dies": p.dies,
                   "nodes": int(len(np.unique(topo.die_node[all_dies]))),
                   "hbm_gb_per_die": p.hbm}
            if p.hbm_moe:
                doc["hbm_gb_per_moe_die"] = p.hbm_moe
            if p.role == "decode":
                doc.update({"batch_cap_per_rank": p.batch_cap_per_rank,
                            "kv_tokens_per_rank": p.kv_tokens_per_rank, "max_concurrent": p.max_concurrent})
            else:
                doc.update({"token_budget_per_die": p.token_budget_per_die,
                            "kv_tokens_per_rank": p.kv_tokens_per_rank,
                            "prompts_per_full_batch": p.max_concurrent})
            doc["expert_map"] = em
            pools.append(doc)
        used_nodes = int(len(np.unique(topo.die_node[np.concatenate(
            [i.dies for p in self.pools() for i in p.instances])])))
        return {"plan": spec.name, "file": self.loaded.path, "source": spec.source,
                "model": self.model.name, "hardware": self.hw.name, "cluster": topo.name,
                "cluster_nodes": topo.n_nodes, "nodes_used": used_nodes, "chips": self.chips,
                "dies": self.dies, "fits": self.fits, "workload": self.lengths,
                "kv_transfer": {"plane": spec.kv_transfer.plane, "gb_s_per_die": self.kv_transfer_gb_s,
                                "kv_bytes_per_token": self.kv_bytes_per_token},
                "pools": pools, "predicted": self.predicted()}


def plan_command(path: str | None, search: bool = False, **kw: Any) -> dict[str, Any]:
    """``xds plan`` as a function. Without ``search``: load, place and predict ``path``; returns
    the JSON document (``predicted.meets_slo`` decides the exit code). With ``search``: see
    :func:`xds.search.run_search` (``kw`` are its arguments; ``path`` optionally supplies model,
    hardware, cluster, SLO and lengths)."""
    if search:
        from .search import run_search

        return run_search(plan=path, **kw)
    if path is None:
        raise XdsError("give a plan file (or --search with --model/--hardware ...)", file="PLAN")
    return place(load_plan(path)).to_json()



# ======================================================================================= placement
DEFAULT_LENGTHS = (4096, 256)   # (input, output) tokens when a plan has no workload (CMv2 §5.2 decode)
PREFILL_TOKENS_PER_CHIP = 16384  # CMv2 §5.2: 16K tokens per NPU prefill batch


def _err(loaded: LoadedPlan, where: str, msg: str) -> XdsError:
    return XdsError(msg, file=loaded.path, where=where)


def _spec_ref(loaded: LoadedPlan, name: str) -> str:
    """A built-in name stays a name; something that looks like a path resolves from the plan folder."""
    if "/" in name or name.endswith((".yaml", ".yml", ".json")):
        return str(loaded.resolve_path(name))
    return name


def _located(loaded: LoadedPlan, where: str, fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except XdsError as exc:
        raise XdsError(exc.message, file=loaded.path,
                       where=where + (f" ({exc.file}{': ' + exc.where if exc.where else ''})"
                                      if exc.file else "")) from None


def workload_lengths(loaded: LoadedPlan) -> dict[str, Any]:
    """Mean input/output lengths (tokens) and offered rate (req/s) of the plan's default workload;
    DEFAULT_LENGTHS and no rate when the plan has none."""
    spec = loaded.spec
    if spec.workload is None:
        return {"source": "default", "input_len": float(DEFAULT_LENGTHS[0]),
                "output_len": float(DEFAULT_LENGTHS[1]), "rate_rps": None}

    try:
        w = plan_workload(loaded, seed=0)
    except XdsError as exc:
        raise exc.at(file=loaded.path, where="workload") from None
    s = w.summary()
    return {"source": s["name"] or "workload", "input_len": float(s["input"]["mean"]),
            "output_len": float(s["output"]["mean"]),
            "rate_rps": float(s["rate_rps"]) if s["rate_rps"] else None, "requests": s["requests"]}


def expert_shares(loaded: LoadedPlan, model: ModelSpec) -> tuple[np.ndarray, str]:
    """Long-run expert shares [layers, experts] (rows sum to 1) and where they came from."""
    bal = loaded.spec.balancing
    E = model.n_routed_experts
    if bal.loads == "synthetic":
        from .imbalance import DEFAULT_HOT, long_run_shares

        hot = float(min(bal.hot_ratio if bal.hot_ratio is not None else DEFAULT_HOT, E - 1e-6))
        return long_run_shares(E, hot), f"synthetic (hottest expert {hot:g}x mean)"
    from .experts import load_loads

    path = loaded.resolve_path(bal.loads)
    try:
        w = load_loads(path, label="balancing.loads")
    except XdsError as exc:
        raise exc.at(file=loaded.path, where="balancing.loads") from None
    if w.shape[1] != E:
        raise _err(loaded, "balancing.loads",
                   f"{path} has {w.shape[1]} experts per layer but {model.name} has {E} routed experts")
    tot = w.sum(axis=1, keepdims=True).astype(float)
    if np.any(tot <= 0):
        raise _err(loaded, "balancing.loads", f"{path} has a layer with no load (all zeros)")
    return w / tot, str(path)


class _NodeAllocator:
    """Hands out whole nodes from the front of the cluster (decode first, then prefill) and packs
    sub-node instances onto shared nodes, spreading them so a node loss hits as few as possible."""

    def __init__(self, loaded: LoadedPlan, topo: Any):
        self.loaded, self.topo = loaded, topo
        self.next_node = 0

    def take(self, where: str, role: str, instances: int, chips: int) -> list[np.ndarray]:
        t = self.topo
        cpn, dpc = t.chips_per_node, t.dies_per_chip
        dies = chips * dpc
        if chips >= cpn:
            if chips % cpn:
                raise _err(self.loaded, where + ".chips",
                           f"a {role} instance of {chips} chips spans more than one node but is not a "
                           f"whole number of {cpn}-chip nodes (instances are placed on whole nodes)")
            per = chips // cpn
            need = per * instances
        else:
            if cpn % chips:
                raise _err(self.loaded, where + ".chips",
                           f"{chips}-chip {role} instances do not tile a {cpn}-chip node "
                           f"(use a divisor of {cpn} or whole nodes)")
            need = -(-instances * chips // cpn)
        if self.next_node + need > t.n_nodes:
            raise _err(self.loaded, where,
                       f"{role} needs {need} nodes ({instances} x {chips} chips) but only "
                       f"{t.n_nodes - self.next_node} of the cluster's {t.n_nodes} nodes are left "
                       f"({self.next_node} already used)")
        first = self.next_node
        self.next_node += need
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
        raise _err(loaded, w + ".layout.tp",
                   f"TP{lay.tp} groups must fit inside one {topo.dies_per_node}-die node (TP must divide "
                   f"{topo.dies_per_node})")
    if pool.ma is not None:
        ma = pool.ma
        if ma.attention_dies + ma.moe_dies != dies:
            raise _err(loaded, w + ".ma",
                       f"attention_dies {ma.attention_dies} + moe_dies {ma.moe_dies} = "
                       f"{ma.attention_dies + ma.moe_dies} must equal the instance's {dies} dies "
                       f"({pool.chips} chips x {hw.dies_per_chip})")
        if lay.dp * lay.tp * ma.domains != ma.attention_dies:
            raise _err(loaded, w + ".layout.dp",
                       f"DP{lay.dp} x TP{lay.tp} x {ma.domains} domains = {lay.dp * lay.tp * ma.domains} "
                       f"must equal the {ma.attention_dies} attention dies")
        if lay.ep != ma.moe_dies:
            raise _err(loaded, w + ".layout.ep",
                       f"EP{lay.ep} must equal the {ma.moe_dies} MoE dies of the MA layout")
    else:
        if lay.dp * lay.tp != dies:
            raise _err(loaded, w + ".layout.dp",
                       f"DP{lay.dp} x TP{lay.tp} = {lay.dp * lay.tp} must equal the instance's {dies} dies "
                       f"({pool.chips} chips x {hw.dies_per_chip})")
        if lay.ep != dies:
            raise _err(loaded, w + ".layout.ep",
                       f"EP{lay.ep} must equal the instance's {dies} dies ({pool.chips} chips x "
                       f"{hw.dies_per_chip}); xds runs MoE over every die of an instance")
    ex = pool.experts
    slots = 0
    if model.is_moe:
        if ex.shared_dies >= lay.ep:
            raise _err(loaded, w + ".experts.shared_dies",
                       f"{ex.shared_dies} shared-expert dies leave no die for routed experts in EP{lay.ep}")
        if ex.shared_dies and not model.shared_intermediate:
            raise _err(loaded, w + ".experts.shared_dies",
                       f"{model.name} has no shared expert; shared_dies must be 0")
        routed = lay.ep - ex.shared_dies
        slots = E + ex.redundant
        if slots < routed:
            raise _err(loaded, w + ".experts.redundant",
                       f"{E} experts + {ex.redundant} redundant = {slots} slots leave some of the "
                       f"{routed} routed EP ranks empty (need at least {routed - E} redundant)")
        if slots % routed:
            lo = (slots // routed) * routed - E
            raise _err(loaded, w + ".experts.redundant",
                       f"{E} experts + {ex.redundant} redundant = {slots} slots do not divide over "
                       f"{routed} routed EP ranks (EP{lay.ep} - {ex.shared_dies} shared dies); "
                       f"use redundant {max(lo, 0) if lo >= 0 and lo + E >= routed else ''}"
                       f"{' or ' if lo >= 0 and lo + E >= routed else ''}{lo + routed}")
    elif ex.redundant or ex.shared_dies:
        raise _err(loaded, w + ".experts", f"{model.name} is a dense model; it has no experts to place")
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
    if hbm["total"] > hbm["capacity"] + 1e-9:
        fill = ", ".join(f"{k} {v:.1f}" for k, v in hbm.items()
                         if k not in ("total", "capacity", "free") and v > 0.05)
        raise _err(loaded, where,
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


def place(loaded: LoadedPlan) -> PlacedPlan:
    """Place every instance of ``loaded`` on concrete dies, its expert slots on EP ranks, and check
    HBM per die. Raises :class:`XdsError` (file = the plan, where = the field) naming the violated
    constraint and its numbers."""
    from .estimate import fabric_for
    from .imbalance import batch_balancedness
    from .spec.model import load_model
    from .spec.hardware import load_hardware
    from .topology import build_topology

    spec = loaded.spec
    model = _located(loaded, "model", load_model, _spec_ref(loaded, spec.model))
    hw = _located(loaded, "hardware", load_hardware, _spec_ref(loaded, spec.hardware))
    topo = _located(loaded, "nodes" if spec.nodes else "cluster", build_topology,
                    _spec_ref(loaded, spec.cluster), spec.nodes)
    if topo.dies_per_chip != hw.dies_per_chip:
        raise _err(loaded, "hardware",
                   f"{hw.name} has {hw.dies_per_chip} dies per chip but cluster {topo.name} is built of "
                   f"{topo.dies_per_chip}-die chips")
    if spec.quant == "fp8" and hw.peak_tflops_per_die.fp8 is None and hw.peak_tflops_per_die.int8 is None:
        raise _err(loaded, "quant", f"{hw.name} has no 8-bit tensor cores for fp8")
    lens = workload_lengths(loaded)
    I, O = lens["input_len"], lens["output_len"]
    shares = src = None
    if model.is_moe:
        shares, src = expert_shares(loaded, model)
    kv_tok = model.kv_bytes_per_token(spec.kv_dtype) * (1 + model.mtp_layers / model.layers)
    alloc = _NodeAllocator(loaded, topo)
    order = sorted(range(len(spec.pools)), key=lambda j: spec.pools[j].role != "decode")
    pools: dict[str, PlacedPool] = {}
    for i in order:
        pool = spec.pools[i]
        w = f"pools[{i}]"
        lay = _pool_layout(loaded, i, pool, model, hw, topo)
        dies_sets = alloc.take(w, pool.role, pool.instances, pool.chips)
        fabric = fabric_for(_spec_ref(loaded, spec.cluster), hw, lay.ep)
        routed = lay.ep - lay.shared_dies
        # sequences in one microbatch decide how far a batch's expert load strays from the long run
        if pool.role == "decode":
            cap = float(pool.batch_per_die)
            seqs = lay.dp * cap / lay.microbatches     # one domain's microbatch (MA: domains take turns)
        else:
            budget = pool.token_budget_per_die or PREFILL_TOKENS_PER_CHIP // hw.dies_per_chip
            seqs = lay.dies * budget / max(I, 1.0) / lay.microbatches
        emap: dict[str, Any] = {}
        if model.is_moe:
            from .experts import balance

            el = balance(shares * 1e6, lay.routed_slots, routed)
            b = batch_balancedness(el.phy2log, shares, routed, seqs)
            lay = replace(lay, balancedness=max(b, 1.0))
            emap = {"loads": src, "layers": el.layers, "experts": model.n_routed_experts,
                    "routed_slots": lay.routed_slots, "routed_ranks": routed,
                    "slots_per_rank": lay.routed_slots // routed, "shared_dies": lay.shared_dies,
                    "replicas": {"min": int(el.replicas.min()), "max": int(el.replicas.max())},
                    "balancedness": round(float(lay.balancedness), 4),
                    "balancedness_long_run": round(float(el.balancedness.mean()), 4),
                    "sequences_per_microbatch": round(float(seqs), 1),
                    "phy2log": el.phy2log, "replica_counts": el.replicas}
        cm = CostModel(model, hw, lay, fabric)
        placed: list[PlacedInstance] = []
        n_long = pool.long_instances
        for k, d in enumerate(dies_sets):
            attn = d[:lay.attention_dies] if lay.attention_dies else d
            rank_dies = attn[:lay.dp * lay.tp * lay.ma_domains].reshape(-1, lay.tp)
            placed.append(PlacedInstance(role=pool.role, index=k, dies=d, rank_dies=rank_dies, layout=lay,
                                         cost=cm, long_prompts=k >= pool.instances - n_long))
        pp = PlacedPool(role=pool.role, spec=pool, instances=placed, chips=pool.chips * pool.instances,
                        dies=lay.dies * pool.instances, expert_map=emap)
        if pool.role == "decode":
            cap_i = int(pool.batch_per_die)
            hbm = cm.hbm_gb(cap_i, I + O)   # per DP rank; the cost model splits KV over TP as the attention allows
            _hbm_check(loaded, w + ".batch_per_die", hw, "attention" if lay.attention_dies else "decode",
                       hbm, f"batch {cap_i} per rank x {I + O:.0f} tokens (mean input+output)")
            if lay.attention_dies:
                moe = _moe_die_hbm(model, hw, lay, fabric, cap_i)
                _hbm_check(loaded, w + ".ma.moe_dies", hw, "MoE", moe, f"batch {cap_i} per attention rank")
                pp.hbm_moe = {k: round(v, 3) for k, v in moe.items()}
            free = hbm["capacity"] - (hbm["total"] - hbm["kv_cache"])
            pp.batch_cap_per_rank = cap_i
            # HBM left per die, times the dies that share a rank's KV (GQA by head; MLA holds it whole)
            pp.kv_tokens_per_rank = int(max(free, 0.0) * 1e9 * cm.kv_split // kv_tok)
            pp.max_concurrent = int(min(cap_i, pp.kv_tokens_per_rank // max(I + O, 1.0))
                                    * lay.dp * lay.ma_domains * pool.instances)
        else:
            pp.token_budget_per_die = int(budget)
            hbm = cm.hbm_gb(0, 0, phase="prefill", prefill_tokens=budget)
            _hbm_check(loaded, w + ".token_budget_per_die", hw, "prefill", hbm,
                       f"{budget} prompt tokens per die in flight")
            free = hbm["free"]
            pp.kv_tokens_per_rank = int(max(hbm["capacity"] - (hbm["total"] - hbm["kv_cache"]), 0)
                                        * 1e9 * cm.kv_split // kv_tok)
            pp.max_concurrent = int(pool.instances * lay.dies * budget // max(I, 1.0))
        pp.hbm = {k: round(v, 3) for k, v in hbm.items()}
        pools[pool.role] = pp
    summ = topo.summary()
    plane = spec.kv_transfer.plane
    kv_bw = float(summ["ub_gb_s_per_die"] if plane == "ub" else summ["rdma_gb_s_per_die"])
    pools_list = [p for p in (pools.get("prefill"), pools["decode"]) if p is not None]
    return PlacedPlan(loaded=loaded, spec=spec, model=model, hw=hw, topology=topo,
                      prefill=pools.get("prefill"), decode=pools["decode"], kv_transfer_gb_s=kv_bw,
                      kv_bytes_per_token=float(kv_tok), fits=True,
                      chips=sum(p.chips for p in pools_list), dies=sum(p.dies for p in pools_list),
                      lengths=lens)
