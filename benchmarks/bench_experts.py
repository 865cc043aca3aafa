"""Benchmark xds's expert balancer against DeepSeek EPLB: wall time and balancedness on synthetic
DeepSeek-R1-like loads (58 MoE layers x 256 experts, hottest expert ~30x the mean, Zipf and lognormal
skew). Times are best-of-N (ms). Run by hand:
``python benchmarks/bench_experts.py [--repeat 10] [--kind zipf|lognormal|both]``.

Two baselines: ``tests/eplb_reference.py``, our NumPy port of EPLB's loops (the stricter one: NumPy
scalars are several times cheaper than torch's 0-d tensors), always; and, when torch is installed
(``pip install torch``; not an xds dependency), ``benchmarks/eplb_torch.py``, DeepSeek's published
torch code, with its balancedness checked against the port's."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import eplb_reference as ref  # noqa: E402

from xds.experts import balance, balancedness, synthetic_loads  # noqa: E402

try:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import eplb_torch  # noqa: E402
    torch.set_num_threads(1)          # like xds: tensors this small only pay for threads
except ImportError:
    torch = None

CASES = [  # (slots, ranks, nodes, groups)
    (288, 32, 1, 1), (288, 144, 1, 1), (288, 288, 1, 1),
    (320, 32, 1, 1), (320, 64, 1, 1), (320, 160, 1, 1), (320, 320, 1, 1),
    (288, 32, 4, 8), (320, 32, 4, 8), (320, 64, 8, 8),
    # nodes with room for more groups than EPLB's equal share: xds also packs a load-driven placement
    # (not at 8 groups on 8 nodes, where every node still holds exactly one group)
    (384, 32, 4, 8), (512, 32, 4, 8), (512, 64, 8, 8),
]


def best_of(fn, n):
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--kind", default="both", choices=["zipf", "lognormal", "both"])
    ap.add_argument("--torch-repeat", type=int, default=3, help="best of N for DeepSeek's torch EPLB")
    args = ap.parse_args()
    kinds = ["zipf", "lognormal"] if args.kind == "both" else [args.kind]
    print(f"cores: {os.cpu_count()}  loads: 58x256, hot/mean 30, best of {args.repeat}")
    print("EPLB = NumPy port of EPLB's loops (tests/eplb_reference.py); "
          + (f"torch = DeepSeek's torch EPLB (best of {args.torch_repeat})" if torch is not None
             else "torch not installed: no column for DeepSeek's torch EPLB"))
    worst: dict[str, float] = {}
    worst_t: dict[str, float] = {}
    for kind in kinds:
        w = synthetic_loads(58, 256, hot_ratio=30, seed=0, kind=kind)
        print(f"\n{kind}")
        tcol = f" {'torch ms':>8} {'speedup':>7} |" if torch is not None else ""
        print(f"{'slots':>5} {'ranks':>5} {'N':>2} {'K':>2} | {'EPLB ms':>8} {'xds ms':>7} {'speedup':>7} |"
              f"{tcol} {'EPLB bal':>8} {'xds bal':>8} {'EPLB worst':>10} {'xds worst':>9}")
        for P, G, N, K in CASES:
            te, (phy, _, _) = best_of(lambda: ref.rebalance_experts(w, P, K, N, G), args.repeat)
            tx, lay = best_of(lambda: balance(w, P, G, nodes=N, groups=K), args.repeat)
            be = balancedness(phy, w, G)
            assert (lay.balancedness <= be + 1e-9).all()
            tcol = ""
            if torch is not None:
                wt = torch.from_numpy(w)
                tt, (phy_t, _, _) = best_of(lambda: eplb_torch.rebalance_experts(wt, P, K, N, G),
                                            args.torch_repeat)
                # torch's sort is not stable: items of equal float32 weight may swap places
                np.testing.assert_allclose(balancedness(phy_t.numpy(), w, G), be, rtol=1e-6)
                tcol = f" {tt * 1e3:8.1f} {tt / tx:6.1f}x |"
            print(f"{P:>5} {G:>5} {N:>2} {K:>2} | {te * 1e3:8.1f} {tx * 1e3:7.1f} {te / tx:6.1f}x |{tcol} "
                  f"{be.mean():8.4f} {lay.balancedness.mean():8.4f} {be.max():10.4f} "
                  f"{lay.balancedness.max():9.4f}")
            if P > G:   # one slot per rank: EPLB runs no packing loop, only its replication steps
                # xds packs a second, load-driven group placement only when a node has room for
                # more groups than EPLB's equal share and there are more groups than nodes
                room = P // N // (256 // K) > K // N and K > N
                policy = ("global" if N == 1 else "node-local, room for more groups" if room
                          else "node-local, equal group share")
                worst[policy] = min(worst.get(policy, np.inf), te / tx)
                if torch is not None:
                    worst_t[policy] = min(worst_t.get(policy, np.inf), tt / tx)
    print("\nslowest speedup where EPLB runs its packing loop, vs the NumPy port: "
          + "; ".join(f"{k} {v:.1f}x" for k, v in worst.items()))
    if torch is not None:
        print("                                                 vs DeepSeek's torch EPLB: "
              + "; ".join(f"{k} {v:.1f}x" for k, v in worst_t.items()))


if __name__ == "__main__":
    main()
