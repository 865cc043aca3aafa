"""Chaos results as documents: one scenario under one policy (the simulate document plus what the
faults did), policies side by side, and the statistics of Monte Carlo trials. Pure functions of
simulation results and compiled recovery records; running them is :func:`xds.pipeline.run_chaos`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import SimResult
from ..spec.scenario import Scenario
from .document import build_report

SUMMARY_KEYS = ("completed", "failed", "recomputed", "p99_tpot_ms", "p99_ttft_ms", "slo_attainment",
                "output_throughput_per_chip", "passed")


def chaos_report(res: SimResult, placed, workload, scenario: Scenario, params: dict[str, Any],
                 records: list[dict]) -> dict[str, Any]:
    """The ``xds chaos --json`` document of one policy: the simulate fields plus ``scenario``,
    ``policy``, ``recovery_params``, ``requests_total``, ``recomputed``, ``recovery`` (the records,
    annotated with ``requests_affected``) and ``warnings``. Mutates ``records``."""
    doc = build_report(res, placed, workload=workload)
    _annotate_records(res, records)
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


def _annotate_records(res: SimResult, records: list[dict]) -> None:
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


def policies_report(placed, scenario: Scenario, docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``--policy all``: each policy's document under ``policies`` and a side-by-side ``summary``."""
    return {"plan": placed.spec.name, "scenario": scenario.spec.name or scenario.path,
            "policies": docs,
            "summary": {p: {k: d[k] for k in SUMMARY_KEYS} for p, d in docs.items()},
            "passed": all(d["passed"] for d in docs.values())}


def trial_outcome(doc: dict[str, Any]) -> tuple[float, int, int]:
    """What a Monte Carlo trial keeps of its document: (SLO attainment, None counted as 0; failed
    requests; recomputed requests)."""
    att = doc["slo_attainment"] if doc["slo_attainment"] is not None else 0.0
    return att, doc["failed"], doc["recomputed"]["requests"]


def trials_stats(outcomes: list[tuple[float, int, int]], target: float) -> dict[str, Any]:
    """One policy over Monte Carlo trials (:func:`trial_outcome` each): SLO attainment and failed
    requests per trial with mean / min / p5 / max, mean recomputed requests, and the trials that
    pass (no failure and attainment ≥ ``target``)."""
    att, failed, rec = zip(*outcomes)
    a, f = np.array(att, dtype=float), np.array(failed, dtype=float)
    return {
        "slo_attainment": {"mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4),
                           "p5": round(float(np.percentile(a, 5)), 4), "per_trial": a.round(4).tolist()},
        "failed": {"mean": round(float(f.mean()), 3), "max": int(f.max()), "per_trial": f.astype(int).tolist()},
        "recomputed_requests": {"mean": round(float(np.mean(rec)), 3)},
        "trials_passing": int(sum(1 for x, y in zip(a, f) if y == 0 and x >= target)),
    }


def random_report(placed, *, rate_per_1000_chip_days: float, hours: float, trials: int, seed: int,
                  faults_per_trial: list[int], stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``xds chaos --random --json`` document: per-policy ``stats`` of the trials, the faults
    drawn per trial and the expected count, and a warning when no fault was drawn at all."""
    out: dict[str, Any] = {"plan": placed.spec.name, "trials": trials, "hours": hours,
                           "rate_per_1000_chip_days": rate_per_1000_chip_days, "seed": seed,
                           "faults_per_trial": faults_per_trial, "policies": stats}
    out["passed"] = all(p["trials_passing"] == trials for p in stats.values())
    expected = rate_per_1000_chip_days / 1000.0 * placed.chips * hours / 24.0
    out["expected_faults_per_trial"] = round(expected, 4)
    out["warnings"] = []
    if sum(faults_per_trial) == 0:
        out["warnings"].append(
            f"no fault was drawn in {trials} trials (expected {expected:.3g} per trial at this rate over "
            f"{placed.chips} chips x {hours:g} h); raise --rate-per-1000-chip-days, --hours or --trials")
    return out
