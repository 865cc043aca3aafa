"""Faults on a plan placed over several pods of a fleet (``pods: N`` cluster, pools with ``pod:`` /
``pods:``): a whole pod lost at once, and die/chip/node faults addressed inside a pod.

Targets: ``pod:K`` (every instance placed on pod K is lost at the same instant: its dies go down
like a node's, so the policy and the record are a node loss's, with the pod's blast radius), and
``pod:K/die:N`` / ``pod:K/chip:N`` / ``pod:K/node:N`` / ``pod:K/rack:N`` (that element of pod K;
an element name without ``pod:K/`` is pod 0's). Fault kinds: ``die_down``, ``chip_down``,
``node_down`` (permanent losses). Other faults (links, switches, glitches, stragglers, HBM errors)
keep their plain pod-0 names and are compiled by :func:`.compile.compile_events`; on a plan that
spans several pods the ones that re-price fabrics (links, switches, glitches) are refused, since
the topology tables are one pod's.

Fleet-wide die ids: pod K's die d is ``K * dies_per_pod + d`` (:mod:`xds.plan.placement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import XdsError
from ..spec.scenario import Scenario, ScenarioSpec
from ..topology import parse_pod
from .compile import compile_events, compile_into
from .fabric import cost_events
from .faults import FaultContext, _die_loss, nodes_down
from .instances import die_owners
from .policies import policy_of

POD_FAULTS = ("die_down", "chip_down", "node_down")
FABRIC_FAULTS = ("link_down", "link_degraded", "switch_down", "network_glitch")


def is_pod_target(target: str) -> bool:
    """Does ``target`` name a pod (``pod:K``) or an element inside one (``pod:K/node:N``)?"""
    return target.strip().startswith("pod:")


def _pod_dies(placed, target: str, where: str) -> np.ndarray:
    """Fleet-wide die ids a pod target covers: every die of the instances on pod K, or the dies of
    an element inside pod K."""
    topo = placed.topology
    head, _, elem = target.strip().partition("/")
    k = parse_pod(topo, head, where=where)
    if not elem:
        dies = [inst.dies for p in placed.pools() for inst in p.instances if inst.pod == k]
        return np.concatenate(dies) if dies else np.arange(0)
    return np.asarray(topo.dies_in(topo.parse_target(elem, where=where)), dtype=np.int64) + k * topo.n_dies


def compile_fleet_events(placed, scenario: Scenario, params: dict[str, Any]) -> tuple[list, list[dict]]:
    """:func:`.compile.compile_events` for scenarios that may name pods: pod targets are compiled
    here, the rest there; records keep the scenario's event indices."""
    evs = scenario.spec.events
    pod_i = [i for i, ev in enumerate(evs) if is_pod_target(ev.target)]
    # the fabric tables are one pod's, indexed by pod 0's die ids: any instance elsewhere is out of reach
    multi = any(i.pod != 0 for p in placed.pools() for i in p.instances)
    for i, ev in enumerate(evs):
        if i in pod_i and ev.fault not in POD_FAULTS:
            raise XdsError(f"{ev.fault} cannot target {ev.target!r}; a pod target takes "
                           + ", ".join(POD_FAULTS), file=scenario.path, where=f"events[{i}].fault")
        if multi and ev.fault in FABRIC_FAULTS:
            raise XdsError(f"{ev.fault} on a plan placed on pods other than pod 0 is not modelled (the fabric "
                           "tables are one pod's); supported there: " + ", ".join(POD_FAULTS)
                           + " on pod:K, pod:K/node:N ..., hbm_uce and straggler",
                           file=scenario.path, where=f"events[{i}].fault")
    if not pod_i:
        return compile_events(placed, scenario, params)
    rest = [i for i in range(len(evs)) if i not in pod_i]
    events, records = [], []
    # one context for every fault of the run, so lost ranks, lost nodes and layouts accumulate
    ctx = FaultContext(placed, die_owners(placed), params, policy_of(params), scenario.path)
    if rest:
        sub = Scenario(ScenarioSpec(name=scenario.spec.name, events=[evs[i] for i in rest],
                                    recovery=scenario.spec.recovery), scenario.path)
        events, records = compile_into(ctx, placed, sub, params)
    for r in records:
        r["event"] = rest[r["event"]]
    for i in pod_i:
        ev = evs[i]
        try:
            dies = _pod_dies(placed, ev.target, "target")
        except XdsError as exc:
            raise XdsError(exc.message, file=scenario.path, where=f"events[{i}].target") from None
        det = ev.at_s + params["detect_s"]
        rec = {"event": i, "fault": ev.fault, "target": ev.target.strip(), "at_s": ev.at_s,
               "detected_at_s": det, "recovered_at_s": det, "full_capacity_at_s": None,
               "instances": [], "dies": 0, "action": ""}
        _, _, elem = ev.target.strip().partition("/")
        whole_nodes = not elem or elem.startswith(("node:", "rack:"))
        events += nodes_down(ctx, dies, ev.at_s, rec) if whole_nodes else _die_loss(ctx, dies, ev.at_s, None, rec)
        if "/" not in ev.target and len(rec["instances"]) == sum(len(p.instances) for p in placed.pools()):
            rec["note"] = ("every instance of the plan was on this pod: the whole deployment is lost. A plan "
                           "written by xds size is one pod of a fleet; the fleet's N-1 case (each survivor "
                           "carrying pods/(pods-1) of its share) is xds size --survive pod")
        records.append(rec)
    records.sort(key=lambda r: (r["at_s"], r["event"]))
    return events + cost_events(ctx), records
