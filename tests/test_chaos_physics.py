"""Chaos physics (issue 18): fault durations, recovery costs from bytes and bandwidths, degraded
fabric under lockstep, HBM UCE loss, blast radius, Monte Carlo statistics."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xds.chaos import FaultEvent, Scenario, ScenarioSpec, compile_events, recovery_params
from xds.chaos.faults import expert_gb
from xds.chaos.instances import load_s, restart_s, weights_gb
from xds.engine import KvBandwidth, Pause, SetCost, Stall, simulate
from xds.pipeline import build_workload, run_chaos
from xds.plan import place
from xds.report import build_report
from xds.report.chaos import availability_ci, t975, trials_stats
from xds.spec.plan import RecoverySpec, load_plan

from .conftest import PLANS, assert_user_error, run_cli

PLAN = PLANS / "cloudmatrix-infer-pd.yaml"


@lru_cache(maxsize=1)
def _setup():
    lp = load_plan(PLAN)
    return place(lp), build_workload(lp, duration=90.0)


def scen(*events: dict) -> Scenario:
    return Scenario(ScenarioSpec(name="t", events=[FaultEvent(**e) for e in events]), "<test>")


def compiled(policy: str, *events: dict):
    placed, _ = _setup()
    params = recovery_params(placed.spec.recovery, None, policy)
    return compile_events(placed, scen(*events), params), params


@lru_cache(maxsize=None)
def run(policy: str, fault: str, target: str, duration: float | None = None) -> dict:
    placed, w = _setup()
    ev = {"at_s": 30.0, "fault": fault, "target": target}
    if duration is not None:
        ev["duration_s"] = duration
    doc = run_chaos(placed, w, scen(ev), policy=policy)
    assert doc["completed"] + doc["failed"] == doc["requests_total"]     # conservation
    return doc


# ------------------------------------------------------------------ exact costs


def test_restart_time_is_bytes_over_bandwidth():
    placed, _ = _setup()
    (events, recs), params = compiled("restart", {"at_s": 30, "fault": "die_down", "target": "die:0"})
    inst = placed.decode.instances[0]
    w = weights_gb(inst)
    expect = 10.0 + max(len(inst.dies) * w / (671.0 * 8 / 5.0), w / 147.0)
    assert math.isclose(restart_s(inst, params), expect, rel_tol=1e-12)
    assert math.isclose(recs[0]["recovered_at_s"], 30.0 + 10.0 + expect, rel_tol=1e-12)


def test_restart_from_obs_is_slower_by_the_bandwidth_ratio():
    placed, _ = _setup()
    inst = placed.decode.instances[0]
    base = {"warmup_s": 0.0, "reload_gb_s": 147.0, "restart_s": None}
    ems = restart_s(inst, base | {"store_gb_s": 1073.6})
    obs = restart_s(inst, base | {"store_gb_s": 2.5})
    assert math.isclose(obs / ems, 1073.6 / 2.5, rel_tol=1e-9)   # both store-bound at 320 dies


def test_expert_reload_is_bytes_over_bandwidth_and_node_costs_more_than_die():
    placed, _ = _setup()
    inst = placed.decode.instances[0]
    e = expert_gb(placed.model, inst)
    assert math.isclose(e, 44_040_192 * 59 / 1e9, rel_tol=1e-12)      # DeepSeek-R1 INT8 expert
    (_, rn), params = compiled("fine-grained", {"at_s": 30, "fault": "node_down", "target": "node:3"})
    (_, rd), _ = compiled("fine-grained", {"at_s": 30, "fault": "die_down", "target": "die:48"})
    missing = rn[0]["experts_without_replica"]
    pool = params | {"store_gb_s": params["store_gb_s"] * 31 / 32}     # node 3's DRAM left the pool
    assert math.isclose(rn[0]["reload_s"], load_s(missing * e, math.ceil(missing / 304) * e, pool),
                        rel_tol=1e-5)
    assert rn[0]["dies"] == 16 and rd[0]["dies"] == 1
    assert rn[0]["expert_slots_lost"] > rd[0]["expert_slots_lost"]
    assert rn[0].get("reload_s", 0) >= rd[0].get("reload_s", 0)


# ------------------------------------------------------------------ glitches


def test_short_l2_glitch_stalls_but_does_not_restart_under_restart():
    (events, recs), _ = compiled("restart", {"at_s": 30, "fault": "network_glitch", "target": "l2:0/0",
                                             "duration_s": 1})
    assert events and all(isinstance(e, Stall) and e.until_s == 31.0 for e in events)
    assert recs[0]["recovered_at_s"] == 31.0 and "no restart" in recs[0]["action"]


def test_glitch_past_detection_or_retry_window_escalates_and_says_so():
    (ev_r, rec_r), _ = compiled("restart", {"at_s": 30, "fault": "network_glitch", "target": "l2:0/0",
                                            "duration_s": 20})
    assert any(isinstance(e, Pause) and e.on_inflight == "requeue" for e in ev_r)
    assert rec_r[0]["action"].startswith("escalated")
    (ev_f, rec_f), p = compiled("fine-grained", {"at_s": 30, "fault": "network_glitch",
                                                 "target": "l2:0/0", "duration_s": 20})
    assert all(isinstance(e, Stall) and e.redo for e in ev_f)           # within the retry window
    (ev_l, rec_l), _ = compiled("fine-grained", {"at_s": 30, "fault": "network_glitch",
                                                 "target": "l2:0/0", "duration_s": 45})
    assert rec_l[0]["action"].startswith("escalated") and "retry window" in rec_l[0]["action"]
    assert rec_l[0]["detected_at_s"] == 30 + p["retry_window_s"]
    assert all(e.until_s >= 75.0 for e in ev_l if isinstance(e, Pause))  # not up before the fabric


def test_longer_rdma_glitch_is_worse_and_ends_at_its_real_end():
    docs = [run("fine-grained", "network_glitch", "rdma:fabric", d) for d in (2.0, 15.0, 45.0)]
    ttft = [d["p99_ttft_ms"] for d in docs]
    assert ttft[0] <= ttft[1] <= ttft[2] and ttft[2] > ttft[0]
    assert [d["recovery"][0]["recovered_at_s"] for d in docs] == [32.0, 45.0, 75.0]
    assert docs[2]["recomputed"]["requests"] > 0            # aborted past the retry window
    assert docs[0]["recomputed"]["requests"] == 0 and docs[0]["failed"] == 0


# ------------------------------------------------------------------ blast radius and fabric


def test_node_loss_is_worse_than_die_loss():
    node = run("fine-grained", "node_down", "node:3")
    die = run("fine-grained", "die_down", "die:48")
    bn, bd = node["recovery"][0]["blast_radius"], die["recovery"][0]["blast_radius"]
    assert bn["dies"] > bd["dies"] and bn["expert_slots_lost"] > bd["expert_slots_lost"]
    assert bn["recomputed_tokens"] > bd["recomputed_tokens"] > 0
    assert node["recomputed"]["tokens"] > die["recomputed"]["tokens"]
    assert node["failed"] == die["failed"] == 0                        # recomputed, none lost


def test_degraded_port_raises_tpot_under_lockstep():
    l1 = run("fine-grained", "switch_down", "l1:4/0")
    rec = l1["recovery"][0]
    assert rec["bandwidth_gb_s"]["decode:0"] == [196.0, 168.0]          # 6 of 7 UB ports
    placed, w = _setup()
    clean = build_report(simulate(placed, w), placed, workload=w)
    assert l1["p99_tpot_ms"] > clean["p99_tpot_ms"]


@lru_cache(maxsize=1)
def _busy():
    """2.5 s of fixed-length requests at 1,500 req/s: the decode runs big enough batches that its
    dispatch/combine time shows in TPOT."""
    return build_workload(load_plan(PLAN), duration=2.5, rate=1500, input_len=128, output_len=256)


def test_l2_switches_down_raise_tpot_monotonically():
    """Each L2 of sub-plane 3 down thins every node's L1-3 uplink (448 -> 420 -> ... GB/s); the
    faults compound and the lockstep decode slows step by step."""
    placed, w = _setup()[0], _busy()
    base = build_report(simulate(placed, w), placed, workload=w)["p99_tpot_ms"]
    tpot, bw = [base], []
    for n in (1, 2, 16):
        doc = run_chaos(placed, w, scen(*({"at_s": 0.0, "fault": "switch_down", "target": f"l2:3/{s}"}
                                          for s in range(n))), policy="fine-grained")
        assert doc["completed"] + doc["failed"] == doc["requests_total"]
        tpot.append(doc["p99_tpot_ms"])
        bw.append(doc["recovery"][-1]["bandwidth_gb_s"]["decode:0"][1])
    assert all(a < b for a, b in zip(tpot, tpot[1:])), tpot
    f = 304 / 319
    assert bw == [pytest.approx(168 + 26.25 / f, abs=1e-3), pytest.approx(168 + 24.5 / f, abs=1e-3),
                  168.0]


def test_fabric_faults_compound_per_epoch():
    """Two overlapping L2 faults: one SetCost per epoch (never two at once), the middle one priced
    on both switches down; the KV path is untouched (RDMA)."""
    (events, recs), _ = compiled("fine-grained",
                                 {"at_s": 10, "fault": "switch_down", "target": "l2:3/0",
                                  "duration_s": 20},
                                 {"at_s": 20, "fault": "switch_down", "target": "l2:3/1",
                                  "duration_s": 20})
    dec = [e for e in events if isinstance(e, SetCost) and e.role == "decode"]
    assert [(e.at_s, e.until_s) for e in dec] == [(10, 20), (20, 30), (30, 40)]
    rates = [e.cost.fabric.gb_s for e in dec]
    assert rates[0] == pytest.approx(rates[2]) and rates[1] < rates[0] < 196
    assert recs[1]["bandwidth_gb_s"]["decode:0"][0] == pytest.approx(rates[0], abs=1e-3)
    assert not any(isinstance(e, KvBandwidth) for e in events)


def test_hbm_uce_fine_grained_loses_the_rank_kv_others_recompute():
    fg = run("fine-grained", "hbm_uce", "die:40", 20.0)
    pd = run("pd-failover", "hbm_uce", "die:40", 20.0)
    assert fg["failed_reasons"].get("kv_corrupted", 0) > 0
    assert fg["recovery"][0]["kv_lost_rank"] == "decode:0/40"
    assert pd["failed"] == 0 and pd["recomputed"]["requests"] > 0


# ------------------------------------------------------------------ statistics


def test_availability_interval_is_student_t():
    a = np.array([1.0, 0.9, 0.95, 0.85])
    ci = availability_ci(a)
    half = 3.182 * a.std(ddof=1) / 2.0
    assert ci["mean"] == round(a.mean(), 4)
    assert ci["ci95"] == [round(a.mean() - half, 4), round(min(a.mean() + half, 1.0), 4)]
    assert availability_ci(np.array([0.5]))["ci95"] == [0.5, 0.5]
    assert abs(t975(60) - 2.000) < 2e-3 and abs(t975(120) - 1.980) < 2e-3


def test_failed_per_day_scales_by_hours():
    s = trials_stats([(1.0, 4, 0), (0.9, 2, 1)], 0.99, hours=2.0)
    assert s["failed_per_day"] == 3.0 * 12 and s["availability"]["trials"] == 2


@lru_cache(maxsize=1)
def _short():
    """A 40 s workload for the property test (each example is one full chaos run)."""
    return build_workload(load_plan(PLAN), duration=40.0)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["die_down", "node_down", "hbm_uce", "network_glitch",
                                           "straggler", "link_degraded"]),
                          st.floats(2, 35), st.floats(1, 50)), min_size=1, max_size=3),
       st.sampled_from(["restart", "pd-failover", "fine-grained"]))
def test_conservation_under_random_scenarios(faults, policy):
    target = {"die_down": "die:7", "node_down": "node:1", "hbm_uce": "die:70",
              "network_glitch": "rdma:fabric", "straggler": "die:200",
              "link_degraded": "link:node:2-l2:0/5"}
    events, seen = [], set()
    for kind, at, dur in faults:
        if kind in seen:
            continue
        seen.add(kind)
        ev = {"at_s": at, "fault": kind, "target": target[kind]}
        if kind in ("hbm_uce", "network_glitch", "straggler", "link_degraded"):
            ev["duration_s"] = dur
        if kind == "straggler":
            ev["factor"] = 1.5
        if kind == "link_degraded":
            ev["factor"] = 0.5
        events.append(ev)
    placed, w = _setup()[0], _short()
    doc = run_chaos(placed, w, scen(*events), policy=policy)
    assert doc["completed"] + doc["failed"] == doc["requests_total"] == len(w)
    for rec in doc["recovery"]:
        b = rec["blast_radius"]
        assert b["time_to_detect_s"] >= 0 and b["capacity_lost_tok_s"] >= 0


def test_losing_every_routed_rank_leaves_every_expert_without_a_replica():
    """A fault that covers every die of an instance (a one-node instance losing its node) used to
    crash on an empty array; every expert is then missing and there is nothing to rebalance."""
    from types import SimpleNamespace

    from xds.chaos.replicas import expert_state

    ph = np.array([[0, 1, 2, 3, 0, 1, 2, 3]])                    # 1 layer, 4 ranks x 2 slots
    pool = SimpleNamespace(expert_map={"phy2log": ph.tolist(), "slots_per_rank": 2, "routed_ranks": 4,
                                       "experts": 4})
    shares = np.full(4, 0.25)
    assert expert_state(pool, {0, 1, 2, 3}, shares) == (4, 1.0)
    missing, ratio = expert_state(pool, {0}, shares)
    assert missing == 0 and ratio >= 1.0


# ------------------------------------------------------------------ node vs die under restart


def test_restart_after_node_loss_reads_weights_from_a_smaller_pool():
    """The EMS pool is the host DRAM of the plan's 32 nodes: a lost node takes 1/32 of it, so the
    restart's 6,144 GB restore runs at 31/32 of 1,073.6 GB/s; a lost die leaves the pool whole."""
    placed, _ = _setup()
    inst = placed.decode.instances[0]
    (_, rn), _ = compiled("restart", {"at_s": 30, "fault": "node_down", "target": "node:3"})
    (_, rd), _ = compiled("restart", {"at_s": 30, "fault": "die_down", "target": "die:48"})
    total = len(inst.dies) * weights_gb(inst)
    assert rn[0]["store_gb_s"] == [1073.6, round(1073.6 * 31 / 32, 3)]
    assert math.isclose(rn[0]["recovered_at_s"], 30 + 10 + 10 + total / (1073.6 * 31 / 32), rel_tol=1e-12)
    assert math.isclose(rd[0]["recovered_at_s"], 30 + 10 + 10 + total / 1073.6, rel_tol=1e-12)
    assert "left the EMS pool" in rn[0]["action"] and "store_gb_s" not in rd[0]


def test_obs_store_is_slow_but_does_not_shrink_with_a_node():
    placed, _ = _setup()
    rec = RecoverySpec(store="obs")
    p = recovery_params(rec, None, "restart")
    assert p["store_gb_s"] == 2.5 and p["store"] == "obs"
    ev = scen({"at_s": 30, "fault": "node_down", "target": "node:3"})
    _, rn = compile_events(placed, ev, p)
    assert "store_gb_s" not in rn[0]


def test_hccl_settings_set_the_retry_window():
    """4.096 us x 2^timeout x retry count: 18 and 3 give 3.221 s, so a 5 s glitch escalates."""
    placed, _ = _setup()
    assert recovery_params(RecoverySpec(), None, "restart")["retry_window_s"] == 30.065
    p = recovery_params(RecoverySpec(hccl_rdma_timeout=18), RecoverySpec(hccl_rdma_retry_cnt=3),
                        "fine-grained")
    assert p["retry_window_s"] == round(4.096e-6 * 2 ** 18 * 3, 3) == 3.221
    _, recs = compile_events(placed, scen({"at_s": 30, "fault": "network_glitch", "target": "l2:0/0",
                                           "duration_s": 5}), p)
    assert recs[0]["action"].startswith("escalated") and math.isclose(recs[0]["detected_at_s"], 33.221)


@pytest.mark.parametrize("recovery,needle", [
    ("{hccl_rdma_timeout: 30}", "hccl_rdma_timeout"), ("{hccl_rdma_retry_cnt: 0}", "hccl_rdma_retry_cnt"),
    ("{hccl_rdma_timeout: 18, retry_window_s: 3}", "either retry_window_s"),
    ("{store: s3}", "store"),
])
def test_bad_hccl_and_store_settings_exit_2(tmp_path, recovery, needle):
    sc = tmp_path / "s.yaml"
    sc.write_text("name: s\nrecovery: " + recovery + "\nevents:\n"
                  "  - {at_s: 1, fault: die_down, target: 'die:0'}\n")
    assert_user_error(run_cli("chaos", str(PLAN), "--scenario", str(sc), "--duration", "2"), needle)


def test_lost_die_and_thin_fabric_are_priced_together():
    """A die lost for good (survivors at a worse balancedness) and an L2 down at the same time: the
    overlap's SetCost carries both, instead of one overwriting the other."""
    (events, recs), _ = compiled("fine-grained",
                                 {"at_s": 10, "fault": "die_down", "target": "die:48"},
                                 {"at_s": 20, "fault": "switch_down", "target": "l2:3/0",
                                  "duration_s": 10})
    placed, _ = _setup()
    base = placed.decode.instances[0]
    dec = [e for e in events if isinstance(e, SetCost) and e.role == "decode"]
    end = 10 + 2 + recs[0]["reload_s"]                   # detection + the lost expert's reload
    assert [(e.at_s, e.until_s) for e in dec] == [(pytest.approx(end), 20), (20, 30), (30, None)]
    bal = [e.cost.lay.balancedness / base.layout.balancedness for e in dec]
    assert bal[0] > 1 and bal[0] == bal[1] == bal[2]
    assert [e.cost.fabric.gb_s for e in dec] == [196.0, pytest.approx(195.5452302631579), 196.0]
