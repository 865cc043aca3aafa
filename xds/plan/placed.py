"""A plan placed on a topology: its instances on concrete dies, each pool's per-die budgets and HBM,
and the ``xds plan --json`` document. These dataclasses are the interface the engine simulates and
chaos perturbs (built by :func:`xds.plan.place`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cost import CostModel, Layout
from ..spec.hardware import HardwareSpec
from ..spec.model import ModelSpec
from ..spec.plan import LoadedPlan, PlanSpec, PoolSpec
from .predict import predict


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
    pod: int = 0                # the pod (UB domain) of a fleet the instance lives on


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


@dataclass
class PlacedPlan:
    """A plan placed on a topology (see :func:`xds.plan.place`)."""

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
    kv_pair: tuple[np.ndarray, np.ndarray] | None = None   # cross-pod P→D KV: see cross_pod_kv

    def pools(self) -> list[PlacedPool]:
        """The pools present, prefill first."""
        return [p for p in (self.prefill, self.decode) if p is not None]

    def pods_used(self) -> list[int]:
        """The pods (0-based) holding at least one instance."""
        return sorted({i.pod for p in self.pools() for i in p.instances})

    def predicted(self) -> dict[str, Any]:
        """Steady-state TPOT/TTFT (ms), throughput and the SLO verdict: see :func:`.predict.predict`."""
        return predict(self)

    def to_json(self, *, phy2log: bool = True) -> dict[str, Any]:
        """The ``xds plan --json`` document: which dies serve which role, layouts, HBM per die,
        KV capacity, expert maps, ``fits`` and ``predicted``."""
        topo = self.topology
        spec = self.spec
        pools = [_pool_json(p, topo, phy2log) for p in self.pools()]
        used_nodes = int(len(np.unique(fleet_nodes(topo, np.concatenate(
            [i.dies for p in self.pools() for i in p.instances])))))
        return {"plan": spec.name, "file": self.loaded.path, "source": spec.source,
                "model": self.model.name, "hardware": self.hw.name, "cluster": topo.name,
                "cluster_nodes": topo.n_nodes, "nodes_used": used_nodes, "chips": self.chips,
                "dies": self.dies, "fits": self.fits, "workload": self.lengths,
                "kv_transfer": {"plane": spec.kv_transfer.plane, "gb_s_per_die": self.kv_transfer_gb_s,
                                "kv_bytes_per_token": self.kv_bytes_per_token,
                                **_cross_pod_json(self)},
                **({"pods_used": self.pods_used()} if topo.n_pods > 1 else {}),
                "pools": pools, "predicted": self.predicted()}


def _layout_json(lay: Layout) -> dict[str, Any]:
    """One instance's layout in the ``xds plan --json`` document."""
    return {"dies": lay.dies, "dp": lay.dp, "tp": lay.tp, "ep": lay.ep,
            "shared_dies": lay.shared_dies, "routed_slots": lay.routed_slots,
            "mtp": lay.mtp, "mtp_acceptance": lay.mtp_acceptance,
            "microbatches": lay.microbatches, "quant": lay.quant,
            "kv_dtype": lay.kv_dtype, "balancedness": round(float(lay.balancedness), 4),
            "attention_dies": lay.attention_dies, "ma_domains": lay.ma_domains}


def _pool_json(p: PlacedPool, topo: Any, phy2log: bool) -> dict[str, Any]:
    """One pool in the ``xds plan --json`` document (``phy2log=False`` drops the slot map)."""
    insts = [{"index": inst.index, **({"pod": inst.pod} if topo.n_pods > 1 else {}), "dies": inst.dies,
              "nodes": np.unique(fleet_nodes(topo, inst.dies)),
              "rank_dies": inst.rank_dies, "long_prompts": inst.long_prompts,
              "layout": _layout_json(inst.layout)} for inst in p.instances]
    # replica_counts never goes into the document; phy2log is large, so callers may leave it out
    em = {k: v for k, v in p.expert_map.items() if k != "replica_counts" and (phy2log or k != "phy2log")}
    all_dies = np.concatenate([i.dies for i in p.instances])
    doc = {"role": p.role, "instances": insts, "chips": p.chips, "dies": p.dies,
           "nodes": int(len(np.unique(fleet_nodes(topo, all_dies)))),
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
    return doc


def fleet_nodes(topo: Any, dies: np.ndarray) -> np.ndarray:
    """Fleet-wide node ids of fleet-wide die ids (pod K's node n is ``K * nodes_per_pod + n``)."""
    d = np.asarray(dies, dtype=np.int64)
    return topo.die_node[d % topo.n_dies] + (d // topo.n_dies) * topo.n_nodes


def cross_pod_kv(topo: Any, prefill: PlacedPool | None, decode: PlacedPool,
                 kv_gb_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    """P→D KV transfer between instances on different pods: ``(factor, extra_s)``, each
    ``[prefill instances, decode instances]``. Pods share only the scale-out plane (DESIGN, fleets;
    CMv2 §3.2: the RDMA plane, 200 Gbps per die, also connects SuperPods), so a cross-pod transfer
    runs at the cluster's scale-out bandwidth per die whatever the plan's ``kv_transfer.plane``
    (``factor`` = that / the plan's per-die KV bandwidth ``kv_gb_s``; 1 inside a pod) and pays the
    scale-out latency between pods (``extra_s``, s; cluster ``scale_out.latency_us``). None when
    every instance is on one pod."""
    if prefill is None:
        return None
    pp = np.array([i.pod for i in prefill.instances])
    dp = np.array([i.pod for i in decode.instances])
    if len(set(pp.tolist()) | set(dp.tolist())) == 1:
        return None
    cross = pp[:, None] != dp[None, :]
    rdma = float(topo.derived.scale_out[0])
    factor = np.where(cross, rdma / kv_gb_s, 1.0)
    extra = np.where(cross, float(topo.spec.scale_out.latency_us) * 1e-6, 0.0)
    return factor, extra


def _cross_pod_json(pl: PlacedPlan) -> dict[str, Any]:
    """The cross-pod KV figures of ``xds plan --json`` (empty on one pod)."""
    if pl.kv_pair is None:
        return {}
    f, x = pl.kv_pair
    cross = f.size and bool((x > 0).any())
    return {"cross_pod_pairs": int((x > 0).sum()), "pairs": int(f.size),
            "cross_pod_gb_s_per_die": round(float(pl.kv_transfer_gb_s * f[x > 0].min()), 3) if cross else None,
            "cross_pod_latency_us": round(float(x.max()) * 1e6, 3) if cross else None}
