"""Huawei CloudMatrix384: the UB scale-up plane is a two-tier Clos with sub-planes.

Every node has ``n_l1`` L1 UB switch chips ``l1:N/K``; L1 chip K of every node links to each of the
``n_l2`` L2 switches ``l2:K/S`` of sub-plane K (one L2 port per node), so UB reaches every die of the
cluster. Scale-out is one non-blocking RoCE fabric ``rdma:fabric`` (one NIC link per die). A link
``link:node:N-l2:K/S`` (also written with ``l1:N/K``) is node N's L1 chip K uplink to that switch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..capacity import Caps, Derived
from .base import Family


class CloudMatrix(Family):
    """The ``cloudmatrix`` family (see the module docstring)."""

    name = "cloudmatrix"
    switch_kind = "l1"
    switch_kinds = ("l1", "l2")
    switch_index = "sub_plane"
    planes: ClassVar[dict[str, str]] = {"ub": "ub", "rdma": "rdma", "vpc": "vpc", "d2d": "d2d"}
    link_tiers: ClassVar[dict[str, int]] = {"l1": 1, "l2": 2, "rdma:fabric": 2}
    ub_spans_nodes = True

    def __init__(self, topo: Any):
        super().__init__(topo)
        self.n_l2 = topo.spec.scale_up.l2_per_sub_plane
        self.elements = {
            "l1": ((topo.n_nodes, "node"), (topo.n_l1, "sub-plane")),
            "l2": ((topo.n_l1, "sub-plane"), (self.n_l2, "L2 switch")),
            "rdma:fabric": (),
        }

    # ---- names ------------------------------------------------------------------------------------
    def ranges_text(self) -> str:
        t = self.topo
        return (f"l1:N/K (node 0..{t.n_nodes - 1}, sub-plane 0..{t.n_l1 - 1}), "
                f"l2:K/S (sub-plane 0..{t.n_l1 - 1}, switch 0..{self.n_l2 - 1}), rdma:fabric, "
                f"vpc:0..{t.n_nodes - 1}, vpc:fabric, link:A-B between adjacent elements "
                "(e.g. link:node:5-l2:3/12, link:die:3-l1:0/2)")

    def link_ends(self, a: tuple, b: tuple) -> tuple[tuple, tuple] | None:
        ka, kb = a[0], b[0]
        if ka == "node" and kb == "l2":
            return a, b  # node N's L1 chip of the switch's sub-plane <-> that L2 switch
        if ka == "l1" and kb == "l2":
            return (("node", a[1]), b) if a[2] == b[1] else None
        if ka == "die" and kb == "rdma:fabric":
            return a, b
        return None

    def link_edge(self, key: tuple) -> tuple[str, str]:
        u, v = super().link_edge(key)
        if key[1][0] == "node" and key[2][0] == "l2":
            u = f"l1:{key[1][1]}/{key[2][1]}"
        return u, v

    def l2_rack(self, k: int, s: int) -> int:
        """Rack of L2 switch ``l2:k/s``, or -1 if the spec has no communication racks."""
        t = self.topo
        # ASSUMPTION (unpublished): the 112 L2 chips fill the communication racks in order
        per = math.ceil(t.n_l1 * self.n_l2 / max(t.spec.switch_racks, 1))
        return t.n_compute_racks + (k * self.n_l2 + s) // per if t.spec.switch_racks else -1

    def domain(self, key: tuple) -> dict:
        if key[0] == "l2":
            return {"sub_plane": key[1], "rack": self.l2_rack(key[1], key[2])}
        return {}

    def _rack_l2(self, rack: int) -> list[tuple[int, int]]:
        return [(k, s) for k in range(self.topo.n_l1) for s in range(self.n_l2)
                if self.l2_rack(k, s) == rack]

    # ---- capacities -------------------------------------------------------------------------------
    def tier_caps(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.topo
        return np.full((t.n_nodes, t.n_l1, self.n_l2), t.spec.scale_up.link_gb_s), np.zeros((0, 0))

    def cross_and_scale_out(self, caps: Caps, inject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per die and sub-plane k, the die's share of its L1 chip k's live uplink to the L2s of
        sub-plane k: its link-proportional (fair) share, at most its own link to L1 chip k."""
        n, dpn = self.topo.n_nodes, self.topo.dies_per_node
        per_node = caps.die_l1.reshape(n, dpn, -1)                # (N, Dn, P)
        down = per_node.sum(axis=1)                               # (N, P): dies into L1 chip k
        up = caps.l1_l2.sum(axis=2)                               # (N, P): L1 chip k up to L2s
        ratio = np.divide(up, down, out=np.zeros_like(up), where=down > 0)
        cross_k = (per_node * np.minimum(1.0, ratio)[:, None, :]).reshape(caps.die_l1.shape)
        if n == 1:
            cross_k = caps.die_l1.copy()
        return cross_k, caps.so_link * caps.so_fabric

    def ub_alltoall_rate(self, caps: Caps, der: Derived, dies: np.ndarray,
                         f_remote: np.ndarray) -> np.ndarray:
        """Per sub-plane, not summed over them: L1 chip k of every node reaches only the L2s of
        sub-plane k (reference §A.3, CMv2 §3.3.3), so what a die sends on its link k and leaves the
        node leaves through sub-plane k's uplinks. In an all-to-all that already runs every link
        at line rate, traffic cannot move to another sub-plane to avoid a thin one, so per die and
        sub-plane the remote part ``f·x_k <= share_k`` and ``x_k <= link_k``: the die's rate is
        ``Σ_k min(link_k, share_k / f)`` (healthy: share_k = link_k = 28 GB/s, so 196 GB/s).
        One of the 16 L2s of sub-plane k down leaves each L1 chip k 420 of 448 GB/s (§A.3), share_k
        26.25 GB/s; at f = 304/319 (the 320-die instance over 20 nodes) link k carries 27.55 GB/s,
        not 28: 195.55 GB/s per die."""
        link = caps.die_l1[dies]
        share = der.cross_k[dies]
        f = f_remote[:, None]
        per_k = np.where(f > 0, np.minimum(link, share / np.where(f > 0, f, 1.0)), link)
        return per_k.sum(axis=1)

    def remote_ub_flows(self, caps: Caps, ab: np.ndarray, a_node: int, b_node: int) -> tuple:
        mid = np.minimum(caps.l1_l2[a_node], caps.l1_l2[b_node]).sum(axis=1)  # (P,)
        return np.minimum(ab, mid), self.topo.spec.scale_up.latency_inter_node_us

    def ub_switch_hops(self, caps: Caps, a_node: int, b_node: int, k: int) -> list[str]:
        if a_node == b_node:
            return super().ub_switch_hops(caps, a_node, b_node, k)
        s = int(np.argmax(np.minimum(caps.l1_l2[a_node, k], caps.l1_l2[b_node, k])))
        return [f"l1:{a_node}/{k}", f"l2:{k}/{s}", f"l1:{b_node}/{k}"]

    def scale_out_path(self, caps: Caps, der: Derived, s: tuple[int, int],
                       t: tuple[int, int]) -> tuple[float, list[str]]:
        (s0, s1), (t0, t1) = s, t
        bw = float(min(der.scale_out[s0:s1].sum(), der.scale_out[t0:t1].sum()))
        hops: list[str] = []
        if bw > 0:
            sd = s0 + int(np.argmax(der.scale_out[s0:s1]))
            td = t0 + int(np.argmax(der.scale_out[t0:t1]))
            hops = [f"die:{sd}", "rdma:fabric", f"die:{td}"]
        return bw, hops

    def inter_node_latency_us(self) -> float:
        return self.topo.spec.scale_up.latency_inter_node_us

    def isolated(self, der: Derived) -> np.ndarray:
        isolated = der.inject <= 0
        if self.topo.n_nodes > 1:
            isolated = isolated | (der.cross <= 0)
        return isolated

    # ---- failures ---------------------------------------------------------------------------------
    def apply_element(self, caps: Caps, key: tuple, f: float) -> None:
        kind = key[0]
        if kind == "l1":
            caps.l1_l2[key[1], key[2], :] *= f
        elif kind == "l2":
            caps.l1_l2[:, key[1], key[2]] *= f
        elif kind == "rdma:fabric":
            caps.so_fabric *= f

    def apply_link(self, caps: Caps, a: tuple, b: tuple, f: float) -> None:
        if a[0] == "node" and b[0] == "l2":
            caps.l1_l2[a[1], b[1], b[2]] *= f
        elif a[0] == "die" and b[0] == "rdma:fabric":
            caps.so_link[a[1]] *= f

    def apply_switch_rack(self, caps: Caps, rack: int, f: float) -> None:
        for k, s in self._rack_l2(rack):
            caps.l1_l2[:, k, s] *= f

    def rack_switches(self, rack: int) -> list[str]:
        return [f"l2:{k}/{s}" for k, s in self._rack_l2(rack)]

    def random_switch(self, rng: np.random.Generator) -> str:
        return f"l2:{int(rng.integers(self.topo.n_l1))}/{int(rng.integers(self.n_l2))}"

    def random_link(self, node: int, rng: np.random.Generator) -> str:
        k = int(rng.integers(self.topo.n_l1))
        s = int(rng.integers(self.n_l2))
        return f"link:node:{node}-l2:{k}/{s}"

    # ---- views ------------------------------------------------------------------------------------
    def summary_switches(self) -> dict:
        t = self.topo
        return {"switches": {"ub_l1": t.n_nodes * t.n_l1, "ub_l2": t.n_l1 * self.n_l2},
                "sub_planes": t.n_l1}

    def summary_scale_up(self, caps: Caps, inject: float) -> dict:
        t, su = self.topo, self.topo.spec.scale_up
        node_up = float(caps.l1_l2[0].sum())
        node_demand = t.dies_per_node * inject
        return {
            "node_ub_uplink_gb_s": node_up,
            "l1_uplink_gb_s": float(caps.l1_l2[0, 0].sum()),
            "ub_link_gb_s": su.link_gb_s,
            "ub_oversubscription": node_demand / node_up if node_up else None,
            # bisection: split the nodes in halves; every cross-half byte goes up and down the Clos
            "ub_bisection_gb_s": (t.n_nodes // 2) * min(node_up, node_demand),
            "cpu_ub_gb_s": su.cpu_gb_s,
        }

    def add_fabric(self, nodes_v: list, edges: list) -> None:
        t, spec = self.topo, self.topo.spec
        su = spec.scale_up
        # die -> L1 -> L2 -> L1 -> die adds up to the measured inter-node latency
        half_tier = (su.latency_inter_node_us - su.latency_intra_node_us) / 2
        uplink = {"plane": "ub", "bandwidth_gb_s": su.link_gb_s, "latency_us": half_tier}
        for k in range(t.n_l1):
            for s in range(self.n_l2):
                attrs = {"kind": "l2", "sub_plane": k, "switch": s}
                rack = self.l2_rack(k, s)
                if rack >= 0:
                    attrs["rack"] = rack
                nodes_v.append((f"l2:{k}/{s}", attrs))
                for n in range(t.n_nodes):
                    edges.append((f"l1:{n}/{k}", f"l2:{k}/{s}", uplink))
        nodes_v.append(("rdma:fabric", {"kind": "rdma_fabric"}))
        nic = {"plane": "rdma", "bandwidth_gb_s": spec.scale_out.gb_s_per_die,
               "latency_us": spec.scale_out.latency_us / 2}
        for d in range(t.n_dies):
            edges.append((f"die:{d}", "rdma:fabric", nic))
