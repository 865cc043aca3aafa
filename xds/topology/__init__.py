"""Interconnect topology of a cluster: a networkx graph plus cached NumPy capacity tables.

``build_topology(cluster, nodes)`` returns a :class:`Topology`; ``Topology.degrade`` a
:class:`Degradation`. Modules: ``names`` (element grammar), ``domains`` (failure domains),
``capacity`` (closed-form tables, all-to-all), ``path`` (path queries), ``degrade`` (what a failure
costs), ``graph`` (networkx view and export), ``builders/`` (one class per topology family:
``cloudmatrix``, ``rail-fat-tree``) and ``core`` (Topology, build_topology).
"""

from .capacity import PLANES
from .core import Topology, build_topology
from .degrade import Degradation
from .fleet import fleet_summary, parse_pod

__all__ = ["PLANES", "Degradation", "Topology", "build_topology", "fleet_summary", "parse_pod"]
