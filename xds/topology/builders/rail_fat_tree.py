"""NVIDIA HGX nodes on a rail-optimised InfiniBand fat tree (``rail-fat-tree``, e.g. h800-ib).

NVLink islands: every GPU (die) links to the ``n_l1`` NVSwitch chips ``nvsw:N/J`` of its node and
the scale-up plane ends at the node. Scale-out is InfiniBand: GPU R of every node sits on rail R,
whose ``leaves_per_rail`` leaf switches ``leaf:R/I`` take ``nodes_per_leaf`` nodes each (half the
ports down: non-blocking); every leaf spreads its uplink evenly over the ``n_spines`` spines
``spine:S``. Across nodes the ``ub`` all-to-all uses NVLink inside a node and the IB rail outside,
as DeepEP does.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ...errors import XdsError
from ..capacity import Caps, Derived
from .base import Family


class RailFatTree(Family):
    """The ``rail-fat-tree`` family (see the module docstring). ``die_leaf[d]``: global leaf index
    ``rail * leaves_per_rail + leaf`` of die d's NIC."""

    name = "rail-fat-tree"
    switch_kind = "nvsw"
    switch_kinds = ("nvsw", "leaf", "spine")
    switch_index = "switch"
    planes: ClassVar[dict[str, str]] = {"ub": "ub", "nvlink": "ub", "rdma": "rdma", "ib": "rdma", "vpc": "vpc"}
    link_tiers: ClassVar[dict[str, int]] = {"nvsw": 1, "leaf": 1, "spine": 2}
    absent_hints: ClassVar[dict[str, str]] = {"rdma:fabric": " (its scale-out plane is leaf/spine InfiniBand)"}
    ub_spans_nodes = False

    def __init__(self, topo: Any):
        super().__init__(topo)
        ports = topo.spec.scale_out.leaf_ports
        self.nodes_per_leaf = min(topo.n_nodes, ports // 2)  # half the ports down: non-blocking
        self.leaves_per_rail = math.ceil(topo.n_nodes / self.nodes_per_leaf)
        self.n_rails = topo.dies_per_node
        self.n_leaves = self.n_rails * self.leaves_per_rail
        self.n_spines = max(1, math.ceil(self.n_leaves * self.nodes_per_leaf / ports))
        self.die_leaf = topo.die_local * self.leaves_per_rail + topo.die_node // self.nodes_per_leaf
        self.die_leaf.setflags(write=False)
        self.elements = {
            "nvsw": ((topo.n_nodes, "node"), (topo.n_l1, "NVSwitch")),
            "leaf": ((self.n_rails, "rail"), (self.leaves_per_rail, "leaf")),
            "spine": ((self.n_spines, "spine index"),),
        }

    def _leaf_name(self, leaf: int) -> str:
        return f"leaf:{leaf // self.leaves_per_rail}/{leaf % self.leaves_per_rail}"

    # ---- names ------------------------------------------------------------------------------------
    def ranges_text(self) -> str:
        t = self.topo
        return (f"nvsw:N/J (node 0..{t.n_nodes - 1}, switch 0..{t.n_l1 - 1}), "
                f"leaf:R/I (rail 0..{self.n_rails - 1}, leaf 0..{self.leaves_per_rail - 1}), "
                f"spine:0..{self.n_spines - 1}, vpc:0..{t.n_nodes - 1}, vpc:fabric, link:A-B "
                "between adjacent elements (e.g. link:die:3-leaf:3/0)")

    def link_ends(self, a: tuple, b: tuple) -> tuple[tuple, tuple] | None:
        ka, kb = a[0], b[0]
        if ka == "die" and kb == "leaf":
            return (a, b) if int(self.die_leaf[a[1]]) == b[1] * self.leaves_per_rail + b[2] else None
        if ka == "leaf" and kb == "spine":
            return a, b
        return None

    def domain(self, key: tuple) -> dict:
        return {"rail": key[1]} if key[0] == "leaf" else {}

    # ---- capacities -------------------------------------------------------------------------------
    def tier_caps(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.topo
        # non-blocking: a leaf's uplink equals its downlink, spread evenly over the spines
        per_leaf = self.nodes_per_leaf * t.spec.scale_out.gb_s_per_die
        so_up = np.full((self.n_leaves, self.n_spines), per_leaf / self.n_spines)
        return np.zeros((t.n_nodes, t.n_l1, 0)), so_up

    def cross_and_scale_out(self, caps: Caps, inject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.topo.n_nodes
        link = caps.so_link.copy()
        if self.leaves_per_rail > 1:
            # traffic to nodes under other leaves of the rail crosses the spines
            off = (n - self.nodes_per_leaf) / max(n - 1, 1)
            up = caps.so_up.sum(axis=1)                           # (L,)
            demand = np.bincount(self.die_leaf, weights=link, minlength=self.n_leaves)
            ratio = np.divide(up, demand * off, out=np.ones_like(up), where=demand * off > 0)
            link = link * np.minimum(1.0, ratio)[self.die_leaf]
        return caps.die_l1.copy(), link

    def ub_alltoall_rate(self, caps: Caps, der: Derived, dies: np.ndarray,
                         f_remote: np.ndarray) -> np.ndarray:
        """NVLink to the node's peers, the die's own IB rail to the rest. No sum over planes to
        correct here: a GPU's cross-node traffic leaves only through its own NIC and leaf (rail
        R, DeepEP forwards over NVLink to the peer's rail-R GPU), and ``scale_out`` already holds
        that leaf's uplink share per die (reference §G)."""
        return np.minimum(
            np.where(f_remote < 1, der.inject[dies] / (1 - f_remote), np.inf),
            np.where(f_remote > 0, der.scale_out[dies] / f_remote, np.inf))

    def remote_ub_flows(self, caps: Caps, ab: np.ndarray, a_node: int, b_node: int) -> tuple:
        raise XdsError(f"no nvlink path between node {a_node} and node {b_node} on "
                       f"{self.topo.name!r}: NVLink ends at the node; use --plane rdma (InfiniBand)",
                       where="--plane")

    def scale_out_path(self, caps: Caps, der: Derived, s: tuple[int, int],
                       t: tuple[int, int]) -> tuple[float, list[str]]:
        """Max-flow over the fat tree between two die ranges: leaf-local traffic directly, the rest
        through the spines, limited by each leaf's live uplinks."""
        (s0, s1), (t0, t1) = s, t
        a = np.bincount(self.die_leaf[s0:s1], weights=caps.so_link[s0:s1] * caps.die_alive[s0:s1],
                        minlength=self.n_leaves)
        b = np.bincount(self.die_leaf[t0:t1], weights=caps.so_link[t0:t1] * caps.die_alive[t0:t1],
                        minlength=self.n_leaves)
        local = np.minimum(a, b)
        up = caps.so_up.sum(axis=1)
        ra = np.minimum(a - local, up)
        rb = np.minimum(b - local, up)
        # through the spines: exact when every leaf spreads its uplink evenly (healthy), an upper
        # bound otherwise; each spine's share cannot exceed its own links
        spine = min(ra.sum(), rb.sum())
        per_spine_out = (caps.so_up * (ra > 0)[:, None]).sum(axis=0)
        per_spine_in = (caps.so_up * (rb > 0)[:, None]).sum(axis=0)
        spine = min(spine, float(np.minimum(per_spine_out, per_spine_in).sum()))
        bw = float(local.sum() + spine)
        return bw, (self._ib_hops(caps, s, t, a, b) if bw > 0 else [])

    def _ib_hops(self, caps: Caps, s: tuple, t: tuple, a: np.ndarray, b: np.ndarray) -> list[str]:
        """One path: through a leaf both sets share if any, else leaf - spine - leaf."""
        (s0, s1), (t0, t1) = s, t
        sl, tl = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
        common = np.intersect1d(sl, tl)
        la = int(common[0]) if common.size else int(sl[0])
        lb = int(common[0]) if common.size else int(tl[0])
        sd = s0 + int(np.flatnonzero((self.die_leaf[s0:s1] == la) & (caps.so_link[s0:s1] > 0))[0])
        td = t0 + int(np.flatnonzero((self.die_leaf[t0:t1] == lb) & (caps.so_link[t0:t1] > 0))[0])
        if la == lb:
            return [f"die:{sd}", self._leaf_name(la), f"die:{td}"]
        sp = int(np.argmax(np.minimum(caps.so_up[la], caps.so_up[lb])))
        return [f"die:{sd}", self._leaf_name(la), f"spine:{sp}", self._leaf_name(lb), f"die:{td}"]

    def inter_node_latency_us(self) -> float:
        return self.topo.spec.scale_out.latency_us

    def isolated(self, der: Derived) -> np.ndarray:
        return (der.inject <= 0) & (der.scale_out <= 0)

    # ---- failures ---------------------------------------------------------------------------------
    def apply_element(self, caps: Caps, key: tuple, f: float) -> None:
        if key[0] == "leaf":
            leaf = key[1] * self.leaves_per_rail + key[2]
            caps.so_link[self.die_leaf == leaf] *= f
            caps.so_up[leaf, :] *= f
        elif key[0] == "spine":
            caps.so_up[:, key[1]] *= f
        # an NVSwitch carries only its die links, which the shared code scales

    def apply_link(self, caps: Caps, a: tuple, b: tuple, f: float) -> None:
        if a[0] == "die" and b[0] == "leaf":
            caps.so_link[a[1]] *= f
        elif a[0] == "leaf" and b[0] == "spine":
            caps.so_up[a[1] * self.leaves_per_rail + a[2], b[1]] *= f

    def random_switch(self, rng: np.random.Generator) -> str:
        return f"spine:{int(rng.integers(self.n_spines))}"

    def random_link(self, node: int, rng: np.random.Generator) -> str:
        return f"node:{node}"  # a host NIC / cable loss takes the node off the fabric

    # ---- views ------------------------------------------------------------------------------------
    def summary_switches(self) -> dict:
        t = self.topo
        return {"switches": {"ub_l1": t.n_nodes * t.n_l1, "ub_l2": 0, "ib_leaf": self.n_leaves,
                             "ib_spine": self.n_spines},
                "rails": self.n_rails}

    def summary_scale_up(self, caps: Caps, inject: float) -> dict:
        return {"node_ub_uplink_gb_s": 0.0}  # NVLink does not leave the node

    def add_fabric(self, nodes_v: list, edges: list) -> None:
        t, so = self.topo, self.topo.spec.scale_out
        for leaf in range(self.n_leaves):
            r, i = divmod(leaf, self.leaves_per_rail)
            nodes_v.append((f"leaf:{r}/{i}", {"kind": "leaf", "rail": r, "leaf": i}))
        for s in range(self.n_spines):
            nodes_v.append((f"spine:{s}", {"kind": "spine", "spine": s}))
        nic = {"plane": "ib", "bandwidth_gb_s": so.gb_s_per_die, "latency_us": so.latency_us / 2}
        for d in range(t.n_dies):
            edges.append((f"die:{d}", self._leaf_name(int(self.die_leaf[d])), nic))
        for leaf in range(self.n_leaves):
            for s in range(self.n_spines):
                edges.append((self._leaf_name(leaf), f"spine:{s}", {
                    "plane": "ib", "bandwidth_gb_s": float(t.caps.so_up[leaf, s]), "latency_us": 0.0}))
