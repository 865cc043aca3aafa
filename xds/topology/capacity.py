"""Closed-form capacity tables of a cluster's fabrics and the all-to-all bandwidth they allow.

Queries are closed-form over per-tier capacity arrays (:class:`Caps`) rather than graph max-flows
because a Clos decomposes into independent sub-planes (see :mod:`xds.topology.path`). Bandwidths are
GB/s per direction. Planes named ``ub`` in the public API mean "the scale-up plane" (UB, or NVLink on
``rail-fat-tree``); ``rdma`` means the scale-out plane (RoCE, or InfiniBand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import XdsError

PLANES = ("ub", "rdma", "vpc", "d2d", "nvlink", "ib")


@dataclass
class Caps:
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

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.die_l1, self.l1_l2, self.d2d, self.so_link, self.so_up, self.vpc_node,
                self.die_alive)

    def copy(self) -> Caps:
        """A writable deep copy (the healthy tables are frozen and shared)."""
        return Caps(
            self.die_l1.copy(), self.l1_l2.copy(), self.d2d.copy(), self.so_link.copy(),
            float(self.so_fabric), self.so_up.copy(), self.vpc_node.copy(), float(self.vpc_fabric),
            self.die_alive.copy(),
        )

    def freeze(self) -> Caps:
        """Make every array read-only; returns self."""
        for arr in self._arrays():
            arr.setflags(write=False)
        return self


@dataclass
class Derived:
    """Per-die numbers derived from a :class:`Caps` (GB/s per direction)."""

    inject: np.ndarray      # scale-up injection (sum of the die's live scale-up links)
    cross: np.ndarray       # cloudmatrix: cross-node UB share; rail: = inject (NVLink stays in node)
    scale_out: np.ndarray   # RDMA / IB per die, including leaf-uplink limits
    die_l1_prefix: np.ndarray  # cumulative die_l1 over dies, shape (D+1, P): O(1) set sums
    cross_k: np.ndarray     # (D, P) cross-node share per node switch / sub-plane k; cross = sum


def healthy_caps(topo: Any) -> Caps:
    """The capacity tables of the intact cluster (the family fills its own switch tiers)."""
    spec, su = topo.spec, topo.spec.scale_up
    l1_l2, so_up = topo.family.tier_caps()
    d2d_bw = spec.d2d.gb_s if (spec.d2d is not None and topo.dies_per_chip > 1) else 0.0
    return Caps(
        die_l1=np.full((topo.n_dies, topo.n_l1), su.gb_s_per_die / topo.n_l1),
        l1_l2=l1_l2,
        d2d=np.full(topo.n_chips, d2d_bw),
        so_link=np.full(topo.n_dies, spec.scale_out.gb_s_per_die),
        so_fabric=1.0,
        so_up=so_up,
        vpc_node=np.full(topo.n_nodes, spec.vpc.gb_s_per_node),
        vpc_fabric=1.0,
        die_alive=np.ones(topo.n_dies, dtype=bool),
    )


def derive(topo: Any, caps: Caps) -> Derived:
    """Per-die injection / cross-node / scale-out bandwidth from tier capacities (vectorised)."""
    inject = caps.die_l1.sum(axis=1)
    cross_k, scale_out = topo.family.cross_and_scale_out(caps, inject)
    alive = caps.die_alive
    inject = np.where(alive, inject, 0.0)
    cross_k = np.where(alive[:, None], cross_k, 0.0)
    cross = cross_k.sum(axis=1)
    scale_out = np.where(alive, scale_out, 0.0)
    prefix = np.vstack([np.zeros((1, caps.die_l1.shape[1])), np.cumsum(caps.die_l1, axis=0)])
    for arr in (inject, cross, scale_out, prefix, cross_k):
        arr.setflags(write=False)
    return Derived(inject, cross, scale_out, prefix, cross_k)


def normalise_plane(topo: Any, plane: str, where: str = "--plane") -> str:
    """Normalise a plane name: 'ub'/'nvlink' -> scale-up, 'rdma'/'ib' -> scale-out (the family says
    which names its cluster accepts)."""
    p = str(plane).lower()
    allowed = topo.family.planes
    if p not in allowed:
        raise XdsError(f"unknown plane {plane!r} for cluster {topo.name!r} "
                       f"(allowed: {', '.join(allowed)})", where=where)
    return allowed[p]


def dies_arg(topo: Any, dies: Any, where: str = "dies") -> np.ndarray:
    """Validate a die set (ids, or a boolean mask over all dies) into a flat int array."""
    arr = np.asarray(dies)
    if arr.dtype == bool and arr.shape == (topo.n_dies,):
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
    if arr.min() < 0 or arr.max() >= topo.n_dies:
        bad = int(arr[(arr < 0) | (arr >= topo.n_dies)][0])
        raise XdsError(f"die {bad} out of range 0..{topo.n_dies - 1} for cluster {topo.name!r}",
                       where=where)
    return arr


def alltoall(topo: Any, caps: Caps, der: Derived, dies: np.ndarray, plane: str,
             cap: np.ndarray | None) -> float:
    """Per-die all-to-all bandwidth (GB/s) of a validated die set on a normalised plane: the slowest
    die's rate (see :meth:`xds.topology.Topology.alltoall_gb_s`)."""
    dies = np.unique(dies)
    nodes = topo.die_node[dies]
    m = np.bincount(nodes, minlength=topo.n_nodes)[nodes].astype(float)   # set dies in my node
    total = float(dies.size)
    f_remote = (total - m) / (total - 1) if total > 1 else np.zeros_like(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        if plane == "ub":
            rate = topo.family.ub_alltoall_rate(caps, der, dies, f_remote)
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
