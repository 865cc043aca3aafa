"""Benchmark of xds.workload (run by hand: ``python benchmarks/bench_workload.py``).

1. Read the Azure 2023 conversation trace (19,366 rows).
2. Rate-scale it x80 and loop it to one hour: >= 1.5 M requests.
3. Read the Mooncake conversation trace, rate-scale and loop it to one hour (>= 1.5 M requests,
   ~24 blocks each) and replay the prefix cache: infinite (vectorized) and a finite LRU.

Prints wall times and os.cpu_count(); nothing here is asserted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xds.workload import loop_to_duration, prefix_cache_stats, rate_scale, read_trace  # noqa: E402

SHARED = Path("/work/shared/traces")
FIXTURES = ROOT / "fixtures" / "traces"


def trace(name: str, fallback: str | None = None) -> Path:
    for p in (SHARED / name, FIXTURES / name, FIXTURES / (fallback or name)):
        if p.exists():
            return p
    raise SystemExit(f"trace {name} not found in {SHARED} or {FIXTURES}")


def timed(label: str, fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    print(f"{label:<58s} {best * 1e3:10.1f} ms")
    return out, best


def main() -> None:
    print(f"os.cpu_count() = {os.cpu_count()}  python {sys.version.split()[0]}")
    azure = trace("azure_llm_2023_conv.csv")
    w, _ = timed(f"read Azure conv ({azure.name})", lambda: read_trace(azure), repeat=5)
    print(f"  {len(w):,} requests, {w.summary()['rate_rps']:.3f} req/s")
    looped, _ = timed("rate_scale x80 + loop_to_duration 3600 s",
                      lambda: loop_to_duration(rate_scale(w, 80.0), 3600.0), repeat=3)
    print(f"  {len(looped):,} requests, span {looped.span_s:.1f} s")

    mc = trace("mooncake_conversation_trace.jsonl", "mooncake_conversation_trace_head3000.jsonl")
    m, _ = timed(f"read Mooncake ({mc.name})", lambda: read_trace(mc), repeat=3)
    scale = 1.5e6 / (len(m) / m.span_s * 3600.0) * 1.02  # just over 1.5 M requests in one hour
    ml, _ = timed(f"rate_scale x{scale:.1f} + loop to 3600 s",
                  lambda: loop_to_duration(rate_scale(m, scale), 3600.0))
    blocks = len(ml.block_ids)
    print(f"  {len(ml):,} requests, {blocks:,} blocks ({blocks / len(ml):.1f} per request)")
    inf, t_inf = timed("prefix cache, infinite (vectorized)", lambda: prefix_cache_stats(ml, None))
    print(f"  hit rate {inf.hit_rate:.4f}, {t_inf / blocks * 1e9:.1f} ns per block")
    for cap in (20_000, 150_000):
        st, t = timed(f"prefix cache, LRU {cap:,} blocks (OrderedDict)",
                      lambda cap=cap: prefix_cache_stats(ml, cap))
        print(f"  hit rate {st.hit_rate:.4f}, {t / blocks * 1e6:.3f} µs per block")


if __name__ == "__main__":
    main()
