"""Prefix caching in the engine: Mooncake hash_ids cut prefill work, and the reported hit rate never
exceeds the trace's own reuse."""

from __future__ import annotations

import json

from xds.workload import prefix_cache_stats, read_trace, truncate

from .conftest import FIXTURES, PLANS, run_cli

TRACE = FIXTURES / "traces/mooncake_synthetic_trace.jsonl"


def _plan_with_cache(tmp_path, capacity_gb: float):
    text = (PLANS / "xdeepserve-production.yaml").read_text()
    text = text.replace("../fixtures", str(FIXTURES))
    lines = [ln for ln in text.splitlines() if not ln.startswith("prefix_cache")]
    lines.append(f"prefix_cache: {{capacity_gb: {capacity_gb}}}")
    p = tmp_path / f"plan_{capacity_gb:g}.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def run(plan) -> dict:
    res = run_cli("simulate", plan, "--trace", TRACE, "--duration", "400", "--json")
    assert res.exit_code in (0, 1), res.stderr
    return json.loads(res.stdout)


def test_prefix_cache_hits_are_bounded_by_the_trace_and_cut_prefill(tmp_path):
    none = run(_plan_with_cache(tmp_path, 0))
    big = run(_plan_with_cache(tmp_path, 100000))
    assert none["prefix_cache_hit_rate"] is None
    w = truncate(read_trace(TRACE), duration_s=400.0)
    upper = prefix_cache_stats(w).hit_rate          # an infinite cache over the same requests
    assert 0 < big["prefix_cache_hit_rate"] <= upper + 1e-9
    assert big["mean_ttft_ms"] < none["mean_ttft_ms"]      # cached prefixes are not prefilled again
    assert big["completed"] == none["completed"] and big["failed"] == 0


def test_small_cache_hits_less(tmp_path):
    small = run(_plan_with_cache(tmp_path, 50))
    big = run(_plan_with_cache(tmp_path, 100000))
    assert small["prefix_cache_hit_rate"] <= big["prefix_cache_hit_rate"]
