"""Fabric faults (``link_down``, ``switch_down``, ``link_degraded``) and what the degraded fabric
costs: lost bandwidth slows the lockstep all-to-all of every instance whose dies lose it, and the
P→D KV transfers whose ends lose it; with the layout changes die losses leave behind, what prices
each instance's steps over the run.

Concurrent fabric faults compound: the fabric at any time is the topology degraded by every fabric
fault active then (``Topology.degrade`` with all their failed elements and factors). The run is cut
into epochs at every fault's start and end; in each epoch every instance whose all-to-all (or KV
path) is slower than healthy, or whose layout changed (survivors carrying lost expert slots), is
re-priced for exactly that epoch (``SetCost`` / ``KvBandwidth`` events that do not overlap), so two
L2 switches down cost more than one and a lost die's balancedness and a thin fabric both hold.
Bandwidths GB/s, times s.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..cost import CostModel, fabric_on
from ..engine import KvBandwidth, SetCost
from ..errors import XdsError
from .instances import moe_dies


@dataclass(frozen=True)
class FabricFault:
    """One fabric fault in force during [at_s, until_s) (None: for good): elements ``failed`` and
    a bandwidth ``factors`` map, as :meth:`xds.topology.Topology.degrade` takes them."""

    at_s: float
    until_s: float | None
    failed: tuple[str, ...] = ()
    factors: tuple[tuple[str, float], ...] = ()

    def active(self, t: float) -> bool:
        return self.at_s <= t and (self.until_s is None or t < self.until_s)


@dataclass
class FabricState:
    """What prices an instance's steps, compiled so far: the fabric faults, each instance's layout
    changes (``layouts[(role, index)]``: (from s, layout) in time order — survivors carrying lost
    expert slots at a worse balancedness) and a cache of the degradations."""

    faults: list[FabricFault] = field(default_factory=list)
    layouts: dict[tuple[str, int], list[tuple[float, Any]]] = field(default_factory=dict)
    _cache: dict[tuple, Any] = field(default_factory=dict)

    def layout_at(self, inst, key: tuple[str, int], t: float):
        """The layout instance ``key`` runs with at ``t`` (s)."""
        lay = inst.layout
        for at, new in self.layouts.get(key, []):
            if at <= t:
                lay = new
        return lay

    def degradation(self, topo, faults: list[FabricFault]):
        """The topology degraded by all of ``faults`` at once (factors on one element multiply)."""
        failed = tuple(sorted({el for f in faults for el in f.failed}))
        factors: dict[str, float] = {}
        for f in faults:
            for el, x in f.factors:
                factors[el] = factors.get(el, 1.0) * x
        key = (failed, tuple(sorted(factors.items())))
        if key not in self._cache:
            self._cache[key] = topo.degrade(list(failed), factors or None)
        return self._cache[key]

    def at(self, topo, t: float, extra: FabricFault | None = None):
        """The fabric at time ``t`` (plus ``extra`` if given)."""
        act = [f for f in self.faults if f.active(t)] + ([extra] if extra is not None else [])
        return self.degradation(topo, act)


def reroute(ctx, ev, name: str, rec: dict, fault: FabricFault) -> list:
    """Record what the fault takes from the fabric already degraded by the faults active at its
    start (per instance: uplink per die and all-to-all GB/s [before, after]; KV factor), check it
    leaves every instance connected, and add it to the compiled fabric faults. The engine events
    come later, per epoch (:func:`cost_events`)."""
    t = ev.at_s
    before, after = ctx.fabric.at(ctx.topo, t), ctx.fabric.at(ctx.topo, t, fault)
    _record_alltoall(ctx, ev, name, rec, before, after)
    kv = _kv_ratios(ctx, before, after)
    if kv:
        rec["kv_transfer_factor"] = {f"decode:{i}": round(r, 4) for i, r in kv.items()}
    rec["action"] = ("traffic re-routed over the remaining paths; all-to-all bandwidth lower"
                     if "bandwidth_gb_s" in rec else
                     "traffic re-routed; uplink capacity lower but the all-to-all still fits")
    used = np.fromiter(ctx.owners, dtype=np.int64)
    rec["dies"] = int(np.sum(after.ub_gb_s_per_die[used] < before.ub_gb_s_per_die[used] * (1 - 1e-9)))
    rec["detected_at_s"] = t
    rec["recovered_at_s"] = t
    rec["full_capacity_at_s"] = fault.until_s
    ctx.fabric.faults.append(fault)
    return []


def _group(inst) -> np.ndarray:
    """The dies of an instance's all-to-all: all of them with attention disaggregated (A2E/E2A run
    between every die), else its EP ranks' dies."""
    return inst.dies if inst.layout.attention_dies else moe_dies(inst)[:inst.layout.ep]


def _scaled_fabric(topo, inst, was, now):
    """The plan's fabric of ``inst`` with each leg (scale-out, and on NVLink islands the node-local
    scale-up leg) scaled by what the slowest die keeps going from degradation ``was`` to ``now``
    (lockstep: the all-to-all runs at its slowest die)."""
    g = _group(inst)
    a, b = fabric_on(topo, g, degradation=was), fabric_on(topo, g, degradation=now)
    old = inst.cost.fabric
    gb_s = old.gb_s * b.gb_s / max(a.gb_s, 1e-12)
    local = old.local_gb_s * b.local_gb_s / max(a.local_gb_s, 1e-12) if a.local_gb_s else 0.0
    return replace(old, gb_s=gb_s, local_gb_s=local)


def _slower(new, old) -> bool:
    return new.gb_s < old.gb_s * (1 - 1e-9) or new.local_gb_s < old.local_gb_s * (1 - 1e-9)


def _record_alltoall(ctx, ev, name: str, rec: dict, before, after) -> None:
    """Per instance: the uplink each die can still push off its node (``uplink_gb_s_per_die``) and
    the all-to-all bandwidth that prices dispatch/combine (``bandwidth_gb_s``), [before, after]."""
    healthy = ctx.topo.degrade([])
    for pool in ctx.placed.pools():
        for inst in pool.instances:
            key = f"{pool.role}:{inst.index}"
            up_old = float(np.min(before.ub_gb_s_per_die[inst.dies]))
            up_new = float(np.min(after.ub_gb_s_per_die[inst.dies]))
            if up_new < up_old * (1 - 1e-9):
                rec.setdefault("uplink_gb_s_per_die", {})[key] = [round(up_old, 3), round(up_new, 3)]
                if key not in rec["instances"]:
                    rec["instances"].append(key)
            old = _scaled_fabric(ctx.topo, inst, healthy, before)
            new = _scaled_fabric(ctx.topo, inst, healthy, after)
            if not _slower(new, old):
                continue
            if new.gb_s <= 0 or (old.local_fraction > 0 and new.local_gb_s <= 0):
                raise XdsError(f"{ev.fault} on {name} disconnects {pool.role} instance "
                               f"{inst.index}; model that as node_down", file=ctx.file,
                               where=f"events[{rec['event']}]")
            if key not in rec["instances"]:
                rec["instances"].append(key)
            rec.setdefault("bandwidth_gb_s", {})[key] = [round(old.gb_s, 3), round(new.gb_s, 3)]


def _kv_ratios(ctx, was, now) -> dict[int, float]:
    """Per decode instance, the P→D KV rate on ``now`` over that on ``was`` when lower: transfers
    ride the RDMA plane (or UB, per the plan) and the slowest end, prefill or decode die, sets it."""
    placed = ctx.placed
    kv_ub = placed.spec.kv_transfer.plane == "ub"
    new_kv = now.ub_gb_s_per_die if kv_ub else now.rdma_gb_s_per_die
    old_kv = was.ub_gb_s_per_die if kv_ub else was.rdma_gb_s_per_die
    senders = [inst.dies for inst in placed.prefill.instances] if placed.prefill else []
    out = {}
    for inst in placed.decode.instances:
        ends = np.concatenate(senders + [inst.dies])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = float(np.min(np.where(old_kv[ends] > 0, new_kv[ends] / old_kv[ends], 1.0)))
        if 0 < ratio < 1 - 1e-9:
            out[inst.index] = ratio
    return out


def cost_events(ctx) -> list:
    """Engine events of every compiled fabric fault and layout change: per epoch between
    consecutive fault starts / ends and layout changes, a ``SetCost`` for each instance whose
    layout differs from the plan's or whose all-to-all is slower than healthy (both at once when
    both hold), and a ``KvBandwidth`` for each decode instance whose KV path is slower, each for
    exactly that epoch (so nothing overlaps and nothing overwrites)."""
    st = ctx.fabric
    faults = st.faults
    cuts = sorted({f.at_s for f in faults} | {f.until_s for f in faults if f.until_s is not None}
                  | {at for changes in st.layouts.values() for at, _ in changes})
    healthy = ctx.topo.degrade([])
    events: list = []
    for i, t in enumerate(cuts):
        until = cuts[i + 1] if i + 1 < len(cuts) else None
        live = any(f.active(t) for f in faults)
        deg = st.at(ctx.topo, t) if live else healthy
        for pool in ctx.placed.pools():
            for inst in pool.instances:
                lay = st.layout_at(inst, (pool.role, inst.index), t)
                fab = _scaled_fabric(ctx.topo, inst, healthy, deg) if live else inst.cost.fabric
                slow = _slower(fab, inst.cost.fabric)
                if slow or lay is not inst.layout:
                    cm = CostModel(ctx.placed.model, ctx.placed.hw, lay, fab if slow else inst.cost.fabric)
                    events.append(SetCost(t, pool.role, inst.index, cm, until))
        if live:
            for idx, ratio in _kv_ratios(ctx, healthy, deg).items():
                events.append(KvBandwidth(t, idx, ratio, until))
    return events
