"""A built cluster (:class:`Topology`) and :func:`build_topology`, which builds and caches it.

A Topology holds the counts and failure-domain arrays every family shares, its family object
(``family``: the cluster's wiring, see :mod:`xds.topology.builders`), the healthy capacity tables
(``caps``, ``derived``) and, on first use, the networkx ``graph``. Bandwidths are GB/s per direction,
latencies µs.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ..spec.cluster import ClusterSpec, load_cluster
from .builders.registry import FAMILIES
from .capacity import alltoall, derive, dies_arg, healthy_caps, normalise_plane
from .degrade import Degradation, degrade
from .domains import die_range, domain
from .fleet import fleet_summary
from .graph import build_graph, export
from .names import key_name, parse_key
from .path import path


class Topology:
    """A built cluster. Counts: ``n_dies, n_chips, n_nodes, n_cpus, n_racks``, ``n_l1`` (scale-up
    switches per node); failure-domain arrays ``die_chip``, ``die_node``, ``die_rack``,
    ``die_local`` (index inside the node) (int, indexed by global die id)."""

    def __init__(self, spec: ClusterSpec):
        self.spec = spec
        self.name = spec.name
        self.builder = spec.builder
        self.n_nodes = spec.nodes
        self.n_pods = spec.pods                # identical pods in the fleet (tables are per pod)
        self.chips_per_node = spec.chips_per_node
        self.dies_per_chip = spec.dies_per_chip
        self.dies_per_node = spec.dies_per_node
        self.n_chips = spec.chips
        self.n_dies = spec.dies
        self.n_cpus = spec.nodes * spec.cpus_per_node
        self.n_compute_racks = spec.compute_racks
        self.n_racks = spec.racks
        self.n_l1 = spec.scale_up.l1_per_node  # per node (L1 UB chips or NVSwitch chips)
        d = np.arange(self.n_dies)
        self.die_chip = d // self.dies_per_chip
        self.die_node = self.die_chip // self.chips_per_node
        self.die_rack = self.die_node // spec.nodes_per_rack
        self.die_local = d % self.dies_per_node  # index of the die inside its node (= rail on HGX)
        for arr in (self.die_chip, self.die_node, self.die_rack, self.die_local):
            arr.setflags(write=False)
        self.family = FAMILIES[spec.builder](self)
        self.caps = healthy_caps(self).freeze()
        self.derived = derive(self, self.caps)

    # ------------------------------------------------------------------ names and domains
    def parse_target(self, text: str, *, where: str = "target") -> str:
        """Validate an element name and return its canonical form (``die:17``, ``l2:3/12``,
        ``link:node:5-l2:3/12`` ...). Bad names raise :class:`XdsError` listing the valid ranges."""
        return key_name(parse_key(self, text, where))

    def dies_in(self, element: str) -> np.ndarray:
        """Global die ids inside a die / chip / node / rack (empty for switches, links, cards)."""
        r = die_range(self, parse_key(self, element))
        return np.arange(0) if r is None else np.arange(r[0], r[1])

    def failure_domain(self, element: str) -> dict:
        """Containing domains of an element: ``{die, chip, node, rack}`` as applicable, plus
        ``sub_plane`` / ``switch`` / ``rail`` for switches and ``ends`` for links."""
        return domain(self, parse_key(self, element))

    # ------------------------------------------------------------------ queries
    def degrade(self, failed: list[str] | tuple[str, ...] = (),
                factors: dict[str, float] | None = None) -> Degradation:
        """Fail elements (die/chip/node/rack/switch/link/card) and scale others' bandwidth by a factor.

        ``failed``: element names; ``factors``: ``{element: factor}`` with 0 <= factor <= 1 (e.g. a
        ``link_degraded`` event). Returns a :class:`Degradation` with NEW per-die numbers.
        """
        return degrade(self, failed, factors)

    def alltoall_gb_s(self, dies: Any, plane: str = "ub", ub_gb_s_per_die: np.ndarray | None = None,
                      degradation: Degradation | None = None) -> float:
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
        return alltoall(self, caps, der, dies_arg(self, dies), normalise_plane(self, plane),
                        ub_gb_s_per_die)

    def latency_us(self, src_die: Any, dst_die: Any, plane: str = "ub") -> np.ndarray | float:
        """One-way small-message latency in µs between dies (vectorised; broadcasts like NumPy).

        ``ub``: intra-node vs inter-node UB (CMv2 Table 1); on ``rail-fat-tree`` cross-node pairs use
        the IB latency (the path dispatch takes). Same die -> 0.
        """
        p = normalise_plane(self, plane)
        s = dies_arg(self, np.atleast_1d(src_die), "src_die")
        t = dies_arg(self, np.atleast_1d(dst_die), "dst_die")
        s, t = s.reshape(np.shape(src_die)), t.reshape(np.shape(dst_die))
        spec = self.spec
        if p == "ub":
            lat = np.where(self.die_node[s] == self.die_node[t], spec.scale_up.latency_intra_node_us,
                           self.family.inter_node_latency_us())
        elif p == "d2d":
            d2d_lat = spec.d2d.latency_us if spec.d2d else np.nan
            lat = np.where(self.die_chip[s] == self.die_chip[t], d2d_lat, np.nan)
        elif p == "rdma":
            lat = np.full(np.broadcast(s, t).shape, spec.scale_out.latency_us)
        else:
            lat = np.full(np.broadcast(s, t).shape, spec.vpc.latency_us)
        lat = np.where(s == t, 0.0, lat)
        return float(lat) if lat.ndim == 0 else lat

    def path(self, src: str, dst: str, plane: str = "ub") -> dict:
        """Bandwidth (GB/s, max-flow over the plane), latency (µs) and one shortest path (hops)
        between two dies / chips / nodes (a chip or node is the aggregate of its dies)."""
        return path(self, self.caps, self.derived, src, dst, plane)

    # ------------------------------------------------------------------ views
    def summary(self) -> dict:
        """Counts and headline numbers. Bandwidths in GB/s per direction (keys end ``_gb_s``),
        latencies in µs (``_us``). On ``rail-fat-tree`` the ``ub_*`` keys describe NVLink
        (``switches.ub_l1`` = NVSwitch chips, ``ub_l2`` = 0, ``node_ub_uplink_gb_s`` = 0 because
        NVLink does not leave the node) and the IB tiers are ``switches.ib_leaf`` / ``ib_spine``."""
        spec, su = self.spec, self.spec.scale_up
        inj = float(self.derived.inject[0])
        rdma = float(self.derived.scale_out[0])
        doc: dict[str, Any] = {
            "cluster": self.name, "builder": self.builder, "hardware": spec.hardware,
            "chips": self.n_chips, "dies": self.n_dies, "nodes": self.n_nodes, "cpus": self.n_cpus,
            "racks": self.n_racks, "compute_racks": self.n_compute_racks,
            "dies_per_chip": self.dies_per_chip, "chips_per_node": self.chips_per_node,
            **self.family.summary_switches(),
            "scale_up_plane": su.plane,
            "ub_gb_s_per_die": inj,
            "ub_gb_s_per_chip": inj * self.dies_per_chip,
            **self.family.summary_scale_up(self.caps, inj),
            "d2d_gb_s": float(self.caps.d2d[0]) if self.dies_per_chip > 1 else 0.0,
            "scale_out_plane": spec.scale_out.plane,
            "rdma_gb_s_per_die": rdma,
            "rdma_gb_s_per_chip": rdma * self.dies_per_chip,
            "rdma_gb_s_per_node": rdma * self.dies_per_node,
            "vpc_gb_s_per_node": spec.vpc.gb_s_per_node,
            "alltoall_gb_s_per_die": self.alltoall_gb_s(np.arange(self.n_dies)),
            "ub_latency_intra_node_us": su.latency_intra_node_us,
        }
        if su.latency_inter_node_us is not None:
            doc["ub_latency_inter_node_us"] = su.latency_inter_node_us
        if spec.d2d is not None and self.dies_per_chip > 1:
            doc["d2d_latency_us"] = spec.d2d.latency_us
        doc["rdma_latency_us"] = spec.scale_out.latency_us
        doc["vpc_latency_us"] = spec.vpc.latency_us
        if self.n_pods > 1:
            doc["fleet"] = fleet_summary(self)
        return doc

    @cached_property
    def graph(self) -> nx.Graph:
        """The networkx graph (built on first use; treat as read-only)."""
        return build_graph(self)

    def export(self, path: str | Path) -> Path:
        """Write the graph as ``.graphml`` or node-link ``.json``, atomically. Returns the path."""
        return export(self.graph, path)


@lru_cache(maxsize=32)
def _build_cached(spec_json: str) -> Topology:
    return Topology(ClusterSpec.model_validate_json(spec_json))


def build_topology(cluster: ClusterSpec | str = "cloudmatrix384", nodes: int | None = None) -> Topology:
    """Build (or fetch from cache) the topology of a cluster, optionally resized to ``nodes``."""
    spec = load_cluster(cluster).with_nodes(nodes)
    return _build_cached(spec.model_dump_json())
