"""Benchmark: ``xds simulate`` speed at full SuperPod load (run by hand, not a test).

``plans/cloudmatrix-infer-pd.yaml`` driven by the Azure 2023 conversation trace, rate-scaled to
≥ 420 req/s (saturating the six prefill instances) and looped for one simulated hour (≥ 1.5 million
requests). Reports simulated requests per wall second, simulated seconds per wall second and peak
RSS. Targets: < 60 s wall, < 2 GB, ≥ 25,000 req/s, ≥ 60× real time (2-core machine).

Usage: python benchmarks/bench_simulate.py [--duration 3600] [--rate 420]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from xds.engine import simulate
from xds.plan import place
from xds.report import build_report
from xds.spec.plan import load_plan
from xds.workload import loop_to_duration, rate_scale, read_trace

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    ap.add_argument("--rate", type=float, default=420.0, help="target offered rate (req/s)")
    ap.add_argument("--trace", default=str(ROOT / "fixtures/traces/azure_llm_2023_conv.csv"))
    a = ap.parse_args()

    t0 = time.perf_counter()
    placed = place(load_plan(ROOT / "plans/cloudmatrix-infer-pd.yaml"))
    w = read_trace(a.trace)
    w = loop_to_duration(rate_scale(w, a.rate / (len(w) / w.span_s)), a.duration)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = simulate(placed, w)
    wall = time.perf_counter() - t1
    doc = build_report(res, placed, workload=w, timeline=True)
    t_rep = time.perf_counter() - t1 - wall
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    n = len(w)
    print(f"requests            {n:,}  (offered {n / a.duration:,.0f} req/s)")
    print(f"completed / failed  {doc['completed']:,} / {doc['failed']:,}  {doc['failed_reasons']}")
    print(f"simulated           {res.duration:,.0f} s; decode steps {res.info['decode_steps']}")
    print(f"p99 TTFT / TPOT     {doc['p99_ttft_ms']} ms / {doc['p99_tpot_ms']} ms; "
          f"SLO attainment {doc['slo_attainment']}")
    print(f"load+place          {t_load:.2f} s;  report {t_rep:.2f} s")
    print(f"simulate wall       {wall:.2f} s  ->  {n / wall:,.0f} simulated req/s, "
          f"{res.duration / wall:,.1f} simulated s per wall s")
    print(f"peak RSS            {rss_gb:.2f} GB")


if __name__ == "__main__":
    main()
