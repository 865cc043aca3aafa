"""Balanced P/D (xds/plan/balance.py) and trace-aware ``plan --search``: the plan the search writes
runs its decode pool near the batch it was priced at, on its own workload; length-biased decode
lengths; the prefill utilisation bound; the search's fixed bugs (model path, ``--input-len 0``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import FIXTURES, SMALL_POD, assert_user_error, run_cli  # noqa: E402

from xds.pipeline import simulate_plan  # noqa: E402
from xds.plan.balance import DECODE_FILL, LengthStats, pool_counts, prefill_util  # noqa: E402
from xds.plan.search import run_search  # noqa: E402


def test_length_biased_decode_lengths():
    # two requests: (I, O) = (100, 10) and (1000, 90): the batch holds the long one 9x as long
    s = LengthStats.of(np.array([100, 1000]), np.array([10, 90]))
    assert s.output_mean == 50
    assert s.decode_input == pytest.approx((100 * 10 + 1000 * 90) / 100)
    assert s.decode_output == pytest.approx((100 + 8100) / 100)
    f = LengthStats.fixed(4096, 256)
    assert (f.decode_input, f.decode_output, f.input_pct) == (4096, 256, 4096)


@settings(max_examples=50, deadline=None)
@given(st.floats(1, 1000), st.integers(1, 4), st.floats(1, 20000), st.sampled_from([50.0, 90.0, 99.0]))
def test_prefill_util_meets_its_target(t_ms, chunks, ttft, pct):
    rho = prefill_util(t_ms, chunks, ttft, pct)
    assert 0 <= rho < 1
    if t_ms * chunks > ttft:
        assert rho == 0
    # a longer TTFT target never lowers the utilisation the pool may plan on
    assert prefill_util(t_ms, chunks, ttft * 2, pct) >= rho


def test_pool_counts_cover_the_rate():
    assert pool_counts(100.0, 30.0, 45.0) == (3, 4)
    assert pool_counts(90.0, 30.0, 45.0) == (2, 3)   # exact multiples do not round up


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("bal") / "best.yaml"
    doc = run_search(model="deepseek-r1", hardware="ascend-910c", cluster=SMALL_POD, input_len=2048,
                     output_len=256, tpot_ms=50, out=str(out))
    return doc, out


def test_search_plan_runs_decode_near_its_priced_batch(searched):
    doc, out = searched
    plan = yaml.safe_load(out.read_text())
    dec = next(p for p in plan["pools"] if p["role"] == "decode")
    assert dec["batch_per_rank"] == doc["best"]["batch_per_rank"]
    sim, _ = simulate_plan(str(out), duration=60)
    ranks = dec["layout"]["dp"] * dec["instances"]
    dur = 60
    # steady state: windows that start after the first one and end before arrivals stop
    steady = [w["decode_running"] for w in sim["timeline"] if 0 < w["t_s"] and w["t_s"] + 10 <= dur]
    assert steady
    mean_batch = float(np.mean(steady)) / ranks
    assert mean_batch >= 0.8 * dec["batch_per_rank"], (mean_batch, dec["batch_per_rank"])
    assert mean_batch <= dec["batch_per_rank"]
    assert sim["passed"], sim["slo"]


def test_search_on_a_trace_replays_that_trace(tmp_path):
    out = tmp_path / "p.yaml"
    doc = run_search(model="deepseek-r1", trace=str(FIXTURES / "traces" / "mooncake_synthetic_trace.jsonl"),
                     cluster=SMALL_POD, tpot_ms=50, ttft_ms=5000, out=str(out))
    L = doc["lengths"]
    assert L["decode_input"] != pytest.approx(L["input_mean"], rel=0.01)   # a real distribution
    assert L["input_pct"] > L["input_mean"]
    w = yaml.safe_load(out.read_text())["workload"]
    assert "trace" in w and w["rate_scale"] > 0
    assert (tmp_path / w["trace"]).resolve() == (FIXTURES / "traces" / "mooncake_synthetic_trace.jsonl").resolve()


def test_search_with_model_path_writes_a_loadable_plan(tmp_path):
    cfg = tmp_path / "cfg" / "qwen.json"
    cfg.parent.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "xds" / "data" / "models" / "qwen3-30b-a3b.json", cfg)
    out = tmp_path / "best.yaml"
    r = run_cli("plan", "--search", "--model", str(cfg), "--input-len", "1024", "--output-len", "128",
                "--out", str(out), "--json")
    assert r.exit_code in (0, 1), r.output
    assert json.loads(r.stdout)["best"] is not None
    assert yaml.safe_load(out.read_text())["model"] == "cfg/qwen.json"
    r2 = run_cli("plan", str(out), "--json")
    assert r2.exit_code in (0, 1), r2.output


def test_search_rejects_zero_input_len():
    r = run_cli("plan", "--search", "--trace", str(FIXTURES / "traces" / "azure_llm_2023_conv.csv"),
                "--input-len", "0")
    assert_user_error(r, "--input-len")


def test_search_says_when_the_pod_cannot_feed_its_decode_pool(tmp_path):
    # 8 nodes: the decode instance leaves room for too few prefill instances to fill its batch
    small = tmp_path / "cm8.yaml"
    small.write_text(Path(SMALL_POD).read_text().replace("nodes: 16", "nodes: 8"))
    r = run_cli("plan", "--search", "--model", "deepseek-r1", "--cluster", str(small), "--input-len", "2048",
                "--output-len", "256", "--json")
    p = json.loads(r.stdout)["prefill"]
    assert p["prefill_capped_by_nodes"] and p["decode_fill_fraction"] < 0.8
    assert p["decode_fill_fraction"] == pytest.approx(DECODE_FILL * p["system_request_rate_rps"]
                                                      / p["decode_request_rate_rps"], abs=2e-3)
    text = run_cli("plan", "--search", "--model", "deepseek-r1", "--cluster", str(small), "--input-len",
                   "2048", "--output-len", "256").stdout
    assert "decode pool runs at" in text and "of its priced batch" in text
