"""How a deployment is laid out over pods for ``xds size``: the analytic instance counts, whether
they fit one pod (SuperPod), and otherwise the per-pod composition of a fleet of identical pods
behind a router (each pod serves ``1/pods`` of the rate; an instance stays inside one pod's UB
domain; P→D KV stays inside the pod on its RDMA plane).

Units: req/s, nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..plan.balance import pool_counts


@dataclass(frozen=True)
class Shape:
    """Node footprint of one instance of each pool and the nodes of one pod."""

    decode_nodes: int
    prefill_nodes: int
    pod_nodes: int

    def fits(self, n_p: int, n_d: int) -> bool:
        """Do ``n_p`` prefill and ``n_d`` decode instances fit one pod?"""
        return n_p >= 1 and n_d >= 1 and n_p * self.prefill_nodes + n_d * self.decode_nodes <= self.pod_nodes


def pod_capacity(shape: Shape, decode_rps: float, prefill_rps: float) -> tuple[float, int, int]:
    """The most requests/s one pod serves (analytically) and its (prefill, decode) counts: every
    split of the pod's nodes between the pools, the better-balanced one wins."""
    best = (0.0, 0, 0)
    for n_d in range(1, shape.pod_nodes // shape.decode_nodes + 1):
        n_p = (shape.pod_nodes - n_d * shape.decode_nodes) // shape.prefill_nodes
        if n_p < 1:
            break
        r = min(n_d * decode_rps, n_p * prefill_rps)
        if r > best[0]:
            best = (r, n_p, n_d)
    return best


def compose(rate_rps: float, shape: Shape, decode_rps: float, prefill_rps: float,
            min_pods: int = 1) -> tuple[int, int, int]:
    """(pods, prefill per pod, decode per pod) analytically covering ``rate_rps``: one pod when the
    counts fit, else the fewest identical pods at the best per-pod composition (at least
    ``min_pods``); the counts are then re-sized to each pod's share of the rate."""
    pods = max(1, min_pods)
    while True:
        n_p, n_d = pool_counts(rate_rps / pods, decode_rps, prefill_rps)
        if shape.fits(n_p, n_d):
            return pods, n_p, n_d
        cap, _, _ = pod_capacity(shape, decode_rps, prefill_rps)
        if cap <= 0:
            return pods, n_p, n_d            # one instance of each does not fit: caller reports it
        pods = max(pods + 1, math.ceil(rate_rps / cap))
