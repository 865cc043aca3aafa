"""Benchmark: ``xds size`` wall time (run by hand, not a test; issue 19 targets).

1. Single-pod question: DeepSeek-R1 on the Azure conversation trace x20, p99 TPOT 50 ms / TTFT 2 s
   (target <= 60 s on 2 cores).
2. Many-pod question: Kimi K2 at 5,000 req/s on the Mooncake conversation trace (head 3,000
   lines), p99 TPOT 50 ms, TTFT 10 s (target <= 5 min on 2 cores; one representative pod is simulated
   per pod count tried).

Each prints wall seconds, the simulations run, the answer (chips, pods) and the machine's load
average (the machine may be shared: compare ratios to the targets, not only seconds).

Usage: python benchmarks/bench_size.py [--only single|fleet] [--workers 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from xds.size import size

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "fixtures" / "traces"

CASES = {
    "single": dict(model="deepseek-r1", trace=str(TRACES / "azure_llm_2023_conv.csv"), rate_scale=20.0,
                   tpot_ms=50.0, ttft_ms=2000.0, target_s=60.0),
    "fleet": dict(model="kimi-k2", trace=str(TRACES / "mooncake_conversation_trace_head3000.jsonl"),
                  rate=5000.0, tpot_ms=50.0, ttft_ms=10000.0, target_s=300.0),
}


def run(name: str, workers: int) -> dict:
    kw = dict(CASES[name])
    target = kw.pop("target_s")
    t0 = time.perf_counter()
    d = size(workers=workers, **kw)
    wall = time.perf_counter() - t0
    return {"case": name, "wall_s": round(wall, 1), "target_s": target, "ratio_to_target": round(wall / target, 3),
            "passed": d["passed"], "chips": d.get("chips"), "pods": d.get("pods"),
            "simulations": d.get("simulations"), "cores": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(CASES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = [run(n, a.workers) for n in ([a.only] if a.only else list(CASES))]
    for r in rows:
        print(f"{r['case']:>6}: {r['wall_s']:7.1f} s (target {r['target_s']:g} s, ratio {r['ratio_to_target']:.2f}); "
              f"{r['simulations']} simulations; {r['chips']} chips in {r['pods']} pod(s); "
              f"{r['cores']} cores, load {r['load_average_1min']}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
