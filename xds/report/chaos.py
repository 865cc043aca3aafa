"""Chaos results as documents: one scenario under one policy (the simulate document plus what the
faults did), policies side by side, and the statistics of Monte Carlo trials. Pure functions of
simulation results and compiled recovery records; running them is :func:`xds.pipeline.run_chaos`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..engine import FAILED, SimResult
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
    """Each fault's blast radius (:func:`blast_radius`) under ``blast_radius``, and
    ``requests_affected`` kept at the top level."""
    for rec in records:
        rec["blast_radius"] = blast_radius(res, rec)
        rec["requests_affected"] = rec["blast_radius"]["requests_affected"]


def blast_radius(res: SimResult, rec: dict) -> dict[str, Any]:
    """What one fault touched and cost: ``dies`` / ``expert_slots_lost`` / ``instances`` affected;
    ``requests_affected`` (in flight on an affected instance between the fault and full capacity,
    or waiting for a stalled P->D KV transfer) and their ``recomputed_tokens`` and ``failed``;
    ``time_to_detect_s`` / ``time_to_recover_s`` (service back) / ``time_to_full_capacity_s``
    (None: not within the run, e.g. a die lost for good); ``capacity_lost_tok_s``: output tokens/s
    the run produced before the fault minus while service was interrupted (or, for a fault that
    only slows service, while it lasts), measured on the SLO windows; 0 when the system kept up."""
    t0 = rec["at_s"]
    full = rec.get("full_capacity_at_s")
    t1 = max(rec.get("recovered_at_s") or t0, full if full is not None else res.duration)
    rec_t = rec.get("recovered_at_s")
    # requests hit: in flight while service was interrupted, or, for a fault that only slows
    # service, while it lasts
    t_req = rec_t if rec_t is not None and rec_t > t0 else t1
    finish = np.where(np.isnan(res.finish_s), np.inf, res.finish_s)
    live = (res.arrival_s <= t_req) & (finish >= t0)
    mask = np.zeros(len(res), dtype=bool)
    for name in rec["instances"]:
        role, idx = name.split(":")
        col = res.decode_instance if role == "decode" else res.prefill_instance
        mask |= (col == int(idx)) & live
    first = np.where(np.isnan(res.first_token_s), np.inf, res.first_token_s)
    for name in rec.get("kv_instances", []):
        mask |= (res.decode_instance == int(name.split(":")[1])) & live & (first >= t0)
    return {"dies": int(rec.get("dies", 0)), "expert_slots_lost": int(rec.get("expert_slots_lost", 0)),
            "experts_without_replica": int(rec.get("experts_without_replica", 0)),
            "instances": len(rec["instances"]) or len(rec.get("kv_instances", [])),
            "requests_affected": int(mask.sum()),
            "recomputed_tokens": int(res.recomputed_tokens[mask].sum()),
            "failed": int((res.status[mask] == FAILED).sum()),
            "time_to_detect_s": round(rec["detected_at_s"] - t0, 6),
            "time_to_recover_s": None if rec_t is None else round(rec_t - t0, 6),
            "time_to_full_capacity_s": None if full is None else round(full - t0, 6),
            "capacity_lost_tok_s": _capacity_lost(res, t0, t_req)}


def _capacity_lost(res: SimResult, t0: float, t1: float) -> float:
    """Output tokens/s in the windows before ``t0`` minus in the windows from ``t0`` to ``t1`` (s),
    clipped at 0 (the first window, the ramp, is left out of the baseline)."""
    w = res.window_s
    toks = res.series.get("output_tokens")
    if toks is None or not len(toks):
        return 0.0
    i0 = int(t0 // w)
    i1 = max(int(np.ceil(t1 / w)), i0 + 1)
    before = toks[1:i0] if i0 > 1 else toks[:i0]
    during = toks[i0:i1]
    if not len(before) or not len(during):
        return 0.0
    return round(max(float(before.mean() - during.mean()) / w, 0.0), 1)


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


def trials_stats(outcomes: list[tuple[float, int, int]], target: float,
                 hours: float | None = None) -> dict[str, Any]:
    """One policy over Monte Carlo trials (:func:`trial_outcome` each): SLO attainment and failed
    requests per trial with mean / min / p5 / max, mean recomputed requests, the trials that
    pass (no failure and attainment ≥ ``target``), ``availability`` (fraction of SLO windows met:
    mean over trials and its 95 % confidence interval, Student t on the trial means) and, given
    ``hours`` per trial, ``failed_per_day`` (mean failed requests × 24 / hours)."""
    att, failed, rec = zip(*outcomes)
    a, f = np.array(att, dtype=float), np.array(failed, dtype=float)
    extra: dict[str, Any] = {"availability": availability_ci(a)}
    if hours:
        extra["failed_per_day"] = round(float(f.mean()) * 24.0 / hours, 3)
    return extra | {
        "slo_attainment": {"mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4),
                           "p5": round(float(np.percentile(a, 5)), 4), "per_trial": a.round(4).tolist()},
        "failed": {"mean": round(float(f.mean()), 3), "max": int(f.max()), "per_trial": f.astype(int).tolist()},
        "recomputed_requests": {"mean": round(float(np.mean(rec)), 3)},
        "trials_passing": int(sum(1 for x, y in zip(a, f) if y == 0 and x >= target)),
    }


def availability_ci(a: np.ndarray) -> dict[str, Any]:
    """Mean of per-trial window attainment and its two-sided 95 % confidence interval (Student t
    with n-1 degrees of freedom; the interval is the point itself for one trial), clipped to
    [0, 1]."""
    n = len(a)
    mean = float(a.mean())
    half = float(t975(n - 1) * a.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": round(mean, 4), "ci95": [round(max(mean - half, 0.0), 4), round(min(mean + half, 1.0), 4)],
            "trials": n}


# Student t 0.975 quantiles for 1..30 degrees of freedom (standard tables)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """Two-sided 95 % Student t quantile for ``df`` ≥ 1 degrees of freedom (table to 30, then
    1.96 + 2.4 / df, within 0.002 of the exact value)."""
    return _T975[df - 1] if df <= 30 else 1.96 + 2.4 / df


def random_report(placed, *, rate_per_1000_chip_days: float, hours: float, trials: int, seed: int,
                  faults_per_trial: list[int], stats: dict[str, dict[str, Any]],
                  timelines: list[list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The ``xds chaos --random --json`` document: per-policy ``stats`` of the trials, the faults
    drawn per trial and the expected count, each trial's fault timeline (``trial_faults``: which
    fault hit what and when, ``{at_s, fault, target, duration_s?, factor?}``) so a bad trial can be
    explained and replayed as a scenario, and a warning when no fault was drawn at all."""
    out: dict[str, Any] = {"plan": placed.spec.name, "trials": trials, "hours": hours,
                           "rate_per_1000_chip_days": rate_per_1000_chip_days, "seed": seed,
                           "faults_per_trial": faults_per_trial, "policies": stats}
    if timelines is not None:
        out["trial_faults"] = timelines
    out["passed"] = all(p["trials_passing"] == trials for p in stats.values())
    expected = rate_per_1000_chip_days / 1000.0 * placed.chips * hours / 24.0
    out["expected_faults_per_trial"] = round(expected, 4)
    out["warnings"] = []
    if sum(faults_per_trial) == 0:
        out["warnings"].append(
            f"no fault was drawn in {trials} trials (expected {expected:.3g} per trial at this rate over "
            f"{placed.chips} chips x {hours:g} h); raise --rate-per-1000-chip-days, --hours or --trials")
    return out
