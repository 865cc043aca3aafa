"""Path queries: bandwidth (GB/s, max-flow over one plane), latency (µs) and one shortest path
between two disjoint die sets (a die, a chip or a node: a chip / node is the aggregate of its dies).

The scale-up max-flow is closed-form: for sources S in node A and sinks T in node B it is
``sum_k min(a_k, b_k, mid_k)`` where ``a_k``/``b_k`` are the capacities of S/T into switch (sub-plane)
k and ``mid_k`` what the family's fabric carries between the two nodes through k (unbounded inside
a node). The tests check this against networkx max-flow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import XdsError
from .capacity import Caps, Derived, normalise_plane
from .domains import die_range
from .names import bad, key_name, parse_key


def _ub(topo: Any, caps: Caps, der: Derived, s: tuple, t: tuple, nodes: tuple) -> tuple:
    """(bandwidth GB/s, latency µs, hops) on the scale-up plane."""
    (s0, s1), (t0, t1), (a_node, b_node) = s, t, nodes
    a = der.die_l1_prefix[s1] - der.die_l1_prefix[s0]          # (P,) S into each switch
    b = der.die_l1_prefix[t1] - der.die_l1_prefix[t0]
    if a_node == b_node:
        flows = np.minimum(a, b)
        latency = topo.spec.scale_up.latency_intra_node_us
    else:
        flows, latency = topo.family.remote_ub_flows(caps, np.minimum(a, b), a_node, b_node)
    bw = float(flows.sum())
    hops: list[str] = []
    if bw > 0:
        k = int(np.argmax(flows))
        sd = s0 + int(np.argmax(caps.die_l1[s0:s1, k]))
        td = t0 + int(np.argmax(caps.die_l1[t0:t1, k]))
        hops = [f"die:{sd}", *topo.family.ub_switch_hops(caps, a_node, b_node, k), f"die:{td}"]
    return bw, latency, hops


def _d2d(topo: Any, caps: Caps, s: tuple, t: tuple) -> tuple:
    (s0, s1), (t0, t1) = s, t
    if not (s1 - s0 == 1 and t1 - t0 == 1 and topo.die_chip[s0] == topo.die_chip[t0]):
        raise XdsError("the d2d plane joins the two dies of one chip; SRC and DST must be "
                       "die:N of the same chip", where="--plane")
    bw = float(caps.d2d[topo.die_chip[s0]])
    latency = topo.spec.d2d.latency_us if topo.spec.d2d else 0.0
    return bw, latency, ([f"die:{s0}", f"die:{t0}"] if bw > 0 else [])


def _vpc(topo: Any, caps: Caps, s: tuple, t: tuple, nodes: tuple) -> tuple:
    (s0, s1), (t0, t1), (a_node, b_node) = s, t, nodes
    if a_node == b_node:
        raise XdsError("the vpc plane is the node's egress; SRC and DST in the same node talk "
                       "over ub", where="--plane")
    bw = float(min(caps.vpc_node[a_node], caps.vpc_node[b_node]) * caps.vpc_fabric)
    if not (caps.die_alive[s0:s1].any() and caps.die_alive[t0:t1].any()):
        bw = 0.0
    hops: list[str] = []
    if bw > 0:
        sd = s0 + int(np.argmax(caps.die_alive[s0:s1]))
        td = t0 + int(np.argmax(caps.die_alive[t0:t1]))
        hops = [f"die:{sd}", f"vpc:{a_node}", "vpc:fabric", f"vpc:{b_node}", f"die:{td}"]
    return bw, topo.spec.vpc.latency_us, hops


def _endpoints(topo: Any, src: str, dst: str) -> tuple[tuple, tuple]:
    """Parse SRC / DST into keys; both must be disjoint dies, chips or nodes."""
    ks = parse_key(topo, src, where="SRC")
    kt = parse_key(topo, dst, where="DST")
    for key, where, text in ((ks, "SRC", src), (kt, "DST", dst)):
        if key[0] not in ("die", "chip", "node"):
            raise bad(topo, text, f"path endpoints must be die:N, chip:N or node:N, not {key[0]!r}",
                      where)
    (s0, s1), (t0, t1) = die_range(topo, ks), die_range(topo, kt)
    if s0 < t1 and t0 < s1:
        raise XdsError(f"SRC {key_name(ks)} and DST {key_name(kt)} overlap; "
                       "a path needs two disjoint sets of dies", where="DST")
    return ks, kt


def path(topo: Any, caps: Caps, der: Derived, src: str, dst: str, plane: str) -> dict:
    """Path query between two elements on the fabric described by ``caps`` / ``der``."""
    p = normalise_plane(topo, plane)
    ks, kt = _endpoints(topo, src, dst)
    s, t = die_range(topo, ks), die_range(topo, kt)
    nodes = (int(topo.die_node[s[0]]), int(topo.die_node[t[0]]))
    if p == "ub":
        bw, latency, hops = _ub(topo, caps, der, s, t, nodes)
    elif p == "d2d":
        bw, latency, hops = _d2d(topo, caps, s, t)
    elif p == "rdma":
        latency = topo.spec.scale_out.latency_us
        bw, hops = topo.family.scale_out_path(caps, der, s, t)
    else:
        bw, latency, hops = _vpc(topo, caps, s, t, nodes)
    su_plane, so_plane = topo.spec.scale_up.plane, topo.spec.scale_out.plane
    return {
        "cluster": topo.name,
        "src": key_name(ks),
        "dst": key_name(kt),
        "plane": {"ub": su_plane, "rdma": so_plane}.get(p, p),
        "bandwidth_gb_s": bw,
        "latency_us": float(latency) if bw > 0 else None,
        "hops": hops,
        "same_node": nodes[0] == nodes[1],
        "connected": bw > 0,
    }
