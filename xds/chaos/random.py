"""Random fault timelines for Monte Carlo chaos: Poisson fault counts at a rate per 1000 chip-days,
uniform times over the trial (s), fault kinds weighted by a published interruption table, targets
uniform over the plan's dies / nodes / links / switches."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..errors import XdsError
from ..spec.scenario import FaultEvent, Scenario, ScenarioSpec
from .compile import impossible_events


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
    """Draw a fault timeline: Poisson count at the given rate over the plan's chips for ``hours``,
    uniform times, kinds from :func:`_cause_mix`, targets uniform over the plan's dies / nodes /
    links (a target drawn twice keeps its first fault; a fault on something already down for good
    is dropped). May have no event (a quiet trial)."""
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
            target = topo.family.random_link(node, rng)
            if target.startswith("node:"):
                kind = "node_down"
        else:
            target = topo.family.random_switch(rng)
        if target in used:
            continue
        used.add(target)
        ev = {"at_s": round(at, 3), "fault": kind, "target": target}
        if kind == "network_glitch":
            ev["duration_s"] = 1.0
        events.append(FaultEvent(**ev))
    # a fault on a die or domain already down for good cannot happen: drop it, as the fleet would
    # never see it (the run must not abort on a draw)
    names = [topo.parse_target(e.target) for e in events]
    drop = {i for i, _ in impossible_events(events, names, topo)}
    events = sorted((e for i, e in enumerate(events) if i not in drop), key=lambda e: e.at_s)
    if not events:  # a quiet trial: no fault drawn (the schema needs >= 1 event, so bypass it)
        return Scenario(ScenarioSpec.model_construct(name="random", events=[], recovery=None,
                                                     description="", source=""), path)
    return Scenario(ScenarioSpec(name="random", events=events), path)
