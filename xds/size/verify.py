"""Verification by simulation for ``xds size``: a deployment (prefill, decode instance counts of one
pod) becomes a plan in memory, the executor (:class:`xds.parallel.Executor`) simulates it on the
sized-for workload, and a bisection finds the smallest counts whose SLO attainment meets the target.

Assumes attainment does not fall when a pool gains an instance (more capacity, same routing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..chaos import Scenario
from ..errors import XdsError
from ..parallel import Executor
from ..pipeline import run_chaos, simulate_plan
from ..plan import place
from ..spec.plan import LoadedPlan, PlanSpec
from ..spec.scenario import ScenarioSpec
from ..spec.yamlio import validate
from .load import build

GROW = 1.5          # upper-bound search: multiply both pools by this until the SLO is met
MAX_GROW_ROUNDS = 10


def with_counts(plan: dict[str, Any], n_p: int, n_d: int) -> dict[str, Any]:
    """``plan`` (a plan mapping) with ``n_p`` prefill and ``n_d`` decode instances."""
    pools = [{**p, "instances": n_p if p["role"] == "prefill" else n_d} for p in plan["pools"]]
    return {**plan, "pools": pools}


def loaded(plan: dict[str, Any]) -> LoadedPlan:
    """A plan mapping validated in memory (paths inside it are absolute)."""
    return LoadedPlan(validate(PlanSpec, plan, file="xds size plan"), "xds-size-plan.yaml")


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields of a simulate/chaos document the candidates table shows."""
    dec = doc.get("pools", {}).get("decode", {})
    return {"passed": bool(doc["passed"]), "slo_attainment": doc["slo_attainment"],
            "p99_ttft_ms": doc["p99_ttft_ms"], "p99_tpot_ms": doc["p99_tpot_ms"],
            "mean_ttft_ms": doc["mean_ttft_ms"], "mean_tpot_ms": doc["mean_tpot_ms"],
            "output_throughput": doc["output_throughput"], "request_throughput": doc["request_throughput"],
            "failed": doc["failed"], "chips": doc["chips"],
            "mean_batch_per_rank": dec.get("mean_batch_per_rank")}


def sim_cell(cell: tuple) -> dict[str, Any]:
    """One verification run (an executor cell): ``(plan mapping, seed)`` -> :func:`summary`."""
    plan, seed = cell
    try:
        doc, _ = simulate_plan(loaded(plan), seed=seed, timeline=False)
    except XdsError as exc:             # e.g. the counts do not fit the pod
        return {"passed": False, "error": exc.message}
    return summary(doc)


DRAIN_WINDOWS = 3     # SLO windows after recovery left to drain the stall's backlog (transient)
JUDGED_WINDOWS = 3    # SLO windows judged after that (the N-1 steady state)


def fault_cell(cell: tuple) -> dict[str, Any]:
    """One fault replay (an executor cell): ``(plan mapping, fault, target, at_s, seed)``. When
    recovery ends too late to leave DRAIN_WINDOWS + JUDGED_WINDOWS of arrivals after it, the replay
    is run again on a longer workload (same trace and rate)."""
    plan, fault, target, at_s, seed = cell
    doc = _replay(plan, fault, target, at_s, seed)
    win = float(plan["slo"].get("window_s", 10.0))
    need = _recovered(doc, at_s) + (DRAIN_WINDOWS + JUDGED_WINDOWS) * win
    if need > float(plan["workload"]["duration_s"]):
        plan = {**plan, "workload": {**plan["workload"], "duration_s": math.ceil(need / win) * win}}
        doc = _replay(plan, fault, target, at_s, seed)
    return {"fault": fault, "target": target, "at_s": at_s, **summary(doc),
            **after_recovery(doc, at_s, win, float(plan["workload"]["duration_s"]))}


def _replay(plan: dict[str, Any], fault: str, target: str, at_s: float, seed: int) -> dict[str, Any]:
    placed = place(loaded(plan))
    sc = Scenario(ScenarioSpec(name=f"{fault} {target}", events=[{"at_s": at_s, "fault": fault,
                                                                   "target": target}]),
                  f"xds size: {fault} {target}")
    return run_chaos(placed, build(plan["workload"], seed), sc, seed=seed)


def _recovered(doc: dict[str, Any], at_s: float) -> float:
    return max([float(r.get("recovered_at_s") or at_s) for r in doc.get("recovery", [])] or [at_s])


def after_recovery(doc: dict[str, Any], at_s: float, win: float, end_s: float) -> dict[str, Any]:
    """Headroom verdict of a fault replay: the SLO windows from DRAIN_WINDOWS after recovery to the
    end of arrivals must meet the attainment target (N−1 capacity at steady state); the windows of
    the recovery stall and its backlog are the policy's cost (more instances cannot shorten them)
    and are reported, not judged."""
    done = _recovered(doc, at_s)
    start = done + DRAIN_WINDOWS * win
    met = [bool(w["slo_met"]) for w in doc.get("timeline", []) if start <= w["t_s"] and w["t_s"] + win <= end_s]
    post = sum(met) / len(met) if met else 0.0
    return {"recovered_at_s": round(done, 3), "attainment_after_recovery": round(post, 4),
            "judged_windows": len(met),
            "transient_windows_violated": int(doc["slo"]["windows_violated"]) - (len(met) - sum(met)),
            "passed": bool(met) and post >= float(doc["slo"]["target"]) and not doc["failed"]}


class Verifier:
    """Simulates (prefill, decode) counts of one plan mapping on the executor, remembering every
    result (the candidates table)."""

    def __init__(self, plan: dict[str, Any], executor: Executor, seed: int,
                 fits: Callable[[int, int], bool], progress: Callable[[str], None] | None = None):
        self.plan, self.ex, self.seed, self.fits = plan, executor, seed, fits
        self.results: dict[tuple[int, int], dict[str, Any]] = {}
        self.progress = progress

    def run(self, points: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
        """Simulate the points not yet simulated (in parallel); points that do not fit the pod
        fail without a run."""
        todo = [p for p in dict.fromkeys(points) if p not in self.results]
        for p in [p for p in todo if not self.fits(*p)]:
            self.results[p] = {"passed": False, "error": "does not fit the pod"}
        todo = [p for p in todo if self.fits(*p)]
        cells = [(with_counts(self.plan, p[0], p[1]), self.seed) for p in todo]
        for out in self.ex.map(sim_cell, cells):
            res = out.value if out.error is None else {"passed": False, "error": out.error}
            self.results[todo[out.index]] = res
        if self.progress and todo:
            self.progress(f"simulated {len(todo)} deployment(s): " + ", ".join(
                f"{p[0]}P+{p[1]}D {'ok' if self.results[p]['passed'] else 'miss'}" for p in todo))
        return {p: self.results[p] for p in points}

    def ok(self, p: tuple[int, int]) -> bool:
        return bool(self.run([p])[p]["passed"])

    def _grow(self, p: tuple[int, int]) -> tuple[int, int]:
        """The next point up from a failing ``p``: grow the pool(s) the run says bind — decode when
        TPOT missed or its batches ran at the cap, prefill when TTFT missed otherwise; both when
        neither is clear (e.g. failed requests)."""
        r = self.results[p]
        slo = self.plan["slo"]
        dpool = next(q for q in self.plan["pools"] if q["role"] == "decode")
        cap = dpool.get("batch_per_rank", dpool.get("batch_per_die"))
        dec = (r.get("p99_tpot_ms") or 0) > slo["tpot_ms"] or (r.get("mean_batch_per_rank") or 0) >= 0.95 * cap
        pre = not dec and (r.get("p99_ttft_ms") or 0) > slo["ttft_ms"]
        if not (dec or pre):
            dec = pre = True
        return (max(p[0] + 1, round(p[0] * GROW)) if pre else p[0],
                max(p[1] + 1, round(p[1] * GROW)) if dec else p[1])

    def upper(self, n_p: int, n_d: int) -> tuple[int, int] | None:
        """A passing point at or above (n_p, n_d), growing the binding pool(s) by GROW (by one
        instance when GROW would leave the pod); None when none fits."""
        p = (n_p, n_d)
        for _ in range(MAX_GROW_ROUNDS):
            if not self.fits(*p):
                return None
            if self.ok(p):
                return p
            nxt = self._grow(p)
            if not self.fits(*nxt):
                nxt = (p[0] + (nxt[0] > p[0]), p[1] + (nxt[1] > p[1]))
            p = nxt
        return None

    def minimise(self, hi: int, point: Callable[[int], tuple[int, int]]) -> int:
        """Smallest n in [1, hi] whose ``point(n)`` passes, given ``point(hi)`` passes: gallop down
        (hi-1, hi-2, hi-4, ... simulated together) to a failing n, then bisect."""
        width = max(1, getattr(self.ex, "workers", None) or 2)
        steps = [1 << k for k in range(width)]
        cands = [hi - s for s in steps if hi - s >= 1]
        res = self.run([point(n) for n in cands])
        lo = 0
        for n in cands:                                   # descending
            if res[point(n)]["passed"]:
                hi = n
            else:
                lo = n
                break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.ok(point(mid)):
                hi = mid
            else:
                lo = mid
        return hi
