"""Benchmark ``xds plan --search``: candidates scored per second (target >= 1,000/s on 2 cores;
NVIDIA's aiconfigurator scores about 15-30/s on the same machine).

Run by hand: ``python benchmarks/bench_search.py`` (add ``--repeat N``). Prints one line per run and
the best (cold = first run, including balancer and topology caches; warm = later runs).
"""

from __future__ import annotations

import argparse
import os
import time

from xds.plan.search import run_search


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="deepseek-r1")
    ap.add_argument("--hardware", default="ascend-910c")
    a = ap.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    rates = []
    for i in range(a.repeat):
        t0 = time.perf_counter()
        doc = run_search(model=a.model, hardware=a.hardware, input_len=4096, output_len=256, tpot_ms=50)
        wall = time.perf_counter() - t0
        rate = doc["candidates"] / wall
        rates.append(rate)
        b = doc["best"]
        print(f"run {i} ({'cold' if i == 0 else 'warm'}): {doc['candidates']} candidates in {wall:.2f} s = "
              f"{rate:,.0f}/s; best {b['label']} batch {b['batch_per_rank']:g}: TPOT {b['tpot_ms']:.1f} ms, "
              f"{b['output_throughput_per_chip']:,.0f} tok/s/chip")
    print(f"cold {rates[0]:,.0f}/s, best warm {max(rates[1:] or rates):,.0f}/s")


if __name__ == "__main__":
    main()
