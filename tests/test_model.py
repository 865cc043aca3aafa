"""Model accounting: exact parameter counts, KV bytes and FLOPs for every bundled family."""

from __future__ import annotations

import json

import pytest

from xds.errors import XdsError
from xds.spec.model import load_model, model_summary

from .conftest import FIXTURES, assert_user_error

# Exact counts from the formulas in xds.spec.model; the published ones are cross-checked in comments.
EXACT = {
    "qwen2.5-72b": 72_706_203_648,        # matches the published weight count exactly
    "llama-3.1-70b": 70_553_706_496,      # Meta's published 70.55 B
    "qwen3-235b-a22b": 235_093_634_560,   # Qwen's 235 B
    "qwen3-30b-a3b": 30_532_122_624,      # Qwen's 30.5 B
    "deepseek-v3": 671_026_419_200,       # DeepSeek's 671 B (MTP excluded)
    "deepseek-r1": 671_026_419_200,
    "kimi-k2": 1_026_408_232_448,         # weight files 1,026,470,731,056 incl. FP8 scale tensors
    "glm-4.5": 352_797_829_024,           # + 5.54 B MTP with its own embedding/head = HF's 358.3 B
    "minimax-m2": 228_689_764_864,        # weight files 228,703,644,928 incl. FP8 scales
}


@pytest.mark.parametrize("name,expected", sorted(EXACT.items()))
def test_total_params_exact(name, expected):
    assert load_model(name).total_params() == expected


def test_deepseek_v3_headline_numbers():
    m = load_model("deepseek-v3")
    assert round(m.total_params() / 1e9, 2) == 671.03
    assert 37.0e9 <= m.active_params() <= 38.0e9
    assert m.kv_bytes_per_token() == (512 + 64) * 2 * 61 == 70_272
    assert m.kv_bytes_per_token("int8") == (512 + 64 * 2) * 61
    assert m.dense_layers == 3 and m.moe_layers == 58 and m.mtp_layers == 1
    assert m.n_routed_experts == 256 and m.shared_intermediate == 2048
    assert m.expert_params() == 3 * 7168 * 2048


def test_active_params_of_moe_models():
    assert 21.5e9 < load_model("qwen3-235b-a22b").active_params() < 22.5e9
    assert 3.0e9 < load_model("qwen3-30b-a3b").active_params() < 3.6e9
    assert 32e9 < load_model("kimi-k2").active_params() < 33.5e9
    assert 10e9 < load_model("minimax-m2").active_params() < 11.5e9
    assert 32e9 < load_model("glm-4.5").active_params() < 34e9
    dense = load_model("llama-3.1-70b")
    assert dense.active_params() == dense.total_params()


def test_kv_bytes_gqa():
    assert load_model("qwen3-235b-a22b").kv_bytes_per_token() == 94 * 2048
    assert load_model("llama-3.1-70b").kv_bytes_per_token() == 80 * 2 * 8 * 128 * 2


def test_glm45_context_and_moe_split():
    m = load_model("glm-4.5")
    assert m.max_context == 131072
    assert m.moe_params() + m.dense_params() == m.total_params()


def test_decode_flops_grow_with_context():
    m = load_model("deepseek-r1")
    f0, f4k = m.decode_flops_per_token(0), m.decode_flops_per_token(4096)
    assert f0 == 2 * (m.active_params() - m.embedding_params())
    assert f4k > f0
    assert f4k - f0 == pytest.approx(61 * 2 * 128 * 4096 * (576 + 512))


def test_model_json_keys(cli):
    res = cli("model", "deepseek-v3", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    for key in ("total_params", "active_params", "params_per_expert", "moe_params", "dense_params",
                "kv_bytes_per_token", "decode_flops_per_token"):
        assert key in doc
    assert doc["total_params"] == EXACT["deepseek-v3"]


def test_model_by_path(tmp_path, cli):
    res = cli("model", str(FIXTURES.parent / "xds/data/models/qwen2.5-72b.json"), "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["total_params"] == EXACT["qwen2.5-72b"]


def test_model_human_view(cli):
    res = cli("model", "kimi-k2")
    assert res.exit_code == 0 and "1,026,408,232,448" in res.stdout


def test_unknown_model(cli):
    assert_user_error(cli("model", "deepseek-v9"), "unknown model", "deepseek-v3")


def test_missing_key(tmp_path, cli):
    cfg = json.loads((FIXTURES.parent / "xds/data/models/deepseek-v3.json").read_text())
    del cfg["kv_lora_rank"]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    assert_user_error(cli("model", str(p)), "kv_lora_rank", str(p))


def test_unsupported_architecture(cli):
    assert_user_error(cli("model", str(FIXTURES / "models/minimax-m1.json")), "unsupported architecture")


def test_reference_inference_config_is_explained(cli):
    res = cli("model", str(FIXTURES / "models/deepseek-v3_inference-config_671B.json"))
    assert_user_error(res, "not a Hugging Face config.json")


@pytest.mark.parametrize("content", ["{not json", "", "\x00\x01garbage", "[1, 2]", '{"hidden_size": NaN}'])
def test_bad_json(tmp_path, cli, content):
    p = tmp_path / "config.json"
    p.write_text(content)
    assert_user_error(cli("model", str(p)), str(p))


def test_wrong_type(tmp_path):
    cfg = json.loads((FIXTURES.parent / "xds/data/models/qwen3-30b-a3b.json").read_text())
    cfg["num_hidden_layers"] = "48"
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    with pytest.raises(XdsError, match="num_hidden_layers"):
        load_model(str(p))


def test_bad_kv_dtype_and_context(cli):
    assert_user_error(cli("model", "deepseek-r1", "--kv-dtype", "fp4"), "--kv-dtype")
    assert_user_error(cli("model", "deepseek-r1", "--context", "-1"), "--context")


def test_summary_function_is_the_cli():
    doc = model_summary("qwen3-30b-a3b", context=0)
    assert doc["decode_flops_per_token"] == 2 * (doc["active_params"] - doc["embedding_params"])


def test_version_and_help(cli):
    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.startswith("xds ")
    res = cli("model", "--help")
    assert res.exit_code == 0 and "Example:" in res.stdout


def test_bad_flag_is_one_line(cli):
    assert_user_error(cli("model", "deepseek-r1", "--bogus"), "No such option")
