"""The interface of a topology family (one class per family in this folder, registered in
:mod:`.registry`).

Every family shares dies grouped into chips, chips into nodes, nodes into racks, CPUs, the d2d link of
a multi-die chip, a layer of scale-up switches inside each node (``die_l1``: every die has one link
to each switch of its node) and one VPC card per node. A family says how the rest is wired: what
the node switches reach beyond the node, the scale-out plane, and which element names exist. Shared
code (names, capacity, path, degrade, graph, the Topology) calls only the methods below, so a new
family is one new file here plus its registration. Bandwidths are GB/s per direction, latencies µs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..capacity import Caps, Derived
from ..names import element_name


class Family(ABC):
    """One topology family, bound to one built cluster (``self.topo``, an
    :class:`xds.topology.Topology` whose common counts and die arrays are already set)."""

    #: the ``builder:`` value of the cluster spec that selects this family
    name: ClassVar[str]
    #: element kind of a node's scale-up switch (``l1:N/K`` or ``nvsw:N/J``) ...
    switch_kind: ClassVar[str]
    #: every switch element kind of the family (a ``switch_down`` / glitch target)
    switch_kinds: ClassVar[tuple[str, ...]]
    #: ... and the graph / failure-domain attribute naming its index inside the node
    switch_index: ClassVar[str]
    #: accepted plane names -> the normalised plane (ub | rdma | vpc | d2d), in help order
    planes: ClassVar[dict[str, str]]
    #: link tier of the family's element kinds: a link key names the lower tier first
    link_tiers: ClassVar[dict[str, int]]
    #: why an element kind other families have is absent here (appended to the error)
    absent_hints: ClassVar[dict[str, str]] = {}
    #: the scale-up plane reaches every node (UB Clos), not only the dies of one node (NVLink)
    ub_spans_nodes: ClassVar[bool]

    def __init__(self, topo: Any):
        self.topo = topo
        #: family element kinds -> (index limit, what the index counts) per index
        self.elements: dict[str, tuple[tuple[int, str], ...]] = {}

    # ---- names ------------------------------------------------------------------------------------
    @abstractmethod
    def ranges_text(self) -> str:
        """The valid names of the family's elements and links, for error messages."""

    @abstractmethod
    def link_ends(self, a: tuple, b: tuple) -> tuple[tuple, tuple] | None:
        """Canonical ends of a family link between element keys a (lower tier) and b, or None if
        they are not adjacent."""

    def link_edge(self, key: tuple) -> tuple[str, str]:
        """The graph edge (u, v) of a link key."""
        return element_name(key[1]), element_name(key[2])

    def domain(self, key: tuple) -> dict:
        """Failure-domain fields of a family element other than the node switch."""
        return {}

    # ---- capacities -------------------------------------------------------------------------------
    @abstractmethod
    def tier_caps(self) -> tuple[np.ndarray, np.ndarray]:
        """Healthy ``(l1_l2, so_up)`` capacity arrays (see :class:`Caps`)."""

    @abstractmethod
    def cross_and_scale_out(self, caps: Caps, inject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-die cross-node scale-up share per node switch / sub-plane k (shape (D, P)) and
        per-die scale-out bandwidth, given per-die injection."""

    @abstractmethod
    def ub_alltoall_rate(self, caps: Caps, der: Derived, dies: np.ndarray,
                         f_remote: np.ndarray) -> np.ndarray:
        """Per-die scale-up all-to-all rate of a die set whose dies send ``f_remote`` of their
        traffic to other nodes (called under ``np.errstate``: divisions by zero give inf)."""

    @abstractmethod
    def remote_ub_flows(self, caps: Caps, ab: np.ndarray, a_node: int, b_node: int) -> tuple:
        """Scale-up max-flow per switch k between two nodes (``ab[k]``: what both endpoint sets
        reach switch k with) and the latency (µs); raise if the plane does not span nodes."""

    def ub_switch_hops(self, caps: Caps, a_node: int, b_node: int, k: int) -> list[str]:
        """The switch hops of a scale-up path through node switch (sub-plane) k."""
        return [f"{self.switch_kind}:{a_node}/{k}"]

    @abstractmethod
    def scale_out_path(self, caps: Caps, der: Derived, s: tuple[int, int],
                       t: tuple[int, int]) -> tuple[float, list[str]]:
        """Scale-out (bandwidth, hops) between die ranges ``[s0, s1)`` and ``[t0, t1)``."""

    @abstractmethod
    def inter_node_latency_us(self) -> float:
        """Latency (µs) of a small message between dies of two nodes on the ``ub`` plane."""

    @abstractmethod
    def isolated(self, der: Derived) -> np.ndarray:
        """Per-die mask: unable to reach other dies (whether alive or not)."""

    # ---- failures ---------------------------------------------------------------------------------
    @abstractmethod
    def apply_element(self, caps: Caps, key: tuple, f: float) -> None:
        """Scale by f the capacities a family element carries; for the node switch, only what it
        carries beyond its die links (the shared code scales those)."""

    @abstractmethod
    def apply_link(self, caps: Caps, a: tuple, b: tuple, f: float) -> None:
        """Scale by f a family link (ends as returned by :meth:`link_ends`)."""

    def apply_switch_rack(self, caps: Caps, rack: int, f: float) -> None:
        """Scale by f the switches of a communication rack (one without compute nodes)."""

    def rack_switches(self, rack: int) -> list[str]:
        """Graph vertices of the switches in a communication rack."""
        return []

    @abstractmethod
    def random_switch(self, rng: np.random.Generator) -> str:
        """Name of the fabric switch a random switch fault hits (draws from ``rng``)."""

    @abstractmethod
    def random_link(self, node: int, rng: np.random.Generator) -> str:
        """Name of the element a random link fault at ``node`` takes down (draws from ``rng``)."""

    # ---- views ------------------------------------------------------------------------------------
    @abstractmethod
    def summary_switches(self) -> dict:
        """Summary keys describing the switch counts (``switches`` first)."""

    @abstractmethod
    def summary_scale_up(self, caps: Caps, inject: float) -> dict:
        """Summary keys after the per-die scale-up figures (``node_ub_uplink_gb_s`` first);
        ``inject`` is one healthy die's scale-up bandwidth."""

    @abstractmethod
    def add_fabric(self, nodes_v: list, edges: list) -> None:
        """Append the family's switch tiers and scale-out plane to the graph's vertex / edge lists."""
