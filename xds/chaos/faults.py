"""Fault kinds: one handler per kind, in :data:`KINDS`, that maps a fault on a topology element to
engine perturbations through the placement and the recovery policy, and fills in the fault's
recovery record (``instances``, ``action``, ``detected_at_s`` / ``recovered_at_s`` in s, and
kind-specific fields: ``rank_back_at_s``; ``uplink_gb_s_per_die`` / ``bandwidth_gb_s`` as [old, new]
GB/s; ``kv_transfer_factor``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from ..engine import KvAbort, KvCorrupt, KvStall, Pause, RanksDown, Slowdown
from ..plan import expert_shares
from ..spec.scenario import FaultEvent
from ..topology.builders.registry import FAMILIES
from .fabric import FabricFault, FabricState, reroute
from .instances import Owner, instance, load_s, pool_of, restart_s
from .policies import STORE_GB_S, RecoveryPolicy
from .replicas import expert_state


@dataclass
class FaultContext:
    """What every handler needs: the placed plan, its die owners, the merged recovery ``params``
    and their policy, the scenario file (for errors) and the fabric faults compiled so far."""

    placed: Any
    owners: dict[int, Owner]
    params: dict[str, Any]
    policy: RecoveryPolicy
    file: str
    fabric: FabricState = field(default_factory=FabricState)
    lost_nodes: set[int] = field(default_factory=set)
    lost_ep: dict[tuple[str, int], set[int]] = field(default_factory=dict)

    @property
    def topo(self):
        return self.placed.topology

    @cached_property
    def pool_nodes(self) -> frozenset[int]:
        """Nodes whose host DRAM forms the EMS pool: every node the plan uses (reference §B.1)."""
        dies = np.concatenate([inst.dies for pool in self.placed.pools() for inst in pool.instances])
        # fleet-wide die ids (a plan over several pods, xds.plan.placement): node = die // dies per node
        return frozenset(np.unique(dies // self.topo.dies_per_node).tolist())

    def restore_params(self) -> dict[str, Any]:
        """``params`` with the store bandwidth weights are restored at now: from the EMS DRAM pool
        (the default store) each node lost so far takes its share of the pool with it. The pool's
        bandwidth is assumed spread evenly over its nodes (unpublished; 1,073.6 GB/s is an
        aggregate), and the lost node's stripe, written through to EVS SSD (reference §E), is read
        back at no more than the surviving pool's rate (EVS bandwidth unpublished: a lower bound)."""
        lost = len(self.lost_nodes & self.pool_nodes)
        if not lost or self.params.get("store", "ems") != "ems":
            return self.params
        n = len(self.pool_nodes)
        if lost >= n:    # the whole pool is gone: weights come back from object storage (OBS)
            return {**self.params, "store_gb_s": STORE_GB_S["obs"]}
        return {**self.params, "store_gb_s": self.params["store_gb_s"] * (n - lost) / n}

    @cached_property
    def shares(self) -> np.ndarray | None:
        """Long-run expert shares [layers, experts] the plan balanced (None for a dense model)."""
        return expert_shares(self.placed.loaded, self.placed.model)[0] if self.placed.model.is_moe else None


Handler = Callable[[FaultContext, FaultEvent, str, dict], list]


@dataclass(frozen=True)
class FaultKind:
    """A fault kind: the element kinds it may target, its handler ``(ctx, event, canonical target,
    record) -> engine events``, and whether without ``duration_s`` it takes the element down for
    the rest of the run (a later fault on it is then impossible)."""

    targets: tuple[str, ...]
    handle: Handler
    permanent: bool


def _until(ev: FaultEvent) -> float | None:
    """When a transient fault ends (s), None when it lasts."""
    return ev.at_s + ev.duration_s if ev.duration_s else None


# ------------------------------------------------------------------------------ dies lost


def _dies_down(ctx: FaultContext, ev: FaultEvent, name: str, rec: dict) -> list:
    """die_down / chip_down / node_down: the element's dies are gone for good."""
    dies = ctx.topo.dies_in(name)
    return nodes_down(ctx, dies, ev.at_s, rec) if name.startswith("node:") else _die_loss(ctx, dies, ev.at_s, None, rec)


def nodes_down(ctx: FaultContext, dies, t: float, rec: dict) -> list:
    """Whole nodes lost for good at ``t`` (s) (``dies``: all their dies, fleet-wide ids): the dies
    as :func:`_die_loss`, and each node's host DRAM leaves the EMS pool every later restore reads
    from (:meth:`FaultContext.restore_params`)."""
    before = ctx.restore_params()["store_gb_s"]
    ctx.lost_nodes.update(np.unique(np.asarray(dies) // ctx.topo.dies_per_node).tolist())
    after = ctx.restore_params()["store_gb_s"]
    if after < before:
        rec["store_gb_s"] = [round(before, 3), round(after, 3)]
    events = _die_loss(ctx, dies, t, None, rec)
    if "store_gb_s" in rec:
        rec["action"] += (f"; the node's DRAM left the EMS pool: weights restored at "
                          f"{rec['store_gb_s'][1]:,.1f} of {rec['store_gb_s'][0]:,.1f} GB/s")
    return events


def _hbm_uce(ctx: FaultContext, ev: FaultEvent, name: str, rec: dict) -> list:
    """An uncorrectable HBM error: the die drops out until it is remapped (``duration_s``, else the
    policy's ``uce_remap_s``). Under a policy that remaps in place (stage 3, reference §E: "some
    KV and individual requests may be lost") the requests whose KV sat on the die — those decoding
    on its DP rank — are lost (``kv_corrupted``) instead of recomputed."""
    back = ev.at_s + (ev.duration_s or ctx.params["uce_remap_s"])
    dies = ctx.topo.dies_in(name)
    events: list = []
    if ctx.policy.remaps_uce():
        for d in np.asarray(dies).tolist():
            o = ctx.owners.get(int(d))
            if o is not None and o.role == "decode" and o.rank is not None:
                events.append(KvCorrupt(ev.at_s, o.instance, (o.rank,)))
                rec["kv_lost_rank"] = f"decode:{o.instance}/{o.rank}"
    events += _die_loss(ctx, dies, ev.at_s, back, rec)
    if "kv_lost_rank" in rec:
        rec["action"] = (f"HBM remapped in place: the requests decoding on {rec['kv_lost_rank']} "
                         f"lost their KV (kv_corrupted); " + rec["action"])
    return events


def _die_loss(ctx: FaultContext, dies, t: float, back: float | None, rec: dict) -> list:
    """Every instance using one of ``dies`` restarts or sheds the lost ranks (per the policy); the
    ranks come back at ``back`` (None: never)."""
    by_inst: dict[tuple[str, int], list[Owner]] = {}
    rec["dies"] = int(sum(1 for d in np.asarray(dies).tolist() if int(d) in ctx.owners))
    rec["full_capacity_at_s"] = back
    for d in np.asarray(dies).tolist():
        o = ctx.owners.get(int(d))
        if o is not None:
            by_inst.setdefault((o.role, o.instance), []).append(o)
    if not by_inst:
        rec["action"] = "no instance uses these dies"
        rec["detected_at_s"] = t
        rec["recovered_at_s"] = t
        return []
    events: list = []
    actions: list[str] = []
    for (role, idx), owners in sorted(by_inst.items()):
        rec["instances"].append(f"{role}:{idx}")
        if ctx.policy.restarts(role):
            end = rec["detected_at_s"] + restart_s(instance(ctx.placed, role, idx), ctx.restore_params())
            events.append(Pause(t, role, idx, end, "requeue"))
            rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
            rec["full_capacity_at_s"] = rec["recovered_at_s"]   # restarted on spare dies
            actions.append(f"{role}:{idx} restarted ({end - t:.1f} s), in-flight re-prefilled")
            continue
        events += _shed(ctx, role, idx, owners, t, back, rec, actions)
    rec["action"] = "; ".join(actions)
    return events


def _shed(ctx: FaultContext, role: str, idx: int, owners: list[Owner], t: float, back: float | None,
          rec: dict, actions: list[str]) -> list:
    """The instance drops its lost DP ranks (their requests are recomputed) and stalls while it
    re-initialises and reloads experts that lost every replica; survivors then carry the lost
    expert slots at a worse balancedness."""
    inst = instance(ctx.placed, role, idx)
    ranks = tuple(sorted({o.rank for o in owners if o.rank is not None}))
    lost_ep = {o.ep_rank for o in owners if o.ep_rank is not None}
    missing, bal_ratio = expert_state(pool_of(ctx.placed, role), lost_ep, ctx.shares)
    em = pool_of(ctx.placed, role).expert_map or {}
    if em.get("slots_per_rank"):
        lost_slots = sum(1 for r in lost_ep if r < int(em["routed_ranks"])) * int(em["slots_per_rank"])
        rec["expert_slots_lost"] = rec.get("expert_slots_lost", 0) + lost_slots
    rec["experts_without_replica"] = rec.get("experts_without_replica", 0) + int(missing)
    stall = ctx.policy.shed_stall_s(ctx.params)
    if missing:
        # no live replica: its weights are reloaded onto a survivor before the MoE layer can run
        reload = _expert_reload_s(ctx, inst, missing, len(lost_ep))
        rec["reload_s"] = round(rec.get("reload_s", 0.0) + reload, 6)
        stall += float(reload)
        actions.append(f"{missing} expert(s) lost every replica: reloaded ({reload:.1f} s)")
    end = t + stall
    events: list = []
    if ranks:
        events.append(RanksDown(t, role, idx, ranks, back, "requeue"))
    events.append(Pause(t, role, idx, end, "keep"))
    if back is None:
        # every rank this instance has lost for good so far sets the survivors' balancedness
        gone = ctx.lost_ep.setdefault((role, idx), set())
        if gone - lost_ep:
            bal_ratio = expert_state(pool_of(ctx.placed, role), gone | lost_ep, ctx.shares)[1]
        gone |= lost_ep
        if bal_ratio > 1.0 + 1e-9:
            lay = replace(inst.layout, balancedness=inst.layout.balancedness * bal_ratio)
            ctx.fabric.layouts.setdefault((role, idx), []).append((end, lay))   # priced in .fabric
            actions.append(f"survivors carry the lost slots (balancedness x{bal_ratio:.3f})")
    rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
    shrink = "shrinks" if back is None else "drops"
    actions.append(f"{role}:{idx} {shrink} {len(ranks)} DP rank(s), their requests recomputed; "
                   f"stalled {stall:.1f} s")
    if back is not None:
        rec["rank_back_at_s"] = back
    return events


def _expert_reload_s(ctx: FaultContext, inst, missing: int, lost: int) -> float:
    """Time to reload ``missing`` experts (s): the override ``expert_reload_s``, else their bytes
    (every MoE layer's copy) restored from the weight store onto the survivors in parallel
    (:func:`~xds.chaos.instances.load_s`: ``missing`` experts in total, at most ⌈missing /
    survivors⌉ on one die)."""
    reload = ctx.params.get("expert_reload_s")
    if reload is not None:
        return reload
    gb = expert_gb(ctx.placed.model, inst)
    per_die = math.ceil(missing / max(inst.layout.ep - lost, 1))
    return load_s(missing * gb, per_die * gb, ctx.restore_params())


def expert_gb(model, inst) -> float:
    """Bytes of one routed expert over all its MoE (and MTP) layers (GB)."""
    return model.expert_params() * (model.moe_layers + model.mtp_layers) * inst.cost.wb / 1e9


# ------------------------------------------------------------------------------ slow die


def _straggler(ctx: FaultContext, ev: FaultEvent, name: str, rec: dict) -> list:
    """A die running ``factor`` times slower: its lockstep instance runs that much slower."""
    t, until = ev.at_s, _until(ev)
    events = []
    for (role, idx) in sorted({(ctx.owners[int(d)].role, ctx.owners[int(d)].instance)
                               for d in ctx.topo.dies_in(name) if int(d) in ctx.owners}):
        events.append(Slowdown(t, role, idx, float(ev.factor), until))
        rec["instances"].append(f"{role}:{idx}")
    rec["action"] = f"lockstep: the instance runs {ev.factor:g}x slower"
    rec["dies"] = int(sum(1 for d in ctx.topo.dies_in(name) if int(d) in ctx.owners))
    rec["detected_at_s"] = t
    rec["recovered_at_s"] = t
    rec["full_capacity_at_s"] = until
    return events


# ------------------------------------------------------------------------------ fabric


def _element_down(ctx: FaultContext, ev: FaultEvent, name: str, rec: dict) -> list:
    """link_down / switch_down: traffic re-routes around the element (:mod:`.fabric`)."""
    return reroute(ctx, ev, name, rec, FabricFault(ev.at_s, _until(ev), failed=(name,)))


def _link_degraded(ctx: FaultContext, ev: FaultEvent, name: str, rec: dict) -> list:
    """A link left with ``factor`` of its bandwidth (:mod:`.fabric`)."""
    return reroute(ctx, ev, name, rec,
                   FabricFault(ev.at_s, _until(ev), factors=((name, float(ev.factor)),)))


# ------------------------------------------------------------------------------ network glitch


def _glitch(ctx: FaultContext, ev: FaultEvent, name: str, rec: dict) -> list:
    """For ``duration_s`` (default 1 s) the element passes no traffic: the collectives of the
    instances whose traffic crosses it hang (the policy decides what follows), and on the plane
    that carries P→D KV every transfer stalls; a stall past the transport's retry window aborts
    the transfers in flight and their requests are re-prefilled (one retry each)."""
    t = ev.at_s
    dur = float(ev.duration_s or 1.0)
    affected = glitch_instances(ctx.placed, ctx.topo, name)
    rec["instances"].extend(f"{role}:{idx}" for role, idx in affected)
    rec["duration_s"] = dur
    rec["dies"] = int(sum(len(instance(ctx.placed, r, i).dies) for r, i in affected))
    events = ctx.policy.glitch(ctx.placed, affected, t, dur, ctx.restore_params(), rec) if affected else []
    if not affected:
        rec["action"] = "no instance's collectives cross it"
        rec["detected_at_s"] = rec["recovered_at_s"] = t
    kind = name.split(":", 1)[0]
    kv_hit = kind == "rdma" if ctx.placed.spec.kv_transfer.plane == "rdma" else kind not in ("rdma", "vpc")
    if kv_hit and ctx.placed.prefill is not None:
        window = ctx.params["retry_window_s"]
        for inst in ctx.placed.decode.instances:
            rec.setdefault("kv_instances", []).append(f"decode:{inst.index}")
            events.append(KvStall(t, inst.index, t + dur))
            if dur > window:
                events.append(KvAbort(t + window, inst.index))
        rec["kv_transfers"] = (f"P->D KV transfers stalled {dur:g} s" + (
            f"; past the retry window ({window:g} s) the ones in flight were aborted and "
            "re-prefilled" if dur > window else ""))
        rec["action"] = "; ".join(x for x in (rec["action"], rec["kv_transfers"]) if x)
        rec["recovered_at_s"] = max(rec["recovered_at_s"], t + dur)
    rec["full_capacity_at_s"] = max(rec["recovered_at_s"], t + dur)
    return events


def glitch_instances(placed, topo, name: str) -> list[tuple[str, int]]:
    """Instances whose collectives cross the glitching element: every multi-node instance for a
    switch/link of the scale-up fabric (traffic is spread over every L2 switch), the node's
    instances for a node or its L1 / NVSwitch, the instances whose all-to-all rides the scale-out
    plane for ``rdma``, none for ``vpc``."""
    kind = name.split(":", 1)[0]
    out = []
    node_dies = set(topo.dies_in(name).tolist()) if kind == "node" else None
    for pool in placed.pools():
        for inst in pool.instances:
            if node_dies is not None:
                hit = bool(node_dies & set(int(d) for d in inst.dies))
            elif kind == "rdma":
                # only collectives that ride the scale-out plane (KV transfers: see _glitch)
                hit = inst.cost.fabric.plane == "scale_out"
            elif kind == "vpc":
                hit = False       # management and storage traffic only (reference §A.5)
            elif kind == topo.family.switch_kind:
                node = int(name.split(":")[1].split("/")[0])
                hit = bool(np.any(topo.die_node[inst.dies] == node))
            else:
                hit = len(np.unique(topo.die_node[inst.dies])) > 1
            if hit:
                out.append((pool.role, inst.index))
    return out


SWITCHES = tuple(k for family in FAMILIES.values() for k in family.switch_kinds)
DIES = ("die", "chip", "node")

KINDS: dict[str, FaultKind] = {
    "die_down": FaultKind(("die",), _dies_down, permanent=True),
    "chip_down": FaultKind(("chip",), _dies_down, permanent=True),
    "node_down": FaultKind(("node",), _dies_down, permanent=True),
    "hbm_uce": FaultKind(("die",), _hbm_uce, permanent=False),
    "link_down": FaultKind(("link",), _element_down, permanent=True),
    "link_degraded": FaultKind(("link",), _link_degraded, permanent=False),
    "switch_down": FaultKind(SWITCHES, _element_down, permanent=True),
    "straggler": FaultKind(DIES, _straggler, permanent=False),
    "network_glitch": FaultKind(SWITCHES + ("link", "node", "rdma", "vpc"), _glitch, permanent=False),
}
