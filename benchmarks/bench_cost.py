"""Cost-model speed: price 10,000 decode iterations' per-rank states (320 DP ranks each) in one
vectorised call, as the engine and planner do. Run by hand: python benchmarks/bench_cost.py"""

from __future__ import annotations

import os
import time

import numpy as np

from xds.cost import CostModel, Layout
from xds.spec.model import load_model
from xds.spec.hardware import load_hardware


def main() -> None:
    m, hw = load_model("deepseek-r1"), load_hardware("ascend-910c")
    lay = Layout(dies=320, ep=320, dp=320, shared_dies=32, routed_slots=288, mtp=1, balancedness=1.4)
    cm = CostModel(m, hw, lay)
    rng = np.random.default_rng(0)
    iters, ranks = 10_000, 320
    b = rng.integers(1, 60, size=(iters, ranks)).astype(float)
    ctx = b * rng.uniform(1000, 8000, size=(iters, ranks))
    cm.decode_step_us(b[:10], ctx[:10])  # warm-up
    t0 = time.perf_counter()
    out = cm.decode_step_us(b, ctx)
    dt = time.perf_counter() - t0
    print(f"cores={os.cpu_count()}  decode: {iters:,} iterations x {ranks} ranks priced in {dt * 1e3:.1f} ms "
          f"({iters / dt:,.0f} iterations/s); mean step {out.mean() / 1e3:.1f} ms")
    t0 = time.perf_counter()
    for i in range(1000):
        cm.decode_step_us(b[i], ctx[i])
    dt1 = time.perf_counter() - t0
    print(f"decode: one iteration per call: {dt1 / 1000 * 1e6:.0f} µs per call")
    n = rng.uniform(1000, 16384, size=iters)
    t0 = time.perf_counter()
    cm.prefill_batch_us(n, n * 2048, n / 4096)
    print(f"prefill: {iters:,} batches priced in {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
