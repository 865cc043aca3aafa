"""Interconnect topology of a cluster: a networkx graph plus cached NumPy capacity tables.

Two builders share one vocabulary (see :mod:`xds.spec.cluster`):

* ``cloudmatrix`` (Huawei CloudMatrix384): vertices ``die:D``, ``chip:C``, ``node:N``, ``rack:R``,
  ``cpu:I``, ``l1:N/K`` (node N's L1 UB switch chip of sub-plane K), ``l2:K/S`` (sub-plane K's L2
  switch S), ``rdma:fabric`` (the non-blocking RoCE plane), ``vpc:N`` (node N's Qingtian card) and
  ``vpc:fabric``. Every die has one link to each L1 chip of its node; L1 chip K of every node has one
  link to each L2 switch of sub-plane K (two-tier Clos); the two dies of a chip share a d2d link.
* ``rail-fat-tree`` (NVIDIA HGX + InfiniBand): ``nvsw:N/J`` (NVSwitch J of node N; the scale-up plane
  ends at the node), ``leaf:R/I`` (leaf I of rail R: GPU R of every node is on rail R),
  ``spine:S``, ``vpc:N``, ``vpc:fabric``.

Every fabric edge carries ``plane`` (ub | nvlink | d2d | rdma | ib | vpc), ``bandwidth_gb_s`` (GB/s per
direction) and ``latency_us`` (µs; per-hop shares chosen so that shortest paths add up to the measured
end-to-end latencies). Containment edges (rack-node-chip-die, node-cpu) have ``plane="contains"`` and
no bandwidth. Vertices carry ``kind`` and their failure domain (``die``, ``chip``, ``node``, ``rack``).

The graph is for export and verification. Queries (``path``, ``alltoall_gb_s``, ``degrade``) are
closed-form over per-tier capacity arrays (``_Caps``) because a Clos decomposes into independent
sub-planes: for sources S in node A and sinks T in node B, the UB max-flow is
``sum_k min(a_k, b_k, sum_s min(u[A,k,s], u[B,k,s]))`` where ``a_k``/``b_k`` are the link capacities of
S/T into sub-plane k and ``u`` the L1-L2 link capacities (the tests check this against networkx
max-flow). Planes named ``ub`` in the public API mean "the scale-up plane" (UB, or NVLink on
``rail-fat-tree``); ``rdma`` means the scale-out plane (RoCE, or InfiniBand).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import XdsError
from .spec.cluster import ClusterSpec, load_cluster

PLANES = ("ub", "rdma", "vpc", "d2d", "nvlink", "ib")

_SIMPLE = re.compile(r"^(die|chip|node|rack|cpu|spine):(\d+)$")
_PAIR = re.compile(r"^(l1|l2|nvsw|leaf):(\d+)/(\d+)$")
_FABRIC = re.compile(r"^(rdma|vpc):fabric$")
_VPC = re.compile(r"^vpc:(\d+)$")


@dataclass
class _Caps:
    """Capacities (GB/s per direction) of every fabric tier; failures are zeros, degradations factors.

    ``die_l1[d, k]``: die d to its node's L1 chip / NVSwitch k. ``l1_l2[n, k, s]``: node n's L1 chip k to
    L2 switch s of sub-plane k (cloudmatrix; last axis empty otherwise). ``d2d[c]``: chip c's die-to-die
    link. ``so_link[d]``: die d's scale-out NIC link (RDMA / IB). ``so_fabric``: factor on the whole
    RDMA fabric (cloudmatrix). ``so_up[L, s]``: IB leaf L to spine s (rail-fat-tree). ``vpc_node[n]``:
    node n's VPC card, ``vpc_fabric`` a factor on the VPC fabric. ``die_alive``: False for lost dies.
    """

    die_l1: np.ndarray
    l1_l2: np.ndarray
    d2d: np.ndarray
    so_link: np.ndarray
    so_fabric: float
    so_up: np.ndarray
    vpc_node: np.ndarray
    vpc_fabric: float
    die_alive: np.ndarray

    def copy(self) -> "_Caps":
        return _Caps(
            self.die_l1.copy(), self.l1_l2.copy(), self.d2d.copy(), self.so_link.copy(),
            float(self.so_fabric), self.so_up.copy(), self.vpc_node.copy(), float(self.vpc_fabric),
            self.die_alive.copy(),
        )

    def freeze(self) -> "_Caps":
        for arr in (self.die_l1, self.l1_l2, self.d2d, self.so_link, self.so_up, self.vpc_node,
                    self.die_alive):
            arr.setflags(write=False)
        return self


@dataclass
class _Derived:
    """Per-die numbers derived from a :class:`_Caps` (GB/s per direction)."""

    inject: np.ndarray      # scale-up injection (sum of the die's live scale-up links)
    cross: np.ndarray       # cloudmatrix: cross-node UB share; rail: = inject (NVLink stays in node)
    scale_out: np.ndarray   # RDMA / IB per die, including leaf-uplink limits
    die_l1_prefix: np.ndarray  # cumulative die_l1 over dies, shape (D+1, P): O(1) set sums


class Topology:
    """A built cluster. Counts: ``n_dies, n_chips, n_nodes, n_cpus, n_racks``; failure-domain arrays
    ``die_chip``, ``die_node``, ``die_rack`` (int, indexed by global die id)."""

    def __init__(self, spec: ClusterSpec):
        self.spec = spec
        self.name = spec.name
        self.builder = spec.builder
        su = spec.scale_up
        self.n_nodes = spec.nodes
        self.chips_per_node = spec.chips_per_node
        self.dies_per_chip = spec.dies_per_chip
        self.dies_per_node = spec.dies_per_node
        self.n_chips = spec.chips
        self.n_dies = spec.dies
        self.n_cpus = spec.nodes * spec.cpus_per_node
        self.n_compute_racks = spec.compute_racks
        self.n_racks = spec.racks
        self.n_l1 = su.l1_per_node  # per node (L1 UB chips or NVSwitch chips)
        self.n_l2 = su.l2_per_sub_plane if self.builder == "cloudmatrix" else 0
        d = np.arange(self.n_dies)
        self.die_chip = d // self.dies_per_chip
        self.die_node = self.die_chip // self.chips_per_node
        self.die_rack = self.die_node // spec.nodes_per_rack
        self.die_local = d % self.dies_per_node  # index of the die inside its node (= rail on HGX)
        for arr in (self.die_chip, self.die_node, self.die_rack, self.die_local):
            arr.setflags(write=False)
        if self.builder == "rail-fat-tree":
            ports = spec.scale_out.leaf_ports
            self.nodes_per_leaf = min(self.n_nodes, ports // 2)  # half the ports down: non-blocking
            self.leaves_per_rail = math.ceil(self.n_nodes / self.nodes_per_leaf)
            self.n_rails = self.dies_per_node
            self.n_leaves = self.n_rails * self.leaves_per_rail
            downlinks = self.n_leaves * self.nodes_per_leaf
            self.n_spines = max(1, math.ceil(downlinks / ports))
            self.die_leaf = self.die_local * self.leaves_per_rail + self.die_node // self.nodes_per_leaf
        else:
            self.nodes_per_leaf = self.leaves_per_rail = self.n_rails = self.n_leaves = 0
            self.n_spines = 0
            self.die_leaf = np.zeros(self.n_dies, dtype=int)
        self.die_leaf.setflags(write=False)
        self.caps = self._healthy_caps().freeze()
        self.derived = _derive(self, self.caps)

    # ------------------------------------------------------------------ capacities
    def _healthy_caps(self) -> _Caps:
        spec, su = self.spec, self.spec.scale_up
        die_l1 = np.full((self.n_dies, self.n_l1), su.gb_s_per_die / self.n_l1)
        if self.builder == "cloudmatrix":
            l1_l2 = np.full((self.n_nodes, self.n_l1, self.n_l2), su.link_gb_s)
            so_up = np.zeros((0, 0))
        else:
            l1_l2 = np.zeros((self.n_nodes, self.n_l1, 0))
            # non-blocking: a leaf's uplink equals its downlink, spread evenly over the spines
            per_leaf = self.nodes_per_leaf * spec.scale_out.gb_s_per_die
            so_up = np.full((self.n_leaves, self.n_spines), per_leaf / self.n_spines)
        d2d_bw = spec.d2d.gb_s if (spec.d2d is not None and self.dies_per_chip > 1) else 0.0
        return _Caps(
            die_l1=die_l1,
            l1_l2=l1_l2,
            d2d=np.full(self.n_chips, d2d_bw),
            so_link=np.full(self.n_dies, spec.scale_out.gb_s_per_die),
            so_fabric=1.0,
            so_up=so_up,
            vpc_node=np.full(self.n_nodes, spec.vpc.gb_s_per_node),
            vpc_fabric=1.0,
            die_alive=np.ones(self.n_dies, dtype=bool),
        )

    # ------------------------------------------------------------------ names
    def _kinds(self) -> list[str]:
        common = ["die", "chip", "node", "rack", "cpu"]
        if self.builder == "cloudmatrix":
            return common + ["l1", "l2", "rdma:fabric", "vpc", "vpc:fabric", "link"]
        return common + ["nvsw", "leaf", "spine", "vpc", "vpc:fabric", "link"]

    def _ranges(self) -> str:
        r = (f"die:0..{self.n_dies - 1}, chip:0..{self.n_chips - 1}, node:0..{self.n_nodes - 1}, "
             f"rack:0..{self.n_racks - 1}, cpu:0..{max(self.n_cpus - 1, 0)}")
        if self.builder == "cloudmatrix":
            r += (f", l1:N/K (node 0..{self.n_nodes - 1}, sub-plane 0..{self.n_l1 - 1}), "
                  f"l2:K/S (sub-plane 0..{self.n_l1 - 1}, switch 0..{self.n_l2 - 1}), rdma:fabric, "
                  f"vpc:0..{self.n_nodes - 1}, vpc:fabric, link:A-B between adjacent elements "
                  "(e.g. link:node:5-l2:3/12, link:die:3-l1:0/2)")
        else:
            r += (f", nvsw:N/J (node 0..{self.n_nodes - 1}, switch 0..{self.n_l1 - 1}), "
                  f"leaf:R/I (rail 0..{self.n_rails - 1}, leaf 0..{self.leaves_per_rail - 1}), "
                  f"spine:0..{self.n_spines - 1}, vpc:0..{self.n_nodes - 1}, vpc:fabric, link:A-B "
                  "between adjacent elements (e.g. link:die:3-leaf:3/0)")
        return r

    def _bad(self, text: str, why: str, where: str) -> XdsError:
        return XdsError(f"{why} in {text!r} for cluster {self.name!r}; valid: {self._ranges()}",
                        where=where)

    def _check(self, value: int, limit: int, what: str, text: str, where: str) -> int:
        if not 0 <= value < limit:
            raise self._bad(text, f"{what} {value} out of range 0..{limit - 1}", where)
        return value

    def _parse_element(self, text: str, where: str) -> tuple:
        """Parse one non-link element into a tuple key, e.g. ('die', 17) or ('l2', 3, 12)."""
        m = _SIMPLE.match(text)
        if m:
            kind, i = m.group(1), int(m.group(2))
            limits = {"die": self.n_dies, "chip": self.n_chips, "node": self.n_nodes,
                      "rack": self.n_racks, "cpu": self.n_cpus, "spine": self.n_spines}
            if kind == "spine" and self.builder != "rail-fat-tree":
                raise self._bad(text, "'spine' is not an element of this cluster", where)
            return kind, self._check(i, limits[kind], f"{kind} index", text, where)
        m = _PAIR.match(text)
        if m:
            kind, a, b = m.group(1), int(m.group(2)), int(m.group(3))
            if kind in ("l1", "l2") and self.builder != "cloudmatrix" or \
               kind in ("nvsw", "leaf") and self.builder != "rail-fat-tree":
                raise self._bad(text, f"{kind!r} is not an element of this cluster", where)
            if kind == "l1":
                return ("l1", self._check(a, self.n_nodes, "node", text, where),
                        self._check(b, self.n_l1, "sub-plane", text, where))
            if kind == "l2":
                return ("l2", self._check(a, self.n_l1, "sub-plane", text, where),
                        self._check(b, self.n_l2, "L2 switch", text, where))
            if kind == "nvsw":
                return ("nvsw", self._check(a, self.n_nodes, "node", text, where),
                        self._check(b, self.n_l1, "NVSwitch", text, where))
            return ("leaf", self._check(a, self.n_rails, "rail", text, where),
                    self._check(b, self.leaves_per_rail, "leaf", text, where))
        m = _FABRIC.match(text)
        if m:
            if m.group(1) == "rdma" and self.builder != "cloudmatrix":
                raise self._bad(text, "'rdma:fabric' is not an element of this cluster "
                                "(its scale-out plane is leaf/spine InfiniBand)", where)
            return (m.group(0),)
        m = _VPC.match(text)
        if m:
            return ("vpc", self._check(int(m.group(1)), self.n_nodes, "vpc card (node)", text, where))
        raise self._bad(text, "unknown element", where)

    def _name(self, key: tuple) -> str:
        if len(key) == 1:
            return key[0]
        if len(key) == 2:
            return f"{key[0]}:{key[1]}"
        return f"{key[0]}:{key[1]}/{key[2]}"

    def _link_key(self, a: tuple, b: tuple, text: str, where: str) -> tuple:
        """Canonical key ('link', lower, upper) of the fabric link between elements a and b."""
        order = {"die": 0, "cpu": 0, "node": 0, "l1": 1, "nvsw": 1, "leaf": 1, "vpc": 1,
                 "rdma:fabric": 2, "vpc:fabric": 2, "l2": 2, "spine": 2}
        if order.get(a[0], 9) > order.get(b[0], 9):
            a, b = b, a
        ka, kb = a[0], b[0]
        ok = False
        if ka == "die" and kb == "die":
            ok = a[1] != b[1] and self.die_chip[a[1]] == self.die_chip[b[1]] and self.dies_per_chip > 1
            if ok and a[1] > b[1]:
                a, b = b, a
        elif ka in ("die", "cpu") and kb in ("l1", "nvsw"):
            node = self.die_node[a[1]] if ka == "die" else a[1] // max(self.spec.cpus_per_node, 1)
            ok = node == b[1]
        elif ka == "node" and kb == "l2":
            ok = True  # node N's L1 chip of the switch's sub-plane <-> that L2 switch
        elif ka == "l1" and kb == "l2":
            ok = a[2] == b[1]
            if ok:
                a = ("node", a[1])
        elif ka == "die" and kb == "leaf":
            ok = int(self.die_leaf[a[1]]) == b[1] * self.leaves_per_rail + b[2]
        elif ka == "leaf" and kb == "spine":
            ok = True
        elif ka == "die" and kb == "rdma:fabric":
            ok = True
        elif ka == "die" and kb == "vpc":
            ok = self.die_node[a[1]] == b[1]
        elif ka == "vpc" and kb == "vpc:fabric":
            ok = True
        if not ok:
            raise self._bad(text, f"no link between {self._name(a)} and {self._name(b)}", where)
        return ("link", a, b)

    def _parse_key(self, text: str, where: str = "target") -> tuple:
        if not isinstance(text, str) or not text.strip():
            raise self._bad(str(text), "empty element name", where)
        t = text.strip().lower()
        if t.startswith("link:"):
            body = t[len("link:"):]
            parts = body.split("-")
            if len(parts) != 2 or not all(parts):
                raise self._bad(text, "a link is written link:A-B", where)
            a = self._parse_element(parts[0], where)
            b = self._parse_element(parts[1], where)
            return self._link_key(a, b, text, where)
        return self._parse_element(t, where)

    def _key_name(self, key: tuple) -> str:
        if key[0] == "link":
            return f"link:{self._name(key[1])}-{self._name(key[2])}"
        return self._name(key)

    def parse_target(self, text: str, *, where: str = "target") -> str:
        """Validate an element name and return its canonical form (``die:17``, ``l2:3/12``,
        ``link:node:5-l2:3/12`` ...). Bad names raise :class:`XdsError` listing the valid ranges."""
        return self._key_name(self._parse_key(text, where))

    # ------------------------------------------------------------------ domains
    def _die_range(self, key: tuple) -> tuple[int, int] | None:
        kind = key[0]
        if kind == "die":
            return key[1], key[1] + 1
        if kind == "chip":
            return key[1] * self.dies_per_chip, (key[1] + 1) * self.dies_per_chip
        if kind == "node":
            return key[1] * self.dies_per_node, (key[1] + 1) * self.dies_per_node
        if kind == "rack":
            per = self.spec.nodes_per_rack * self.dies_per_node
            lo = min(key[1] * per, self.n_dies)
            return lo, min((key[1] + 1) * per, self.n_dies)
        return None

    def dies_in(self, element: str) -> np.ndarray:
        """Global die ids inside a die / chip / node / rack (empty for switches, links, cards)."""
        r = self._die_range(self._parse_key(element))
        return np.arange(0) if r is None else np.arange(r[0], r[1])

    def _l2_rack(self, k: int, s: int) -> int:
        # ASSUMPTION (unpublished): the 112 L2 chips fill the communication racks in order
        per = math.ceil(self.n_l1 * self.n_l2 / max(self.spec.switch_racks, 1))
        return self.n_compute_racks + (k * self.n_l2 + s) // per if self.spec.switch_racks else -1

    def failure_domain(self, element: str) -> dict:
        """Containing domains of an element: ``{die, chip, node, rack}`` as applicable, plus
        ``sub_plane`` / ``rail`` for switches and ``ends`` for links."""
        key = self._parse_key(element)
        return self._domain(key)

    def _domain(self, key: tuple) -> dict:
        kind = key[0]
        out: dict[str, Any] = {"element": self._key_name(key), "kind": kind}
        if kind == "die":
            d = key[1]
            out.update(die=d, chip=int(self.die_chip[d]), node=int(self.die_node[d]),
                       rack=int(self.die_rack[d]))
        elif kind == "chip":
            n = key[1] // self.chips_per_node
            out.update(chip=key[1], node=n, rack=n // self.spec.nodes_per_rack)
        elif kind in ("node", "vpc"):
            out.update(node=key[1], rack=key[1] // self.spec.nodes_per_rack)
        elif kind == "cpu":
            n = key[1] // self.spec.cpus_per_node
            out.update(node=n, rack=n // self.spec.nodes_per_rack)
        elif kind == "rack":
            out.update(rack=key[1], compute=key[1] < self.n_compute_racks)
        elif kind in ("l1", "nvsw"):
            out.update(node=key[1], rack=key[1] // self.spec.nodes_per_rack)
            out["sub_plane" if kind == "l1" else "switch"] = key[2]
        elif kind == "l2":
            out.update(sub_plane=key[1], rack=self._l2_rack(key[1], key[2]))
        elif kind == "leaf":
            out.update(rail=key[1])
        elif kind == "link":
            out.update(ends=[self._domain(key[1]), self._domain(key[2])])
        return out

    # ------------------------------------------------------------------ degrade
    def _apply(self, caps: _Caps, key: tuple, f: float, kill: bool) -> None:
        """Scale (factor f) or fail (f=0, kill=True) one element in ``caps`` in place."""
        kind = key[0]
        rng = self._die_range(key)
        if kind == "rack" and rng is not None and rng[0] >= rng[1]:
            # a communication rack: its L2 switches
            if self.builder == "cloudmatrix":
                for k in range(self.n_l1):
                    for s in range(self.n_l2):
                        if self._l2_rack(k, s) == key[1]:
                            caps.l1_l2[:, k, s] *= f
            return
        if rng is not None:
            lo, hi = rng
            caps.die_l1[lo:hi] *= f
            caps.so_link[lo:hi] *= f
            chips = np.unique(self.die_chip[lo:hi])
            caps.d2d[chips] *= f
            if kill:
                caps.die_alive[lo:hi] = False
                if kind in ("node", "rack"):
                    nodes = np.unique(self.die_node[lo:hi])
                    caps.l1_l2[nodes] *= f
                    caps.vpc_node[nodes] *= f
            return
        if kind == "l1":
            n, k = key[1], key[2]
            caps.die_l1[n * self.dies_per_node:(n + 1) * self.dies_per_node, k] *= f
            caps.l1_l2[n, k, :] *= f
        elif kind == "nvsw":
            n, j = key[1], key[2]
            caps.die_l1[n * self.dies_per_node:(n + 1) * self.dies_per_node, j] *= f
        elif kind == "l2":
            caps.l1_l2[:, key[1], key[2]] *= f
        elif kind == "leaf":
            leaf = key[1] * self.leaves_per_rail + key[2]
            caps.so_link[self.die_leaf == leaf] *= f
            caps.so_up[leaf, :] *= f
        elif kind == "spine":
            caps.so_up[:, key[1]] *= f
        elif kind == "rdma:fabric":
            caps.so_fabric *= f
        elif kind == "vpc":
            caps.vpc_node[key[1]] *= f
        elif kind == "vpc:fabric":
            caps.vpc_fabric *= f
        elif kind == "cpu":
            pass  # CPUs carry no die traffic in this model; kept for the graph view
        elif kind == "link":
            a, b = key[1], key[2]
            ka, kb = a[0], b[0]
            if ka == "die" and kb == "die":
                caps.d2d[self.die_chip[a[1]]] *= f
            elif ka == "die" and kb in ("l1", "nvsw"):
                caps.die_l1[a[1], b[2]] *= f
            elif ka == "node" and kb == "l2":
                caps.l1_l2[a[1], b[1], b[2]] *= f
            elif ka == "die" and kb == "leaf":
                caps.so_link[a[1]] *= f
            elif ka == "leaf" and kb == "spine":
                caps.so_up[a[1] * self.leaves_per_rail + a[2], b[1]] *= f
            elif ka == "die" and kb == "rdma:fabric":
                caps.so_link[a[1]] *= f
            elif ka == "vpc" and kb == "vpc:fabric":
                caps.vpc_node[a[1]] *= f
            # die-vpc and cpu-l1 links: a die reaches its card through the host; not a die bottleneck

    def degrade(self, failed: list[str] | tuple[str, ...] = (),
                factors: dict[str, float] | None = None) -> "Degradation":
        """Fail elements (die/chip/node/rack/switch/link/card) and scale others' bandwidth by a factor.

        ``failed``: element names; ``factors``: ``{element: factor}`` with 0 <= factor <= 1 (e.g. a
        ``link_degraded`` event). Returns a :class:`Degradation` with NEW per-die numbers.
        """
        caps = self.caps.copy()
        for arr in (caps.die_l1, caps.l1_l2, caps.d2d, caps.so_link, caps.so_up, caps.vpc_node,
                    caps.die_alive):
            arr.setflags(write=True)
        names_failed = []
        for i, el in enumerate(failed or ()):
            key = self._parse_key(el, where=f"failed[{i}]")
            self._apply(caps, key, 0.0, kill=True)
            names_failed.append(self._key_name(key))
        names_factors = {}
        for el, f in (factors or {}).items():
            key = self._parse_key(el, where="factors")
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) \
                    or not 0.0 <= f <= 1.0:
                raise XdsError(f"bandwidth factor for {el!r} must be a number in [0, 1] (got {f!r})",
                               where="factor")
            self._apply(caps, key, float(f), kill=False)
            names_factors[self._key_name(key)] = float(f)
        caps.freeze()
        return Degradation(self, caps, names_failed, names_factors)

    # ------------------------------------------------------------------ queries
    def _dies_arg(self, dies: Any, where: str = "dies") -> np.ndarray:
        arr = np.asarray(dies)
        if arr.dtype == bool and arr.shape == (self.n_dies,):
            arr = np.flatnonzero(arr)
        if arr.size == 0:
            raise XdsError("empty die set", where=where)
        if not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) \
                    and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise XdsError("die ids must be integers", where=where)
        arr = arr.ravel()
        if arr.min() < 0 or arr.max() >= self.n_dies:
            bad = int(arr[(arr < 0) | (arr >= self.n_dies)][0])
            raise XdsError(f"die {bad} out of range 0..{self.n_dies - 1} for cluster {self.name!r}",
                           where=where)
        return arr

    def _plane(self, plane: str, where: str = "--plane") -> str:
        """Normalise a plane name: 'ub'/'nvlink' -> scale-up, 'rdma'/'ib' -> scale-out."""
        p = str(plane).lower()
        if self.builder == "cloudmatrix":
            allowed = {"ub": "ub", "rdma": "rdma", "vpc": "vpc", "d2d": "d2d"}
        else:
            allowed = {"ub": "ub", "nvlink": "ub", "rdma": "rdma", "ib": "rdma", "vpc": "vpc"}
        if p not in allowed:
            raise XdsError(f"unknown plane {plane!r} for cluster {self.name!r} "
                           f"(allowed: {', '.join(allowed)})", where=where)
        return allowed[p]

    def alltoall_gb_s(self, dies: Any, plane: str = "ub", ub_gb_s_per_die: np.ndarray | None = None,
                      degradation: "Degradation | None" = None) -> float:
        """Achievable per-die all-to-all bandwidth (GB/s per direction) for a set of dies.

        Uniform traffic: each die sends the same bytes to every other die of the set. A die's rate is
        limited by its injection bandwidth and by its share of its node's uplinks for the fraction of
        its traffic that leaves the node (bisection of the Clos for that set). On ``rail-fat-tree``
        the ``ub`` all-to-all uses NVLink inside a node and the die's IB rail across nodes, as
        DeepEP does. The synchronous all-to-all runs at the slowest die's rate, so this is the min;
        any dead die in the set gives 0. ``ub_gb_s_per_die`` (indexed by global die id) caps each
        die, e.g. ``Degradation.ub_gb_s_per_die``; ``degradation`` prices the set on degraded
        capacities exactly.
        """
        caps, der = (self.caps, self.derived) if degradation is None else \
            (degradation.caps, degradation.derived)
        return _alltoall(self, caps, der, self._dies_arg(dies), self._plane(plane), ub_gb_s_per_die)

    def latency_us(self, src_die: Any, dst_die: Any, plane: str = "ub") -> np.ndarray | float:
        """One-way small-message latency in µs between dies (vectorised; broadcasts like NumPy).

        ``ub``: intra-node vs inter-node UB (CMv2 Table 1); on ``rail-fat-tree`` cross-node pairs use
        the IB latency (the path dispatch takes). Same die -> 0.
        """
        p = self._plane(plane)
        s = self._dies_arg(np.atleast_1d(src_die), "src_die")
        t = self._dies_arg(np.atleast_1d(dst_die), "dst_die")
        s_shape = np.shape(src_die)
        t_shape = np.shape(dst_die)
        s = s.reshape(s_shape)
        t = t.reshape(t_shape)
        same_node = self.die_node[s] == self.die_node[t]
        spec = self.spec
        if p == "ub":
            inter = spec.scale_up.latency_inter_node_us if self.builder == "cloudmatrix" \
                else spec.scale_out.latency_us
            lat = np.where(same_node, spec.scale_up.latency_intra_node_us, inter)
        elif p == "d2d":
            same_chip = self.die_chip[s] == self.die_chip[t]
            d2d_lat = spec.d2d.latency_us if spec.d2d else np.nan
            lat = np.where(same_chip, d2d_lat, np.nan)
        elif p == "rdma":
            lat = np.full(np.broadcast(s, t).shape, spec.scale_out.latency_us)
        else:
            lat = np.full(np.broadcast(s, t).shape, spec.vpc.latency_us)
        lat = np.where(s == t, 0.0, lat)
        return float(lat) if lat.ndim == 0 else lat

    def path(self, src: str, dst: str, plane: str = "ub") -> dict:
        """Bandwidth (GB/s, max-flow over the plane), latency (µs) and one shortest path (hops)
        between two dies / chips / nodes (a chip or node is the aggregate of its dies)."""
        return _path(self, self.caps, self.derived, src, dst, plane)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """Counts and headline numbers. Bandwidths in GB/s per direction (keys end ``_gb_s``),
        latencies in µs (``_us``). On ``rail-fat-tree`` the ``ub_*`` keys describe NVLink
        (``switches.ub_l1`` = NVSwitch chips, ``ub_l2`` = 0, ``node_ub_uplink_gb_s`` = 0 because
        NVLink does not leave the node) and the IB tiers are ``switches.ib_leaf`` / ``ib_spine``."""
        spec, su = self.spec, self.spec.scale_up
        der = self.derived
        doc: dict[str, Any] = {
            "cluster": self.name,
            "builder": self.builder,
            "hardware": spec.hardware,
            "chips": self.n_chips,
            "dies": self.n_dies,
            "nodes": self.n_nodes,
            "cpus": self.n_cpus,
            "racks": self.n_racks,
            "compute_racks": self.n_compute_racks,
            "dies_per_chip": self.dies_per_chip,
            "chips_per_node": self.chips_per_node,
        }
        node_up = float(self.caps.l1_l2[0].sum()) if self.builder == "cloudmatrix" else 0.0
        if self.builder == "cloudmatrix":
            doc["switches"] = {"ub_l1": self.n_nodes * self.n_l1, "ub_l2": self.n_l1 * self.n_l2}
            doc["sub_planes"] = self.n_l1
        else:
            doc["switches"] = {"ub_l1": self.n_nodes * self.n_l1, "ub_l2": 0,
                               "ib_leaf": self.n_leaves, "ib_spine": self.n_spines}
            doc["rails"] = self.n_rails
        inj = float(der.inject[0])
        doc.update({
            "scale_up_plane": su.plane,
            "ub_gb_s_per_die": inj,
            "ub_gb_s_per_chip": inj * self.dies_per_chip,
            "node_ub_uplink_gb_s": node_up,
        })
        if self.builder == "cloudmatrix":
            doc["l1_uplink_gb_s"] = float(self.caps.l1_l2[0, 0].sum())
            doc["ub_link_gb_s"] = su.link_gb_s
            node_demand = self.dies_per_node * inj
            doc["ub_oversubscription"] = node_demand / node_up if node_up else None
            # bisection: split the nodes in halves; every cross-half byte goes up and down the Clos
            doc["ub_bisection_gb_s"] = (self.n_nodes // 2) * min(node_up, node_demand)
            doc["cpu_ub_gb_s"] = su.cpu_gb_s
        doc.update({
            "d2d_gb_s": float(self.caps.d2d[0]) if self.dies_per_chip > 1 else 0.0,
            "scale_out_plane": spec.scale_out.plane,
            "rdma_gb_s_per_die": float(der.scale_out[0]),
            "rdma_gb_s_per_chip": float(der.scale_out[0]) * self.dies_per_chip,
            "rdma_gb_s_per_node": float(der.scale_out[0]) * self.dies_per_node,
            "vpc_gb_s_per_node": spec.vpc.gb_s_per_node,
            "alltoall_gb_s_per_die": self.alltoall_gb_s(np.arange(self.n_dies)),
            "ub_latency_intra_node_us": su.latency_intra_node_us,
        })
        if su.latency_inter_node_us is not None:
            doc["ub_latency_inter_node_us"] = su.latency_inter_node_us
        if spec.d2d is not None and self.dies_per_chip > 1:
            doc["d2d_latency_us"] = spec.d2d.latency_us
        doc["rdma_latency_us"] = spec.scale_out.latency_us
        doc["vpc_latency_us"] = spec.vpc.latency_us
        return doc

    # ------------------------------------------------------------------ graph
    @cached_property
    def graph(self):
        """The networkx graph (built on first use; treat as read-only)."""
        return _build_graph(self)

    def export(self, path: str | Path) -> Path:
        """Write the graph as ``.graphml`` or node-link ``.json``, atomically. Returns the path."""
        return _export(self.graph, path)


# ====================================================================== derived numbers
def _derive(topo: Topology, caps: _Caps) -> _Derived:
    """Per-die injection / cross-node / scale-out bandwidth from tier capacities (vectorised)."""
    n, dpn = topo.n_nodes, topo.dies_per_node
    inject = caps.die_l1.sum(axis=1)
    if topo.builder == "cloudmatrix":
        per_node = caps.die_l1.reshape(n, dpn, -1)                # (N, Dn, P)
        down = per_node.sum(axis=1)                               # (N, P): dies into L1 chip k
        up = caps.l1_l2.sum(axis=2)                               # (N, P): L1 chip k up to L2s
        # each die gets its link-proportional share of the sub-plane's uplink (fair share)
        ratio = np.divide(up, down, out=np.zeros_like(up), where=down > 0)
        cross = (per_node * np.minimum(1.0, ratio)[:, None, :]).sum(axis=2).reshape(-1)
        if n == 1:
            cross = inject.copy()
        scale_out = caps.so_link * caps.so_fabric
    else:
        cross = inject.copy()
        link = caps.so_link.copy()
        if topo.leaves_per_rail > 1:
            # traffic to nodes under other leaves of the rail crosses the spines
            off = (n - topo.nodes_per_leaf) / max(n - 1, 1)
            up = caps.so_up.sum(axis=1)                           # (L,)
            demand = np.bincount(topo.die_leaf, weights=link, minlength=topo.n_leaves)
            ratio = np.divide(up, demand * off, out=np.ones_like(up), where=demand * off > 0)
            link = link * np.minimum(1.0, ratio)[topo.die_leaf]
        scale_out = link
    alive = caps.die_alive
    inject = np.where(alive, inject, 0.0)
    cross = np.where(alive, cross, 0.0)
    scale_out = np.where(alive, scale_out, 0.0)
    prefix = np.vstack([np.zeros((1, caps.die_l1.shape[1])), np.cumsum(caps.die_l1, axis=0)])
    for arr in (inject, cross, scale_out, prefix):
        arr.setflags(write=False)
    return _Derived(inject, cross, scale_out, prefix)


def _alltoall(topo: Topology, caps: _Caps, der: _Derived, dies: np.ndarray, plane: str,
              cap: np.ndarray | None) -> float:
    dies = np.unique(dies)
    nodes = topo.die_node[dies]
    m = np.bincount(nodes, minlength=topo.n_nodes)[nodes].astype(float)   # set dies in my node
    total = float(dies.size)
    f_remote = (total - m) / (total - 1) if total > 1 else np.zeros_like(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        if plane == "ub":
            if topo.builder == "cloudmatrix":
                rate = np.minimum(der.inject[dies],
                                  np.where(f_remote > 0, der.cross[dies] / f_remote, np.inf))
            else:
                rate = np.minimum(
                    np.where(f_remote < 1, der.inject[dies] / (1 - f_remote), np.inf),
                    np.where(f_remote > 0, der.scale_out[dies] / f_remote, np.inf))
        elif plane == "rdma":
            rate = der.scale_out[dies].astype(float)
        elif plane == "vpc":
            card = caps.vpc_node[nodes] * caps.vpc_fabric
            rate = card / (m * np.where(f_remote > 0, f_remote, 1.0))
        else:
            raise XdsError("all-to-all is priced on the ub, rdma or vpc plane, not d2d", where="--plane")
    if cap is not None:
        cap = np.asarray(cap, dtype=float)
        if cap.shape != (topo.n_dies,):
            raise XdsError(f"ub_gb_s_per_die must have one value per die ({topo.n_dies})",
                           where="ub_gb_s_per_die")
        rate = np.minimum(rate, cap[dies])
    rate = np.where(caps.die_alive[dies], rate, 0.0)
    out = float(np.min(rate))
    return 0.0 if not math.isfinite(out) else out


def _path(topo: Topology, caps: _Caps, der: _Derived, src: str, dst: str, plane: str) -> dict:
    p = topo._plane(plane)
    ks = topo._parse_key(src, where="SRC")
    kt = topo._parse_key(dst, where="DST")
    for key, where, text in ((ks, "SRC", src), (kt, "DST", dst)):
        if key[0] not in ("die", "chip", "node"):
            raise topo._bad(text, f"path endpoints must be die:N, chip:N or node:N, not {key[0]!r}",
                            where)
    s0, s1 = topo._die_range(ks)
    t0, t1 = topo._die_range(kt)
    if s0 < t1 and t0 < s1:
        raise XdsError(f"SRC {topo._key_name(ks)} and DST {topo._key_name(kt)} overlap; "
                       "a path needs two disjoint sets of dies", where="DST")
    a_node, b_node = int(topo.die_node[s0]), int(topo.die_node[t0])
    spec = topo.spec
    hops: list[str] = []
    if p == "ub":
        a = der.die_l1_prefix[s1] - der.die_l1_prefix[s0]          # (P,) S into each L1 chip
        b = der.die_l1_prefix[t1] - der.die_l1_prefix[t0]
        if a_node == b_node:
            flows = np.minimum(a, b)
            latency = spec.scale_up.latency_intra_node_us
        elif topo.builder == "cloudmatrix":
            mid = np.minimum(caps.l1_l2[a_node], caps.l1_l2[b_node]).sum(axis=1)  # (P,)
            flows = np.minimum(np.minimum(a, b), mid)
            latency = spec.scale_up.latency_inter_node_us
        else:
            raise XdsError(f"no nvlink path between node {a_node} and node {b_node} on "
                           f"{topo.name!r}: NVLink ends at the node; use --plane rdma (InfiniBand)",
                           where="--plane")
        bw = float(flows.sum())
        if bw > 0:
            k = int(np.argmax(flows))
            sd = s0 + int(np.argmax(caps.die_l1[s0:s1, k]))
            td = t0 + int(np.argmax(caps.die_l1[t0:t1, k]))
            sw = "l1" if topo.builder == "cloudmatrix" else "nvsw"
            if a_node == b_node:
                hops = [f"die:{sd}", f"{sw}:{a_node}/{k}", f"die:{td}"]
            else:
                s = int(np.argmax(np.minimum(caps.l1_l2[a_node, k], caps.l1_l2[b_node, k])))
                hops = [f"die:{sd}", f"l1:{a_node}/{k}", f"l2:{k}/{s}", f"l1:{b_node}/{k}",
                        f"die:{td}"]
    elif p == "d2d":
        if not (s1 - s0 == 1 and t1 - t0 == 1 and topo.die_chip[s0] == topo.die_chip[t0]):
            raise XdsError("the d2d plane joins the two dies of one chip; SRC and DST must be "
                           "die:N of the same chip", where="--plane")
        bw = float(caps.d2d[topo.die_chip[s0]])
        latency = spec.d2d.latency_us if spec.d2d else 0.0
        hops = [f"die:{s0}", f"die:{t0}"] if bw > 0 else []
    elif p == "rdma":
        latency = spec.scale_out.latency_us
        if topo.builder == "cloudmatrix":
            bw = float(min(der.scale_out[s0:s1].sum(), der.scale_out[t0:t1].sum()))
            if bw > 0:
                sd = s0 + int(np.argmax(der.scale_out[s0:s1]))
                td = t0 + int(np.argmax(der.scale_out[t0:t1]))
                hops = [f"die:{sd}", "rdma:fabric", f"die:{td}"]
        else:
            bw, hops = _ib_flow(topo, caps, s0, s1, t0, t1)
    else:  # vpc
        if a_node == b_node:
            raise XdsError("the vpc plane is the node's egress; SRC and DST in the same node talk "
                           "over ub", where="--plane")
        bw = float(min(caps.vpc_node[a_node], caps.vpc_node[b_node]) * caps.vpc_fabric)
        if not (caps.die_alive[s0:s1].any() and caps.die_alive[t0:t1].any()):
            bw = 0.0
        latency = spec.vpc.latency_us
        if bw > 0:
            sd = s0 + int(np.argmax(caps.die_alive[s0:s1]))
            td = t0 + int(np.argmax(caps.die_alive[t0:t1]))
            hops = [f"die:{sd}", f"vpc:{a_node}", "vpc:fabric", f"vpc:{b_node}", f"die:{td}"]
    return {
        "cluster": topo.name,
        "src": topo._key_name(ks),
        "dst": topo._key_name(kt),
        "plane": "ub" if p == "ub" and topo.builder == "cloudmatrix" else
                 ({"ub": "nvlink", "rdma": "ib"}.get(p, p) if topo.builder != "cloudmatrix" else p),
        "bandwidth_gb_s": bw,
        "latency_us": float(latency) if bw > 0 else None,
        "hops": hops,
        "same_node": a_node == b_node,
        "connected": bw > 0,
    }


def _ib_flow(topo: Topology, caps: _Caps, s0: int, s1: int, t0: int, t1: int) -> tuple[float, list]:
    """Max-flow over the rail-optimised IB fat tree between two die ranges (leaf-local traffic
    directly; the rest through the spines, limited by each leaf's live uplinks)."""
    L = topo.n_leaves
    a = np.bincount(topo.die_leaf[s0:s1], weights=caps.so_link[s0:s1] * caps.die_alive[s0:s1],
                    minlength=L)
    b = np.bincount(topo.die_leaf[t0:t1], weights=caps.so_link[t0:t1] * caps.die_alive[t0:t1],
                    minlength=L)
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
    hops: list[str] = []
    if bw > 0:
        sl = np.flatnonzero(a > 0)
        tl = np.flatnonzero(b > 0)
        common = np.intersect1d(sl, tl)
        la = int(common[0]) if common.size else int(sl[0])
        lb = int(common[0]) if common.size else int(tl[0])
        sd = s0 + int(np.flatnonzero((topo.die_leaf[s0:s1] == la) & (caps.so_link[s0:s1] > 0))[0])
        td = t0 + int(np.flatnonzero((topo.die_leaf[t0:t1] == lb) & (caps.so_link[t0:t1] > 0))[0])
        ln = lambda x: f"leaf:{x // topo.leaves_per_rail}/{x % topo.leaves_per_rail}"  # noqa: E731
        if la == lb:
            hops = [f"die:{sd}", ln(la), f"die:{td}"]
        else:
            sp = int(np.argmax(np.minimum(caps.so_up[la], caps.so_up[lb])))
            hops = [f"die:{sd}", ln(la), f"spine:{sp}", ln(lb), f"die:{td}"]
    return bw, hops


# ====================================================================== degradation
@dataclass
class Degradation:
    """Per-die numbers after failures (GB/s per direction; index = global die id).

    ``ub_gb_s_per_die``: scale-up injection a die can sustain to dies in OTHER nodes (its share of
    its node's live Clos uplinks, capped by its own live links); 0 for dead dies. On
    ``rail-fat-tree`` it is the die's NVLink bandwidth (the plane ends at the node).
    ``ub_inject_gb_s_per_die``: the die's own live scale-up links. ``rdma_gb_s_per_die``: scale-out
    (RoCE / IB). ``lost_dies``: dead. ``disconnected_dies``: alive but unable to reach other dies
    (no live scale-up link, or no way off the node while the cluster has other nodes).
    """

    topology: Topology
    caps: _Caps
    failed: list[str]
    factors: dict[str, float]
    derived: _Derived = field(init=False)

    def __post_init__(self) -> None:
        self.derived = _derive(self.topology, self.caps)

    @property
    def ub_gb_s_per_die(self) -> np.ndarray:
        return self.derived.cross

    @property
    def ub_inject_gb_s_per_die(self) -> np.ndarray:
        return self.derived.inject

    @property
    def rdma_gb_s_per_die(self) -> np.ndarray:
        return self.derived.scale_out

    @property
    def lost_dies(self) -> np.ndarray:
        return ~self.caps.die_alive

    @property
    def disconnected_dies(self) -> np.ndarray:
        t = self.topology
        alive = self.caps.die_alive
        if t.builder == "cloudmatrix":
            isolated = self.derived.inject <= 0
            if t.n_nodes > 1:
                isolated = isolated | (self.derived.cross <= 0)
            return alive & isolated
        return alive & (self.derived.inject <= 0) & (self.derived.scale_out <= 0)

    def alltoall_gb_s(self, dies: Any, plane: str = "ub") -> float:
        """All-to-all per-die bandwidth of a die set on the degraded fabric (see Topology)."""
        return self.topology.alltoall_gb_s(dies, plane, degradation=self)

    def path(self, src: str, dst: str, plane: str = "ub") -> dict:
        """Path query on the degraded fabric (see :meth:`Topology.path`)."""
        t = self.topology
        return _path(t, self.caps, self.derived, src, dst, plane)

    def summary(self) -> dict:
        """Counts and per-die bandwidth statistics after the failure (GB/s)."""
        alive = self.caps.die_alive
        ub = self.ub_gb_s_per_die[alive]
        rd = self.rdma_gb_s_per_die[alive]
        t = self.topology
        return {
            "cluster": t.name,
            "failed": list(self.failed),
            "factors": dict(self.factors),
            "lost_dies": int(self.lost_dies.sum()),
            "disconnected_dies": int(self.disconnected_dies.sum()),
            "dies_below_full_ub": int((self.ub_gb_s_per_die < t.derived.cross - 1e-9)[alive].sum()),
            "min_ub_gb_s_per_die": float(ub.min()) if ub.size else 0.0,
            "mean_ub_gb_s_per_die": float(ub.mean()) if ub.size else 0.0,
            "min_rdma_gb_s_per_die": float(rd.min()) if rd.size else 0.0,
            "alltoall_gb_s_per_die": self.alltoall_gb_s(np.flatnonzero(alive)) if alive.any() else 0.0,
        }

    @cached_property
    def graph(self):
        """A copy of the topology graph with failed elements removed and factors applied."""
        return _degraded_graph(self)


# ====================================================================== graph building
def _build_graph(topo: Topology):
    import networkx as nx

    spec, su = topo.spec, topo.spec.scale_up
    g = nx.Graph(name=topo.name, builder=topo.builder)
    npr = spec.nodes_per_rack
    nodes_v: list = []
    edges: list = []
    contains = {"plane": "contains", "bandwidth_gb_s": 0.0, "latency_us": 0.0}
    for r in range(topo.n_racks):
        nodes_v.append((f"rack:{r}", {"kind": "rack", "rack": r,
                                      "compute": bool(r < topo.n_compute_racks)}))
    for n in range(topo.n_nodes):
        nodes_v.append((f"node:{n}", {"kind": "node", "node": n, "rack": n // npr}))
        edges.append((f"rack:{n // npr}", f"node:{n}", contains))
        nodes_v.append((f"vpc:{n}", {"kind": "vpc", "node": n, "rack": n // npr}))
        edges.append((f"vpc:{n}", "vpc:fabric", {"plane": "vpc", "bandwidth_gb_s": spec.vpc.gb_s_per_node,
                                                  "latency_us": spec.vpc.latency_us / 2}))
    nodes_v.append(("vpc:fabric", {"kind": "vpc_fabric"}))
    for c in range(topo.n_chips):
        n = c // topo.chips_per_node
        nodes_v.append((f"chip:{c}", {"kind": "chip", "chip": c, "node": n, "rack": n // npr}))
        edges.append((f"node:{n}", f"chip:{c}", contains))
    for d in range(topo.n_dies):
        c, n = int(topo.die_chip[d]), int(topo.die_node[d])
        nodes_v.append((f"die:{d}", {"kind": "die", "die": d, "chip": c, "node": n, "rack": n // npr}))
        edges.append((f"chip:{c}", f"die:{d}", contains))
        # a die reaches its node's VPC card through the host; the card is the bottleneck
        edges.append((f"die:{d}", f"vpc:{n}", {"plane": "vpc", "bandwidth_gb_s": spec.vpc.gb_s_per_node,
                                               "latency_us": 0.0}))
    if topo.dies_per_chip == 2 and spec.d2d is not None:
        for c in range(topo.n_chips):
            edges.append((f"die:{2 * c}", f"die:{2 * c + 1}",
                          {"plane": "d2d", "bandwidth_gb_s": spec.d2d.gb_s,
                           "latency_us": spec.d2d.latency_us}))
    for i in range(topo.n_cpus):
        n = i // spec.cpus_per_node
        nodes_v.append((f"cpu:{i}", {"kind": "cpu", "cpu": i, "node": n, "rack": n // npr}))
        edges.append((f"node:{n}", f"cpu:{i}", contains))
    per_link = su.gb_s_per_die / topo.n_l1
    half_intra = su.latency_intra_node_us / 2  # die -> switch -> die adds up to the intra latency
    sw = "l1" if topo.builder == "cloudmatrix" else "nvsw"
    up_plane = su.plane
    for n in range(topo.n_nodes):
        for k in range(topo.n_l1):
            attrs = {"kind": sw, "node": n, "rack": n // npr}
            attrs["sub_plane" if sw == "l1" else "switch"] = k
            nodes_v.append((f"{sw}:{n}/{k}", attrs))
            for d in range(n * topo.dies_per_node, (n + 1) * topo.dies_per_node):
                edges.append((f"die:{d}", f"{sw}:{n}/{k}", {"plane": up_plane, "bandwidth_gb_s": per_link,
                                                            "latency_us": half_intra}))
            if su.cpu_gb_s > 0:
                for i in range(n * spec.cpus_per_node, (n + 1) * spec.cpus_per_node):
                    edges.append((f"cpu:{i}", f"{sw}:{n}/{k}", {"plane": up_plane,
                                  "bandwidth_gb_s": su.cpu_gb_s / topo.n_l1, "latency_us": half_intra}))
    if topo.builder == "cloudmatrix":
        # die -> L1 -> L2 -> L1 -> die adds up to the measured inter-node latency
        half_tier = (su.latency_inter_node_us - su.latency_intra_node_us) / 2
        for k in range(topo.n_l1):
            for s in range(topo.n_l2):
                attrs = {"kind": "l2", "sub_plane": k, "switch": s}
                rack = topo._l2_rack(k, s)
                if rack >= 0:
                    attrs["rack"] = rack
                nodes_v.append((f"l2:{k}/{s}", attrs))
                for n in range(topo.n_nodes):
                    edges.append((f"l1:{n}/{k}", f"l2:{k}/{s}", {"plane": "ub", "bandwidth_gb_s": su.link_gb_s,
                                                                "latency_us": half_tier}))
        nodes_v.append(("rdma:fabric", {"kind": "rdma_fabric"}))
        for d in range(topo.n_dies):
            edges.append((f"die:{d}", "rdma:fabric", {"plane": "rdma",
                          "bandwidth_gb_s": spec.scale_out.gb_s_per_die,
                          "latency_us": spec.scale_out.latency_us / 2}))
    else:
        so = spec.scale_out
        lat = so.latency_us / 2
        for leaf in range(topo.n_leaves):
            r, i = divmod(leaf, topo.leaves_per_rail)
            nodes_v.append((f"leaf:{r}/{i}", {"kind": "leaf", "rail": r, "leaf": i}))
        for s in range(topo.n_spines):
            nodes_v.append((f"spine:{s}", {"kind": "spine", "spine": s}))
        for d in range(topo.n_dies):
            leaf = int(topo.die_leaf[d])
            r, i = divmod(leaf, topo.leaves_per_rail)
            edges.append((f"die:{d}", f"leaf:{r}/{i}", {"plane": "ib", "bandwidth_gb_s": so.gb_s_per_die,
                                                        "latency_us": lat}))
        for leaf in range(topo.n_leaves):
            r, i = divmod(leaf, topo.leaves_per_rail)
            for s in range(topo.n_spines):
                edges.append((f"leaf:{r}/{i}", f"spine:{s}", {"plane": "ib",
                              "bandwidth_gb_s": float(topo.caps.so_up[leaf, s]), "latency_us": 0.0}))
    g.add_nodes_from(nodes_v)
    g.add_edges_from(edges)
    return g


def _element_vertices(topo: Topology, key: tuple) -> list[str]:
    """Graph vertices that disappear when element ``key`` fails (links handled separately)."""
    kind = key[0]
    rng = topo._die_range(key)
    if kind == "rack" and rng is not None and rng[0] >= rng[1]:
        return [f"l2:{k}/{s}" for k in range(topo.n_l1) for s in range(topo.n_l2)
                if topo._l2_rack(k, s) == key[1]]
    if rng is not None:
        out = [f"die:{d}" for d in range(*rng)]
        if kind in ("node", "rack"):
            nodes = sorted(set(int(x) for x in topo.die_node[rng[0]:rng[1]]))
            sw = "l1" if topo.builder == "cloudmatrix" else "nvsw"
            cpn = topo.spec.cpus_per_node
            for n in nodes:
                out += [f"{sw}:{n}/{k}" for k in range(topo.n_l1)]
                out += [f"cpu:{i}" for i in range(n * cpn, (n + 1) * cpn)]
                out.append(f"vpc:{n}")
        return out
    return [topo._key_name(key)]


def _degraded_graph(deg: Degradation):
    topo = deg.topology
    g = topo.graph.copy()
    for el in deg.failed:
        key = topo._parse_key(el)
        if key[0] == "link":
            u, v = topo._name(key[1]), topo._name(key[2])
            if key[1][0] == "node" and key[2][0] == "l2":
                u = f"l1:{key[1][1]}/{key[2][1]}"
            if g.has_edge(u, v):
                g.remove_edge(u, v)
        else:
            g.remove_nodes_from(_element_vertices(topo, key))
    for el, f in deg.factors.items():
        key = topo._parse_key(el)
        if key[0] == "link":
            u, v = topo._name(key[1]), topo._name(key[2])
            if key[1][0] == "node" and key[2][0] == "l2":
                u = f"l1:{key[1][1]}/{key[2][1]}"
            pairs = [(u, v)] if g.has_edge(u, v) else []
        else:
            verts = [x for x in _element_vertices(topo, key) if x in g]
            pairs = list(g.edges(verts))
        for u, v in pairs:
            data = g.edges[u, v]
            if data["plane"] != "contains":
                data["bandwidth_gb_s"] = data["bandwidth_gb_s"] * f
    return g


def _export(graph, path: str | Path) -> Path:
    import networkx as nx

    from .spec.fileio import atomic_path

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".graphml", ".json"):
        raise XdsError("export format must be .graphml or .json", file=str(path), where="--export")
    with atomic_path(target) as tmp:
        if suffix == ".graphml":
            nx.write_graphml(graph, tmp)
        else:
            data = nx.node_link_data(graph, edges="edges")
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return target


# ====================================================================== entry point
@lru_cache(maxsize=32)
def _build_cached(spec_json: str) -> Topology:
    return Topology(ClusterSpec.model_validate_json(spec_json))


def build_topology(cluster: ClusterSpec | str = "cloudmatrix384", nodes: int | None = None) -> Topology:
    """Build (or fetch from cache) the topology of a cluster, optionally resized to ``nodes``."""
    spec = load_cluster(cluster).with_nodes(nodes)
    return _build_cached(spec.model_dump_json())


__all__ = ["Topology", "Degradation", "build_topology", "PLANES"]
