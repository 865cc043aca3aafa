"""Cost model: calibration targets (reference §C), physical properties, estimate/calibrate CLIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xds.cost import CostModel, Layout
from xds.cost.calibrate import _errors, calibrate, read_points
from xds.cost.estimate import estimate, roofline_decode
from xds.spec.hardware import load_hardware
from xds.spec.model import load_model

from .conftest import FIXTURES, assert_user_error, run_cli

CM_DECODE = dict(model="deepseek-r1", hardware="ascend-910c", phase="decode", chips=160,
                 input_len=4096, output_len=256, mtp=1, mtp_acceptance=0.7,
                 shared_expert_dies=32, redundant_experts=32)
CM_PREFILL = dict(model="deepseek-r1", hardware="ascend-910c", phase="prefill", chips=16,
                  tokens_per_chip=16384, input_len=4096, redundant_experts=32)


def within(value, target, pct):
    return abs(value / target - 1.0) * 100 <= pct


def test_decode_batch96_targets():
    d = estimate(**CM_DECODE, batch_per_chip=96)
    assert within(d["tpot_ms"], 49.4, 5), d["tpot_ms"]
    assert within(d["output_throughput_per_chip"], 1943, 5)
    assert within(d["moe_layer_us"], 1260, 5)
    assert d["fits"] and d["tokens_per_step"] == pytest.approx(1.7)


def test_decode_batch24_targets():
    d = estimate(**CM_DECODE, batch_per_chip=24)
    assert within(d["tpot_ms"], 24.6, 5)
    assert within(d["output_throughput_per_chip"], 974, 5)


def test_decode_layer_mtp_off():
    d = estimate(**{**CM_DECODE, "mtp": 0}, batch_per_chip=96)
    assert within(d["moe_layer_us"], 874, 5)


def test_prefill_default_and_perfect_eplb():
    default = estimate(**CM_PREFILL)
    perfect = estimate(**CM_PREFILL, eplb="perfect")
    assert within(default["input_throughput_per_chip"], 5655, 5)
    assert within(perfect["input_throughput_per_chip"], 6688, 5)
    gap = 1 - default["input_throughput_per_chip"] / perfect["input_throughput_per_chip"]
    assert 0.10 < gap < 0.20   # the published gap is ~15 %
    assert estimate(**CM_PREFILL, eplb="none")["input_throughput_per_chip"] < default["input_throughput_per_chip"]


@pytest.mark.parametrize("hw", ["ascend-910c", "h800"])
def test_every_shipped_calibration_point_within_tolerance(hw):
    pts = read_points(FIXTURES / f"calibration/{hw}.csv", hw)
    errs = _errors(pts, load_hardware(hw))
    for p, e in zip(pts, errs):
        assert abs(e) * 100 <= p.tolerance_pct, (p.name, e)


def test_calibrating_from_defaults_recovers_shipped_factors(tmp_path):
    out = tmp_path / "fitted.yaml"
    doc = calibrate("ascend-910c", str(FIXTURES / "calibration/ascend-910c.csv"), start="defaults",
                    out=str(out))
    assert doc["all_within_tolerance"]
    assert doc["mape_after_pct"] < doc["mape_before_pct"]
    shipped = load_hardware("ascend-910c").efficiency.model_dump()
    for k, v in doc["efficiency"].items():
        assert v == pytest.approx(shipped[k], rel=0.02, abs=1e-3), k
    # the written override is a hardware spec the estimate accepts
    d = estimate(**{**CM_DECODE, "hardware": str(out)}, batch_per_chip=96)
    assert within(d["tpot_ms"], 49.4, 5)


def test_calibrate_cli(tmp_path):
    out = tmp_path / "hw.yaml"
    res = run_cli("calibrate", "--hardware", "h800", "--points", FIXTURES / "calibration/h800.csv",
                  "--out", out, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["all_within_tolerance"] and out.exists()
    res = run_cli("estimate", "--hardware", out, "--phase", "decode", "--chips", "144",
                  "--batch-per-die", "64", "--json")
    assert res.exit_code == 0, res.stderr


def test_nvidia_decode_uses_infiniband_across_nodes():
    d = estimate(model="deepseek-v3", hardware="h800", phase="decode", chips=144, batch_per_die=64)
    assert d["layout"]["fabric"] == "scale_out" and d["cluster"] == "h800-ib"
    small = estimate(model="deepseek-v3", hardware="h800", phase="decode", chips=8, batch_per_die=8,
                     redundant_experts=0)
    assert small["layout"]["fabric"] == "scale_up"


# ---------------------------------------------------------------- physics properties

M = load_model("deepseek-r1")
HW = load_hardware("ascend-910c")


@settings(max_examples=40, deadline=None)
@given(ep=st.sampled_from([32, 64, 128, 160, 256, 320]), b=st.floats(1, 120), db=st.floats(0.5, 40),
       ctx=st.floats(256, 32768), dctx=st.floats(1, 8192), mtp=st.integers(0, 2),
       bal=st.floats(1.0, 3.0), mb=st.integers(1, 2))
def test_decode_monotone_and_above_roofline(ep, b, db, ctx, dctx, mtp, bal, mb):
    slots = ep * int(np.ceil(256 / ep))
    lay = Layout(dies=ep, ep=ep, dp=ep, routed_slots=slots, mtp=mtp, balancedness=bal, microbatches=mb)
    cm = CostModel(M, HW, lay)
    r = np.ones(ep)
    t0 = float(cm.decode_step_us(r * b, r * b * ctx))
    assert float(cm.decode_step_us(r * (b + db), r * (b + db) * ctx)) >= t0 - 1e-6
    assert float(cm.decode_step_us(r * b, r * b * (ctx + dctx))) >= t0 - 1e-6
    assert t0 / 1e3 >= roofline_decode(M, HW, lay, b, ctx) - 1e-9
    # throughput per chip never above the compute bound
    tokens_per_s_die = b * lay.tokens_per_step() / (t0 / 1e6)
    assert tokens_per_s_die <= HW.peak_flops("w8a8") / M.decode_flops_per_token(ctx)


@settings(max_examples=30, deadline=None)
@given(n=st.floats(512, 32768), dn=st.floats(1, 8192), seq_len=st.sampled_from([1024, 4096, 16384]),
       bal=st.floats(1.0, 2.0))
def test_prefill_monotone_and_below_compute_bound(n, dn, seq_len, bal):
    lay = Layout(dies=32, ep=32, dp=32, routed_slots=288, balancedness=bal)
    cm = CostModel(M, HW, lay)

    def t(tokens):
        seqs = tokens / seq_len
        return cm.prefill_batch_us(tokens, seqs * seq_len * (seq_len + 1) / 2, seqs)

    assert t(n + dn) >= t(n)
    flops = 2 * (M.active_params() - M.embedding_params() - M.lm_head_params()) * n
    assert t(n) / 1e6 >= flops / HW.peak_flops("w8a8")


def test_vectorised_matches_scalar():
    lay = Layout(dies=320, ep=320, dp=320, shared_dies=32, routed_slots=288, mtp=1, balancedness=1.3)
    cm = CostModel(M, HW, lay)
    rng = np.random.default_rng(0)
    b = rng.integers(1, 60, size=(5, 320)).astype(float)
    ctx = b * rng.uniform(1000, 6000, size=(5, 320))
    batch = cm.decode_step_us(b, ctx)
    single = np.array([float(cm.decode_step_us(b[i], ctx[i])) for i in range(5)])
    np.testing.assert_allclose(batch, single)
    # lockstep: one slow rank gates the instance
    b2 = b[0].copy()
    b2[7] = 120
    assert float(cm.decode_step_us(b2, b2 * 4000)) > float(cm.decode_step_us(b[0], b[0] * 4000))


def test_hbm_does_not_fit_reports_shortfall():
    d = estimate(**CM_DECODE, batch_per_chip=400)
    assert d["fits"] is False and d["hbm_shortfall_gb"] > 0
    assert d["max_batch_per_die"] < 200
    res = run_cli("estimate", "--chips", "160", "--batch-per-chip", "400", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["fits"] is False


def test_breakdown_adds_up_and_json_contract():
    res = run_cli("estimate", "--phase", "decode", "--chips", "160", "--batch-per-chip", "96", "--mtp", "1",
                  "--shared-expert-dies", "32", "--redundant-experts", "32", "--json")
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    for k in ("phase", "step_time_ms", "tokens_per_step", "tpot_ms", "output_throughput_per_chip",
              "breakdown_ms", "hbm_used_gb_per_die", "max_batch_per_die", "fits"):
        assert k in d
    assert sum(d["breakdown_ms"].values()) == pytest.approx(d["step_time_ms"], rel=1e-3)
    res = run_cli("estimate", "--phase", "prefill", "--chips", "16", "--json")
    d = json.loads(res.stdout)
    assert "ttft_ms" in d and "input_throughput_per_chip" in d
    assert sum(d["breakdown_ms"].values()) == pytest.approx(d["step_time_ms"], rel=1e-3)


def test_human_view_has_breakdown_and_bound():
    res = run_cli("estimate", "--chips", "160", "--batch-per-chip", "96", "--mtp", "1")
    assert res.exit_code == 0 and "attn_core" in res.stdout and "compute" in res.stdout


@pytest.mark.parametrize("args,needle", [
    (["--hardware", "tpu-v9", "--chips", "16", "--batch-per-die", "4"], "unknown hardware"),
    (["--model", "gpt-9", "--chips", "16", "--batch-per-die", "4"], "unknown model"),
    (["--chips", "16", "--batch-per-die", "0"], "batch must be > 0"),
    (["--chips", "16", "--batch-per-die", "-3"], "batch must be > 0"),
    (["--chips", "16", "--ep", "24", "--batch-per-die", "4"], "does not divide"),
    (["--chips", "16"], "--batch-per-die"),
    (["--phase", "prefill", "--chips", "16", "--batch-per-die", "4"], "decode flags"),
    (["--phase", "decode", "--chips", "16", "--batch-per-die", "4", "--batch-per-chip", "8"], "not both"),
    (["--phase", "middle", "--chips", "16"], "unknown phase"),
    (["--chips", "16", "--batch-per-die", "4", "--eplb", "magic"], "unknown EPLB"),
    (["--chips", "16", "--batch-per-die", "4", "--mtp", "9"], "--mtp"),
    (["--chips", "16", "--batch-per-die", "4", "--quant", "int4"], "quant"),
    (["--chips", "16", "--batch-per-die", "4", "--redundant-experts", "5"], "--redundant-experts"),
    (["--chips", "16", "--batch-per-die", "nan"], "batch"),
    (["--batch-per-die", "4"], "--chips"),
])
def test_estimate_bad_input(args, needle):
    assert_user_error(run_cli("estimate", *args), needle)


@pytest.mark.parametrize("content,needle", [
    ("", "no data rows"),
    ("phase,metric,measured\n", "no data rows"),
    ("phase,metric,measured\ndecode,tpot_ms,abc\n", "line 2"),
    ("phase,metric,measured,bogus\ndecode,tpot_ms,3,1\n", "unknown column"),
    ("phase,metric,measured\nwarp,tpot_ms,3\n", "phase must be"),
    ("phase,metric,measured\ndecode,ttft_ms,3\n", "metric for decode"),
    ("phase,metric,measured\ndecode,tpot_ms,-1\n", "measured must be > 0"),
    ("phase,chips,metric,measured\ndecode,16,tpot_ms,30\n", "line 2"),
    ("\x00\x01\x02", "binary"),
])
def test_calibrate_bad_points(tmp_path, content, needle):
    p = tmp_path / "points.csv"
    p.write_text(content)
    assert_user_error(run_cli("calibrate", "--hardware", "ascend-910c", "--points", p), needle)


def test_bad_hardware_yaml(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text((FIXTURES.parent / "xds/data/hardware/h800.yaml").read_text().replace("hbm_gb_per_die", "hbm_gb_per_dye"))
    assert_user_error(run_cli("estimate", "--hardware", p, "--chips", "8", "--batch-per-die", "4"),
                      "did you mean 'hbm_gb_per_die'")
    p.write_text("name: x\nvendor: [\n")
    assert_user_error(run_cli("estimate", "--hardware", p, "--chips", "8", "--batch-per-die", "4"), "line")


@pytest.mark.parametrize("model,tp,mtp", [("deepseek-r1", 1, 1), ("qwen3-235b-a22b", 2, 0),
                                          ("llama-3.1-70b", 4, 2)])
def test_one_attention_roofline_prices_the_stream_and_its_breakdown(model, tp, mtp):
    mdl = load_model(model)
    slots = 32 * int(np.ceil(mdl.n_routed_experts / 32)) if mdl.is_moe else 0
    lay = Layout(dies=32, ep=32, dp=32 // tp, tp=tp, routed_slots=slots, mtp=mtp)
    cm = CostModel(mdl, HW, lay)
    rng = np.random.default_rng(1)
    tok = rng.uniform(0, 40, size=(4, lay.dp))
    ctx = tok * rng.uniform(100, 9000, size=(4, lay.dp))
    roof = cm.attention_roofline(1 + mtp)
    times, bound = roof.ops(tok, ctx)
    assert list(times) == list(bound) and ("tp_allreduce" in times) == (tp > 1)
    np.testing.assert_allclose(sum(times.values()), roof.total_us(tok, ctx), rtol=1e-12)
    # the step's detail view prices the same stream: its total is the fast path's, bit for bit
    b, c = tok[0].round() + 1, ctx[0] + 1
    assert float(cm.decode_step_us(b, c, detail=True)[0]) == float(cm.decode_step_us(b, c))
