"""``xds size``: the plan it writes meets its SLO when simulated on its workload and one instance
fewer in a pool does not (minimal within the bisection's step of one instance); fleets of identical
pods; --survive fault replay; cost; user errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import FIXTURES, assert_user_error, run_cli  # noqa: E402

from xds.pipeline import simulate_plan  # noqa: E402
from xds.size import size  # noqa: E402
from xds.size.compose import Shape, compose, pod_capacity  # noqa: E402

# small and fast: a 30B MoE, 1K/128 tokens, 20 simulated seconds. The 25 ms TPOT target caps the
# decode batch (224 per rank, one 1-node decode instance ~1155 req/s analytically) so that 1500 req/s
# needs at least two instances in BOTH pools (analytic 3 prefill + 2 decode): the bisection has room
# to go one fewer in each pool.
SMALL = dict(model="qwen3-30b-a3b", input_len=1024, output_len=128, duration=20.0, tpot_ms=25.0,
             ttft_ms=2000.0, workers=1)


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    out = tmp_path_factory.mktemp("size") / "sized.yaml"
    return size(rate=1500.0, out=str(out), chip_hour_cost=2.0, **SMALL), out


def test_sized_plan_meets_slo_and_is_minimal(sized):
    doc, out = sized
    assert doc["passed"] and doc["pods"] == 1
    pp = doc["per_pod"]
    assert pp["prefill_instances"] >= 2 and pp["decode_instances"] >= 2   # the bisection had room
    sim, _ = simulate_plan(str(out))
    assert sim["passed"], sim["slo"]
    assert sim["chips"] == doc["chips"]
    assert sim["p99_ttft_ms"] == pytest.approx(doc["simulated"]["p99_ttft_ms"])
    plan = yaml.safe_load(out.read_text())
    for role in ("prefill", "decode"):
        fewer = json.loads(json.dumps(plan))
        pool = next(p for p in fewer["pools"] if p["role"] == role)
        pool["instances"] -= 1
        path = out.parent / f"fewer-{role}.yaml"
        path.write_text(yaml.safe_dump(fewer))
        res, _ = simulate_plan(str(path))
        assert not res["passed"], (role, res["slo"])
        assert doc["minimal"][role] is True


def test_cost_per_million_tokens(sized):
    doc, _ = sized
    c = doc["cost"]
    tok_s = doc["simulated"]["output_throughput_fleet"]
    assert c["usd_per_hour"] == pytest.approx(2.0 * doc["chips"])
    assert c["usd_per_million_output_tokens"] == pytest.approx(2.0 * doc["chips"] / (tok_s * 3600) * 1e6, rel=1e-3)
    assert c["headroom_usd_per_hour"] == 0


def test_candidates_table_lists_every_simulation(sized):
    doc, _ = sized
    t = doc["candidates_table"]
    assert len(t) == doc["simulations"] and len(t) >= 3
    ok = [r for r in t if r["passed"]]
    best = min(ok, key=lambda r: r["chips"])
    assert best["chips"] == doc["chips"]


def test_pod_composition_and_fleet():
    shape = Shape(decode_nodes=2, prefill_nodes=1, pod_nodes=48)
    cap, n_p, n_d = pod_capacity(shape, decode_rps=100.0, prefill_rps=30.0)
    assert shape.fits(n_p, n_d) and cap == pytest.approx(min(n_d * 100.0, n_p * 30.0))
    pods, p, d = compose(5000.0, shape, 100.0, 30.0)
    assert pods * cap >= 5000.0 and (pods - 1) * cap < 5000.0
    assert shape.fits(p, d) and p * 30.0 * pods >= 5000.0 and d * 100.0 * pods >= 5000.0
    assert compose(50.0, shape, 100.0, 30.0) == (1, 2, 1)


def test_survive_pod_adds_a_pod_and_its_cost(sized):
    doc, _ = sized
    d2 = size(rate=1500.0, survive="pod", chip_hour_cost=2.0, **SMALL)
    assert d2["pods"] == doc["pods"] + 1 and d2["chips"] == 2 * doc["chips"]
    assert d2["cost"]["headroom_usd_per_hour"] == pytest.approx(2.0 * doc["chips"])


def test_survive_node_replays_a_fault_per_pool():
    d = size(rate=400.0, survive="node", **SMALL)
    h = d["headroom"]
    assert h["survive"] == "node" and {r["pool"] for r in h["replays"]} == {"prefill", "decode"}
    assert all(r["fault"] == "node_down" for r in h["replays"])
    assert h["passed"] == d["passed"]
    if h["passed"]:
        last = h["replays"][-2:]
        assert all(r["passed"] for r in last)
        assert d["per_pod"]["decode_instances"] + d["per_pod"]["prefill_instances"] >= 2


def test_cli_json_and_errors(tmp_path):
    r = run_cli("size", "--model", "qwen3-30b-a3b", "--rate", "50", "--input-len", "1024", "--output-len",
                "128", "--duration", "10", "--workers", "1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["passed"] and "seconds" not in doc
    assert_user_error(run_cli("size", "--model", "qwen3-30b-a3b", "--rate", "50"), "--trace")
    assert_user_error(run_cli("size", "--model", "qwen3-30b-a3b", "--rate", "50", "--input-len", "10",
                              "--output-len", "10", "--survive", "rack"), "--survive")
    assert_user_error(run_cli("size", "--model", "qwen3-30b-a3b", "--trace", str(tmp_path / "no.csv")), "no.csv")
    assert_user_error(run_cli("size", "--model", "qwen3-30b-a3b", "--rate", "50", "--input-len", "0",
                              "--output-len", "10"), "--input-len")
    assert_user_error(run_cli("size", "--model", "qwen3-30b-a3b", "--rate", "50", "--input-len", "10",
                              "--output-len", "10", "--chip-hour-cost", "-1"), "--chip-hour-cost")


def test_trace_rate_rescales_the_trace():
    d = size(model="qwen3-30b-a3b", trace=str(FIXTURES / "traces" / "azure_llm_2023_conv.csv"), rate=40.0,
             duration=20.0, workers=1)
    assert d["lengths"]["decode_output"] > d["lengths"]["output_mean"]     # a real distribution
    assert d["workload"]["requests"] > 0


def test_predictions_carry_the_cost_model_bands(sized):
    doc, _ = sized
    p = doc["predicted"]
    assert "error_band" not in p and "interval_note" in p
    for f in ("tpot_ms", "output_throughput_per_chip", "ttft_full_batch_ms"):
        lo, hi = p[f + "_interval"]
        assert lo <= p[f] <= hi and lo < hi, (f, p)


def test_pod_runs_see_the_whole_trace_time_stretched():
    """A representative pod at 1/k of the rate gets the trace time-stretched by k over one whole
    pass (every request once: the full length distribution), not a thinned or cut sample."""
    from xds.size.load import MAX_DURATION_S, MAX_RUN_REQUESTS, build, size_workload
    from xds.workload import read_trace

    path = FIXTURES / "traces" / "mooncake_conversation_trace_head3000.jsonl"
    raw = read_trace(path)
    sw = size_workload(trace=str(path), rate=100.0)   # 30 s per pass
    for k in (2, 4, 10):
        w = build(sw.scaled(1.0 / k))
        assert len(w) == len(raw) == 3000
        assert np.array_equal(np.sort(w.input_len), np.sort(raw.input_len))
        assert w.summary()["rate_rps"] == pytest.approx(100.0 / k, rel=0.01)
    # bounded: at a low pod rate the run stops at MAX_DURATION_S / MAX_RUN_REQUESTS
    w = build(sw.scaled(1.0 / 100))
    assert w.span_s <= MAX_DURATION_S and len(w) <= MAX_RUN_REQUESTS
    # --duration is honoured as given
    fixed = size_workload(trace=str(path), rate=400.0, duration=5.0)
    assert fixed.scaled(0.5)["duration_s"] == 5.0
