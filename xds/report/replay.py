"""Chaos orchestration: compile a scenario's faults (:mod:`xds.chaos`), run the engine with them and
turn the result into a document (:mod:`xds.report.chaos`); the Monte Carlo loop over random fault
timelines. It sits above both chaos and report and belongs in ``xds/pipeline.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chaos import POLICIES, Scenario, compile_events, random_scenario, recovery_params
from ..engine import simulate
from ..errors import XdsError
from .chaos import chaos_report, policies_report, random_report, trial_outcome, trials_stats
from .document import build_report


def run_chaos(placed, workload, scenario: Scenario, *, policy: str | None = None, seed: int = 0,
              progress=None) -> dict[str, Any]:
    """Replay ``scenario`` on ``placed`` with ``workload`` under one policy (or ``"all"``).

    Returns the ``xds chaos --json`` document: the simulate fields plus ``requests_total``,
    ``recomputed``, ``failed`` with reasons, ``recovery``, ``timeline``, ``slo`` and ``passed``; with
    ``policy="all"``, ``{"policies": {name: that}}`` plus a side-by-side ``summary``.
    """
    if policy == "all":
        docs = {p: run_chaos(placed, workload, scenario, policy=p, seed=seed, progress=progress)
                for p in POLICIES}
        return policies_report(placed, scenario, docs)
    params = recovery_params(placed.spec.recovery, scenario.spec.recovery, policy)
    events, records = compile_events(placed, scenario, params)
    res = simulate(placed, workload, seed=seed, events=events, progress=progress)
    return chaos_report(res, placed, workload, scenario, params, records)


def run_random(placed, workload, *, rate_per_1000_chip_days: float, hours: float, trials: int,
               policy: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Monte Carlo over ``trials`` random fault timelines of ``hours`` at ``rate_per_1000_chip_days``:
    distribution of SLO attainment and failed requests (one policy, or every policy with ``"all"``)."""
    if trials < 1 or trials > 10_000:
        raise XdsError(f"must be 1..10000 (got {trials})", file="--trials")
    pols = POLICIES if policy == "all" else (policy or placed.spec.recovery.policy,)
    rng = np.random.default_rng(seed)
    scenarios = [random_scenario(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                                 rng=rng) for _ in range(trials)]
    quiet: dict[str, Any] | None = None      # a trial with no fault: one fault-free run serves all
    stats = {}
    for pol in pols:
        outcomes = []
        for sc in scenarios:
            if not sc.spec.events:
                if quiet is None:
                    quiet = build_report(simulate(placed, workload, seed=seed), placed, workload=workload,
                                         timeline=False)
                    quiet["recomputed"] = {"requests": quiet["recomputed_requests"]}
                doc = quiet
            else:
                doc = run_chaos(placed, workload, sc, policy=pol, seed=seed)
            outcomes.append(trial_outcome(doc))
        stats[pol] = trials_stats(outcomes, placed.spec.slo.attainment)
    return random_report(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                         trials=trials, seed=seed, faults_per_trial=[len(s.spec.events) for s in scenarios],
                         stats=stats)
