"""Prefix caching: the LRU / vectorized replay of Mooncake hash_ids (xds.workload.prefix_cache), and in
the engine, where cached prefixes cut prefill work and the reported hit rate never exceeds the
trace's own reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xds.errors import XdsError
from xds.workload import (
    PrefixCache,
    Workload,
    cached_tokens,
    loop_to_duration,
    prefix_cache_stats,
    read_trace,
    truncate,
)

from .conftest import FIXTURES, PLANS, run_cli

TRACE = FIXTURES / "traces/mooncake_synthetic_trace.jsonl"
TRACES = FIXTURES / "traces"



@pytest.fixture(scope="module")
def conv() -> Workload:
    return read_trace(TRACES / "azure_llm_2023_conv.csv")


@pytest.fixture(scope="module")
def mc_synth() -> Workload:
    return read_trace(TRACE)


@pytest.fixture(scope="module")
def mc_head() -> Workload:
    return read_trace(TRACES / "mooncake_conversation_trace_head3000.jsonl")


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
