"""Hardening: every malformed input is one stderr line naming the file (and the field or line), exit 2,
no traceback; outputs are atomic; Ctrl-C exits 130 leaving nothing behind; same seed, same bytes.

The corpus lives in ``fixtures/bad/`` (plus the older ``fixtures/plans/`` and ``fixtures/loads/``
bad files); each file is fed to the command that reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xds.errors import XdsError
from xds.spec.fileio import atomic_path, write_text_atomic

from .conftest import FIXTURES, PLANS, assert_user_error, run_cli

BAD = FIXTURES / "bad"
PLAN = str(PLANS / "cloudmatrix-infer-pd.yaml")
SMALL_SIM = ["--rate", "5", "--input-len", "512", "--output-len", "16", "--requests", "40"]

# Commands that read a YAML file given as FILE; every generic bad-YAML file goes to each of them.
YAML_READERS = {
    "plan": lambda f: ["plan", f],
    "simulate": lambda f: ["simulate", f],
    "chaos": lambda f: ["chaos", PLAN, "--scenario", f, "--duration", "30"],
    "gate": lambda f: ["gate", f],
    "hardware": lambda f: ["estimate", "--hardware", f, "--chips", "16", "--batch-per-die", "4"],
    "cluster": lambda f: ["topo", "--cluster", f],
    "sweep": lambda f: ["sweep", f],
}

# Beyond the file name, the field or line the message must name (where there is one).
WHERE = {
    # generic YAML
    "yaml/tabs.yaml": "line 4", "yaml/unclosed_flow.yaml": "line 4", "yaml/unclosed_quote.yaml": "line 3",
    "yaml/bad_indent.yaml": "line 2", "yaml/python_tag.yaml": "line 1", "yaml/unknown_tag.yaml": "line 1",
    "yaml/duplicate_keys.yaml": "line 3", "yaml/undefined_alias.yaml": "line 1",
    "yaml/multi_document.yaml": "line 2", "yaml/truncated_mid_key.yaml": "line 3",
    "yaml/merge_not_mapping.yaml": "line 2", "yaml/unhashable_key.yaml": "line 1",
    "yaml/alias_bomb.yaml": "alias", "yaml/deep_nesting.yaml": "nested",
    "yaml/deep_nesting_block.yaml": "nested", "yaml/binary.yaml": "UTF-8", "yaml/nul.yaml": "NUL",
    "yaml/empty.yaml": "empty", "yaml/comments_only.yaml": "empty", "yaml/top_list.yaml": "mapping",
    "yaml/huge_int.yaml": "digits",
    # hardware
    "hardware/negative_hbm.yaml": "hbm_gb_per_die", "hardware/zero_dies.yaml": "dies_per_chip",
    "hardware/string_bandwidth.yaml": "hbm_gb_s_per_die", "hardware/unknown_key.yaml": "did you mean",
    "hardware/missing_field.yaml": "scale_up_gb_s_per_die", "hardware/efficiency_above_one.yaml":
    "efficiency.compute", "hardware/bad_quant.yaml": "default_quant", "hardware/float_dies.yaml":
    "dies_per_chip", "hardware/huge_dies.yaml": "dies_per_chip", "hardware/nan_bandwidth.yaml":
    "hbm_gb_s_per_die", "hardware/inf_peak.yaml": "peak_tflops_per_die.bf16",
    "hardware/huge_float.yaml": "hbm_gb_per_die", "hardware/syntax_error.yaml": "line 10",
    "hardware/unknown_efficiency_key.yaml": "efficiency.computee",
    # clusters
    "clusters/zero_nodes.yaml": "nodes", "clusters/negative_chips.yaml": "chips_per_node",
    "clusters/huge_nodes.yaml": "dies", "clusters/huge_l1.yaml": "l1_per_node",
    "clusters/cm_huge_l2.yaml": "l2_per_sub_plane", "clusters/unknown_builder.yaml": "builder",
    "clusters/nested_unknown_key.yaml": "scale_out.leaf_port", "clusters/nan_latency.yaml":
    "scale_out.latency_us", "clusters/inf_bandwidth.yaml": "scale_out.gb_s_per_die",
    "clusters/string_nodes.yaml": "nodes", "clusters/cm_too_many_nodes.yaml": "l2_ports",
    # models
    "models/syntax_error.json": "line 4", "models/string_hidden.json": "hidden_size",
    "models/float_layers.json": "num_hidden_layers", "models/bool_heads.json": "num_attention_heads",
    "models/negative_experts.json": "n_routed_experts", "models/zero_hidden.json": "hidden_size",
    "models/huge_layers.json": "num_hidden_layers", "models/huge_hidden.json": "hidden_size",
    "models/missing_hidden.json": "hidden_size", "models/unknown_model_type.json": "model_type",
    "models/architectures_int.json": "architectures", "models/architectures_ints.json": "architectures",
    "models/mlp_only_layers_int.json": "mlp_only_layers", "models/mlp_only_layers_nested.json":
    "mlp_only_layers", "models/bool_string.json": "tie_word_embeddings", "models/nan_hidden.json": "NaN",
    "models/inf_layers.json": "Infinity", "models/deep_nesting.json": "nested",
    # suites
    "suites/bad_policy.yaml": "checks[0].policy", "suites/bad_workload.yaml": "checks[0].workload.rate_rps",
    "suites/inf_threshold.yaml": "checks[0].expect.failed.max", "suites/negative_seed.yaml":
    "checks[0].seed", "suites/missing_trace.yaml": "checks[0].workload.trace",
    "suites/unknown_top_key.yaml": "did you mean 'checks'", "suites/missing_plan.yaml": "checks[0].plan",
    # plans
    "plans/negative_chips.yaml": "pools[0].chips", "plans/zero_instances.yaml": "pools[1].instances",
    "plans/huge_chips.yaml": "pools[0].layout.dp", "plans/huge_instances.yaml": "pools[1]",
    "plans/huge_nodes.yaml": "nodes", "plans/huge_batch.yaml": "pools[0].batch_per_die",
    "plans/bad_quant.yaml": "quant", "plans/microbatches_zero.yaml": "pools[0].microbatches",
    "plans/percentile_above_100.yaml": "slo.percentile", "plans/workload_huge_requests.yaml":
    "workload.requests", "plans/workload_negative_rate.yaml": "workload.rate_rps",
    "plans/hot_ratio_below_one.yaml": "balancing.hot_ratio", "plans/hardware_bad_file.yaml":
    "negative_hbm.yaml", "plans/cluster_bad_file.yaml": "zero_nodes.yaml",
    "plans/model_bad_file.yaml": "string_hidden.json",
}

# Files whose error rightly names another file (the one actually at fault).
NAMED = {
    "suites/bad_plan_ref.yaml": "unknown_key.yaml", "suites/bad_scenario_ref.yaml": "unknown_fault.yaml",
    "suites/plan_is_folder.yaml": "plans", "plans/missing_trace.yaml": "no_such_trace.csv",
    "plans/loads_missing.yaml": "no_such_loads.npy", "plans/loads_garbage.yaml": "garbage.csv",
}

GOOD_LOADS = {"small_4x32.csv", "small_4x32.npy", "drift_4x32.csv"}


def _files(folder: Path, suffixes=(".yaml", ".yml", ".json", ".csv", ".jsonl", ".npy")) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes)


def _cases() -> list:
    cases = []

    def add(path: Path, cmd: str, args: list[str]):
        rel = path.relative_to(BAD).as_posix() if BAD in path.parents else path.name
        cases.append(pytest.param(rel, path, args, id=f"{cmd}:{rel}"))

    for f in _files(BAD / "yaml"):
        for cmd, argv in YAML_READERS.items():
            add(f, cmd, argv(str(f)))
    for f in _files(BAD / "hardware"):
        add(f, "estimate", YAML_READERS["hardware"](str(f)))
    for f in _files(BAD / "clusters"):
        add(f, "topo", YAML_READERS["cluster"](str(f)))
    for f in _files(BAD / "models"):
        add(f, "model", ["model", str(f)])
    for f in _files(BAD / "suites"):
        add(f, "gate", ["gate", str(f)])
    for f in _files(BAD / "plans") + _files(FIXTURES / "plans"):
        add(f, "plan", ["plan", str(f)])
        add(f, "simulate", ["simulate", str(f)])
    for f in _files(BAD / "scenarios"):
        add(f, "chaos", YAML_READERS["chaos"](str(f)))
    for f in _files(BAD / "traces"):
        add(f, "simulate", ["simulate", PLAN, "--trace", str(f)])
    for f in _files(FIXTURES / "loads"):
        if f.name not in GOOD_LOADS:
            add(f, "experts", ["experts", "--loads", str(f), "--slots", "288", "--ranks", "32"])
    return cases


@pytest.mark.parametrize("rel,path,args", _cases())
def test_bad_file_is_one_line_naming_file_and_place(rel, path, args):
    res = run_cli(*args)
    needles = [NAMED.get(rel, path.name)]
    if rel in WHERE:
        needles.append(WHERE[rel])
    assert_user_error(res, *needles)


def test_corpus_is_not_trivial():
    """Every kind of input has a non-trivial corpus (guards against a folder going missing)."""
    counts = {k: len(_files(BAD / k)) for k in ("yaml", "hardware", "clusters", "models", "suites",
                                                 "plans", "scenarios", "traces")}
    assert all(n >= 10 for n in counts.values()), counts


# ------------------------------------------------------------------ CLI flag abuse

FLAG_CASES = [
    # topo
    (["topo", "--nodes", "0"], "--nodes"),
    (["topo", "--nodes", "-3"], "--nodes"),
    (["topo", "--nodes", "abc"], "--nodes"),
    (["topo", "--nodes", "49"], "nodes"),
    (["topo", "--nodes", "99999999999999999999"], "nodes"),
    (["topo", "--cluster", "cloudmatrix385"], "did you mean"),
    (["topo", "path", "die:0", "die:99999"], "die:99999"),
    (["topo", "path", "die:-1", "die:3"], "die:-1"),
    (["topo", "path", "die:abc", "die:3"], "die:abc"),
    (["topo", "path", "rack", "die:3"], "rack"),
    (["topo", "path", "die:0", "die:3", "--plane", "ethernet"], "--plane"),
    # model
    (["model", "deepseek-r1", "--context", "-1"], "--context"),
    (["model", "deepseek-r1", "--kv-dtype", "int4"], "int4"),
    (["model", "deepseek-r2"], "did you mean"),
    (["model", "deepseek-r1", "--context", "1e9"], "--context"),
    # estimate
    (["estimate", "--chips", "0", "--batch-per-die", "4"], "--chips"),
    (["estimate", "--chips", "-16", "--batch-per-die", "4"], "--chips"),
    (["estimate", "--chips", "999999999999", "--batch-per-die", "4"], "--chips"),
    (["estimate", "--chips", "16", "--batch-per-die", "nan"], "--batch-per-die"),
    (["estimate", "--chips", "16", "--batch-per-die", "inf"], "--batch-per-die"),
    (["estimate", "--chips", "16", "--batch-per-die", "-4"], "--batch-per-die"),
    (["estimate", "--chips", "16", "--batch-per-die", "0"], "--batch-per-die"),
    (["estimate", "--chips", "16", "--batch-per-die", "1e300"], "batch"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--phase", "train"], "--phase"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--eplb", "magic"], "--eplb"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--quant", "int4"], "int4"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--mtp", "-1"], "--mtp"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--mtp-acceptance", "1.5"], "--mtp-acceptance"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--mtp-acceptance", "nan"], "--mtp-acceptance"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--microbatches", "0"], "--microbatches"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--tp", "0"], "--tp"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--input-len", "-5"], "--input-len"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--output-len", "0"], "--output-len"),
    (["estimate", "--chips", "16", "--phase", "prefill", "--tokens-per-chip", "inf"], "--tokens-per-chip"),
    (["estimate", "--chips", "16", "--batch-per-die", "4", "--model", "nope"], "--model"),
    # experts
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "0", "--ranks", "8"], "slots"),
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "64", "--ranks", "0"], "ranks"),
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "64", "--ranks", "-8"], "ranks"),
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "64", "--ranks", "8",
      "--nodes", "0"], "nodes"),
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "64", "--ranks", "8",
      "--groups", "0"], "groups"),
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "999999999999",
      "--ranks", "8"], "slots"),
    (["experts", "--loads", str(FIXTURES / "loads/small_4x32.csv"), "--slots", "64", "--ranks", "7"], "ranks"),
    # plan
    (["plan", "--search", "--model", "deepseek-r1", "--hardware", "ascend-910c", "--tpot-ms", "nan"], "--tpot-ms"),
    (["plan", "--search", "--model", "deepseek-r1", "--hardware", "ascend-910c", "--ttft-ms", "-1"], "--ttft-ms"),
    (["plan", "--search", "--model", "deepseek-r1", "--hardware", "ascend-910c", "--input-len", "0"], "--input-len"),
    # simulate
    (["simulate", PLAN, "--seed", "-1"] + SMALL_SIM, "--seed"),
    (["simulate", PLAN, "--rate", "nan", "--input-len", "5", "--output-len", "5", "--requests", "5"], "--rate"),
    (["simulate", PLAN, "--rate", "inf", "--input-len", "5", "--output-len", "5", "--requests", "5"], "--rate"),
    (["simulate", PLAN, "--rate", "0", "--input-len", "5", "--output-len", "5", "--requests", "5"], "--rate"),
    (["simulate", PLAN, "--duration", "inf"] + SMALL_SIM[:6], "--duration"),
    (["simulate", PLAN, "--rate", "5", "--input-len", "5", "--output-len", "5", "--requests", "0"], "--requests"),
    (["simulate", PLAN, "--rate", "5", "--input-len", "5", "--output-len", "5",
      "--requests", "1000000000000000000"], "requests"),
    (["simulate", PLAN, "--rate", "5", "--input-len", "99999999999", "--output-len", "5", "--requests", "5"], "input"),
    (["simulate", PLAN, "--arrival", "burst"] + SMALL_SIM, "arrival"),
    (["simulate", PLAN, "--arrival", "gamma", "--cv", "0"] + SMALL_SIM, "--cv"),
    (["simulate", PLAN, "--arrival", "gamma", "--cv", "nan"] + SMALL_SIM, "--cv"),
    (["simulate", PLAN, "--format", "parquet", "--trace", str(FIXTURES / "traces/azure_llm_2023_conv.csv")], "format"),
    (["simulate", PLAN, "--rate", "5", "--input-dist", "{dist: lognormal", "--output-len", "5",
      "--requests", "5"], "--input-dist"),
    (["simulate", PLAN, "--rate", "5", "--input-dist", "{dist: lognormal, mean: -3, sigma: 1}",
      "--output-len", "5", "--requests", "5"], "mean"),
    (["simulate", PLAN, "--concurrency", "-2"] + SMALL_SIM, "--concurrency"),
    (["simulate", PLAN, "--rate-scale", "0", "--trace", str(FIXTURES / "traces/azure_llm_2023_conv.csv")],
     "--rate-scale"),
    (["simulate", PLAN, "--plot", "out.xyz"] + SMALL_SIM, "--plot"),
    # chaos
    (["chaos", PLAN, "--scenario", str(FIXTURES / "faults/die_down.yaml"), "--policy", "reboot",
      "--duration", "30"], "policy"),
    (["chaos", PLAN, "--scenario", str(FIXTURES / "faults/die_down.yaml"), "--seed", "-1",
      "--duration", "30"], "--seed"),
    (["chaos", PLAN, "--random", "--rate-per-1000-chip-days", "nan", "--hours", "1"], "rate"),
    (["chaos", PLAN, "--random", "--rate-per-1000-chip-days", "1", "--hours", "inf"], "hours"),
    (["chaos", PLAN, "--random", "--rate-per-1000-chip-days", "1", "--hours", "1", "--trials", "0"], "trials"),
    (["chaos", PLAN, "--scenario", str(FIXTURES / "faults/die_down.yaml"), "--duration", "-30"], "--duration"),
    # gate
    (["gate", str(FIXTURES / "suites/small.yaml"), "--workers", "-1"], "--workers"),
    (["gate", str(FIXTURES)], "folder"),
    # calibrate
    (["calibrate", "--hardware", "h800", "--points", str(FIXTURES / "calibration/h800.csv"),
      "--start", "random"], "--start"),
    (["calibrate", "--hardware", "h800", "--points", "missing.csv"], "missing.csv"),
    (["calibrate", "--hardware", "h800", "--points", str(BAD / "yaml/binary.yaml")], "binary.yaml"),
    # unknown command / option
    (["simulat", PLAN], "simulat"),
    (["simulate", PLAN, "--sede", "3"], "--sede"),
]


@pytest.mark.parametrize("args,needle", FLAG_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in FLAG_CASES])
def test_bad_flags_are_one_line(args, needle):
    assert_user_error(run_cli(*args), needle)


# ------------------------------------------------------------------ atomic outputs


def test_atomic_path_writes_or_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # KeyboardInterrupt is a BaseException: it must clean up as well, and keep an old file intact
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new, partial")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and target.read_text() == "old"
    write_text_atomic(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and target.read_text() == "new"


def test_atomic_path_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(XdsError) as ei:
        with atomic_path(tmp_path / "nope" / "out.json"):
            pass
    assert "nope" in str(ei.value)


@pytest.mark.parametrize("flag", ["--out", "--requests-out", "--plot"])
def test_simulate_output_into_missing_folder(tmp_path, flag):
    name = "x.png" if flag == "--plot" else "x.json"
    res = run_cli("simulate", PLAN, *SMALL_SIM, flag, str(tmp_path / "missing" / name))
    assert_user_error(res, "missing")
    assert not (tmp_path / "missing").exists()


def test_experts_and_chaos_out_into_missing_folder(tmp_path):
    res = run_cli("experts", "--loads", FIXTURES / "loads/small_4x32.csv", "--slots", "64", "--ranks", "8",
                  "--out", tmp_path / "missing/x.json")
    assert_user_error(res, "missing")
    res = run_cli("chaos", PLAN, "--scenario", FIXTURES / "faults/die_down.yaml", "--duration", "30",
                  *SMALL_SIM[:6], "--out", tmp_path / "missing/x.json")
    assert_user_error(res, "missing")


def test_gate_junit_into_missing_folder(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"checks:\n  - {{name: a, plan: {PLAN}, workload: {{rate_rps: 5, input: {{dist: fixed, "
                     "value: 512}, output: {dist: fixed, value: 16}, requests: 20}, "
                     "expect: {failed: {max: 0}}}\n")
    res = run_cli("gate", suite, "--junit", tmp_path / "missing/report.xml", "--workers", "1")
    assert_user_error(res, "missing")


@pytest.mark.parametrize("json_flag", [False, True])
def test_ctrl_c_during_out_write_exits_130_and_leaves_no_file(tmp_path, monkeypatch, json_flag):
    """The document is fully written to the temp file, then Ctrl-C hits just before the rename."""
    import xds.spec.fileio

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(xds.spec.fileio.os, "replace", interrupted_replace)
    out = tmp_path / "result.json"
    args = ["simulate", PLAN, *SMALL_SIM, "--out", str(out)] + (["--json"] if json_flag else [])
    res = run_cli(*args)
    assert res.exit_code == 130, (res.exit_code, res.stderr, res.exception)
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_simulation_exits_130(tmp_path, monkeypatch):
    import xds.pipeline.run

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(xds.pipeline.run, "simulate", interrupted)
    res = run_cli("simulate", PLAN, *SMALL_SIM, "--out", tmp_path / "r.json", "--requests-out",
                  tmp_path / "r.csv")
    assert res.exit_code == 130 and list(tmp_path.iterdir()) == []


def test_internal_error_is_not_masked(monkeypatch):
    """A bug (not bad input) must surface as itself, not as an error in the error handler."""
    import xds.cli.model_cmd

    def broken(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(xds.cli.model_cmd, "model_summary", broken)
    res = run_cli("model", "deepseek-r1")
    assert res.exit_code not in (0, 2)
    assert isinstance(res.exception, ZeroDivisionError), repr(res.exception)


# ------------------------------------------------------------------ determinism


def _json(*args) -> str:
    res = run_cli(*args)
    assert res.exit_code in (0, 1), (res.exit_code, res.stderr)
    json.loads(res.stdout)
    return res.stdout


def test_simulate_same_seed_same_bytes_different_seed_different_bytes():
    args = ["simulate", PLAN, "--json", "--rate", "8", "--input-len", "1024",
            "--output-dist", "{dist: lognormal, mean: 64, sigma: 0.8}", "--requests", "120"]
    a = _json(*args, "--seed", "7")
    assert a == _json(*args, "--seed", "7")
    assert a != _json(*args, "--seed", "8")


def test_chaos_same_seed_same_bytes_different_seed_different_bytes():
    args = ["chaos", PLAN, "--json", "--scenario", str(FIXTURES / "faults/die_down.yaml"),
            "--rate", "8", "--input-len", "1024", "--output-dist", "{dist: lognormal, mean: 64, sigma: 0.8}",
            "--duration", "40", "--policy", "all"]
    a = _json(*args, "--seed", "3")
    assert a == _json(*args, "--seed", "3")
    assert a != _json(*args, "--seed", "4")


def test_out_file_equals_stdout(tmp_path):
    out = tmp_path / "r.json"
    text = _json("simulate", PLAN, "--json", *SMALL_SIM, "--out", str(out))
    assert out.read_text() == text


# ------------------------------------------------------------------ NO_COLOR

ANSI = re.compile(r"\x1b\[")


@pytest.mark.parametrize("args", [
    ["topo"], ["model", "deepseek-r1"], ["estimate", "--chips", "16", "--batch-per-die", "4"],
    ["plan", PLAN], ["simulate", PLAN, *SMALL_SIM],
])
def test_no_color_means_no_ansi(args):
    # FORCE_COLOR makes rich treat the captured stdout as a terminal, so styling would show
    styled = run_cli(*args, env={"FORCE_COLOR": "1", "NO_COLOR": None, "TERM": "xterm-256color"})
    assert styled.exit_code in (0, 1), styled.stderr
    res = run_cli(*args, env={"NO_COLOR": "1", "FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert res.exit_code == styled.exit_code, res.stderr
    assert not ANSI.search(res.stdout) and not ANSI.search(res.stderr)


def test_forced_terminal_does_style():
    """Guard for the test above: without NO_COLOR the forced terminal gets escapes."""
    res = run_cli("simulate", PLAN, *SMALL_SIM, env={"FORCE_COLOR": "1", "NO_COLOR": None, "TERM": "xterm"})
    assert ANSI.search(res.stdout)
