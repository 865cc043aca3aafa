"""Benchmark: many-run jobs on the executor (run by hand, not a test; issue 16 targets).

1. 16 cells of a 300 s ``simulate`` of ``plans/cloudmatrix-infer-pd.yaml`` (its Azure trace,
   seeds 0..15) on one worker, the local process pool (2) and a private local Ray: wall times and
   speedups (target: pool and Ray each >= 1.7x on 2 cores), and Ray's fixed overhead (start + first
   result of a no-op cell, and shutdown).
2. A 200-cell estimate-only grid (decode, batch per die x prompt x output length) on the pool with
   batching (target: seconds, not minutes).
3. The scale-out arithmetic for a 1,000-trial, 1 h ``chaos --random`` Monte Carlo: one 1 h trial's
   CPU-s measured here, scaled to 1 machine (this one) and 16- and 64-core Ray clusters. It is
   arithmetic (per-trial cost x trials / cores / parallel efficiency measured in 1.), not a run.

Usage: python benchmarks/bench_sweep.py [--cells 16] [--skip-chaos] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from xds.cost.estimate import estimate
from xds.parallel import Executor
from xds.pipeline import chaos_plan, simulate_plan

ROOT = Path(__file__).resolve().parent.parent
PLAN = str(ROOT / "plans/cloudmatrix-infer-pd.yaml")


def simulate_cell(seed: int) -> dict:
    """One sweep cell: the plan's 300 s workload at one seed; the collected fields."""
    doc, _ = simulate_plan(PLAN, seed=seed, timeline=False)
    return {k: doc[k] for k in ("completed", "p99_tpot_ms", "p99_ttft_ms", "output_throughput_per_chip")}


def estimate_cell(cell: tuple[int, int, int]) -> float:
    b, i, o = cell
    return estimate(model="deepseek-r1", hardware="ascend-910c", phase="decode", chips=160, ep=320,
                    dp=320, batch_per_die=b, input_len=i, output_len=o)["tpot_ms"]


def noop(x: int) -> int:
    return x


def timed_map(executor: Executor, fn, cells, batch=None) -> tuple[float, float, list]:
    """(wall s, s to the first outcome, values by index)."""
    t0 = time.perf_counter()
    first, out = None, []
    for o in executor.map(fn, cells, batch=batch):
        first = first if first is not None else time.perf_counter() - t0
        if o.error:
            raise SystemExit(f"cell {o.index} failed: {o.error}")
        out.append(o)
    return time.perf_counter() - t0, first, [o.value for o in sorted(out, key=lambda o: o.index)]


def bench_simulate(n: int) -> dict:
    cells = list(range(n))
    one, _, ref = timed_map(Executor(workers=1), simulate_cell, cells)
    pool, _, got_pool = timed_map(Executor(workers=2), simulate_cell, cells)
    ray_wall, ray_first, got_ray = timed_map(Executor(ray="local"), simulate_cell, cells)
    assert got_pool == ref and got_ray == ref, "backends disagree"
    t0 = time.perf_counter()
    _, overhead, _ = timed_map(Executor(ray="local"), noop, [0])
    overhead_total = time.perf_counter() - t0
    return {"cells": n, "one_worker_s": one, "pool2_s": pool, "ray_local_s": ray_wall,
            "ray_first_result_s": ray_first, "pool2_speedup": one / pool, "ray_speedup": one / ray_wall,
            "ray_overhead_start_first_result_s": overhead,
            "ray_overhead_incl_shutdown_s": overhead_total, "per_cell_s": one / n}


def bench_estimate() -> dict:
    cells = [(b, i, o) for b in range(8, 88, 8) for i in (1024, 2048, 4096, 8192, 16384)
             for o in (128, 256, 512, 1024)]
    one, _, ref = timed_map(Executor(workers=1), estimate_cell, cells)
    pool, _, got = timed_map(Executor(workers=2), estimate_cell, cells, batch=25)
    assert got == ref
    return {"cells": len(cells), "one_worker_s": one, "pool2_batch25_s": pool}


def bench_chaos(per_cell_eff: float) -> dict:
    """One 1 h random-chaos trial at the plan's realistic load (~220 req/s), with a fault rate high
    enough that the trial has faults to recover from; then the arithmetic."""
    c0, t0 = time.process_time(), time.perf_counter()
    doc = chaos_plan(PLAN, random=True, rate_per_1000_chip_days=200.0, hours=1.0, trials=1,
                     policy="fine-grained", seed=1, workers=1)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    trials = 1000
    out = {"trial_cpu_s": cpu, "trial_wall_s": wall, "faults_in_trial": doc["faults_per_trial"][0],
           "parallel_efficiency": per_cell_eff, "trials": trials}
    for cores in (os.cpu_count() or 1, 16, 64):
        out[f"hours_on_{cores}_cores"] = trials * cpu / (cores * per_cell_eff) / 3600
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--skip-chaos", action="store_true")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args()
    res = {"cpu_count": os.cpu_count(), "simulate": bench_simulate(a.cells), "estimate": bench_estimate()}
    s = res["simulate"]
    print(f"os.cpu_count() = {res['cpu_count']}")
    print(f"{a.cells} x 300 s simulate: 1 worker {s['one_worker_s']:.1f} s | pool(2) {s['pool2_s']:.1f} s "
          f"({s['pool2_speedup']:.2f}x) | ray local {s['ray_local_s']:.1f} s ({s['ray_speedup']:.2f}x)")
    print(f"Ray fixed overhead: start + first result {s['ray_overhead_start_first_result_s']:.1f} s, "
          f"{s['ray_overhead_incl_shutdown_s']:.1f} s with shutdown")
    e = res["estimate"]
    print(f"{e['cells']}-cell estimate grid: 1 worker {e['one_worker_s']:.2f} s | pool(2), batches of 25 "
          f"{e['pool2_batch25_s']:.2f} s")
    if not a.skip_chaos:
        c = res["chaos"] = bench_chaos(s["pool2_speedup"] / 2)
        print(f"one 1 h chaos --random trial: {c['trial_cpu_s']:.1f} CPU-s ({c['faults_in_trial']} faults); "
              f"arithmetic for 1,000 trials at {c['parallel_efficiency']:.0%} parallel efficiency: "
              + ", ".join(f"{k.split('_')[2]} cores {v:.2f} h" for k, v in c.items() if k.startswith("hours_on")))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
