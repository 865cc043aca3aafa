"""The adapter from a cluster's topology to the cost model's :class:`~.layout.Fabric`: which
cluster a hardware defaults to, and what all-to-all bandwidth (GB/s per die) an EP group gets."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec.hardware import HardwareSpec
from ..topology import build_topology
from .layout import Fabric


def default_cluster(hw: HardwareSpec) -> str:
    """``cloudmatrix384`` for Ascend, ``h800-ib`` for NVIDIA (DESIGN.md §3.3)."""
    return "cloudmatrix384" if hw.vendor == "huawei" else "h800-ib"


def fabric_for(cluster: str, hw: HardwareSpec, dies: int) -> Fabric:
    """The fabric of an EP group of the first ``dies`` dies on ``cluster`` (see :func:`fabric_on`).
    ``hw`` is not used (kept for the callers' signature)."""
    topo = build_topology(cluster)
    return fabric_on(topo, np.arange(min(dies, topo.n_dies)))


def fabric_on(topo: Any, ids: Any, degradation: Any = None) -> Fabric:
    """The fabric of an EP group of the dies ``ids`` (global die ids) of a built topology
    (optionally on a ``degradation`` of it; the synchronous all-to-all runs at its slowest die's
    rate).

    CloudMatrix384's UB spans every node, so EP stays on the scale-up plane at any size (the
    topology's UB all-to-all rate). On an NVLink-island cluster an EP group wider than one node
    crosses the scale-out (IB) fabric for its peers on other nodes and reaches the peers on its
    own node over NVLink (reference §G, DeepEP low-latency kernels): ``gb_s`` is then the IB rate
    per die, ``local_fraction`` = dies of the group on the first die's node / group size and
    ``local_gb_s`` the slowest die's own NVLink rate.
    """
    ids = np.asarray(ids, dtype=int)
    n = ids.size
    nodes = topo.die_node[ids]
    if len(np.unique(nodes)) == 1 or topo.family.ub_spans_nodes:
        return Fabric(gb_s=float(topo.alltoall_gb_s(ids, plane="ub", degradation=degradation)),
                      plane="scale_up")
    rdma = float(topo.alltoall_gb_s(ids, plane="rdma", degradation=degradation))
    der = topo.derived if degradation is None else degradation.derived
    local = float(np.count_nonzero(nodes == nodes[0])) / n
    return Fabric(gb_s=rdma, plane="scale_out", local_fraction=local,
                  local_gb_s=float(np.min(der.inject[ids])))
