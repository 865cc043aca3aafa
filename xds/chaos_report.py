"""Chaos results as documents: one scenario under one policy (or all side by side), and Monte Carlo
over random fault timelines. This sits at the report level of the data flow — it runs the engine with
the perturbations :mod:`xds.chaos` compiles and judges the result with :mod:`xds.report` — so
:mod:`xds.chaos` itself stays free of reporting."""

from __future__ import annotations

from typing import Any

import numpy as np

from .chaos import POLICIES, Scenario, compile_events, random_scenario, recovery_params
from .engine import simulate
from .errors import XdsError
from .report import build_report


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
        keys = ("completed", "failed", "recomputed", "p99_tpot_ms", "p99_ttft_ms", "slo_attainment",
                "output_throughput_per_chip", "passed")
        return {"plan": placed.spec.name, "scenario": scenario.spec.name or scenario.path,
                "policies": docs,
                "summary": {p: {k: d[k] for k in keys} for p, d in docs.items()},
                "passed": all(d["passed"] for d in docs.values())}
    params = recovery_params(placed.spec.recovery, scenario.spec.recovery, policy)
    events, records = compile_events(placed, scenario, params)
    res = simulate(placed, workload, seed=seed, events=events, progress=progress)
    doc = build_report(res, placed, workload=workload)
    _annotate_records(res, placed, records)
    doc["scenario"] = scenario.spec.name or scenario.path
    doc["policy"] = params["policy"]
    doc["recovery_params"] = {k: v for k, v in params.items() if k != "policy"}
    doc["requests_total"] = int(len(res))
    doc["recomputed"] = {"requests": doc["recomputed_requests"], "tokens": doc["recomputed_tokens"]}
    doc["recovery"] = records
    span = float(workload.arrival_s[-1]) if len(workload) else 0.0
    late = [r for r in records if r["at_s"] > span]
    doc["warnings"] = [f"event {r['event']} ({r['fault']} at {r['at_s']:g} s) strikes after the last "
                       f"arrival ({span:.0f} s); lengthen --duration to see its effect" for r in late]
    return doc


def _annotate_records(res, placed, records: list[dict]) -> None:
    """``requests_affected``: requests in flight on an affected instance when the fault struck (or,
    for transient slowdowns, while it lasted)."""
    for rec in records:
        t0 = rec["at_s"]
        t1 = rec.get("recovered_at_s") or t0
        mask = np.zeros(len(res), dtype=bool)
        for name in rec["instances"]:
            role, idx = name.split(":")
            col = res.decode_instance if role == "decode" else res.prefill_instance
            finish = np.where(np.isnan(res.finish_s), np.inf, res.finish_s)
            mask |= (col == int(idx)) & (res.arrival_s <= t1) & (finish >= t0)
        rec["requests_affected"] = int(mask.sum())


def run_random(placed, workload, *, rate_per_1000_chip_days: float, hours: float, trials: int,
               policy: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Monte Carlo over ``trials`` random fault timelines: distribution of SLO attainment and failed
    requests (one policy, or every policy with ``"all"``)."""
    if trials < 1 or trials > 10_000:
        raise XdsError(f"must be 1..10000 (got {trials})", file="--trials")
    pols = POLICIES if policy == "all" else (policy or placed.spec.recovery.policy,)
    rng = np.random.default_rng(seed)
    scenarios = [random_scenario(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                                 rng=rng) for _ in range(trials)]
    out: dict[str, Any] = {"plan": placed.spec.name, "trials": trials, "hours": hours,
                           "rate_per_1000_chip_days": rate_per_1000_chip_days, "seed": seed,
                           "faults_per_trial": [len(s.spec.events) for s in scenarios], "policies": {}}
    quiet: dict[str, Any] | None = None      # a trial with no fault: one fault-free run serves all
    for pol in pols:
        att, failed, rec = [], [], []
        for sc in scenarios:
            if not sc.spec.events:
                if quiet is None:
                    quiet = build_report(simulate(placed, workload, seed=seed), placed, workload=workload,
                                         timeline=False)
                    quiet["recomputed"] = {"requests": quiet["recomputed_requests"]}
                doc = quiet
            else:
                doc = run_chaos(placed, workload, sc, policy=pol, seed=seed)
            att.append(doc["slo_attainment"] if doc["slo_attainment"] is not None else 0.0)
            failed.append(doc["failed"])
            rec.append(doc["recomputed"]["requests"])
        a, f = np.array(att, dtype=float), np.array(failed, dtype=float)
        out["policies"][pol] = {
            "slo_attainment": {"mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4),
                               "p5": round(float(np.percentile(a, 5)), 4), "per_trial": a.round(4).tolist()},
            "failed": {"mean": round(float(f.mean()), 3), "max": int(f.max()), "per_trial": f.astype(int).tolist()},
            "recomputed_requests": {"mean": round(float(np.mean(rec)), 3)},
            "trials_passing": int(sum(1 for x, y in zip(a, f) if y == 0 and x >= placed.spec.slo.attainment)),
        }
    out["passed"] = all(p["trials_passing"] == trials for p in out["policies"].values())
    expected = rate_per_1000_chip_days / 1000.0 * placed.chips * hours / 24.0
    out["expected_faults_per_trial"] = round(expected, 4)
    out["warnings"] = []
    if sum(out["faults_per_trial"]) == 0:
        out["warnings"].append(
            f"no fault was drawn in {trials} trials (expected {expected:.3g} per trial at this rate over "
            f"{placed.chips} chips x {hours:g} h); raise --rate-per-1000-chip-days, --hours or --trials")
    return out
