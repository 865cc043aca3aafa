"""Tests for xds.workload's synthetic generators, the workload spec and load_workload/plan_workload,
and the transforms (rate_scale, loop_to_duration, truncate)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xds.errors import XdsError
from xds.spec.plan import load_plan
from xds.spec.yamlio import validate
from xds.workload import (
    LengthDist,
    Workload,
    WorkloadSpec,
    load_workload,
    loop_to_duration,
    plan_workload,
    rate_scale,
    read_trace,
    synthetic,
)

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "fixtures" / "traces"


def _cv(x: np.ndarray) -> float:
    g = np.diff(x)
    return float(g.std() / g.mean())


# ------------------------------------------------------------------ synthetic


def test_poisson_rate_and_cv():
    w = synthetic(rate_rps=50.0, requests=20_000, input=128, output=16, seed=7)
    assert len(w) == 20_000
    gaps = np.diff(w.arrival_s)
    # mean gap 1/50 s within ~4 standard errors; CV 1 within tolerance
    assert gaps.mean() == pytest.approx(0.02, rel=4 / math.sqrt(20_000))
    assert _cv(w.arrival_s) == pytest.approx(1.0, abs=0.03)
    assert np.all(w.input_len == 128) and np.all(w.output_len == 16)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_cv(cv):
    w = synthetic(rate_rps=10.0, requests=40_000, arrival="gamma", cv=cv, input=1, output=1, seed=1)
    gaps = np.diff(w.arrival_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.05)
    assert _cv(w.arrival_s) == pytest.approx(cv, rel=0.06)


def test_duration_mode():
    w = synthetic(rate_rps=100.0, duration_s=60.0, input=10, output=10, seed=2)
    assert np.all(w.arrival_s < 60.0)
    assert len(w) == pytest.approx(6000, abs=4 * math.sqrt(6000))
    both = synthetic(rate_rps=100.0, duration_s=1.0, requests=5000, input=10, output=10, seed=2)
    assert len(both) < 5000 and np.all(both.arrival_s < 1.0)
    with pytest.raises(XdsError, match="requests or duration_s"):
        synthetic(rate_rps=1.0, input=1, output=1)


def test_determinism():
    kw = dict(rate_rps=5.0, requests=1000, arrival="gamma", cv=2.0,
              input={"dist": "lognormal", "mean": 1000, "sigma": 1.0},
              output={"dist": "uniform", "low": 10, "high": 500})
    a, b, c = synthetic(seed=11, **kw), synthetic(seed=11, **kw), synthetic(seed=12, **kw)
    for field in ("arrival_s", "input_len", "output_len"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(getattr(a, field), getattr(c, field))


def test_length_distributions():
    n = 50_000
    u = synthetic(rate_rps=1.0, requests=n, input={"dist": "uniform", "low": 5, "high": 9},
                  output={"dist": "fixed", "value": 3}, seed=0)
    assert set(np.unique(u.input_len).tolist()) == {5, 6, 7, 8, 9}
    ln = synthetic(rate_rps=1.0, requests=n,
                   input={"dist": "lognormal", "mean": 2000, "sigma": 0.8},
                   output={"dist": "lognormal", "mean": 200, "sigma": 0.5, "high": 300}, seed=0)
    assert ln.input_len.mean() == pytest.approx(2000, rel=0.03)
    assert ln.input_len.min() >= 1 and ln.output_len.max() == 300
    with pytest.raises(XdsError, match="set high"):
        synthetic(rate_rps=1.0, requests=n, input=10,
                  output={"dist": "lognormal", "mean": 500_000, "sigma": 3.0}, seed=0)


def test_empirical_lengths_keep_pairs():
    path = TRACES / "sharegpt_8k_lengths_llama2tok.csv"
    w = synthetic(rate_rps=1.0, requests=2000, input={"dist": "empirical", "file": str(path)},
                  output={"dist": "empirical", "file": str(path)}, seed=4)
    src = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1)).astype(np.int64)
    pairs = set(map(tuple, src.tolist()))
    assert all((a, b) in pairs for a, b in zip(w.input_len.tolist(), w.output_len.tolist()))
    # relative file resolved from base_dir; explicit column
    w2 = synthetic(rate_rps=1.0, requests=10, input={"dist": "empirical", "file": path.name,
                                                      "column": "num_total_tokens"},
                   output=1, base_dir=TRACES)
    assert w2.input_len.min() >= 1
    with pytest.raises(XdsError, match="lacks column"):
        synthetic(rate_rps=1.0, requests=10, input={"dist": "empirical", "file": str(path),
                                                     "column": "nope"}, output=1)


@pytest.mark.parametrize("data,text", [
    ({"dist": "fixed"}, "needs value"),
    ({"dist": "uniform", "low": 5}, "needs high"),
    ({"dist": "uniform", "low": 9, "high": 5}, "low"),
    ({"dist": "fixed", "value": 3, "mean": 2.0}, "does not use mean"),
    ({"dist": "lognormal", "mean": 10.0}, "needs sigma"),
    ({"dist": "empirical"}, "needs file"),
    ({"dist": "zipf", "value": 3}, "dist"),
    ({"dist": "fixed", "value": 0}, "greater than or equal"),
    ({"dist": "fixed", "value": 2, "colour": 1}, "unknown key"),
])
def test_length_dist_validation(data, text):
    with pytest.raises(XdsError, match=text):
        validate(LengthDist, data, file="plan.yaml")


# ------------------------------------------------------------------ spec + load_workload


@pytest.mark.parametrize("data,where,text", [
    ({"rate_rps": 1.0, "requests": 5}, "(top level)", "needs input, output"),
    ({"rate_rps": 1.0, "input": {"dist": "fixed", "value": 1},
      "output": {"dist": "fixed", "value": 1}}, "(top level)", "requests or duration_s"),
    ({"trace": "x.csv", "rate_scale": 0}, "rate_scale", "greater than 0"),
    ({"trace": "x.csv", "format": "azure", "rate_rps": 3.0}, "(top level)", "use rate_scale"),
    ({"trace": "x.csv", "format": "lengths"}, "(top level)", "needs rate_rps"),
    ({"trace": "x.csv", "input": {"dist": "fixed", "value": 1}}, "(top level)", "own lengths"),
    ({"trace": "x.csv", "cv": 2.0}, "(top level)", "gamma"),
    ({"trace": "x.csv", "duration_s": float("nan")}, "duration_s", "finite"),
    ({"trace": "x.csv", "rate_sacle": 2}, "rate_sacle", "did you mean 'rate_scale'"),
    ({"trace": "x.csv", "format": "parquet"}, "format", "azure"),
    ({"rate_rps": 1.0, "requests": 3, "input": {"dist": "fixed"},
      "output": {"dist": "fixed", "value": 1}}, "input", "needs value"),
])
def test_workload_spec_validation(data, where, text):
    with pytest.raises(XdsError) as ei:
        validate(WorkloadSpec, data, file="plan.yaml", where_prefix="workload")
    assert ei.value.file == "plan.yaml"
    expected = "workload" if where == "(top level)" else f"workload.{where}"
    assert ei.value.where == expected
    assert text in ei.value.message


def test_load_workload_trace_paths(tmp_path, monkeypatch):
    spec = WorkloadSpec(trace="azure_llm_2023_conv.csv", rate_scale=2.0, requests=100)
    w = load_workload(spec, base_dir=TRACES)
    assert len(w) == 100
    full = read_trace(TRACES / "azure_llm_2023_conv.csv")
    np.testing.assert_allclose(w.arrival_s, full.arrival_s[:100] / 2)
    # falls back to the current directory
    monkeypatch.chdir(TRACES)
    assert len(load_workload(spec, base_dir=tmp_path)) == 100
    with pytest.raises(XdsError, match="not found") as ei:
        load_workload(WorkloadSpec(trace="missing.csv"), base_dir=tmp_path)
    assert ei.value.file == "missing.csv"
    with pytest.raises(XdsError, match="use rate_scale"):
        load_workload(WorkloadSpec(trace="azure_llm_2023_conv.csv", rate_rps=2.0))


def test_plan_workload_resolves_from_the_plan_and_blames_its_trace_line(tmp_path):
    src = ROOT / "fixtures" / "plans" / "dp_not_dies.yaml"
    plan = load_plan(src)
    w = plan_workload(plan, seed=0)
    assert w.name == "azure_llm_2023_conv" and w.span_s < 300
    moved = tmp_path / "plan.yaml"            # a copied plan whose relative trace no longer resolves
    moved.write_text(src.read_text())
    with pytest.raises(XdsError, match="relative paths resolve from the plan's folder") as ei:
        plan_workload(load_plan(moved))
    assert ei.value.file == str(moved) and ei.value.where == "workload.trace"
    bare = tmp_path / "bare.yaml"
    bare.write_text("\n".join(ln for ln in src.read_text().splitlines()
                              if not ln.startswith(("workload:", "  trace:", "  duration_s:"))))
    with pytest.raises(XdsError, match="no workload: block") as ei:
        plan_workload(load_plan(bare))
    assert ei.value.where == "workload"


def test_load_workload_duration_loops_and_truncates():
    spec = WorkloadSpec(trace="mooncake_synthetic_trace.jsonl", duration_s=3000.0)
    w = load_workload(spec, base_dir=TRACES)
    assert w.arrival_s[-1] < 3000.0 and w.arrival_s[-1] > 2900.0
    assert len(w) == pytest.approx(3.907 * 3000, rel=0.03)
    short = load_workload(WorkloadSpec(trace="mooncake_synthetic_trace.jsonl", duration_s=100.0),
                          base_dir=TRACES)
    assert np.all(short.arrival_s < 100.0) and len(short) < 3993
    assert short.block_offsets[-1] == len(short.block_ids)


def test_load_workload_lengths_and_synthetic():
    spec = validate(WorkloadSpec, {"trace": "sharegpt_8k_lengths_llama2tok.csv", "rate_rps": 8.0,
                                   "arrival": "gamma", "cv": 2.0, "requests": 500}, file="p.yaml")
    w = load_workload(spec, base_dir=TRACES, seed=5)
    assert len(w) == 500 and w.input_len[0] == 74
    syn = validate(WorkloadSpec, {"rate_rps": 4.0, "duration_s": 100.0,
                                  "input": {"dist": "fixed", "value": 1000},
                                  "output": {"dist": "uniform", "low": 1, "high": 100}},
                   file="p.yaml")
    a, b = load_workload(syn, seed=9), load_workload(syn, seed=9)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert np.all(a.arrival_s < 100.0) and np.all(a.input_len == 1000)


# ------------------------------------------------------------------ transformations (hypothesis)


@st.composite
def workloads(draw, with_blocks: bool = True):
    n = draw(st.integers(2, 40))
    gap = st.one_of(st.just(0.0), st.floats(1e-3, 10.0))  # ties, and gaps of at least 1 ms
    gaps = draw(st.lists(gap, min_size=n - 1, max_size=n - 1))
    arrival = np.concatenate([[0.0], np.cumsum(gaps)])
    if arrival[-1] <= 0:
        arrival[-1] = 1.0
    inp = np.array(draw(st.lists(st.integers(1, 5000), min_size=n, max_size=n)), dtype=np.int64)
    out = np.array(draw(st.lists(st.integers(1, 500), min_size=n, max_size=n)), dtype=np.int64)
    off = ids = None
    if with_blocks:
        lens = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        ids = np.array(draw(st.lists(st.integers(0, 20), min_size=int(off[-1]),
                                     max_size=int(off[-1]))), dtype=np.int64)
    return Workload(arrival, inp, out, off, ids, name="h")


@settings(max_examples=60, deadline=None)
@given(workloads(), st.floats(0.01, 100.0))
def test_rate_scale_properties(w, x):
    s = rate_scale(w, x)
    assert len(s) == len(w)
    np.testing.assert_allclose(s.arrival_s * x, w.arrival_s, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(s.arrival_s) >= 0)
    assert s.span_s == pytest.approx(w.span_s / x)
    np.testing.assert_array_equal(s.input_len, w.input_len)


@settings(max_examples=60, deadline=None)
@given(workloads(), st.floats(0.5, 5.0))
def test_loop_to_duration_properties(w, factor):
    duration = (w.span_s + 1e-3) * factor
    lw = loop_to_duration(w, duration)
    n = len(w)
    assert np.all(lw.arrival_s < duration)
    assert np.all(np.diff(lw.arrival_s) >= 0)
    k = len(lw)
    idx = np.arange(k) % n
    np.testing.assert_array_equal(lw.input_len, w.input_len[idx])
    np.testing.assert_array_equal(lw.output_len, w.output_len[idx])
    period = w.span_s + w.span_s / (n - 1)
    np.testing.assert_allclose(lw.arrival_s, w.arrival_s[idx] + (np.arange(k) // n) * period,
                               rtol=1e-12, atol=1e-9)
    # nothing that fits is dropped: the next request would be at or after the duration
    nxt = w.arrival_s[k % n] + (k // n) * period
    assert nxt >= duration - 1e-9
    # block chains repeat with the same ids (a looped trace replays the same conversations)
    assert lw.block_offsets[-1] == len(lw.block_ids) and len(lw.block_offsets) == k + 1
    for r in range(k):
        a = lw.block_ids[lw.block_offsets[r]:lw.block_offsets[r + 1]]
        b = w.block_ids[w.block_offsets[r % n]:w.block_offsets[r % n + 1]]
        np.testing.assert_array_equal(a, b)


def test_transform_errors():
    w = synthetic(rate_rps=1.0, requests=10, input=1, output=1)
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(XdsError):
            rate_scale(w, bad)
        with pytest.raises(XdsError):
            loop_to_duration(w, bad)
    one = Workload(np.array([0.0]), np.array([1]), np.array([1]))
    with pytest.raises(XdsError, match="span 0"):
        loop_to_duration(one, 10.0)
