"""Cost-model physics of issue 17 part A: the two-stream microbatch mechanism, the communication
kernel by phase, MoE-attention disaggregation, bounded calibration, and monotonicity properties.

The published effects checked here (reference §C.6) are held out of the calibration: no factor is
fitted to them, so these tests check the mechanism, not a fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xds.cost import CostModel, Layout
from xds.cost.bounds import bounds_for
from xds.cost.calibrate import fit, read_points
from xds.cost.estimate import estimate, prepare
from xds.cost.fabric import fabric_for
from xds.cost.layout import Fabric
from xds.spec.hardware import load_hardware
from xds.spec.model import load_model

from .conftest import FIXTURES, run_cli

CM_DECODE = dict(hardware="ascend-910c", chips=160, input_len=4096, output_len=256, mtp=1,
                 shared_expert_dies=32, redundant_experts=32)
CM_PREFILL = dict(hardware="ascend-910c", phase="prefill", chips=16, ep=32, tokens_per_chip=16384,
                  redundant_experts=32)


def _gain(a: dict, b: dict, key: str) -> float:
    return b[key] / a[key] - 1.0


@pytest.mark.parametrize("batch,published", [(64, 0.058), (96, 0.094), (128, 0.069)])
def test_decode_microbatching_gains_throughput_within_half_of_published(batch, published):
    """Reference §C.6 (CMv2 §5.4.1): two overlapped microbatches give +5.8/+9.4/+6.9 %."""
    one = estimate(**CM_DECODE, batch_per_chip=batch, microbatches=1)
    two = estimate(**CM_DECODE, batch_per_chip=batch, microbatches=2)
    g = _gain(one, two, "output_throughput_per_chip")
    assert g > 0
    assert 0.5 * published <= g <= 1.5 * published


@pytest.mark.parametrize("input_len", [1024, 2048, 4096])
def test_prefill_microbatching_gains_throughput_within_half_of_published(input_len):
    """Reference §C.6: prefill microbatching gives +23 % to +31 % across prompt lengths."""
    one = estimate(**CM_PREFILL, input_len=input_len, microbatches=1)
    two = estimate(**CM_PREFILL, input_len=input_len, microbatches=2)
    g = _gain(one, two, "input_throughput_per_chip")
    assert 0.5 * 0.23 <= g <= 1.5 * 0.31


def _cm(microbatches: int, hw: str = "ascend-910c", **kw) -> CostModel:
    m, h = load_model("deepseek-r1"), load_hardware(hw)
    lay = Layout(dies=320, ep=320, dp=320, shared_dies=32, routed_slots=288, microbatches=microbatches, **kw)
    return CostModel(m, h, lay, fabric_for("cloudmatrix384", h, 320))


def test_stream_overlap_exact_values():
    """One microbatch: streams back to back. m ≥ 2: m × the longer stream, at least m × the HBM
    traffic both streams share; one pipeline fill (the shorter stream) per forward."""
    one, two, three = _cm(1), _cm(2), _cm(3)
    assert one.overlap_streams(300.0, 200.0) == 500.0
    assert two.overlap_streams(300.0, 200.0) == 600.0
    assert three.overlap_streams(300.0, 200.0, 250.0) == 900.0
    assert two.overlap_streams(300.0, 200.0, 350.0) == 700.0      # HBM-bound: shared bandwidth
    assert two.pipeline_fill_us(300.0, 200.0) == 200.0
    assert one.pipeline_fill_us(300.0, 200.0) == 0.0
    assert one.stream_shares() == (1.0, 1.0)
    assert two.stream_shares() == pytest.approx((0.667, 0.333))


def test_bulk_kernel_exact_value_and_node_dedup():
    """The normal kernel (prefill) is bandwidth-bound; across nodes a token crosses once per
    destination node: topk_group / top_k = 4 / 8 of the copies for DeepSeek (reference §G)."""
    m, h = load_model("deepseek-r1"), load_hardware("h800")
    lay = Layout(dies=32, ep=32, dp=32, routed_slots=256, quant="fp8")
    cm = CostModel(m, h, lay, Fabric(50.0, "scale_out"))
    e = h.efficiency
    nbytes = 4096 * 8 * 7168.0
    assert cm.bulk_dedup == 0.5
    assert cm.comm_us(nbytes, dispatch=False, kernel="bulk") == pytest.approx(
        e.comm_latency_us + nbytes * 0.5 / (50.0 * e.scale_out_bulk * 1e3))
    up = CostModel(m, h, Layout(dies=8, ep=8, dp=8, routed_slots=256, quant="fp8"), Fabric(200.0))
    assert up.bulk_dedup == 1.0
    # the low-latency kernel pays its per-peer term; bulk does not
    assert cm.comm_us(nbytes, dispatch=False) > cm.comm_us(nbytes, dispatch=False, kernel="bulk")


def test_prefill_prices_dispatch_with_the_bulk_kernel():
    d = estimate(hardware="h800", phase="prefill", chips=32, tokens_per_chip=16384, microbatches=1,
                 input_len=4096)
    m, h = load_model("deepseek-r1"), load_hardware("h800")
    p = prepare(hardware="h800", phase="prefill", chips=32, tokens_per_chip=16384, microbatches=1)
    cm = CostModel(m, h, p.layout, p.fabric)
    n = 16384.0
    load = n * m.top_k * p.layout.ep / cm.routed_ranks * p.layout.balancedness
    copies = max(n * m.top_k, load)
    per_layer = cm.comm_us(copies * cm.msg_combine, dispatch=False, kernel="bulk")
    assert d["breakdown_ms"]["combine"] == pytest.approx(per_layer * m.moe_layers / 1e3, rel=1e-3)


def test_low_latency_kernel_reaches_fewer_peers_at_small_batch():
    """A rank exchanging a few token copies synchronises with few peers (reference §C.5)."""
    cm = _cm(1)
    small = cm.comm_us(8 * 7680.0, dispatch=False, copies=8)
    full = cm.comm_us(8 * 7680.0, dispatch=False)
    assert small < full
    assert cm.comm_us(1024 * 7680.0, dispatch=False, copies=1024) == pytest.approx(
        cm.comm_us(1024 * 7680.0, dispatch=False), rel=0.01)


def test_ma_layer_is_attention_bound_at_published_balance():
    """xDeepServe MA (reference §C.6): 0.7 ms attention per microbatch hides A2E + MoE + E2A; with
    the MoE dies balanced the step is within 15 % of ≈50 ms TPOT / ≈2,400 tok/s per chip."""
    m, h = load_model("deepseek-r1"), load_hardware("ascend-910c")
    lay = Layout(dies=768, ep=288, dp=160, shared_dies=32, routed_slots=256, mtp=1, mtp_acceptance=0.9,
                 microbatches=2, attention_dies=480, ma_domains=3)
    cm = CostModel(m, h, lay, fabric_for("cloudmatrix384", h, 768))
    b = np.full(160, 96.0)
    t, _, _, per = cm.decode_step_us(b, b * (2048 + 1024), detail=True)
    tpot = float(t) / 1e3 / lay.tokens_per_step()
    thr = 96 * 480 * lay.tokens_per_step() / (float(t) / 1e6) / 384
    assert abs(tpot / 50 - 1) <= 0.15
    assert abs(thr / 2400 - 1) <= 0.15
    assert 1.1e3 <= float(per["moe_layer_us"]) <= 1.6e3        # 2 × 0.7 ms published


@pytest.mark.parametrize("hw", ["ascend-910c", "h800"])
def test_fit_keeps_factors_inside_measured_bounds_and_is_deterministic(hw):
    pts = read_points(FIXTURES / f"calibration/{hw}.csv", hw)
    h = load_hardware(hw)
    a, info = fit(pts, h)
    b, _ = fit(pts, h)
    assert a.efficiency == b.efficiency
    bounds = bounds_for(h)
    for n in info.free:
        lo, hi, src = bounds[n]
        assert lo <= getattr(a.efficiency, n) <= hi and src
    assert set(info.at_bound) <= set(info.free)
    assert len(info.free) < len(pts)


def test_memory_factor_is_bounded_by_the_measured_mla_bandwidth():
    """Issue 17 item 6: memory efficiency may not exceed memory-bound MLA's 84.1 % (§C.4)."""
    assert load_hardware("ascend-910c").efficiency.memory <= 0.841
    assert bounds_for(load_hardware("ascend-910c"))["memory"][1] == 0.841
    assert bounds_for(load_hardware("h800"))["memory"][1] == 0.896


def test_calibrate_cli_reports_free_parameters_and_bounds():
    res = run_cli("calibrate", "--hardware", "ascend-910c", "--points",
                  FIXTURES / "calibration/ascend-910c.csv", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["points_count"] == len(doc["points"]) == 20
    assert doc["free_parameters"] == len(doc["fitted"]) and 0 < doc["free_parameters"] < 20
    assert "step_overhead_ms" in doc["at_bound"]
    res = run_cli("calibrate", "--hardware", "ascend-910c", "--points",
                  FIXTURES / "calibration/ascend-910c.csv")
    assert "free parameters fitted to 20 points" in res.stdout
    assert "push against the bound" in res.stdout


def test_calibrate_rejects_bandwidth_rows_for_the_low_latency_kernel(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("phase,ep,batch_per_die,fabric,kernel,metric,measured\n"
                 "dispatch,8,4096,scale_up,low_latency,bandwidth_gb_s,150\n")
    res = run_cli("calibrate", "--hardware", "h800", "--points", f)
    assert res.exit_code == 2 and "bandwidth_gb_s" in res.stderr and "line 2" in res.stderr


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 120), st.integers(1, 60))
def test_decode_throughput_monotone_in_batch(b, db):
    lo = estimate(**CM_DECODE, batch_per_chip=b)["output_throughput_per_chip"]
    hi = estimate(**CM_DECODE, batch_per_chip=b + db)["output_throughput_per_chip"]
    assert hi >= lo * (1 - 1e-9)


@settings(max_examples=15, deadline=None)
@given(st.integers(256, 16000), st.integers(1, 16000), st.sampled_from([1, 2]))
def test_tpot_non_decreasing_in_context(ctx, dctx, mb):
    lo = estimate(**{**CM_DECODE, "input_len": ctx}, batch_per_chip=32, microbatches=mb)["tpot_ms"]
    hi = estimate(**{**CM_DECODE, "input_len": ctx + dctx}, batch_per_chip=32, microbatches=mb)["tpot_ms"]
    assert hi >= lo * (1 - 1e-9)


def test_throughput_vs_ep_has_no_unexplained_jump():
    """EP with one redundant slot per routed rank: neighbouring EP sizes differ by at most what the
    per-peer communication term explains (here < 15 %)."""
    prev = None
    for chips in (64, 80, 96, 112, 128, 144, 160):
        ranks = chips * 2 - 32
        red = math.ceil(256 / ranks) * ranks - 256 or ranks
        d = estimate(hardware="ascend-910c", chips=chips, mtp=1, shared_expert_dies=32,
                     redundant_experts=red, batch_per_chip=64)
        if prev is not None:
            assert abs(d["output_throughput_per_chip"] / prev - 1) < 0.15
        prev = d["output_throughput_per_chip"]


def test_low_batch_step_is_bounded_by_weights_and_communication():
    """Issue 17 item 2: at a few requests per chip the step is weight reads + dispatch/combine
    latency; TPOT falls below the batch-24 point and stays above the pure weight-read roofline."""
    tiny = estimate(**CM_DECODE, batch_per_chip=2, microbatches=1)
    b24 = estimate(**CM_DECODE, batch_per_chip=24)
    assert tiny["tpot_ms"] < b24["tpot_ms"]
    assert tiny["tpot_ms"] > tiny["roofline_step_ms"] / tiny["tokens_per_step"]
