"""Monte Carlo chaos wall time: ``xds chaos --random`` (trials of ``--hours`` at the plan's trace
rate) with ``--workers 2`` vs ``--workers 1``. Trials are independent, so on 2 idle cores the
ratio should approach 2x. Run by hand:
``python benchmarks/bench_chaos.py [--trials 32] [--hours 1] [--rate 50] [--workers 1 2]``."""

from __future__ import annotations

import argparse
import os
import time

from xds.pipeline import chaos_plan

PLAN = os.path.join(os.path.dirname(__file__), "..", "plans", "cloudmatrix-infer-pd.yaml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=50.0, help="faults per 1000 chip-days")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--policy", default="fine-grained")
    a = ap.parse_args()
    times = {}
    docs = {}
    for w in a.workers:
        t0 = time.perf_counter()
        docs[w] = chaos_plan(PLAN, random=True, rate_per_1000_chip_days=a.rate, hours=a.hours,
                             trials=a.trials, policy=a.policy, workers=w, seed=0)
        times[w] = time.perf_counter() - t0
        av = docs[w]["policies"][a.policy]["availability"]
        print(f"workers={w}: {a.trials} trials x {a.hours:g} h in {times[w]:.1f} s "
              f"(availability {av['mean']:.4f}, 95% CI {av['ci95']})", flush=True)
    ws = sorted(times)
    if len(ws) > 1:
        print(f"cores={os.cpu_count()}  speed-up workers={ws[-1]} vs {ws[0]}: "
              f"{times[ws[0]] / times[ws[-1]]:.2f}x")
        same = docs[ws[0]] == docs[ws[-1]]
        print(f"same result on every worker count: {same}")


if __name__ == "__main__":
    main()
