"""The adapter from a cluster's topology to the cost model's :class:`~.layout.Fabric`: which
cluster a hardware defaults to, and what all-to-all bandwidth (GB/s per die) an EP group gets."""

from __future__ import annotations

import numpy as np

from ..spec.hardware import HardwareSpec
from ..topology import build_topology
from .layout import Fabric


def default_cluster(hw: HardwareSpec) -> str:
    """``cloudmatrix384`` for Ascend, ``h800-ib`` for NVIDIA (DESIGN.md §3.3)."""
    return "cloudmatrix384" if hw.vendor == "huawei" else "h800-ib"


def fabric_for(cluster: str, hw: HardwareSpec, dies: int) -> Fabric:
    """Per-die all-to-all bandwidth for an EP group of ``dies`` dies on ``cluster``: the topology's
    aggregate all-to-all bandwidth of the first ``dies`` dies. ``hw`` is not used (kept for the
    callers' signature).

    CloudMatrix384's UB spans every node, so EP stays on the scale-up plane at any size, while on an
    NVLink-island cluster an EP group wider than one node crosses the scale-out (IB) fabric.
    """
    topo = build_topology(cluster)
    n = min(dies, topo.n_dies)
    ids = np.arange(n)
    gb_s = float(topo.alltoall_gb_s(ids, plane="ub"))
    spans_nodes = len(np.unique(topo.die_node[ids])) > 1
    plane = "scale_out" if spans_nodes and not topo.family.ub_spans_nodes else "scale_up"
    return Fabric(gb_s=gb_s, plane=plane)
