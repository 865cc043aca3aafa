"""Engine + report + ``xds simulate``: conservation, closed loop vs ``xds estimate``, queueing
sanity, determinism, every perturbation event, CLI errors and exit codes."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xds.cli.output import to_json
from xds.cost import CostModel
from xds.engine import (COMPLETED, FAILED, KvBandwidth, Pause, RanksDown, Rollback, SetCost,
                        Slowdown, simulate)
from xds.errors import XdsError
from xds.cost.estimate import EstimateArgs, estimate
from xds.plan import place
from xds.report import build_report, group_percentile, requests_csv
from xds.spec.plan import load_plan
from xds.workload import Workload, synthetic

from .conftest import FIXTURES, run_cli

PLAN = """\
name: small
model: qwen3-30b-a3b
hardware: ascend-910c
cluster: cloudmatrix384
pools:
  - role: decode
    instances: 1
    chips: 4
    layout: {dp: 8, tp: 1, ep: 8}
    batch_per_die: 16
    mtp: {draft_tokens: 1, acceptance: 0.7}
  - role: prefill
    instances: 2
    chips: 2
    layout: {dp: 4, tp: 1, ep: 4}
    token_budget_per_die: 4096
slo: {ttft_ms: 2000, tpot_ms: 50, window_s: 5}
workload:
  rate_rps: 5
  input: {dist: fixed, value: 512}
  output: {dist: fixed, value: 64}
  requests: 200
"""


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("plans") / "small.yaml"
    p.write_text(PLAN)
    return p


@pytest.fixture(scope="module")
def placed(plan_path):
    return place(load_plan(plan_path))


def wl(n=100, rate=5.0, inp=512, out=64, seed=0):
    return synthetic(rate_rps=rate, input=inp, output=out, requests=n, seed=seed)


def check_conservation(res, w):
    assert set(np.unique(res.status)) <= {COMPLETED, FAILED}
    failed = res.status == FAILED
    assert (res.reason[failed] > 0).all() and (res.reason[~failed] == 0).all()
    done = res.status == COMPLETED
    assert np.isfinite(res.finish_s[done]).all() and np.isfinite(res.first_token_s[done]).all()
    assert (res.first_token_s[done] >= res.arrival_s[done] - 1e-12).all()
    assert (res.finish_s[done] >= res.first_token_s[done] - 1e-12).all()
    assert (res.generated[done] == w.output_len[done]).all()


def test_conservation_and_totals(placed):
    w = wl(150)
    res = simulate(placed, w)
    check_conservation(res, w)
    doc = build_report(res, placed, workload=w)
    assert doc["failed"] == 0 and doc["completed"] == len(w)
    assert doc["total_output_tokens"] == int(w.output_len.sum())
    assert doc["total_input_tokens"] == int(w.input_len.sum())
    for k in ("request_throughput", "output_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
              "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms",
              "duration", "chips", "dies", "output_throughput_per_chip", "input_throughput_per_chip",
              "slo_attainment"):
        assert doc[k] is not None, k
    assert doc["passed"] and doc["timeline"][0]["t_s"] == 0


def test_below_capacity_ttft_is_prefill_plus_transfer(placed):
    w = wl(20, rate=0.5)   # one request at a time
    res = simulate(placed, w)
    ttft = res.first_token_s - res.arrival_s
    inst = placed.prefill.instances[0]
    n = 512 / len(inst.dies)
    pre = float(inst.cost.prefill_batch_us(n, 512 * 513 / 2 / len(inst.dies), 1 / len(inst.dies))) * 1e-6
    tx = 512 * placed.kv_bytes_per_token / (placed.kv_transfer_gb_s * 1e9)
    dec = placed.decode.instances[0]
    b = np.zeros(dec.layout.dp)
    b[0] = 1
    step = float(np.ravel(dec.cost.decode_step_us(b, b * 600))[0]) * 1e-6
    assert np.all(ttft >= pre + tx - 1e-9)
    assert np.all(ttft <= pre + tx + step + 1e-3)   # at most one decode step of alignment


def test_overload_queues_grow_and_slo_drops(placed):
    light = build_report(simulate(placed, wl(100, rate=2, inp=2048)), placed)
    heavy_w = wl(1500, rate=200, inp=2048)
    res = simulate(placed, heavy_w)
    heavy = build_report(res, placed)
    assert heavy["p99_ttft_ms"] > 10 * light["p99_ttft_ms"]
    ttft = res.first_token_s - res.arrival_s
    half = len(ttft) // 2
    assert np.median(ttft[half:]) > 2 * np.median(ttft[:half])   # grows with time
    assert heavy["slo_attainment"] < light["slo_attainment"]
    assert max(r["prefill_queue"] for r in heavy["timeline"]) > 100
    assert not heavy["passed"]


def test_closed_loop_matches_estimate(placed):
    lay = placed.decode.instances[0].layout
    B, I, O = 16, 256, 512
    n = B * lay.dp
    w = wl(6 * n, inp=I, out=O)
    res = simulate(placed, w, concurrency=n)
    done = res.status == COMPLETED
    assert done.all()
    late = res.finish_s >= np.quantile(res.finish_s, 0.5)
    tpot = ((res.finish_s - res.first_token_s) / (res.output_len - 1))[late]
    est = estimate(EstimateArgs(model="qwen3-30b-a3b", hardware="ascend-910c", phase="decode",
                                ep=lay.ep, dp=lay.dp, batch_per_die=B, input_len=I, output_len=O,
                                mtp=lay.mtp, mtp_acceptance=lay.mtp_acceptance,
                                balancedness=lay.balancedness, redundant_experts=lay.routed_slots - 128))
    # requests in prefill/transfer are not in the decode batch, so compare at the measured batch too
    assert np.median(tpot) * 1e3 == pytest.approx(est["tpot_ms"], rel=0.05)


def test_deterministic_bytes(placed):
    w = wl(80, rate=20)
    a = to_json(build_report(simulate(placed, w, seed=3), placed))
    b = to_json(build_report(simulate(placed, w, seed=3), placed))
    assert a == b and "wall_seconds" not in a


def _run(placed, events, n=120, rate=20.0, **kw):
    w = wl(n, rate=rate, out=200)
    res = simulate(placed, w, events=events, **kw)
    check_conservation(res, w)
    return res, build_report(res, placed)


def test_ranks_down_requeue_and_fail(placed):
    base, bdoc = _run(placed, [])
    res, doc = _run(placed, [RanksDown(3.0, "decode", 0, ranks=(0, 1, 2))])
    assert doc["failed"] == 0 and doc["recomputed_requests"] > 0 and doc["recomputed_tokens"] > 0
    assert not np.isin(res.decode_rank[res.arrival_s > 3.5], [0, 1, 2]).any()  # never come back
    res, doc = _run(placed, [RanksDown(3.0, "decode", 0, ranks=(0, 1), on_loss="fail")])
    assert doc["failed_reasons"].get("rank_lost", 0) > 0 and not doc["passed"]
    # ranks come back
    res, doc = _run(placed, [RanksDown(1.0, "decode", 0, ranks=(0,), until_s=2.0)])
    assert (res.decode_rank[res.arrival_s > 3] == 0).any()
    # prefill instance down for good: everything goes through the other one
    res, doc = _run(placed, [RanksDown(0.5, "prefill", 1)])
    assert doc["failed"] == 0
    assert (res.prefill_instance[res.arrival_s > 1] == 0).all()


def test_pause_keep_requeue_fail(placed):
    base, bdoc = _run(placed, [])
    res, doc = _run(placed, [Pause(2.0, "decode", 0, until_s=4.0)])
    assert doc["failed"] == 0 and doc["p99_e2el_ms"] > bdoc["p99_e2el_ms"] + 1500
    res, doc = _run(placed, [Pause(2.0, "decode", 0, until_s=4.0, on_inflight="requeue")])
    assert doc["failed"] == 0 and doc["recomputed_requests"] > 0
    res, doc = _run(placed, [Pause(2.0, "decode", 0, until_s=4.0, on_inflight="fail")])
    assert doc["failed_reasons"].get("instance_restart", 0) > 0


def test_slowdown_rollback_setcost(placed):
    base, bdoc = _run(placed, [])
    _, doc = _run(placed, [Slowdown(0.0, "decode", 0, factor=2.0, until_s=1e9)])
    assert doc["median_tpot_ms"] == pytest.approx(2 * bdoc["median_tpot_ms"], rel=0.1)
    rb = [Rollback(0.5 + 0.05 * i, "decode", None) for i in range(40)]
    _, doc = _run(placed, rb)
    assert doc["failed"] == 0 and doc["total_output_tokens"] == bdoc["total_output_tokens"]
    assert doc["mean_tpot_ms"] > bdoc["mean_tpot_ms"]
    inst = placed.decode.instances[0]
    slow = CostModel(placed.model, placed.hw, replace(inst.layout, balancedness=inst.layout.balancedness * 3),
                     inst.cost.fabric)
    _, doc = _run(placed, [SetCost(0.0, "decode", 0, slow, until_s=1e9)])
    assert doc["median_tpot_ms"] > bdoc["median_tpot_ms"]


@dataclass(frozen=True)
class _NotAnEvent:
    at_s: float = 0.0


@pytest.mark.parametrize("ev,needle", [
    (Pause(-1.0, "decode", 0, 1.0), "at_s must be >= 0"),
    (Rollback(float("nan"), "decode"), "at_s must be >= 0"),
    (Slowdown(5.0, "decode", 0, 2.0, until_s=1.0), "before at_s"),
    (_NotAnEvent(), "unknown event type _NotAnEvent"),
    (RanksDown(0.0, "decode", 0, on_loss="drop"), "on_loss must be requeue or fail"),
    (RanksDown(0.0, "prefill", 0, ranks=(0,)), "ranks apply to decode instances only"),
    (RanksDown(0.0, "decode", 0, ranks=(8,)), "decode rank out of range 0..7"),
    (Pause(0.0, "decode", 0, 1.0, on_inflight="drop"), "on_inflight must be keep, requeue or fail"),
    (Slowdown(0.0, "prefill", 0, 0.0), "slowdown factor must be > 0"),
    (KvBandwidth(0.0, 0, float("inf")), "KV bandwidth factor must be > 0"),
    (Rollback(0.0, "router"), "unknown role 'router'"),
    (SetCost(0.0, "prefill", 2, None), "prefill instance 2 does not exist .the plan has 2."),
])
def test_bad_events_are_refused_before_the_run(placed, ev, needle):
    with pytest.raises(XdsError, match=needle):
        simulate(placed, wl(10), events=[Slowdown(0.0, "decode", 0, 2.0), ev])


def test_events_on_every_instance_and_windows_that_end(placed):
    w = wl(120, rate=20, out=200)
    base = simulate(placed, w)
    # a rollback of every prefill instance and a KV slowdown that ends cost time, lose nothing
    res = simulate(placed, w, events=[Rollback(1.0, "prefill"), KvBandwidth(0.5, 0, 0.01, 3.0)])
    check_conservation(res, w)
    assert (res.status == COMPLETED).all()
    assert res.first_token_s.mean() > base.first_token_s.mean()
    # a pause without an end is refused like any other malformed event (no silent never-resume)
    with pytest.raises(TypeError):
        simulate(placed, w, events=[Pause(1.0, "decode", 0, None)])


def test_retries_exhausted_and_unfinished(placed):
    ev = [RanksDown(1.0 + i, "decode", 0, ranks=tuple(range(8)), until_s=1.5 + i) for i in range(6)]
    res, doc = _run(placed, ev, n=20, rate=100, max_retries=2)
    assert doc["failed_reasons"].get("retries_exhausted", 0) > 0
    res, doc = _run(placed, [RanksDown(0.0, "decode", 0)], n=10)
    assert doc["failed_reasons"] == {"unfinished": 10}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), seed=st.integers(0, 1000), data=st.data())
def test_every_request_ends_once(placed, n, seed, data):
    rng = np.random.default_rng(seed)
    w = Workload(np.sort(rng.uniform(0, 5, n)), rng.integers(1, 3000, n), rng.integers(1, 300, n))
    kinds = data.draw(st.lists(st.sampled_from(["down", "pause", "slow", "rollback", "pdown"]), max_size=4))
    ev = []
    for k in kinds:
        at = float(rng.uniform(0, 8))
        until = at + float(rng.uniform(0.1, 3)) if rng.random() < 0.7 else None
        if k == "down":
            ev.append(RanksDown(at, "decode", 0, ranks=tuple(rng.choice(8, 3, replace=False).tolist()),
                                until_s=until, on_loss=str(rng.choice(["requeue", "fail"]))))
        elif k == "pdown":
            ev.append(RanksDown(at, "prefill", int(rng.integers(0, 2)), until_s=until))
        elif k == "pause":
            ev.append(Pause(at, str(rng.choice(["prefill", "decode"])), 0, until_s=at + 1.0,
                            on_inflight=str(rng.choice(["keep", "requeue", "fail"]))))
        elif k == "slow":
            ev.append(Slowdown(at, "decode", 0, factor=3.0, until_s=until))
        else:
            ev.append(Rollback(at, "prefill"))
    ev.sort(key=lambda e: e.at_s)
    res = simulate(placed, w, events=ev)
    check_conservation(res, w)
    assert len(res.status) == n


def test_group_percentile_matches_numpy():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 5, 200)
    v = rng.normal(size=200)
    out = group_percentile(g, v, 99, 6)
    for i in range(5):
        assert out[i] == pytest.approx(np.percentile(v[g == i], 99))
    assert np.isnan(out[5])


def test_requests_csv(placed):
    w = wl(30)
    res = simulate(placed, w)
    text = requests_csv(res)
    lines = text.strip().split("\n")
    assert len(lines) == 31 and lines[0].startswith("id,arrival_s")
    assert lines[1].split(",")[8] == "completed"


# ---------------------------------------------------------------- CLI

def test_cli_json_and_outputs(plan_path, tmp_path):
    out, csv = tmp_path / "r.json", tmp_path / "r.csv"
    r = run_cli("simulate", plan_path, "--json", "--out", out, "--requests-out", csv, "--requests", "50")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["completed"] == 50 and json.loads(out.read_text()) == doc
    assert len(csv.read_text().strip().split("\n")) == 51
    r2 = run_cli("simulate", plan_path, "--json", "--requests", "50")
    assert r2.stdout == r.stdout


def test_cli_synthetic_flags_and_trace(plan_path):
    r = run_cli("simulate", plan_path, "--json", "--rate", "10", "--input-len", "300", "--output-len", "20",
                "--requests", "40", "--arrival", "gamma", "--cv", "2")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["total_input_tokens"] == 300 * 40
    r = run_cli("simulate", plan_path, "--json", "--trace", FIXTURES / "traces" / "azure_llm_2023_conv.csv",
                "--requests", "60")
    assert r.exit_code in (0, 1), r.stderr
    assert json.loads(r.stdout)["requests"] == 60


def test_cli_slo_missed_exit_1(plan_path):
    r = run_cli("simulate", plan_path, "--json", "--rate", "300", "--input-len", "4000",
                "--output-len", "20", "--requests", "800")
    assert r.exit_code == 1 and json.loads(r.stdout)["passed"] is False


@pytest.mark.parametrize("args,needle", [
    (["nope.yaml"], "not found"),
    (["{plan}", "--rate", "-1", "--input-len", "10", "--output-len", "5", "--requests", "5"], "--rate"),
    (["{plan}", "--trace", "missing.csv"], "not found"),
    (["{plan}", "--trace", "{bad}"], "bad.csv"),
    (["{plan}", "--concurrency", "0"], "--concurrency"),
    (["{plan}", "--input-len", "10", "--input-dist", "{dist: fixed, value: 3}"], "--input-dist"),
    (["{plan}", "--output-dist", "[1, 2]", "--rate", "1", "--input-len", "5", "--requests", "3"], "--output-dist"),
])
def test_cli_bad_input_exit_2(plan_path, tmp_path, args, needle):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,abc,5\n")
    args = [a.replace("{plan}", str(plan_path)).replace("{bad}", str(bad)) for a in args]
    r = run_cli("simulate", *args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("xds: error:") and needle in lines[0]
