"""Benchmark: build the CloudMatrix384 topology (NumPy tables + networkx graph) and answer 1,000
random path queries, plus degrade() and all-to-all pricing. Run by hand:

    python benchmarks/bench_topology.py [--queries N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from xds.spec.cluster import load_cluster
from xds.topology import Topology, build_topology


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    spec = load_cluster("cloudmatrix384")
    t0 = time.perf_counter()
    topo = Topology(spec)                      # uncached: capacity tables + derived arrays
    t1 = time.perf_counter()
    g = topo.graph                             # networkx graph (lazy)
    t2 = time.perf_counter()

    rng = np.random.default_rng(args.seed)
    kinds = rng.choice(["die", "chip", "node"], size=args.queries)
    limits = {"die": topo.n_dies, "chip": topo.n_chips, "node": topo.n_nodes}
    planes = rng.choice(["ub", "ub", "ub", "rdma"], size=args.queries)
    queries = []
    for k, p in zip(kinds, planes):
        a, b = rng.choice(limits[k], size=2, replace=False)
        if k == "die" and topo.die_chip[a] == topo.die_chip[b]:
            b = (b + 2) % topo.n_dies
        queries.append((f"{k}:{a}", f"{k}:{b}", str(p)))
    t3 = time.perf_counter()
    total = 0.0
    for src, dst, p in queries:
        total += topo.path(src, dst, plane=p)["bandwidth_gb_s"]
    t4 = time.perf_counter()
    deg = topo.degrade(["l2:3/12", "l1:5/2", "node:7"])
    t5 = time.perf_counter()
    a2a = deg.alltoall_gb_s(np.flatnonzero(~deg.lost_dies))
    lat = topo.latency_us(rng.integers(0, topo.n_dies, 1_000_000), rng.integers(0, topo.n_dies, 1_000_000))
    t6 = time.perf_counter()
    cached0 = time.perf_counter()
    build_topology("cloudmatrix384")
    build_topology("cloudmatrix384")
    cached1 = time.perf_counter()

    print(f"cpu_count: {os.cpu_count()}")
    print(f"build tables (768 dies):        {1e3 * (t1 - t0):8.1f} ms")
    print(f"build networkx graph:           {1e3 * (t2 - t1):8.1f} ms  "
          f"({g.number_of_nodes()} vertices, {g.number_of_edges()} edges)")
    print(f"{args.queries} path queries:           {1e3 * (t4 - t3):8.1f} ms  "
          f"({1e6 * (t4 - t3) / args.queries:.1f} us/query, mean bw {total / args.queries:.1f} GB/s)")
    print(f"build + graph + queries total:  {1e3 * (t2 - t0 + t4 - t3):8.1f} ms")
    print(f"degrade (3 failures):           {1e3 * (t5 - t4):8.1f} ms")
    print(f"alltoall(live) + 1e6 latencies: {1e3 * (t6 - t5):8.1f} ms  (a2a {a2a:.1f} GB/s, "
          f"mean latency {lat.mean():.3f} us)")
    print(f"build_topology cached x2:       {1e3 * (cached1 - cached0):8.1f} ms")


if __name__ == "__main__":
    main()
