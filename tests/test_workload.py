"""Tests for xds.workload's trace readers (Azure, BurstGPT, Mooncake, length CSVs), their located
errors and the package structure; synthetic workloads and transforms are in test_workload_synthetic,
the prefix cache in test_prefix_cache.

Reference figures come from /work/shared/traces/STATS.md (computed independently with NumPy).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from xds import workload as wl
from xds.errors import XdsError
from xds.workload import (
    Workload,
    detect_format,
    prefix_cache_stats,
    read_trace,
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
