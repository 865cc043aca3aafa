"""What failed elements cost: per-die bandwidth after failures and bandwidth factors.

``Topology.degrade`` copies the healthy capacity tables, zeroes what a failure removes (a die, chip,
node or rack loses its dies; a switch or link loses its capacity), scales what a degradation factor
touches, and returns a :class:`Degradation` with new per-die numbers (GB/s per direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import XdsError
from .capacity import Caps, Derived, derive
from .domains import die_range
from .graph import degraded_graph
from .names import key_name, parse_key
from .path import path


def _apply_dies(topo: Any, caps: Caps, key: tuple, rng: tuple[int, int], f: float, kill: bool) -> None:
    """Scale (or fail) every link of the dies of a die / chip / node / rack."""
    lo, hi = rng
    caps.die_l1[lo:hi] *= f
    caps.so_link[lo:hi] *= f
    chips = np.unique(topo.die_chip[lo:hi])
    caps.d2d[chips] *= f
    if kill:
        caps.die_alive[lo:hi] = False
        if key[0] in ("node", "rack"):
            nodes = np.unique(topo.die_node[lo:hi])
            caps.l1_l2[nodes] *= f
            caps.vpc_node[nodes] *= f


def _apply_link(topo: Any, caps: Caps, a: tuple, b: tuple, f: float) -> None:
    ka, kb = a[0], b[0]
    if ka == "die" and kb == "die":
        caps.d2d[topo.die_chip[a[1]]] *= f
    elif ka == "die" and kb == topo.family.switch_kind:
        caps.die_l1[a[1], b[2]] *= f
    elif ka == "vpc" and kb == "vpc:fabric":
        caps.vpc_node[a[1]] *= f
    elif (ka, kb) in (("die", "vpc"), ("cpu", topo.family.switch_kind)):
        pass  # a die reaches its card through the host, and CPUs carry no die traffic
    else:
        topo.family.apply_link(caps, a, b, f)


def apply(topo: Any, caps: Caps, key: tuple, f: float, kill: bool) -> None:
    """Scale (factor f) or fail (f=0, kill=True) one element in ``caps`` in place."""
    kind = key[0]
    rng = die_range(topo, key)
    if kind == "rack" and rng is not None and rng[0] >= rng[1]:
        topo.family.apply_switch_rack(caps, key[1], f)  # a communication rack: its switches
    elif rng is not None:
        _apply_dies(topo, caps, key, rng, f, kill)
    elif kind == topo.family.switch_kind:
        n, k = key[1], key[2]
        caps.die_l1[n * topo.dies_per_node:(n + 1) * topo.dies_per_node, k] *= f
        topo.family.apply_element(caps, key, f)
    elif kind == "vpc":
        caps.vpc_node[key[1]] *= f
    elif kind == "vpc:fabric":
        caps.vpc_fabric *= f
    elif kind == "link":
        _apply_link(topo, caps, key[1], key[2], f)
    elif kind != "cpu":  # CPUs carry no die traffic in this model; kept for the graph view
        topo.family.apply_element(caps, key, f)


def _factor(element: str, f: Any) -> float:
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) \
            or not 0.0 <= f <= 1.0:
        raise XdsError(f"bandwidth factor for {element!r} must be a number in [0, 1] (got {f!r})",
                       where="factor")
    return float(f)


def degrade(topo: Any, failed: list[str] | tuple[str, ...] = (),
            factors: dict[str, float] | None = None) -> Degradation:
    """Fail ``failed`` elements and scale ``factors`` ones (see :meth:`Topology.degrade`)."""
    caps = topo.caps.copy()
    names_failed = []
    for i, el in enumerate(failed or ()):
        key = parse_key(topo, el, where=f"failed[{i}]")
        apply(topo, caps, key, 0.0, kill=True)
        names_failed.append(key_name(key))
    names_factors = {}
    for el, f in (factors or {}).items():
        key = parse_key(topo, el, where="factors")
        f = _factor(el, f)
        apply(topo, caps, key, f, kill=False)
        names_factors[key_name(key)] = f
    caps.freeze()
    return Degradation(topo, caps, names_failed, names_factors)


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

    topology: Any           # xds.topology.Topology
    caps: Caps
    failed: list[str]
    factors: dict[str, float]
    derived: Derived = field(init=False)

    def __post_init__(self) -> None:
        self.derived = derive(self.topology, self.caps)

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
        return self.caps.die_alive & self.topology.family.isolated(self.derived)

    def alltoall_gb_s(self, dies: Any, plane: str = "ub") -> float:
        """All-to-all per-die bandwidth (GB/s) of a die set on the degraded fabric (see Topology)."""
        return self.topology.alltoall_gb_s(dies, plane, degradation=self)

    def path(self, src: str, dst: str, plane: str = "ub") -> dict:
        """Path query on the degraded fabric (see :meth:`Topology.path`)."""
        return path(self.topology, self.caps, self.derived, src, dst, plane)

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
        return degraded_graph(self.topology, self.failed, self.factors)
