"""Topology: counts and bandwidths from the published CloudMatrix384 structure (reference §A), the
closed-form path bandwidth checked against networkx max-flow, degradation physics, h800-ib, CLI."""

from __future__ import annotations

import json
from typing import get_args

import networkx as nx
import numpy as np
import pytest

from xds.errors import XdsError
from xds.spec.cluster import BUILDER_RULES, Builder, load_cluster
from xds.topology import build_topology
from xds.topology.builders import FAMILIES, CloudMatrix, Family, RailFatTree

from .conftest import ROOT, assert_user_error, run_cli


@pytest.fixture(scope="module")
def cm():
    return build_topology("cloudmatrix384")


@pytest.fixture(scope="module")
def h800():
    return build_topology("h800-ib")


def _maxflow(g, src_dies, dst_dies, planes=("ub",), keep=None):
    """networkx max-flow (GB/s) from a set of dies to another over the given planes' edges."""
    sub = nx.Graph()
    for u, v, d in g.edges(data=True):
        if d["plane"] in planes and (keep is None or (u in keep and v in keep)):
            sub.add_edge(u, v, capacity=d["bandwidth_gb_s"])
    for d in src_dies:
        sub.add_edge("SRC", f"die:{d}", capacity=float("inf"))
    for d in dst_dies:
        sub.add_edge(f"die:{d}", "DST", capacity=float("inf"))
    return nx.maximum_flow_value(sub, "SRC", "DST")


def _clos_vertices(t, g, src_dies, dst_dies):
    """Vertices of the Clos paths between two nodes: the endpoint dies, their nodes' L1 chips and
    every L2 (up-down routing never transits a third node's L1 chip)."""
    nodes = {int(t.die_node[d]) for d in list(src_dies) + list(dst_dies)}
    keep = {f"die:{d}" for d in list(src_dies) + list(dst_dies)}
    keep |= {v for v in g if v.startswith("l2:")}
    keep |= {f"l1:{n}/{k}" for n in nodes for k in range(t.n_l1)}
    return {v for v in keep if v in g}


# ------------------------------------------------------------------ counts
def test_cloudmatrix_counts(cm):
    s = cm.summary()
    assert (s["dies"], s["chips"], s["nodes"], s["cpus"], s["racks"]) == (768, 384, 48, 192, 16)
    assert s["switches"] == {"ub_l1": 336, "ub_l2": 112}
    assert (cm.n_dies, cm.n_chips, cm.n_nodes, cm.n_cpus, cm.n_racks) == (768, 384, 48, 192, 16)
    kinds = {}
    for _, d in cm.graph.nodes(data=True):
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    assert kinds["die"] == 768 and kinds["chip"] == 384 and kinds["node"] == 48
    assert kinds["l1"] == 336 and kinds["l2"] == 112 and kinds["cpu"] == 192 and kinds["rack"] == 16
    # every L2 switch has exactly one port per node (48 ports x 28 GB/s)
    assert cm.graph.degree("l2:3/12") == 48


def test_failure_domain_arrays(cm):
    assert cm.die_chip[17] == 8 and cm.die_node[17] == 1 and cm.die_rack[17] == 0
    assert cm.die_node[767] == 47 and cm.die_rack[767] == 11
    assert np.bincount(cm.die_node).tolist() == [16] * 48
    assert cm.failure_domain("die:17") == {"element": "die:17", "kind": "die", "die": 17, "chip": 8,
                                          "node": 1, "rack": 0}
    assert cm.failure_domain("l1:5/3")["sub_plane"] == 3
    assert 12 <= cm.failure_domain("l2:3/12")["rack"] <= 15  # communication racks
    assert cm.graph.nodes["die:17"]["rack"] == 0
    assert cm.dies_in("chip:3").tolist() == [6, 7]
    assert cm.dies_in("node:5").tolist() == list(range(80, 96))
    assert cm.dies_in("rack:1").size == 64
    assert cm.dies_in("rack:13").size == 0 and cm.dies_in("l2:3/12").size == 0


# ------------------------------------------------------------------ bandwidths
def test_headline_bandwidths(cm):
    s = cm.summary()
    assert s["ub_gb_s_per_die"] == 196 and s["node_ub_uplink_gb_s"] == 3136
    assert s["rdma_gb_s_per_chip"] == 50 and s["rdma_gb_s_per_die"] == 25
    assert s["vpc_gb_s_per_node"] == 50 and s["d2d_gb_s"] == 270
    assert s["ub_latency_intra_node_us"] == 1.2 and s["ub_latency_inter_node_us"] == 1.9
    for k in s:
        if k.endswith("_gb_s"):
            assert isinstance(s[k], (int, float)), k


def test_paths_closed_form(cm):
    p = cm.path("die:0", "die:17")
    assert p["bandwidth_gb_s"] == 196 and p["latency_us"] == 1.9
    assert p["hops"][0] == "die:0" and p["hops"][-1] == "die:17" and len(p["hops"]) == 5
    assert cm.path("die:0", "die:5")["latency_us"] == 1.2
    assert cm.path("chip:0", "chip:40")["bandwidth_gb_s"] == 392
    assert cm.path("node:0", "node:5")["bandwidth_gb_s"] == 3136
    assert cm.path("die:0", "die:100", plane="rdma")["bandwidth_gb_s"] == 25
    assert cm.path("chip:0", "chip:100", plane="rdma")["bandwidth_gb_s"] == 50
    assert cm.path("node:0", "node:9", plane="vpc")["bandwidth_gb_s"] == 50
    assert cm.path("die:0", "die:1", plane="d2d")["bandwidth_gb_s"] == 270


@pytest.mark.parametrize("src,dst", [((0,), (17,)), ((0, 1), (80, 81)), ((2,), (9,))])
def test_path_matches_networkx_maxflow(cm, src, dst):
    names = {1: "die", 2: "chip"}
    s = f"{names[len(src)]}:{src[0] // len(src)}"
    t = f"{names[len(dst)]}:{dst[0] // len(dst)}"
    assert cm.path(s, t)["bandwidth_gb_s"] == pytest.approx(_maxflow(cm.graph, src, dst))


def test_node_pair_maxflow(cm):
    a, b = list(range(16)), list(range(80, 96))
    assert _maxflow(cm.graph, a, b) == pytest.approx(3136)
    assert _maxflow(cm.graph, [0], [100], planes=("rdma",)) == pytest.approx(25)


def test_l1_chip_down_costs_one_seventh(cm):
    deg = cm.degrade(["l1:0/3"])
    assert deg.ub_gb_s_per_die[:16] == pytest.approx(np.full(16, 168.0))
    assert deg.ub_gb_s_per_die[16:] == pytest.approx(np.full(752, 196.0))
    assert deg.path("die:0", "die:17")["bandwidth_gb_s"] == 168
    g = deg.graph
    assert "l1:0/3" not in g and "l1:0/3" in cm.graph  # the healthy graph is untouched
    keep = _clos_vertices(cm, g, [0], [17])
    assert _maxflow(g, [0], [17], keep=keep) == pytest.approx(168)
    assert deg.alltoall_gb_s(np.arange(768)) == pytest.approx(168)
    assert not deg.lost_dies.any() and not deg.disconnected_dies.any()


def test_l2_switch_down_is_small(cm):
    deg = cm.degrade(["l2:3/12"])
    per_die = deg.ub_gb_s_per_die
    # node uplink 3136 -> 3108 (1 of 112 L2 links): each die's cross-node share 196 -> 194.25
    assert per_die == pytest.approx(np.full(768, 196 * (1 - 1 / 112)))
    assert deg.path("node:0", "node:5")["bandwidth_gb_s"] == pytest.approx(3136 - 28)
    keep = _clos_vertices(cm, deg.graph, range(16), range(80, 96))
    assert _maxflow(deg.graph, range(16), range(80, 96), keep=keep) == pytest.approx(3108)
    # a die pair still gets 196: its sub-plane 3 link has 15 other L2 switches
    assert deg.path("die:0", "die:17")["bandwidth_gb_s"] == 196


def test_alltoall_counts_each_sub_plane_on_its_own(cm):
    """A die's traffic on link k leaves the node only through sub-plane k: with L2 switches of
    sub-plane 3 down, the 320-die all-to-all (f_remote = 304/319) gets
    6 x 28 + min(28, share_3 / f) per die, not min(196, sum of shares / f)."""
    dies = np.arange(320)
    f = 304 / 319
    for n in range(0, 17):
        deg = cm.degrade([f"l2:3/{s}" for s in range(n)])
        share = 28.0 * (16 - n) / 16                       # each L1 chip 3: (16 - n) x 28 of 448
        assert deg.alltoall_gb_s(dies) == pytest.approx(168.0 + min(28.0, share / f), rel=1e-12)
    assert cm.degrade(["l2:3/12"]).alltoall_gb_s(dies) == pytest.approx(195.5452302631579)
    # one uplink of node 5: only sets spanning node 5 slow down
    deg = cm.degrade(["link:node:5-l2:3/12"])
    assert deg.alltoall_gb_s(dies) == pytest.approx(168.0 + 26.25 / f)
    assert deg.alltoall_gb_s(np.arange(320, 640)) == 196
    # two nodes (f = 16/31): 26.25 / f > 28, the link still runs at line rate
    assert cm.degrade(["l2:3/12"]).alltoall_gb_s(np.arange(32)) == 196
    # one L2 per sub-plane: every link loses the same, 7 x 26.25 / f
    deg = cm.degrade([f"l2:{k}/0" for k in range(7)])
    assert deg.alltoall_gb_s(dies) == pytest.approx(7 * 26.25 / f)


def test_link_failures_and_factors(cm):
    deg = cm.degrade(["link:node:5-l2:3/12"])
    assert deg.path("node:5", "node:6")["bandwidth_gb_s"] == pytest.approx(3136 - 28)
    assert deg.path("node:4", "node:6")["bandwidth_gb_s"] == pytest.approx(3136)
    deg = cm.degrade(["link:die:3-l1:0/2"])
    assert deg.ub_inject_gb_s_per_die[3] == 168 and deg.ub_inject_gb_s_per_die[2] == 196
    deg = cm.degrade([], factors={"l1:2/0": 0.5})
    assert deg.ub_gb_s_per_die[32] == pytest.approx(196 - 14)
    assert deg.graph.edges["die:32", "l1:2/0"]["bandwidth_gb_s"] == pytest.approx(14)
    deg = cm.degrade(["rdma:fabric"])
    assert not deg.rdma_gb_s_per_die.any()
    with pytest.raises(XdsError, match=r"\[0, 1\]"):
        cm.degrade([], factors={"l1:2/0": 1.5})


def test_node_down_kills_its_dies(cm):
    deg = cm.degrade(["node:5"])
    assert deg.lost_dies.sum() == 16 and deg.lost_dies[80:96].all()
    assert (deg.ub_gb_s_per_die[80:96] == 0).all() and (deg.rdma_gb_s_per_die[80:96] == 0).all()
    assert deg.ub_gb_s_per_die[~deg.lost_dies].min() == 196
    assert deg.alltoall_gb_s(np.arange(80, 112)) == 0.0
    assert deg.alltoall_gb_s(np.arange(96, 128)) == 196
    assert cm.degrade(["chip:3"]).lost_dies.sum() == 2
    iso = cm.degrade([f"l1:7/{k}" for k in range(7)])
    assert iso.disconnected_dies.sum() == 16 and iso.lost_dies.sum() == 0


def test_alltoall_and_latency(cm):
    assert cm.alltoall_gb_s(np.arange(320)) == 196
    assert cm.alltoall_gb_s(np.arange(320), plane="rdma") == 25
    cap = np.full(768, 196.0)
    cap[5] = 100.0
    assert cm.alltoall_gb_s(np.arange(32), ub_gb_s_per_die=cap) == 100
    lat = cm.latency_us(np.array([0, 0, 0]), np.array([0, 1, 17]))
    assert lat.tolist() == [0.0, 1.2, 1.9]
    with pytest.raises(XdsError, match="0..767"):
        cm.alltoall_gb_s([0, 768])


def test_parse_target(cm):
    assert cm.parse_target(" Die:17 ") == "die:17"
    assert cm.parse_target("link:node:5-l2:3/12") == "link:node:5-l2:3/12"
    assert cm.parse_target("link:l2:3/12-l1:5/3") == "link:node:5-l2:3/12"
    assert cm.parse_target("link:die:3-l1:0/2") == "link:die:3-l1:0/2"
    for bad, needle in [("die:768", "0..767"), ("l1:48/0", "0..47"), ("l2:7/0", "0..6"),
                        ("l2:0/16", "0..15"), ("gpu:1", "unknown element"),
                        ("link:die:3-l1:1/2", "no link"), ("link:l1:5/2-l2:3/1", "no link"),
                        ("leaf:0/0", "not an element")]:
        with pytest.raises(XdsError, match=needle):
            cm.parse_target(bad)


def test_nodes_override_and_cache():
    t = build_topology("cloudmatrix384", nodes=18)
    assert (t.n_dies, t.n_nodes) == (288, 18)
    assert t.summary()["switches"] == {"ub_l1": 126, "ub_l2": 112}
    assert build_topology("cloudmatrix384", nodes=18) is t
    with pytest.raises(XdsError, match="at most 48"):
        build_topology("cloudmatrix384", nodes=49)


# ------------------------------------------------------------------ h800-ib
def test_h800_counts_and_bandwidths(h800):
    s = h800.summary()
    assert (s["dies"], s["chips"], s["nodes"], s["cpus"]) == (144, 144, 18, 36)
    assert s["switches"]["ib_leaf"] == 8 and s["switches"]["ub_l1"] == 72 and s["switches"]["ub_l2"] == 0
    assert s["ub_gb_s_per_die"] == 200 and s["rdma_gb_s_per_die"] == 50
    assert s["node_ub_uplink_gb_s"] == 0
    assert h800.path("die:0", "die:3")["bandwidth_gb_s"] == 200
    assert h800.path("die:0", "die:9", plane="rdma")["bandwidth_gb_s"] == 50
    assert h800.path("node:0", "node:1", plane="ib")["bandwidth_gb_s"] == 400
    assert _maxflow(h800.graph, range(8), range(8, 16), planes=("ib",)) == pytest.approx(400)
    assert _maxflow(h800.graph, [0], [9], planes=("ib",)) == pytest.approx(50)
    with pytest.raises(XdsError, match="NVLink ends at the node"):
        h800.path("die:0", "die:9")
    # EP144 all-to-all: 136 of 143 peers are remote and go over the 50 GB/s IB rail
    assert h800.alltoall_gb_s(np.arange(144)) == pytest.approx(50 * 143 / 136)
    deg = h800.degrade(["leaf:3/0"])
    assert (deg.rdma_gb_s_per_die[3::8] == 0).all() and deg.rdma_gb_s_per_die[4] == 50
    assert deg.alltoall_gb_s(np.arange(144)) == 0.0


def test_cluster_spec_validation(tmp_path):
    spec = load_cluster("cloudmatrix384")
    assert spec.scale_up.l1_per_node * spec.scale_up.link_gb_s == spec.scale_up.gb_s_per_die
    bad = tmp_path / "c.yaml"
    src = (ROOT / "xds" / "data" / "clusters" / "cloudmatrix384.yaml").read_text()
    bad.write_text(src.replace("switch_racks:", "switch_rack:"))
    with pytest.raises(XdsError, match="did you mean 'switch_racks'"):
        load_cluster(str(bad))
    bad.write_text(src.replace("nodes: 48 ", "nodes: 60 "))
    with pytest.raises(XdsError, match="l2_ports"):
        load_cluster(str(bad))
    custom = tmp_path / "small.yaml"
    custom.write_text(src.replace("nodes: 48 ", "nodes: 2 "))
    assert build_topology(str(custom)).n_dies == 32


# ------------------------------------------------------------------ families
def test_every_builder_has_one_family_and_spec_rules():
    assert set(FAMILIES) == set(get_args(Builder)) == set(BUILDER_RULES)
    assert all(issubclass(cls, Family) and FAMILIES[cls.name] is cls for cls in FAMILIES.values())


def test_family_objects(cm, h800):
    assert isinstance(cm.family, CloudMatrix) and isinstance(h800.family, RailFatTree)
    assert cm.family.ub_spans_nodes and not h800.family.ub_spans_nodes
    assert (cm.family.n_l2, h800.family.n_leaves, h800.family.n_spines) == (16, 8, 3)
    assert h800.family.die_leaf[:9].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0]
    rng = np.random.default_rng(0)
    for t in (cm, h800):
        for _ in range(20):
            switch = t.family.random_switch(rng)
            assert t.parse_target(switch) == switch and t.failure_domain(switch)["kind"] in ("l2", "spine")
            link = t.family.random_link(3, rng)
            assert t.parse_target(link) == link and t.failure_domain(link)["element"] == link
    assert cm.family.random_link(3, rng).startswith("link:node:3-l2:")
    assert h800.family.random_link(3, rng) == "node:3"  # a NIC / cable loss takes the node off IB


def test_rail_names_and_links(h800):
    assert h800.parse_target("link:spine:0-leaf:3/0") == "link:leaf:3/0-spine:0"
    assert h800.failure_domain("leaf:3/0") == {"element": "leaf:3/0", "kind": "leaf", "rail": 3}
    assert h800.failure_domain("nvsw:2/1")["switch"] == 1
    for bad, needle in [("rdma:fabric", "leaf/spine InfiniBand"), ("l2:0/0", "not an element"),
                        ("spine:3", "0..2"), ("link:die:3-leaf:2/0", "no link"), ("nvsw:0/4", "0..3")]:
        with pytest.raises(XdsError, match=needle):
            h800.parse_target(bad)
    with pytest.raises(XdsError, match="allowed: ub, nvlink, rdma, ib, vpc"):
        h800.path("die:0", "die:1", plane="d2d")


# ------------------------------------------------------------------ export + CLI
def test_export_roundtrip(tmp_path, h800):
    gml = tmp_path / "t.graphml"
    h800.export(gml)
    g = nx.read_graphml(gml)
    assert g.number_of_nodes() == h800.graph.number_of_nodes()
    js = tmp_path / "t.json"
    h800.export(js)
    doc = json.loads(js.read_text())
    assert len(doc["nodes"]) == h800.graph.number_of_nodes()
    with pytest.raises(XdsError, match="graphml or .json"):
        h800.export(tmp_path / "t.txt")


def test_cli_summary_json():
    res = run_cli("topo", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    for key in ("cluster", "chips", "dies", "nodes", "cpus", "racks", "switches", "ub_gb_s_per_die",
                "node_ub_uplink_gb_s", "rdma_gb_s_per_chip", "vpc_gb_s_per_node"):
        assert key in doc, key
    assert doc["switches"] == {"ub_l1": 336, "ub_l2": 112}
    res = run_cli("topo", "--cluster", "h800-ib", "--nodes", "4", "--json")
    assert json.loads(res.stdout)["dies"] == 32
    res = run_cli("topo")
    assert res.exit_code == 0 and "3,136" in res.stdout


def test_cli_path():
    res = run_cli("topo", "path", "die:0", "die:17", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) >= {"bandwidth_gb_s", "latency_us", "hops"} and doc["bandwidth_gb_s"] == 196
    res = run_cli("topo", "path", "chip:0", "chip:100", "--plane", "rdma", "--json")
    assert json.loads(res.stdout)["bandwidth_gb_s"] == 50


def test_cli_export(tmp_path):
    out = tmp_path / "cm.json"
    res = run_cli("topo", "--export", str(out), "--json")
    assert res.exit_code == 0 and out.exists()


@pytest.mark.parametrize("args,needles", [
    (("topo", "--cluster", "nope"), ("unknown cluster", "cloudmatrix384")),
    (("topo", "path", "die:0", "die:900"), ("0..767",)),
    (("topo", "path", "die:0", "switch:1"), ("unknown element",)),
    (("topo", "path", "l2:0/1", "die:1"), ("die:N, chip:N or node:N",)),
    (("topo", "path", "die:0", "chip:0"), ("overlap",)),
    (("topo", "path", "die:0", "die:17", "--plane", "nvme"), ("allowed: ub, rdma, vpc",)),
    (("topo", "--nodes", "49"), ("at most 48",)),
    (("topo", "--export", "/nonexistent-dir/x.graphml"), ("does not exist",)),
    (("topo", "--cluster", "missing.yaml"), ("not found",)),
])
def test_cli_errors_one_line(args, needles):
    assert_user_error(run_cli(*args), *needles)


def test_topo_fail_reports_what_is_lost():
    res = run_cli("topo", "--fail", "l1:4/0", "--json")
    assert res.exit_code == 0, res.stderr
    after = json.loads(res.stdout)["after_failure"]
    assert after["lost_dies"] == 0 and after["min_ub_gb_s_per_die"] == pytest.approx(168.0)
    res = run_cli("topo", "--fail", "node:3", "--fail", "die:100", "--json")
    assert json.loads(res.stdout)["after_failure"]["lost_dies"] == 17
    assert_user_error(run_cli("topo", "--fail", "die:9999"), "--fail", "out of range")
