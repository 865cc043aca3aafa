"""Simulate and chaos runs of a plan: place → simulate or replay faults → report (see the package
doc)."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from ..chaos import POLICIES, Scenario, load_scenario, random_scenario, recovery_params
from ..chaos.pods import compile_fleet_events
from ..cost.bands import add_intervals
from ..engine import SimResult, simulate
from ..errors import XdsError
from ..parallel import Executor
from ..plan import place
from ..report import (
    build_report,
    chaos_report,
    policies_report,
    random_report,
    requests_csv,
    trial_outcome,
    trials_stats,
    write_plot,
    write_timeline_plot,
)
from ..spec.fileio import check_output_path, check_plot_path, write_text_atomic
from ..spec.plan import LoadedPlan
from ..workload.source import describe_source
from .workload import (
    _check_seed,
    _closed_loop_requests,
    _flags_given,
    _loaded,
    build_workload,
)


def simulate_plan(plan: str | LoadedPlan, *, workload: dict[str, Any] | None = None, seed: int = 0,
                  concurrency: int | None = None, progress: Callable | None = None,
                  timing: bool = False, timeline: bool = True, requests_out: str | None = None,
                  plot: str | None = None, **options: Any) -> tuple[dict[str, Any], SimResult]:
    """``xds simulate`` as a function: ``(document, result)``.

    ``concurrency`` N runs closed loop (N requests in flight, arrival times ignored);
    ``progress(sim_t_s, done, total)`` is called as the run advances; ``timing`` adds wall-clock
    fields; ``requests_out`` (CSV) and ``plot`` (png/svg) are written atomically."""
    _check_seed(seed)
    check_output_path(requests_out, "--requests-out")
    check_plot_path(plot)
    if concurrency is not None and concurrency < 1:
        raise XdsError(f"must be a whole number >= 1 (got {concurrency})", file="--concurrency")
    loaded = _loaded(plan)
    flags = _flags_given(options)
    if concurrency is not None and options.get("trace") is None and options.get("rate") is None and (
            options.get("input_len") or options.get("input_dist")):
        # closed loop ignores arrival times; a synthetic workload still needs a rate to be built
        options["rate"] = float(concurrency)
    w = build_workload(loaded, workload=workload, seed=seed, **options)
    notes: list[str] = []
    if concurrency is not None and workload is None:
        w = _closed_loop_requests(loaded, w, seed, options, notes)
    placed = place(loaded)
    t0 = time.perf_counter()
    res = simulate(placed, w, seed=seed, concurrency=concurrency, progress=progress)
    wall = time.perf_counter() - t0
    doc = build_report(res, placed, workload=w, wall_seconds=wall if timing else None,
                       timeline=timeline)
    _model_bands(doc, placed)
    plan_block = loaded.spec.workload.model_dump(exclude_unset=True) if loaded.spec.workload else None
    doc["workload_source"] = {**describe_source(plan_block, flags, check_block=workload is not None),
                              "mode": "closed loop" if concurrency is not None else "open loop",
                              "notes": notes}
    if requests_out:
        write_text_atomic(requests_out, requests_csv(res))
    if plot:
        write_plot(res, plot, doc if timeline else build_report(res, placed, workload=w))
    return doc, res


def _model_bands(doc: dict[str, Any], placed: Any) -> None:
    """Add the cost model's 90 % bands (xds.cost.bands) next to the simulated TPOT, TTFT and
    throughput: the uncertainty of the model that priced every iteration, NOT sampling noise."""
    dec = (doc.get("pools") or {}).get("decode") or {}
    batch = dec.get("mean_batch_per_rank")          # the batch the run actually decoded at
    batch = float(placed.decode.batch_cap_per_rank) if batch is None else float(batch)
    add_intervals(doc, placed.hw, "decode", batch,
                  ("mean_tpot_ms", "p99_tpot_ms", "output_throughput_per_chip"))
    if placed.prefill is not None:
        add_intervals(doc, placed.hw, "prefill", None,
                      ("mean_ttft_ms", "p99_ttft_ms", "input_throughput_per_chip"))
    if any(k.endswith("_interval") for k in doc):
        doc["interval_note"] = ("90 % band of the cost model (xds validate leave-one-out residuals), "
                                "not sampling noise")


def chaos_plan(plan: str | LoadedPlan, *, scenario: str | None = None, policy: str | None = None,
               random: bool = False, rate_per_1000_chip_days: float | None = None,
               hours: float | None = None, trials: int = 10, workload: dict[str, Any] | None = None,
               seed: int = 0, plot: str | None = None, workers: int | None = None,
               ray: str | None = None, progress: Callable[[int, int], None] | None = None,
               **options: Any) -> dict[str, Any]:
    """``xds chaos`` as a function: the result document of one scenario (``scenario`` file) or of
    ``trials`` random fault timelines (``random``: ``rate_per_1000_chip_days`` over ``hours`` h),
    run on ``workers`` local processes (default all cores) or a Ray cluster (``ray``)."""
    _check_seed(seed)
    executor = Executor(workers=workers, ray=ray)
    if policy is not None and policy != "all" and policy not in POLICIES:
        raise XdsError(f"unknown policy {policy!r} (allowed: {', '.join(POLICIES)}, all)", file="--policy")
    check_plot_path(plot)
    if random:
        if scenario:
            raise XdsError("give --scenario FILE or --random, not both", file="--random")
        if rate_per_1000_chip_days is None or hours is None:
            raise XdsError("--random needs --rate-per-1000-chip-days R and --hours H", file="--random")
        if not (math.isfinite(hours) and hours > 0):
            raise XdsError(f"must be a finite number > 0 (got {hours})", file="--hours")
        if not (math.isfinite(rate_per_1000_chip_days) and rate_per_1000_chip_days > 0):
            raise XdsError(f"must be > 0 (got {rate_per_1000_chip_days})", file="--rate-per-1000-chip-days")
        if not 1 <= trials <= 10_000:
            raise XdsError(f"must be 1..10000 (got {trials})", file="--trials")
        if plot:
            raise XdsError("--plot draws one scenario's timeline; it does not apply to --random",
                           file="--plot")
    elif not scenario:
        raise XdsError("give --scenario FILE (or --random with rates)", file="--scenario")
    loaded = _loaded(plan)
    if random and loaded.spec.pods_named() != {0}:
        raise XdsError("--random draws faults on pod 0's elements; this plan uses other pods "
                       "(replay pod:K and pod:K/node:N faults with --scenario)", file="--random")
    if random and options.get("duration") is None and workload is None:
        options["duration"] = hours * 3600.0
    w = build_workload(loaded, workload=workload, seed=seed, **options)
    placed = place(loaded)
    if random:
        return run_random(placed, w, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                          trials=trials, policy=policy, seed=seed, progress=progress,
                          executor=executor)
    doc = run_chaos(placed, w, load_scenario(scenario), policy=policy, seed=seed)
    if plot:
        write_timeline_plot(doc, plot)
    return doc


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
    events, records = compile_fleet_events(placed, scenario, params)
    res = simulate(placed, workload, seed=seed, events=events, progress=progress)
    return chaos_report(res, placed, workload, scenario, params, records)


def _trial(cell: tuple) -> dict[str, Any]:
    """One random-chaos trial (a cell for the executor): its SLO attainment and failures."""
    placed, workload, scenario, policy, seed = cell
    return trial_outcome(run_chaos(placed, workload, scenario, policy=policy, seed=seed))


def run_random(placed, workload, *, rate_per_1000_chip_days: float, hours: float, trials: int,
               policy: str | None = None, seed: int = 0, executor: Executor | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Monte Carlo over ``trials`` random fault timelines of ``hours`` at ``rate_per_1000_chip_days``:
    distribution of SLO attainment and failed requests (one policy, or every policy with ``"all"``).
    Timelines are drawn here from ``seed``; the trials run on ``executor`` (default: in this
    process), so the result is the same on every backend."""
    if trials < 1 or trials > 10_000:
        raise XdsError(f"must be 1..10000 (got {trials})", file="--trials")
    pols = POLICIES if policy == "all" else (policy or placed.spec.recovery.policy,)
    rng = np.random.default_rng(seed)
    scenarios = [random_scenario(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                                 rng=rng) for _ in range(trials)]
    cells = [(placed, workload, sc, pol, seed) for pol in pols for sc in scenarios if sc.spec.events]
    runs = sorted((executor or Executor(workers=1)).map(_trial, cells, progress=progress),
                  key=lambda o: o.index)
    bad = next((o.error for o in runs if o.error is not None), None)
    if bad is not None:
        raise XdsError(bad)
    quiet: dict[str, Any] | None = None      # a trial with no fault: one fault-free run serves all
    if any(not sc.spec.events for sc in scenarios):
        doc = build_report(simulate(placed, workload, seed=seed), placed, workload=workload,
                           timeline=False)
        doc["recomputed"] = {"requests": doc["recomputed_requests"]}
        quiet = trial_outcome(doc)
    done = iter(o.value for o in runs)
    stats = {pol: trials_stats([next(done) if sc.spec.events else quiet for sc in scenarios],
                               placed.spec.slo.attainment, hours) for pol in pols}
    return random_report(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                         trials=trials, seed=seed, faults_per_trial=[len(s.spec.events) for s in scenarios],
                         stats=stats, timelines=[[e.model_dump(exclude_none=True) for e in s.spec.events]
                                                 for s in scenarios])
