"""The networkx view of a cluster, for export (GraphML / node-link JSON) and verification.

Vertices carry ``kind`` and their failure domain (``die``, ``chip``, ``node``, ``rack``). Every fabric
edge carries ``plane`` (ub | nvlink | d2d | rdma | ib | vpc), ``bandwidth_gb_s`` (GB/s per
direction) and ``latency_us`` (µs; per-hop shares chosen so that shortest paths add up to the
measured end-to-end latencies). Containment edges (rack-node-chip-die, node-cpu) have
``plane="contains"`` and no bandwidth. The family adds its switch tiers (builders/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import XdsError
from ..spec.fileio import atomic_path
from .domains import die_range
from .names import key_name, parse_key

# networkx copies attribute dicts into each edge, so edges may share one literal
CONTAINS = {"plane": "contains", "bandwidth_gb_s": 0.0, "latency_us": 0.0}


def _hosts(topo: Any, nodes_v: list, edges: list) -> None:
    """Racks, nodes, VPC cards, chips, dies, d2d links and CPUs."""
    spec = topo.spec
    npr = spec.nodes_per_rack
    vpc = {"plane": "vpc", "bandwidth_gb_s": spec.vpc.gb_s_per_node}
    for r in range(topo.n_racks):
        nodes_v.append((f"rack:{r}", {"kind": "rack", "rack": r,
                                      "compute": bool(r < topo.n_compute_racks)}))
    for n in range(topo.n_nodes):
        nodes_v.append((f"node:{n}", {"kind": "node", "node": n, "rack": n // npr}))
        edges.append((f"rack:{n // npr}", f"node:{n}", CONTAINS))
        nodes_v.append((f"vpc:{n}", {"kind": "vpc", "node": n, "rack": n // npr}))
        edges.append((f"vpc:{n}", "vpc:fabric", {**vpc, "latency_us": spec.vpc.latency_us / 2}))
    nodes_v.append(("vpc:fabric", {"kind": "vpc_fabric"}))
    for c in range(topo.n_chips):
        n = c // topo.chips_per_node
        nodes_v.append((f"chip:{c}", {"kind": "chip", "chip": c, "node": n, "rack": n // npr}))
        edges.append((f"node:{n}", f"chip:{c}", CONTAINS))
    for d in range(topo.n_dies):
        c, n = int(topo.die_chip[d]), int(topo.die_node[d])
        nodes_v.append((f"die:{d}", {"kind": "die", "die": d, "chip": c, "node": n, "rack": n // npr}))
        edges.append((f"chip:{c}", f"die:{d}", CONTAINS))
        # a die reaches its node's VPC card through the host; the card is the bottleneck
        edges.append((f"die:{d}", f"vpc:{n}", {**vpc, "latency_us": 0.0}))
    if topo.dies_per_chip == 2 and spec.d2d is not None:
        for c in range(topo.n_chips):
            edges.append((f"die:{2 * c}", f"die:{2 * c + 1}",
                          {"plane": "d2d", "bandwidth_gb_s": spec.d2d.gb_s,
                           "latency_us": spec.d2d.latency_us}))
    for i in range(topo.n_cpus):
        n = i // spec.cpus_per_node
        nodes_v.append((f"cpu:{i}", {"kind": "cpu", "cpu": i, "node": n, "rack": n // npr}))
        edges.append((f"node:{n}", f"cpu:{i}", CONTAINS))


def _node_switches(topo: Any, nodes_v: list, edges: list) -> None:
    """Each node's scale-up switches (L1 UB chips / NVSwitches) and the die and CPU links to them."""
    spec, su = topo.spec, topo.spec.scale_up
    sw, index = topo.family.switch_kind, topo.family.switch_index
    npr, cpn = spec.nodes_per_rack, spec.cpus_per_node
    half_intra = su.latency_intra_node_us / 2  # die -> switch -> die adds up to the intra latency
    die_link = {"plane": su.plane, "bandwidth_gb_s": su.gb_s_per_die / topo.n_l1,
                "latency_us": half_intra}
    cpu_link = {"plane": su.plane, "bandwidth_gb_s": su.cpu_gb_s / topo.n_l1, "latency_us": half_intra}
    for n in range(topo.n_nodes):
        for k in range(topo.n_l1):
            nodes_v.append((f"{sw}:{n}/{k}", {"kind": sw, "node": n, "rack": n // npr, index: k}))
            for d in range(n * topo.dies_per_node, (n + 1) * topo.dies_per_node):
                edges.append((f"die:{d}", f"{sw}:{n}/{k}", die_link))
            if su.cpu_gb_s > 0:
                for i in range(n * cpn, (n + 1) * cpn):
                    edges.append((f"cpu:{i}", f"{sw}:{n}/{k}", cpu_link))


def build_graph(topo: Any) -> nx.Graph:
    """The healthy cluster as a networkx graph (see the module docstring for the attributes)."""
    g = nx.Graph(name=topo.name, builder=topo.builder)
    nodes_v: list = []
    edges: list = []
    _hosts(topo, nodes_v, edges)
    _node_switches(topo, nodes_v, edges)
    topo.family.add_fabric(nodes_v, edges)
    g.add_nodes_from(nodes_v)
    g.add_edges_from(edges)
    return g


def element_vertices(topo: Any, key: tuple) -> list[str]:
    """Graph vertices that disappear when element ``key`` fails (links handled separately)."""
    kind = key[0]
    rng = die_range(topo, key)
    if kind == "rack" and rng is not None and rng[0] >= rng[1]:
        return topo.family.rack_switches(key[1])
    if rng is None:
        return [key_name(key)]
    out = [f"die:{d}" for d in range(*rng)]
    if kind in ("node", "rack"):
        nodes = sorted({int(x) for x in topo.die_node[rng[0]:rng[1]]})
        sw, cpn = topo.family.switch_kind, topo.spec.cpus_per_node
        for n in nodes:
            out += [f"{sw}:{n}/{k}" for k in range(topo.n_l1)]
            out += [f"cpu:{i}" for i in range(n * cpn, (n + 1) * cpn)]
            out.append(f"vpc:{n}")
    return out


def degraded_graph(topo: Any, failed: list[str], factors: dict[str, float]) -> nx.Graph:
    """A copy of ``topo.graph`` without the ``failed`` elements and with fabric edges touching a
    ``factors`` element scaled by its factor."""
    g = topo.graph.copy()
    for el in failed:
        key = parse_key(topo, el)
        if key[0] == "link":
            u, v = topo.family.link_edge(key)
            if g.has_edge(u, v):
                g.remove_edge(u, v)
        else:
            g.remove_nodes_from(element_vertices(topo, key))
    for el, f in factors.items():
        key = parse_key(topo, el)
        if key[0] == "link":
            u, v = topo.family.link_edge(key)
            pairs = [(u, v)] if g.has_edge(u, v) else []
        else:
            verts = [x for x in element_vertices(topo, key) if x in g]
            pairs = list(g.edges(verts))
        for u, v in pairs:
            data = g.edges[u, v]
            if data["plane"] != "contains":
                data["bandwidth_gb_s"] = data["bandwidth_gb_s"] * f
    return g


def export(graph: nx.Graph, path: str | Path) -> Path:
    """Write ``graph`` as ``.graphml`` or node-link ``.json``, atomically. Returns the path."""
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
