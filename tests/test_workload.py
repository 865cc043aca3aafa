"""Tests for xds.workload: trace readers, synthetic generators, transformations, prefix cache.

Reference figures come from /work/shared/traces/STATS.md (computed independently with NumPy).
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xds import workload as wl
from xds.errors import XdsError
from xds.spec.plan import load_plan
from xds.spec.yamlio import validate
from xds.workload import (
    LengthDist,
    PrefixCache,
    Workload,
    WorkloadSpec,
    cached_tokens,
    detect_format,
    load_workload,
    loop_to_duration,
    plan_workload,
    prefix_cache_stats,
    rate_scale,
    read_trace,
    synthetic,
)

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "fixtures" / "traces"
BAD = ROOT / "fixtures" / "bad" / "traces"
FULL_CONV = Path("/work/shared/traces/mooncake_conversation_trace.jsonl")

BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


@pytest.fixture(scope="module")
def conv() -> Workload:
    return read_trace(TRACES / "azure_llm_2023_conv.csv")


@pytest.fixture(scope="module")
def mc_synth() -> Workload:
    return read_trace(TRACES / "mooncake_synthetic_trace.jsonl")


@pytest.fixture(scope="module")
def mc_head() -> Workload:
    return read_trace(TRACES / "mooncake_conversation_trace_head3000.jsonl")


def _cv(x: np.ndarray) -> float:
    g = np.diff(x)
    return float(g.std() / g.mean())


# ------------------------------------------------------------------ readers on real traces


def test_azure_conv_matches_stats(conv):
    s = conv.summary()
    assert s["requests"] == 19_366
    assert s["input"]["mean"] == pytest.approx(1154.7, abs=0.05)
    assert s["output"]["mean"] == pytest.approx(211.1, abs=0.05)
    assert (s["input"]["p50"], s["input"]["p99"], s["input"]["max"]) == (1020, 4142, 14050)
    assert s["output"]["max"] == 1000
    assert s["span_s"] == pytest.approx(3502, abs=1)
    assert s["rate_rps"] == pytest.approx(5.530, abs=0.001)
    assert _cv(conv.arrival_s) == pytest.approx(1.09, abs=0.01)
    assert conv.arrival_s[0] == 0.0 and np.all(np.diff(conv.arrival_s) >= 0)
    assert conv.input_len.dtype == np.int64 and conv.arrival_s.dtype == np.float64
    assert conv.block_ids is None and conv.skipped == 0 and len(conv) == 19_366


def test_azure_code_is_bursty():
    w = read_trace(TRACES / "azure_llm_2023_code.csv", "azure")
    s = w.summary()
    assert s["requests"] == 8_819
    assert s["input"]["mean"] == pytest.approx(2047.8, abs=0.05)
    assert s["output"]["mean"] == pytest.approx(27.9, abs=0.05)
    assert s["rate_rps"] == pytest.approx(2.567, abs=0.001)
    assert _cv(w.arrival_s) == pytest.approx(13.15, abs=0.01)
    # peak of 67 requests in one second (STATS.md)
    assert np.bincount(np.floor(w.arrival_s).astype(int)).max() == 67


def test_mooncake_synthetic_matches_stats(mc_synth):
    s = mc_synth.summary()
    assert s["requests"] == 3_993
    assert s["input"]["mean"] == pytest.approx(15325.5, abs=0.05)
    assert s["output"]["mean"] == pytest.approx(149.1, abs=0.05)
    assert s["blocks"] == 121_877 and s["unique_blocks"] == 43_924
    # Poisson arrivals are not on a 3 s grid: they must not be spread (first rows: 0, 0, 40, 277 ms)
    np.testing.assert_allclose(mc_synth.arrival_s[:4], [0.0, 0.0, 0.040, 0.277])
    assert _cv(mc_synth.arrival_s) == pytest.approx(1.01, abs=0.01)


def test_mooncake_conversation_head_bucket_spreading(mc_head):
    raw = [json.loads(line) for line in
           (TRACES / "mooncake_conversation_trace_head3000.jsonl").read_text().splitlines()]
    t_ms = np.array([r["timestamp"] for r in raw], dtype=float)
    assert len(mc_head) == 3000
    assert mc_head.input_len.mean() == pytest.approx(np.mean([r["input_length"] for r in raw]))
    # the first bucket (t = 0) holds 10 requests: spread by 0.3 s
    n0 = int(np.sum(t_ms == 0))
    assert n0 == 10
    np.testing.assert_allclose(mc_head.arrival_s[:n0], np.arange(n0) * 3.0 / n0)
    # every request stays in its own bucket [t, t + 3 s), in file order, with distinct times
    t_ms = np.sort(t_ms, kind="stable")
    assert np.all(mc_head.arrival_s >= t_ms / 1000) and np.all(mc_head.arrival_s < t_ms / 1000 + 3)
    assert len(np.unique(mc_head.arrival_s)) == 3000
    # block chains are preserved per request
    r = 17
    chain = mc_head.block_ids[mc_head.block_offsets[r]:mc_head.block_offsets[r + 1]]
    assert chain.tolist() == raw[r]["hash_ids"]
    # forcing spreading off keeps the quantised timestamps
    raw_w = read_trace(TRACES / "mooncake_conversation_trace_head3000.jsonl", spread_buckets=False)
    np.testing.assert_allclose(raw_w.arrival_s, np.sort(t_ms) / 1000)


@pytest.mark.skipif(not FULL_CONV.exists(), reason="full Mooncake conversation trace not available")
def test_mooncake_conversation_full_matches_stats():
    w = read_trace(FULL_CONV)
    s = w.summary()
    assert s["requests"] == 12_031
    assert s["input"]["mean"] == pytest.approx(12035.1, abs=0.05)
    assert s["output"]["mean"] == pytest.approx(342.6, abs=0.05)
    stats = prefix_cache_stats(w, None)
    assert stats.total_blocks == 288_500 and stats.unique_blocks == 182_790
    assert stats.hit_rate == pytest.approx(0.366, abs=0.001)
    small = prefix_cache_stats(w, 10_000)
    assert small.hit_rate < stats.hit_rate


def test_lengths_csv_with_synthetic_arrivals():
    path = TRACES / "sharegpt_8k_lengths_llama2tok.csv"
    assert detect_format(path) == "lengths"
    w = read_trace(path, rate_rps=20.0, seed=3)
    s = w.summary()
    assert s["requests"] == 30_731
    assert s["input"]["mean"] == pytest.approx(2340.0, abs=0.05)
    assert s["output"]["mean"] == pytest.approx(438.7, abs=0.05)
    assert s["rate_rps"] == pytest.approx(20.0, rel=0.03)
    # file order is kept: rows are not resampled
    assert w.input_len[:2].tolist() == [74, 290] and w.output_len[:2].tolist() == [918, 905]
    with pytest.raises(XdsError, match="rate_rps"):
        read_trace(path)
    g = read_trace(path, rate_rps=20.0, arrival="gamma", cv=4.0, seed=3)
    assert _cv(g.arrival_s) == pytest.approx(4.0, rel=0.1)


def test_azure_conv_loads_fast_enough(conv):
    # not a timing assertion (see benchmarks/); just that the streaming reader copes with 19k rows
    assert len(conv) == 19_366


# ------------------------------------------------------------------ timestamp formats, BurstGPT


def test_azure_2023_and_2024_timestamp_formats(tmp_path):
    f23 = tmp_path / "a23.csv"
    f23.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                   "2023-11-16 18:17:03.9799600,4808,10\n"
                   "2023-11-16 18:17:04.0319600,3180,8\n"
                   "2023-11-16 18:17:04.0319601,3181,9\n")
    w = read_trace(f23)
    np.testing.assert_allclose(w.arrival_s, [0.0, 0.052, 0.0520001], atol=1e-9)
    f24 = tmp_path / "a24.csv"
    f24.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                   "2024-05-10 00:00:00.009930+00:00,1000,20\n"
                   "2024-05-10 00:00:01.1234567+00:00,2000,30\n"
                   "2024-05-10T00:00:02.5Z,10,3\n"
                   "2024-05-10 02:00:03.000000+02:00,10,3\n"
                   "2024-05-10 00:00:04+00:00,10,3\n")
    w = read_trace(f24)
    np.testing.assert_allclose(w.arrival_s, [0.0, 1.1135267, 2.49007, 2.99007, 3.99007], atol=1e-9)
    assert w.input_len.tolist() == [1000, 2000, 10, 10, 10]


def test_unsorted_rows_are_sorted_stably(tmp_path):
    f = tmp_path / "u.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:00:05.0,5,1\n"
                 "2023-11-16 18:00:01.0,1,1\n"
                 "2023-11-16 18:00:05.0,6,1\n"
                 "2023-11-16 18:00:03.0,3,1\n")
    w = read_trace(f)
    assert w.input_len.tolist() == [1, 3, 5, 6]
    np.testing.assert_allclose(w.arrival_s, [0, 2, 4, 4])


def test_burstgpt_skips_failed_requests(tmp_path):
    f = tmp_path / "burst.csv"
    f.write_text(BURST_HEADER
                 + "5,ChatGPT,472,18,490,Conversation log\n"
                 + "45,ChatGPT,1087,0,1087,Conversation log\n"
                 + "118,GPT-4,417,217,634,Conversation log\n"
                 + '120,"GPT-4, turbo",10,0,10,API log\n'
                 + "12.5,ChatGPT,100,50,150,API log\n")
    assert detect_format(f) == "burstgpt"
    w = read_trace(f)
    assert len(w) == 3 and w.skipped == 2 and w.summary()["skipped"] == 2
    assert w.input_len.tolist() == [472, 100, 417]
    assert w.output_len.tolist() == [18, 50, 217]
    np.testing.assert_allclose(w.arrival_s, [0.0, 7.5, 113.0])
    allfail = tmp_path / "allfail.csv"
    allfail.write_text(BURST_HEADER + "5,ChatGPT,472,0,472,Conversation log\n")
    with pytest.raises(XdsError, match="failed"):
        read_trace(allfail)


def test_forced_format_mismatch_is_an_error():
    with pytest.raises(XdsError) as ei:
        read_trace(TRACES / "azure_llm_2023_conv.csv", "burstgpt")
    assert ei.value.where == "line 1" and "Timestamp" in ei.value.message
    with pytest.raises(XdsError, match="unknown trace format"):
        read_trace(TRACES / "azure_llm_2023_conv.csv", "parquet")
    with pytest.raises(XdsError, match="rate_scale"):
        read_trace(TRACES / "azure_llm_2023_conv.csv", rate_rps=3.0)


# ------------------------------------------------------------------ bad inputs


BAD_CASES = [
    ("azure_non_numeric.csv", 3, "ContextTokens"),
    ("azure_negative.csv", 4, "negative"),
    ("azure_zero_output.csv", 3, "GeneratedTokens is zero"),
    ("azure_truncated.csv", 4, "missing column"),
    ("azure_truncated_row.csv", 3, "missing column"),
    ("azure_nan.csv", 3, "ContextTokens"),
    ("azure_inf.csv", 3, "GeneratedTokens"),
    ("azure_bad_timestamp.csv", 3, "TIMESTAMP"),
    ("azure_bad_date.csv", 3, "TIMESTAMP"),
    ("azure_too_long_input.csv", 3, "too large"),
    ("azure_too_long_output.csv", 3, "too large"),
    ("azure_binary.csv", 3, "UTF-8"),
    ("azure_nul.csv", 4, "binary"),
    ("unknown_header.csv", 1, "unrecognised"),
    ("azure_missing_column.csv", 1, "unrecognised"),
    ("burstgpt_negative.csv", 3, "negative"),
    ("burstgpt_nan_timestamp.csv", 2, "Timestamp"),
    ("mooncake_truncated.jsonl", 2, "invalid JSON"),
    ("mooncake_nan.jsonl", 2, "invalid JSON"),
    ("mooncake_missing_field.jsonl", 2, "output_length"),
    ("mooncake_not_object.jsonl", 2, "JSON object"),
    ("mooncake_float_length.jsonl", 1, "whole number"),
    ("mooncake_bad_hash_ids.jsonl", 1, "hash_ids"),
    ("mooncake_negative_timestamp.jsonl", 1, "timestamp"),
]


@pytest.mark.parametrize("name,line,text", BAD_CASES)
def test_bad_rows_name_file_and_line(name, line, text):
    path = BAD / name
    with pytest.raises(XdsError) as ei:
        read_trace(path)
    err = ei.value
    assert err.file == str(path)
    assert err.where == f"line {line}"
    assert text in err.message
    assert "\n" not in str(err) and str(err).startswith(str(path))


def test_bare_carriage_return_in_a_quoted_csv_line_is_a_located_error(tmp_path):
    # found by the fuzz test: csv raised its own error for an old-Mac line ending inside a quote
    for text, line in [('\r"\n', 1), ('TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03\r,"1",2\n', 2)]:
        path = tmp_path / "cr.csv"
        path.write_text(text, newline="")
        with pytest.raises(XdsError) as ei:
            read_trace(path)
        assert ei.value.file == str(path) and ei.value.where == f"line {line}"
        assert "not a valid CSV line" in ei.value.message


def test_bad_lengths_row():
    with pytest.raises(XdsError) as ei:
        read_trace(BAD / "lengths_zero_output.csv", rate_rps=1.0)
    assert ei.value.where == "line 3" and "num_decode_tokens is zero" in ei.value.message


def test_missing_column_with_forced_format():
    with pytest.raises(XdsError) as ei:
        read_trace(BAD / "azure_missing_column.csv", "azure")
    assert ei.value.where == "line 1" and "GeneratedTokens" in ei.value.message


@pytest.mark.parametrize("name,text", [("empty.csv", "empty"), ("blank_lines.csv", "empty"),
                                       ("header_only.csv", "no requests")])
def test_empty_inputs(name, text):
    with pytest.raises(XdsError, match=text) as ei:
        read_trace(BAD / name)
    assert ei.value.file == str(BAD / name)


def test_missing_file_folder_and_size_cap(tmp_path, monkeypatch):
    with pytest.raises(XdsError, match="not found"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(XdsError, match="folder"):
        read_trace(tmp_path)
    monkeypatch.setattr(wl.lines, "MAX_TRACE_BYTES", 1000)  # read where check_file looks it up
    with pytest.raises(XdsError, match="at most") as ei:
        read_trace(TRACES / "azure_llm_2023_code.csv")
    assert ei.value.file.endswith("azure_llm_2023_code.csv")


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


# ------------------------------------------------------------------ prefix cache


def _reference_infinite(w: Workload) -> np.ndarray:
    seen: set[int] = set()
    out = []
    for r in range(len(w)):
        chain = w.block_ids[w.block_offsets[r]:w.block_offsets[r + 1]].tolist()
        h = 0
        for b in chain:
            if b not in seen:
                break
            h += 1
        out.append(h)
        seen.update(chain)
    return np.array(out)


def test_prefix_cache_infinite_matches_reference(mc_head):
    stats = prefix_cache_stats(mc_head)
    ref = _reference_infinite(mc_head)
    np.testing.assert_array_equal(stats.hit_blocks, ref)
    assert stats.hit_rate == pytest.approx(ref.sum() / len(mc_head.block_ids))
    tok = cached_tokens(mc_head, None)
    assert tok.dtype == np.int64
    np.testing.assert_array_equal(tok, np.minimum(mc_head.input_len - 1, ref * 512))
    # the same replay through the LRU class with a cache that never evicts
    cache = PrefixCache(10**9)
    hits = [cache.access(mc_head.block_ids[mc_head.block_offsets[r]:mc_head.block_offsets[r + 1]]
                         .tolist()) for r in range(len(mc_head))]
    np.testing.assert_array_equal(hits, ref)
    assert cache.hit_rate == pytest.approx(stats.hit_rate)


def test_prefix_cache_synthetic_matches_stats(mc_synth):
    inf = prefix_cache_stats(mc_synth, None)
    assert inf.hit_rate == pytest.approx(0.640, abs=0.001)
    assert inf.unique_blocks == 43_924
    # a finite cache can only do worse, monotonically in its size (LRU is a stack algorithm)
    rates = [prefix_cache_stats(mc_synth, c).hit_rate for c in (0, 500, 5_000, 20_000)]
    assert rates[0] == 0.0
    assert all(a <= b for a, b in zip(rates, rates[1:]))
    assert rates[-1] < inf.hit_rate
    small = prefix_cache_stats(mc_synth, 5_000)
    assert np.all(small.hit_blocks <= inf.hit_blocks)
    assert np.all(small.cached_tokens >= 0) and np.all(small.cached_tokens < mc_synth.input_len)


def test_lru_replay_matches_class(mc_head):
    cap = 3_000
    stats = prefix_cache_stats(mc_head, cap)
    cache = PrefixCache(cap)
    hits = [cache.access(mc_head.block_ids[mc_head.block_offsets[r]:mc_head.block_offsets[r + 1]]
                         .tolist()) for r in range(len(mc_head))]
    np.testing.assert_array_equal(stats.hit_blocks, hits)
    assert len(cache) == cap
    assert 0 < stats.hit_rate < prefix_cache_stats(mc_head).hit_rate


def test_lru_eviction_order():
    cache = PrefixCache(3)
    assert cache.access([1, 2, 3]) == 0
    assert cache.access([1, 2, 3]) == 3
    assert cache.access([1, 9]) == 1  # tail first: 9 then 1 touched; 3 is least recent -> evicted
    assert 3 not in cache and 1 in cache and 2 in cache and 9 in cache
    assert cache.access([1, 2, 3]) == 2
    assert cache.hit_rate == pytest.approx(6 / 11)


def test_looped_trace_reuses_blocks(mc_synth):
    looped = loop_to_duration(mc_synth, 2 * mc_synth.span_s + 10)
    assert len(looped) > 2 * len(mc_synth)
    # the second loop replays the first one's conversations, so its reuse is higher
    assert prefix_cache_stats(looped).hit_rate > prefix_cache_stats(mc_synth).hit_rate


def test_prefix_cache_errors(conv, mc_head):
    with pytest.raises(XdsError, match="hash_ids"):
        cached_tokens(conv, 100)
    with pytest.raises(XdsError, match="capacity_blocks"):
        cached_tokens(mc_head, -1)


# ------------------------------------------------------------------ package structure


def test_each_csv_column_map_is_detected_from_its_header(tmp_path):
    for fmt in wl.CSV_FORMATS:
        p = tmp_path / f"{fmt.name}.csv"
        p.write_text(",".join(["extra", *sorted(fmt.headers)]) + "\n")
        assert detect_format(p) == fmt.name


def test_workload_modules_import_one_way():
    """xds.spec.workload knows nothing of xds.workload; xds.workload's modules import only the spec
    layer, xds.errors and each other without a circle, all at module top."""
    pkg = ROOT / "xds" / "workload"
    spec = ast.parse((ROOT / "xds" / "spec" / "workload.py").read_text())
    assert not [n for n in ast.walk(spec) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("..workload")]
    deps: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        tree = ast.parse(f.read_text())
        top = {id(n) for n in tree.body}
        deps[f.stem] = set()
        for n in ast.walk(tree):
            if not isinstance(n, ast.ImportFrom) or n.level == 0:
                continue
            assert id(n) in top, f"{f.name}:{n.lineno} imports inside a function"
            if n.level == 1 and n.module:
                deps[f.stem].add(n.module.split(".")[0])
            else:
                assert n.level == 2 and n.module.split(".")[0] in ("spec", "errors"), \
                    f"{f.name}:{n.lineno} imports xds.{n.module}"
    seen: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import circle {' -> '.join(path + (m,))}"
        if m in seen:
            return
        for d in deps.get(m, ()):
            visit(d, path + (m,))
        seen.add(m)

    for m in deps:
        if m != "__init__":
            visit(m, ())
    assert not any("__init__" in d for d in deps.values())
