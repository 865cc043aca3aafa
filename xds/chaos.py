"""Chaos: replay fault scenarios against a placed plan under a recovery policy (DESIGN.md §2.4).

A scenario is a timeline of faults on topology elements. Each fault is mapped, through the topology
and the placement, to engine perturbations (:mod:`xds.engine` events): ranks leaving an instance
(their requests lose KV), an instance pausing (detection, restart, expert reload), a slower step
(straggler, lost bandwidth, worse expert balance), or a rolled-back iteration (network glitch). The
recovery policy decides which perturbations and how long each lasts:

* ``restart`` (xDeepServe stage 1): detect, then restart every affected instance — model reload at
  ``reload_gb_s`` per die plus graph warm-up; all its in-flight requests are re-queued and re-prefilled.
  The failed node is tainted and the instance comes back on healthy spare dies.
* ``pd-failover`` (stage 2): prefill and decode fail over separately; decode shrinks by dropping the
  lost DP ranks / EP ranks while every expert keeps a replica (redundant slots remapped; a lost
  expert without a replica is reloaded first); requests of lost ranks are re-prefilled, the rest
  continue after a re-initialisation pause of ``remap_s``. Glitches still time out and restart.
* ``fine-grained`` (stage 3): glitches roll back one iteration; lost ranks' requests are recomputed on
  survivors; experts are remapped to redundant slots without stopping (the instance stalls only for
  detection); HBM UCEs are remapped in place (``uce_remap_s``).

Every request ends completed or failed with a reason; none disappears (property-tested).
Times in seconds; bandwidths in GB/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveFloat, model_validator

from .cost import CostModel, Fabric
from .engine import KvBandwidth, Pause, RanksDown, Rollback, SetCost, Slowdown
from .errors import XdsError
from .spec.plan import RecoverySpec
from .spec.yamlio import Strict, load_yaml, validate

FAULTS = ("die_down", "chip_down", "node_down", "hbm_uce", "link_down", "link_degraded",
          "switch_down", "straggler", "network_glitch")
POLICIES = ("restart", "pd-failover", "fine-grained")
Fault = Literal["die_down", "chip_down", "node_down", "hbm_uce", "link_down", "link_degraded",
                "switch_down", "straggler", "network_glitch"]

# Element kinds each fault may target (the topology's element names).
TARGET_KINDS = {
    "die_down": ("die",), "chip_down": ("chip",), "node_down": ("node",), "hbm_uce": ("die",),
    "straggler": ("die", "chip", "node"),
    "link_down": ("link",), "link_degraded": ("link",),
    "switch_down": ("l1", "l2", "nvsw", "leaf", "spine"),
    "network_glitch": ("l1", "l2", "nvsw", "leaf", "spine", "link", "node", "rdma", "vpc"),
}

# Policy time costs (s) and their sources (reference §E and shared/traces/fault_reference_rates.csv).
POLICY_DEFAULTS: dict[str, dict[str, float]] = {
    # Heartbeat-based detection (xDeepServe multi-tier heartbeats; no interval published): 10 s.
    # Restart = warm-up 10 s (ReviveMoE: 6-10 s with cached graph compilation) + the die's weights at
    # 0.5 GB/s, i.e. ~80 s for a DeepSeek-R1 decode die — ReviveMoE measured a full restart at ~83 s.
    "restart": {"detect_s": 10.0, "warmup_s": 10.0, "reload_gb_s": 0.5, "remap_s": 0.0,
                "uce_remap_s": 60.0},
    # Stage 2: rebuilding the communication domain without the lost ranks ~30 s (Huawei process-level
    # job recovery, press figure); detection as above.
    "pd-failover": {"detect_s": 10.0, "warmup_s": 10.0, "reload_gb_s": 0.5, "remap_s": 30.0,
                    "uce_remap_s": 60.0},
    # Stage 3: XCCL link probing and DP-master heartbeats detect within ~2 s; redundant-expert remap
    # while serving (ReviveMoE <10 s end to end, SGLang elastic EP 6.2-6.8 s); HBM multi-bit ECC
    # recovered in ~1 min (Huawei).
    "fine-grained": {"detect_s": 2.0, "warmup_s": 10.0, "reload_gb_s": 0.5, "remap_s": 5.0,
                     "uce_remap_s": 60.0},
}


class FaultEvent(Strict):
    """One fault: ``fault`` on ``target`` at ``at_s``; ``duration_s`` for transient faults (None:
    permanent until recovered); ``factor``: slowdown for ``straggler`` (> 1), remaining bandwidth
    fraction for ``link_degraded`` (0 < f < 1)."""

    at_s: float = Field(ge=0)
    fault: Fault
    target: str
    duration_s: PositiveFloat | None = Field(None, le=30 * 86400)
    factor: PositiveFloat | None = Field(None, le=1000)

    @model_validator(mode="after")
    def _factor(self) -> "FaultEvent":
        if self.fault == "straggler":
            if self.factor is None or self.factor <= 1:
                raise ValueError("straggler needs factor > 1 (how many times slower the die runs)")
        elif self.fault == "link_degraded":
            if self.factor is None or not (0 < self.factor < 1):
                raise ValueError("link_degraded needs 0 < factor < 1 (fraction of bandwidth left)")
        elif self.factor is not None:
            raise ValueError(f"factor applies to straggler and link_degraded, not {self.fault}")
        if self.fault == "network_glitch" and self.duration_s is not None and self.duration_s > 60:
            raise ValueError("a network glitch lasts seconds (duration_s <= 60); use link_down for outages")
        return self


class ScenarioSpec(Strict):
    """A fault scenario: ``events`` (time-ordered or not) and an optional ``recovery`` override."""

    name: str = ""
    description: str = ""
    source: str = ""
    events: list[FaultEvent] = Field(min_length=1)
    recovery: RecoverySpec | None = None


@dataclass
class Scenario:
    spec: ScenarioSpec
    path: str


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario YAML (targets are checked against a plan by :func:`compile`)."""
    data = load_yaml(path, what="scenario")
    spec = validate(ScenarioSpec, data, file=str(path))
    return Scenario(spec, str(path))


# ------------------------------------------------------------------------------ recovery params


def recovery_params(plan_rec: RecoverySpec, scen_rec: RecoverySpec | None, policy: str | None) -> dict[str, Any]:
    """Merge policy defaults ← plan ``recovery:`` ← scenario ``recovery:`` ← ``--policy``."""
    pol = policy or (scen_rec.policy if scen_rec is not None and "policy" in scen_rec.model_fields_set
                     else plan_rec.policy)
    if pol not in POLICIES:
        raise XdsError(f"unknown policy {pol!r} (allowed: {', '.join(POLICIES)}, all)", file="--policy")
    out: dict[str, Any] = dict(POLICY_DEFAULTS[pol])
    out.update(policy=pol, restart_s=None, expert_reload_s=None)
    for rec in (plan_rec, scen_rec):
        if rec is None:
            continue
        for k in rec.model_fields_set:
            if k != "policy" and getattr(rec, k) is not None:
                out[k] = getattr(rec, k)
    return out


# ------------------------------------------------------------------------------ compile


@dataclass
class _Owner:
    role: str
    instance: int
    rank: int | None       # attention DP rank (None: a MoE-only die of an MA instance)
    ep_rank: int | None    # EP rank (None: attention-only die of an MA instance)


def _owners(placed) -> dict[int, _Owner]:
    out: dict[int, _Owner] = {}
    for pool in placed.pools():
        for inst in pool.instances:
            lay = inst.layout
            for r, dies in enumerate(np.asarray(inst.rank_dies)):
                for d in np.atleast_1d(dies):
                    out[int(d)] = _Owner(pool.role, inst.index, r, None)
            moe = inst.dies[lay.attention_dies:] if lay.attention_dies else inst.dies
            for e, d in enumerate(moe[:lay.ep]):
                o = out.get(int(d))
                if o is None:
                    out[int(d)] = _Owner(pool.role, inst.index, None, e)
                else:
                    o.ep_rank = e
    return out


def _instance_weights_gb(inst) -> float:
    """Weights one die of the instance holds (GB), what a restart reloads."""
    hbm = inst.cost.hbm_gb(0, 0)
    return sum(v for k, v in hbm.items() if k.startswith("weights_"))


def _expert_state(pool, inst, lost_ep: set[int], shares_all: np.ndarray) -> tuple[int, float]:
    """(experts left without any replica, balancedness ratio new/old) after losing EP ranks."""
    em = pool.expert_map or {}
    ph = em.get("phy2log")
    if ph is None or not lost_ep:
        return 0, 1.0
    ph = np.asarray(ph)
    spr = int(em["slots_per_rank"])
    routed = int(em["routed_ranks"])
    E = int(em["experts"])
    lost_routed = sorted(r for r in lost_ep if r < routed)
    if not lost_routed:
        return 0, 1.0
    alive = np.ones(ph.shape[1], dtype=bool)
    for r in lost_routed:
        alive[r * spr:(r + 1) * spr] = False
    missing = 0
    for layer in ph:
        have = np.bincount(layer[alive], minlength=E)
        missing = max(missing, int((have == 0).sum()))
    # in-sample balancedness before/after with each expert's share split over its live replicas,
    # on the same long-run loads the plan balanced (measured or synthetic)
    shares = np.resize(shares_all, (ph.shape[0], E))

    def bal(mask):
        vals = []
        for layer, sh in zip(ph, shares):
            cnt = np.bincount(layer[mask], minlength=E).astype(float)
            per = np.where(cnt > 0, sh / np.maximum(cnt, 1), 0.0)
            slot_load = np.where(mask, per[layer], 0.0)
            rank_load = slot_load.reshape(routed, spr).sum(axis=1)
            live = rank_load[np.array([r not in lost_ep for r in range(routed)])]
            vals.append(live.max() / max(live.mean(), 1e-12))
        return float(np.mean(vals))

    before = bal(np.ones_like(alive))
    after = bal(alive)
    return missing, max(after / before, 1.0)


@dataclass
class _Action:
    events: list
    record: dict[str, Any]


def compile_events(placed, scenario: Scenario, params: dict[str, Any]) -> tuple[list, list[dict]]:
    """Map a scenario's faults to engine events under one policy. Returns (events, recovery records)."""
    topo = placed.topology
    owners = _owners(placed)
    pol = params["policy"]
    events: list = []
    records: list[dict] = []
    file = scenario.path
    names = _target_names(scenario, topo)
    _check_overlaps(scenario, names, topo)
    for i, ev in sorted(enumerate(scenario.spec.events), key=lambda x: x[1].at_s):
        where = f"events[{i}]"
        name = names[i]
        kind = name.split(":", 1)[0]
        if kind not in TARGET_KINDS[ev.fault]:
            raise XdsError(f"{ev.fault} cannot target {ev.target!r} (a {kind}); allowed targets: "
                           + ", ".join(f"{k}:…" for k in TARGET_KINDS[ev.fault]), file=file,
                           where=f"{where}.target")
        t = ev.at_s
        det = t + params["detect_s"]
        rec = {"event": i, "fault": ev.fault, "target": name, "at_s": t, "detected_at_s": det,
               "recovered_at_s": det, "instances": [], "action": ""}
        if ev.fault in ("die_down", "chip_down", "node_down", "hbm_uce"):
            dies = topo.dies_in(name)
            transient = ev.fault == "hbm_uce"
            back = (t + (ev.duration_s or params["uce_remap_s"])) if transient else None
            _die_loss(placed, owners, dies, t, det, back, params, events, rec)
        elif ev.fault == "straggler":
            dies = topo.dies_in(name)
            until = t + ev.duration_s if ev.duration_s else None
            for (role, idx) in sorted({(owners[int(d)].role, owners[int(d)].instance)
                                       for d in dies if int(d) in owners}):
                events.append(Slowdown(t, role, idx, float(ev.factor), until))
                rec["instances"].append(f"{role}:{idx}")
            rec["action"] = f"lockstep: the instance runs {ev.factor:g}x slower"
            rec["detected_at_s"] = t
            rec["recovered_at_s"] = until
        elif ev.fault in ("link_down", "link_degraded", "switch_down"):
            until = t + ev.duration_s if ev.duration_s else None
            factors = {name: float(ev.factor)} if ev.fault == "link_degraded" else None
            failed = [] if ev.fault == "link_degraded" else [name]
            deg = topo.degrade(failed, factors)
            healthy = topo.degrade([])
            for pool in placed.pools():
                for inst in pool.instances:
                    moe = inst.dies[inst.layout.attention_dies:] if inst.layout.attention_dies else inst.dies
                    # what the graph says each die can still push off its node (always recorded) ...
                    up_old = float(np.min(healthy.ub_gb_s_per_die[inst.dies]))
                    up_new = float(np.min(deg.ub_gb_s_per_die[inst.dies]))
                    if up_new < up_old * (1 - 1e-9):
                        rec.setdefault("uplink_gb_s_per_die", {})[f"{pool.role}:{inst.index}"] = [
                            round(up_old, 3), round(up_new, 3)]
                        if f"{pool.role}:{inst.index}" not in rec["instances"]:
                            rec["instances"].append(f"{pool.role}:{inst.index}")
                    # ... and what the instance's all-to-all gets, which prices dispatch/combine
                    new_bw = float(topo.alltoall_gb_s(moe[:inst.layout.ep], degradation=deg))
                    old_bw = inst.cost.fabric.gb_s
                    if new_bw < old_bw * (1 - 1e-9):
                        if new_bw <= 0:
                            raise XdsError(f"{ev.fault} on {name} disconnects {pool.role} instance "
                                           f"{inst.index}; model that as node_down", file=file, where=where)
                        cm = CostModel(placed.model, placed.hw, inst.layout,
                                       Fabric(new_bw, inst.cost.fabric.plane))
                        events.append(SetCost(t, pool.role, inst.index, cm, until))
                        if f"{pool.role}:{inst.index}" not in rec["instances"]:
                            rec["instances"].append(f"{pool.role}:{inst.index}")
                        rec.setdefault("bandwidth_gb_s", {})[f"{pool.role}:{inst.index}"] = [
                            round(old_bw, 3), round(new_bw, 3)]
            # P->D KV transfers ride the RDMA plane (or UB, per the plan): the slowest end of the
            # transfer, prefill or decode die, sets the new rate into each decode instance
            kv_ub = placed.spec.kv_transfer.plane == "ub"
            new_kv = deg.ub_gb_s_per_die if kv_ub else deg.rdma_gb_s_per_die
            old_kv = healthy.ub_gb_s_per_die if kv_ub else healthy.rdma_gb_s_per_die
            senders = [inst.dies for inst in placed.prefill.instances] if placed.prefill else []
            for inst in placed.decode.instances:
                ends = np.concatenate(senders + [inst.dies])
                ratio = float(np.min(new_kv[ends] / np.maximum(old_kv[ends], 1e-12)))
                if ratio < 1 - 1e-9 and ratio > 0:
                    events.append(KvBandwidth(t, inst.index, ratio, until))
                    rec.setdefault("kv_transfer_factor", {})[f"decode:{inst.index}"] = round(ratio, 4)
            rec["action"] = ("traffic re-routed over the remaining paths; all-to-all bandwidth lower"
                             if "bandwidth_gb_s" in rec else
                             "traffic re-routed; uplink capacity lower but the all-to-all still fits")
            rec["detected_at_s"] = t
            rec["recovered_at_s"] = until
        else:  # network_glitch
            affected = _glitch_instances(placed, topo, name)
            for role, idx in affected:
                rec["instances"].append(f"{role}:{idx}")
                if pol == "fine-grained":
                    events.append(Rollback(t, role, idx))
                else:
                    # the collective in flight times out; the instance is restarted
                    inst = _inst(placed, role, idx)
                    end = det + _restart_s(inst, params)
                    events.append(Pause(t, role, idx, end, "requeue"))
                    rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
            if pol == "fine-grained":
                rec["action"] = "all DP groups roll back one iteration and recompute"
                rec["detected_at_s"] = t
                rec["recovered_at_s"] = t
            else:
                rec["action"] = "collective timed out; affected instances restarted"
        records.append(rec)
    return events, records


def _inst(placed, role, idx):
    pool = placed.prefill if role == "prefill" else placed.decode
    return pool.instances[idx]


def _restart_s(inst, params) -> float:
    if params.get("restart_s") is not None:
        return float(params["restart_s"])
    return params["warmup_s"] + _instance_weights_gb(inst) / params["reload_gb_s"]


def _glitch_instances(placed, topo, name: str) -> list[tuple[str, int]]:
    """Instances whose traffic crosses the glitching element: every multi-node instance for a
    switch/link of the scale-up fabric, the node's instances for a node, every instance for the
    RDMA/VPC fabrics."""
    kind = name.split(":", 1)[0]
    out = []
    node_dies = set(topo.dies_in(name).tolist()) if kind == "node" else None
    for pool in placed.pools():
        for inst in pool.instances:
            if node_dies is not None:
                hit = bool(node_dies & set(int(d) for d in inst.dies))
            elif kind in ("rdma", "vpc"):
                hit = True
            else:
                hit = len(np.unique(topo.die_node[inst.dies])) > 1 or kind in ("nvsw", "l1")
                if kind in ("l1", "nvsw"):
                    node = int(name.split(":")[1].split("/")[0])
                    hit = bool(np.any(topo.die_node[inst.dies] == node))
            if hit:
                out.append((pool.role, inst.index))
    return out


def _die_loss(placed, owners, dies, t, det, back, params, events, rec) -> None:
    from .plan import expert_shares

    pol = params["policy"]
    shares = expert_shares(placed.loaded, placed.model)[0] if placed.model.is_moe else None
    by_inst: dict[tuple[str, int], list[_Owner]] = {}
    for d in np.asarray(dies).tolist():
        o = owners.get(int(d))
        if o is not None:
            by_inst.setdefault((o.role, o.instance), []).append(o)
    if not by_inst:
        rec["action"] = "no instance uses these dies"
        rec["detected_at_s"] = t
        rec["recovered_at_s"] = t
        return
    actions = []
    for (role, idx), os_ in sorted(by_inst.items()):
        inst = _inst(placed, role, idx)
        pool = placed.prefill if role == "prefill" else placed.decode
        rec["instances"].append(f"{role}:{idx}")
        ranks = tuple(sorted({o.rank for o in os_ if o.rank is not None}))
        lost_ep = {o.ep_rank for o in os_ if o.ep_rank is not None}
        if pol == "restart" or role == "prefill":
            # stage 1, and prefill under every policy: the affected instance restarts
            end = det + _restart_s(inst, params)
            events.append(Pause(t, role, idx, end, "requeue"))
            rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
            actions.append(f"{role}:{idx} restarted ({end - t:.0f} s), in-flight re-prefilled")
            continue
        missing, bal_ratio = _expert_state(pool, inst, lost_ep, shares)
        stall = params["detect_s"] if pol == "fine-grained" else params["detect_s"] + params["remap_s"]
        if missing:
            # no live replica: its weights are reloaded onto a survivor before the MoE layer can run
            reload = params.get("expert_reload_s")
            if reload is None:
                # survivors load the lost experts in parallel, one expert (all its layers) per die
                survivors = max(inst.layout.ep - len(lost_ep), 1)
                per_die = math.ceil(missing / survivors)
                gb = per_die * placed.model.expert_params() * (placed.model.moe_layers + placed.model.mtp_layers) \
                    * inst.cost.wb / 1e9
                reload = gb / params["reload_gb_s"]
            stall += float(reload)
            actions.append(f"{missing} expert(s) lost every replica: reloaded ({reload:.1f} s)")
        end = t + stall
        if ranks:
            events.append(RanksDown(t, role, idx, ranks, back, "requeue"))
        events.append(Pause(t, role, idx, end, "keep"))
        if bal_ratio > 1.0 + 1e-9 and back is None:
            lay = replace(inst.layout, balancedness=inst.layout.balancedness * bal_ratio)
            events.append(SetCost(end, role, idx, CostModel(placed.model, placed.hw, lay, inst.cost.fabric)))
            actions.append(f"survivors carry the lost slots (balancedness x{bal_ratio:.3f})")
        rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
        shrink = "shrinks" if back is None else "drops"
        actions.append(f"{role}:{idx} {shrink} {len(ranks)} DP rank(s), their requests recomputed; "
                       f"stalled {stall:.1f} s")
        if back is not None:
            rec["rank_back_at_s"] = back
    rec["action"] = "; ".join(actions)


def _target_names(scenario: Scenario, topo) -> list[str]:
    """Canonical element names (``link:B-A`` and ``link:A-B`` are one link), checked against the
    cluster; errors point at the event's ``target``."""
    out = []
    for i, ev in enumerate(scenario.spec.events):
        try:
            out.append(topo.parse_target(ev.target))
        except XdsError as exc:
            raise XdsError(exc.message, file=scenario.path, where=f"events[{i}].target") from None
    return out


def _check_overlaps(scenario: Scenario, names: list[str], topo) -> None:
    """Refuse impossible timelines: a fault on an element (or a die inside a domain) that is already
    down for good, or two overlapping transient faults of the same kind on the same element."""
    dead: dict[str, float] = {}
    dead_dies: dict[int, float] = {}
    busy: dict[tuple[str, str], float] = {}
    for i, ev in sorted(enumerate(scenario.spec.events), key=lambda x: x[1].at_s):
        where = f"events[{i}]"
        name = names[i]
        dies = [int(d) for d in topo.dies_in(name)]
        gone = [dead_dies[d] for d in dies if d in dead_dies and ev.at_s >= dead_dies[d]]
        if (name in dead and ev.at_s >= dead[name]) or (dies and len(gone) == len(dies)):
            since = dead.get(name, min(gone) if gone else 0.0)
            raise XdsError(f"{name} is already down (permanently, since {since:g} s); "
                           "a later fault on it is impossible", file=scenario.path, where=where)
        key = (ev.fault, name)
        if key in busy and ev.at_s < busy[key]:
            raise XdsError(f"overlaps an earlier {ev.fault} on {name} that lasts until "
                           f"{busy[key]:g} s", file=scenario.path, where=where)
        permanent = ev.fault in ("die_down", "chip_down", "node_down", "link_down", "switch_down") \
            and ev.duration_s is None
        if permanent:
            dead[name] = ev.at_s
            for d in dies:
                dead_dies.setdefault(d, ev.at_s)
        busy[key] = ev.at_s + (ev.duration_s or (math.inf if permanent else 0.0))


# ------------------------------------------------------------------------------ random mode


@lru_cache(maxsize=1)
def _cause_mix() -> tuple[tuple[str, float], ...]:
    """Fault kinds weighted by the Llama 3 405B interruption table (54 days, 419 unexpected).

    Mapping of its components to xds faults: faulty GPU, GPU system processor, SDC, thermal → die
    lost (`die_down`); HBM3 and SRAM memory → `hbm_uce`; network switch/cable, NIC → `link_down`;
    host maintenance, SSD, power, chassis, IO board, CPU, system memory → `node_down`; software bug,
    dependency, NCCL watchdog → `network_glitch` (a hung collective the serving stack rolls back).
    """
    table = {"die_down": 148 + 17 + 6 + 6, "hbm_uce": 72 + 19, "link_down": 35 + 7,
             "node_down": 32 + 3 + 3 + 2 + 2 + 2 + 2, "network_glitch": 54 + 2 + 7}
    total = sum(table.values())
    return tuple((k, v / total) for k, v in table.items())


def random_scenario(placed, *, rate_per_1000_chip_days: float, hours: float, rng: np.random.Generator,
                    path: str = "<random>") -> Scenario:
    """Draw a fault timeline: Poisson count at the given rate over the plan's chips, uniform times,
    kinds from :func:`_cause_mix`, targets uniform over the plan's dies / nodes / links."""
    if not (rate_per_1000_chip_days > 0) or not math.isfinite(rate_per_1000_chip_days):
        raise XdsError(f"must be > 0 (got {rate_per_1000_chip_days})", file="--rate-per-1000-chip-days")
    if not (hours > 0) or not math.isfinite(hours):
        raise XdsError(f"must be > 0 (got {hours})", file="--hours")
    topo = placed.topology
    lam = rate_per_1000_chip_days / 1000.0 * placed.chips * hours / 24.0
    n = int(rng.poisson(lam))
    kinds, probs = zip(*_cause_mix())
    dies = np.concatenate([inst.dies for pool in placed.pools() for inst in pool.instances])
    nodes = np.unique(topo.die_node[dies])
    events = []
    used: set[str] = set()
    for _ in range(n):
        kind = str(rng.choice(kinds, p=probs))
        at = float(rng.uniform(0, hours * 3600.0))
        if kind in ("die_down", "hbm_uce"):
            target = f"die:{int(rng.choice(dies))}"
        elif kind == "node_down":
            target = f"node:{int(rng.choice(nodes))}"
        elif kind == "link_down":
            node = int(rng.choice(nodes))
            target = _random_link(topo, node, rng)
            if target.startswith("node:"):
                kind = "node_down"
        else:
            target = _random_switch(topo, rng)
        if target in used:
            continue
        used.add(target)
        ev = {"at_s": round(at, 3), "fault": kind, "target": target}
        if kind == "network_glitch":
            ev["duration_s"] = 1.0
        events.append(FaultEvent(**ev))
    if not events:  # a quiet trial: no fault drawn (the schema needs >= 1 event, so bypass it)
        return Scenario(ScenarioSpec.model_construct(name="random", events=[], recovery=None,
                                                     description="", source=""), path)
    return Scenario(ScenarioSpec(name="random", events=events), path)


def _random_switch(topo, rng) -> str:
    s = topo.summary()
    if s["builder"] == "cloudmatrix":
        return f"l2:{int(rng.integers(s['sub_planes']))}/{int(rng.integers(s['switches']['ub_l2'] // s['sub_planes']))}"
    return f"spine:{int(rng.integers(max(s['switches'].get('ib_spine', 1), 1)))}"


def _random_link(topo, node: int, rng) -> str:
    s = topo.summary()
    if s["builder"] == "cloudmatrix":
        k = int(rng.integers(s["sub_planes"]))
        j = int(rng.integers(s["switches"]["ub_l2"] // s["sub_planes"]))
        return f"link:node:{node}-l2:{k}/{j}"
    return f"node:{node}"  # rail-fat-tree: a host NIC / cable loss takes the node off the fabric
