"""Cluster spec: how many nodes / chips / dies a cluster has and how its fabrics are wired.

Built-ins live in ``xds/data/clusters/*.yaml``; a user may pass a path to a YAML file of the same
shape. Two builders (topology families, :mod:`xds.topology.builders`) exist:

* ``cloudmatrix``: Huawei CloudMatrix384. The scale-up plane (UB) is a two-tier Clos: every node
  has ``l1_per_node`` L1 switch chips; L1 chip *k* of every node uplinks only to sub-plane *k*, which
  has ``l2_per_sub_plane`` L2 switches; every die has one link to each L1 chip of its node. RDMA is
  a separate non-blocking plane (one logical fabric); VPC leaves each node through one card.
* ``rail-fat-tree``: NVIDIA HGX-style nodes. The scale-up plane (NVLink) ends at the node:
  every GPU links to the ``l1_per_node`` NVSwitch chips of its node. The scale-out plane
  (InfiniBand) is rail-optimised: GPU *k* of every node sits on rail *k*'s leaf switch(es), and the
  leaves reach non-blocking spines.

Units: bandwidths in GB/s (1e9 bytes/s) per direction, latencies in µs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from ..errors import XdsError
from .builtins import resolve
from .yamlio import Strict, load_yaml, validate


def _cloudmatrix_rules(spec: "ClusterSpec") -> None:
    su = spec.scale_up
    if su.plane != "ub":
        raise ValueError("builder 'cloudmatrix' needs scale_up.plane: ub")
    if su.l2_per_sub_plane < 1 or su.link_gb_s <= 0 or su.latency_inter_node_us is None:
        raise ValueError(
            "builder 'cloudmatrix' needs scale_up.l2_per_sub_plane >= 1, scale_up.link_gb_s > 0 "
            "and scale_up.latency_inter_node_us"
        )
    if su.l2_ports and spec.nodes > su.l2_ports:
        raise ValueError(
            f"nodes={spec.nodes} exceeds scale_up.l2_ports={su.l2_ports} (one L2 port per node)"
        )
    if spec.scale_out.plane != "rdma":
        raise ValueError("builder 'cloudmatrix' needs scale_out.plane: rdma")


def _rail_fat_tree_rules(spec: "ClusterSpec") -> None:
    su = spec.scale_up
    if su.plane != "nvlink" or su.l2_per_sub_plane != 0:
        raise ValueError("builder 'rail-fat-tree' needs scale_up.plane: nvlink and no L2 tier")
    if spec.scale_out.plane != "ib" or spec.scale_out.leaf_ports < 2:
        raise ValueError("builder 'rail-fat-tree' needs scale_out.plane: ib and leaf_ports >= 2")


# What each builder (topology family, xds.topology.builders) requires of a spec; one entry per Builder.
BUILDER_RULES = {"cloudmatrix": _cloudmatrix_rules, "rail-fat-tree": _rail_fat_tree_rules}

# The topology families (xds.topology.builders) by their builder name: a new family adds its rules
# here, and the schema's allowed names follow.
Builder = Literal[tuple(BUILDER_RULES)]

# Size caps: far above any real SuperPod, low enough that the topology arrays fit in memory.
MAX_DIES = 1_000_000
MAX_SWITCH_PORTS = 50_000_000  # nodes x L1 chips x L2 switches (the L1-L2 link array)


class ScaleUpSpec(Strict):
    """The scale-up plane (UB on CloudMatrix, NVLink on HGX nodes)."""

    plane: Literal["ub", "nvlink"]
    gb_s_per_die: PositiveFloat = Field(description="unidirectional scale-up bandwidth of one die")
    l1_per_node: PositiveInt = Field(description="L1 UB switch chips (or NVSwitch chips) per node")
    l2_per_sub_plane: int = Field(0, ge=0, description="L2 switches per sub-plane; 0 = ends at the node")
    l2_ports: int = Field(0, ge=0, description="ports of one L2 switch (one per node) = node limit")
    link_gb_s: float = Field(0.0, ge=0, description="one L1-L2 link, per direction")
    cpu_gb_s: float = Field(0.0, ge=0, description="scale-up bandwidth of one CPU socket")
    latency_intra_node_us: PositiveFloat = Field(description="die-to-die latency inside a node")
    latency_inter_node_us: PositiveFloat | None = Field(None, description="across nodes (two-tier)")


class D2DSpec(Strict):
    """On-package die-to-die link of a multi-die chip."""

    gb_s: float = Field(ge=0, description="per direction")
    latency_us: PositiveFloat


class ScaleOutSpec(Strict):
    """The scale-out plane (RoCE RDMA on CloudMatrix, InfiniBand on HGX clusters)."""

    plane: Literal["rdma", "ib"]
    gb_s_per_die: PositiveFloat
    latency_us: PositiveFloat
    leaf_ports: int = Field(0, ge=0, description="rail-fat-tree: ports of one leaf/spine switch")


class VpcSpec(Strict):
    """The front-end / VPC plane: one egress card per node."""

    gb_s_per_node: PositiveFloat
    latency_us: PositiveFloat


class ClusterSpec(Strict):
    """One cluster. ``nodes`` may be overridden by a plan (``build_topology(..., nodes=N)``).

    A fleet is ``pods`` identical pods of this type (``nodes`` is per pod): each pod is one scale-up
    (UB) domain; pods are joined only by the scale-out (RDMA) and VPC planes, at the same per-die
    scale-out bandwidth as inside a pod (CMv2 §3.2: the RDMA plane is a separate non-blocking
    RoCE fabric, 200 Gbps per die, that also connects SuperPods)."""

    name: str
    description: str = ""
    builder: Builder
    hardware: str = Field(description="default hardware spec name (xds/data/hardware)")
    nodes: PositiveInt
    pods: PositiveInt = Field(1, le=10_000, description="identical pods in the fleet; nodes is per pod")
    chips_per_node: PositiveInt
    dies_per_chip: PositiveInt
    cpus_per_node: int = Field(ge=0)
    nodes_per_rack: PositiveInt
    switch_racks: int = Field(0, ge=0, description="racks holding only switches (no compute)")
    scale_up: ScaleUpSpec
    d2d: D2DSpec | None = None
    scale_out: ScaleOutSpec
    vpc: VpcSpec

    @model_validator(mode="after")
    def _check_builder(self) -> "ClusterSpec":
        su = self.scale_up
        _check_size(self.nodes, self.dies_per_node, su.l1_per_node, su.l2_per_sub_plane, ValueError)
        BUILDER_RULES[self.builder](self)
        if self.dies_per_chip > 1 and self.d2d is None:
            raise ValueError(f"dies_per_chip={self.dies_per_chip} needs a d2d: block")
        return self

    # ---- derived counts -------------------------------------------------------------------------
    @property
    def chips(self) -> int:
        return self.nodes * self.chips_per_node

    @property
    def dies(self) -> int:
        return self.chips * self.dies_per_chip

    @property
    def dies_per_node(self) -> int:
        return self.chips_per_node * self.dies_per_chip

    @property
    def compute_racks(self) -> int:
        return math.ceil(self.nodes / self.nodes_per_rack)

    @property
    def racks(self) -> int:
        return self.compute_racks + self.switch_racks

    def with_nodes(self, nodes: int | None) -> "ClusterSpec":
        """Return a copy sized to ``nodes`` (validated: a positive integer within the fabric's reach)."""
        if nodes is None or nodes == self.nodes:
            return self
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise XdsError(f"nodes must be a positive integer (got {nodes!r})", where="--nodes")
        su = self.scale_up
        if su.l2_per_sub_plane and su.l2_ports and nodes > su.l2_ports:
            raise XdsError(
                f"cluster {self.name!r} holds at most {su.l2_ports} nodes (one L2 port per node); "
                f"got nodes={nodes} (for more, describe a fleet: a cluster file with pods: N of this pod)",
                where="nodes",
            )
        _check_size(nodes, self.dies_per_node, su.l1_per_node, su.l2_per_sub_plane,
                    lambda m: XdsError(m, where="nodes"))
        return self.model_copy(update={"nodes": nodes})


def _check_size(nodes: int, dies_per_node: int, l1: int, l2: int, err) -> None:
    if nodes * dies_per_node > MAX_DIES:
        raise err(f"{nodes:,} nodes x {dies_per_node:,} dies = {nodes * dies_per_node:.3g} dies; "
                  f"at most {MAX_DIES:,} are supported")
    if nodes * l1 * max(l2, 1) > MAX_SWITCH_PORTS:
        raise err(f"nodes x l1_per_node x l2_per_sub_plane = {nodes * l1 * max(l2, 1):.3g}; "
                  f"at most {MAX_SWITCH_PORTS:,} are supported")


@lru_cache(maxsize=64)
def _load(path: str) -> ClusterSpec:
    data = load_yaml(path, what="cluster spec")
    return validate(ClusterSpec, data, file=path)


def load_cluster(name_or_path: str | ClusterSpec) -> ClusterSpec:
    """Load a built-in cluster spec by name (``cloudmatrix384``, ``h800-ib``) or from a YAML file."""
    if isinstance(name_or_path, ClusterSpec):
        return name_or_path
    path, _ = resolve("clusters", str(name_or_path), label="cluster")
    return _load(str(path))
