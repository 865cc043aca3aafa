"""Compile a scenario into engine events under one recovery policy: check every target against the
placed plan's topology, refuse impossible timelines, then hand each fault, in time order, to its
kind's handler (:data:`xds.chaos.faults.KINDS`)."""

from __future__ import annotations

import math
from typing import Any

from ..errors import XdsError
from ..spec.scenario import Scenario
from .fabric import cost_events
from .faults import KINDS, FaultContext
from .instances import die_owners
from .policies import policy_of


def compile_events(placed, scenario: Scenario, params: dict[str, Any]) -> tuple[list, list[dict]]:
    """Map a scenario's faults to engine events under one policy. Returns (events, recovery records)."""
    ctx = FaultContext(placed, die_owners(placed), params, policy_of(params), scenario.path)
    events, records = compile_into(ctx, placed, scenario, params)
    return events + cost_events(ctx), records   # fabric faults and layout changes compound (.fabric)


def compile_into(ctx: FaultContext, placed, scenario: Scenario, params: dict[str, Any]) -> tuple[list, list[dict]]:
    """The events and records of ``scenario``'s faults on ``ctx`` (which accumulates what was lost),
    without the per-epoch cost events: the caller adds :func:`.fabric.cost_events` once, after every
    fault of the run is compiled on the same context."""
    topo = placed.topology
    events: list = []
    records: list[dict] = []
    names = _target_names(scenario, topo)
    _check_overlaps(scenario, names, topo)
    for i, ev in sorted(enumerate(scenario.spec.events), key=lambda x: x[1].at_s):
        name = names[i]
        kind = name.split(":", 1)[0]
        allowed = KINDS[ev.fault].targets
        if kind not in allowed:
            raise XdsError(f"{ev.fault} cannot target {ev.target!r} (a {kind}); allowed targets: "
                           + ", ".join(f"{k}:…" for k in allowed), file=scenario.path,
                           where=f"events[{i}].target")
        t = ev.at_s
        det = t + params["detect_s"]
        rec = {"event": i, "fault": ev.fault, "target": name, "at_s": t, "detected_at_s": det,
               "recovered_at_s": det, "full_capacity_at_s": None, "instances": [], "dies": 0,
               "action": ""}
        events += KINDS[ev.fault].handle(ctx, ev, name, rec)
        records.append(rec)
    return events, records


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
    """Refuse impossible timelines (:func:`impossible_events`); the error names the first."""
    for i, msg in impossible_events(scenario.spec.events, names, topo):
        raise XdsError(msg, file=scenario.path, where=f"events[{i}]")


def impossible_events(events, names: list[str], topo):
    """Yield (index, reason) for each event that cannot happen given the earlier ones (in time
    order): a fault on an element (or on dies inside a domain) already down for good, or a
    transient fault overlapping an earlier one of the same kind on the same element. An impossible
    event is skipped, so the rest are judged against the possible ones."""
    dead: dict[str, float] = {}
    dead_dies: dict[int, float] = {}
    busy: dict[tuple[str, str], float] = {}
    for i, ev in sorted(enumerate(events), key=lambda x: x[1].at_s):
        name = names[i]
        dies = [int(d) for d in topo.dies_in(name)]
        gone = [dead_dies[d] for d in dies if d in dead_dies and ev.at_s >= dead_dies[d]]
        if (name in dead and ev.at_s >= dead[name]) or (dies and len(gone) == len(dies)):
            since = dead.get(name, min(gone) if gone else 0.0)
            yield i, (f"{name} is already down (permanently, since {since:g} s); "
                      "a later fault on it is impossible")
            continue
        key = (ev.fault, name)
        if key in busy and ev.at_s < busy[key]:
            yield i, f"overlaps an earlier {ev.fault} on {name} that lasts until {busy[key]:g} s"
            continue
        permanent = KINDS[ev.fault].permanent and ev.duration_s is None
        if permanent:
            dead[name] = ev.at_s
            for d in dies:
                dead_dies.setdefault(d, ev.at_s)
        busy[key] = ev.at_s + (ev.duration_s or (math.inf if permanent else 0.0))
