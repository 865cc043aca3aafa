"""The rough edges a new user hit (issue 20), one test each; every test here failed on the code
before the fix."""

from __future__ import annotations

import json

import xds.plan.command as plan_command_module

from .conftest import FIXTURES, PLANS, SMALL_POD, assert_user_error, run_cli

PD = PLANS / "cloudmatrix-infer-pd.yaml"
SMALL = ("--rate", 4, "--input-len", 512, "--output-len", 16, "--duration", 10)


def test_experts_json_is_byte_identical_without_timing():
    args = ("experts", "--loads", "synthetic:8x64:30", "--slots", 80, "--ranks", 8, "--json")
    a, b = run_cli(*args), run_cli(*args)
    assert a.exit_code == b.exit_code == 0, a.stderr
    assert a.stdout == b.stdout
    assert "seconds" not in json.loads(a.stdout)
    timed = json.loads(run_cli(*args, "--timing").stdout)
    assert timed["seconds"] >= 0


def test_plan_search_checks_out_folder_before_searching(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(plan_command_module, "run_search", lambda **kw: calls.append(kw))
    res = run_cli("plan", "--search", "--model", "deepseek-r1", "--hardware", "ascend-910c",
                  "--out", tmp_path / "missing" / "best.yaml")
    assert_user_error(res, "--out", "does not exist")
    assert calls == []


def test_closed_loop_runs_the_requests_asked_and_says_closed_loop():
    plan = PLANS / "xdeepserve-production.yaml"        # its workload has duration_s: 300
    res = run_cli("simulate", plan, "--concurrency", 64, "--requests", 2000, "--json")
    doc = json.loads(res.stdout)
    assert doc["completed"] + doc["failed"] == 2000
    assert doc["workload_source"]["mode"] == "closed loop"
    assert doc["workload_source"]["notes"]
    table = run_cli("simulate", plan, "--concurrency", 8, "--requests", 100, "--no-progress").stdout
    assert "closed loop: 8 requests in flight" in table


def test_trace_flag_says_which_plan_fields_it_replaced():
    plan = PLANS / "xdeepserve-production.yaml"
    res = run_cli("simulate", plan, "--trace", FIXTURES / "traces" / "azure_llm_2023_conv.csv",
                  "--rate-scale", 20, "--requests", 200, "--json")
    src = json.loads(res.stdout)["workload_source"]
    assert src["from"] == "flags"
    assert src["flags"] == ["--trace", "--rate-scale", "--requests"]
    assert src["plan_fields_overridden"] == ["trace"]
    assert src["plan_fields_not_used"] == ["duration_s"]


def test_workload_source_rules():
    from xds.workload.source import describe_source

    plan = {"trace": "t.csv", "duration_s": 300}
    assert describe_source(plan, [])["from"] == "plan"
    s = describe_source(plan, ["--duration"])
    assert (s["from"], s["plan_fields_overridden"], s["plan_fields_not_used"]) == \
        ("plan+flags", ["duration_s"], [])
    s = describe_source(plan, ["--rate", "--input-len", "--output-len"])
    assert (s["from"], s["plan_fields_not_used"]) == ("flags", ["duration_s", "trace"])
    assert describe_source(plan, [], check_block=True)["from"] == "check"


def test_rate_times_duration_error_names_the_flags():
    res = run_cli("simulate", PD, "--rate", "1e12", "--input-len", 100, "--output-len", 10,
                  "--duration", 10)
    assert_user_error(res, "--duration", "--rate x --duration")
    assert "duration_s" not in res.stderr and "rate_rps" not in res.stderr


def test_gate_given_a_plan_says_so():
    res = run_cli("gate", PD)
    assert_user_error(res, "this is a plan", "not a suite", "checks:")


def test_plan_table_shows_which_nodes_each_pool_sits_on():
    from xds.report.tables import node_ranges

    res = run_cli("plan", PD)
    doc = json.loads(run_cli("plan", PD, "--json").stdout)
    assert "on nodes" in res.stdout
    for pool in doc["pools"]:
        first = pool["instances"][0]
        assert f"{node_ranges(first['nodes'])} (instance {first['index']})" in res.stdout


def test_node_ranges():
    from xds.report.tables import node_ranges

    assert node_ranges([7, 0, 1, 2, 3]) == "0-3, 7"
    assert node_ranges([5]) == "5"
    assert node_ranges([1, 3, 4]) == "1, 3-4"


def test_topo_fail_is_one_row_per_field_not_one_cell():
    res = run_cli("topo", "--fail", "node:3")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(line.split("│")[1].strip() == "lost_dies" for line in lines if line.count("│") >= 3)
    assert "factors=" not in res.stdout and "lost_dies=" not in res.stdout


def test_batch_per_rank_is_the_name_search_writes_and_plans_read(tmp_path):
    import yaml
    data = yaml.safe_load(PD.read_text())
    dec = next(p for p in data["pools"] if p["role"] == "decode")
    dec["batch_per_rank"] = dec.pop("batch_per_die")
    data["workload"]["trace"] = str(FIXTURES / "traces" / "azure_llm_2023_conv.csv")
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump(data))
    a = json.loads(run_cli("plan", PD, "--json").stdout)
    b = json.loads(run_cli("plan", renamed, "--json").stdout)
    assert a["predicted"] == b["predicted"] and a["pools"] == b["pools"]
    dec["batch_per_die"] = 8
    renamed.write_text(yaml.safe_dump(data))
    assert_user_error(run_cli("plan", renamed), "batch_per_rank", "not both")
    out = tmp_path / "best.yaml"
    res = run_cli("plan", "--search", "--model", "deepseek-r1", "--hardware", "ascend-910c",
                  "--cluster", SMALL_POD, "--out", out)
    assert res.exit_code == 0, res.stderr
    best = yaml.safe_load(out.read_text())
    dec = next(p for p in best["pools"] if p["role"] == "decode")
    assert "batch_per_die" not in dec and isinstance(dec["batch_per_rank"], (int, float))
    assert f"batch {dec['batch_per_rank']:g}/DP rank" in res.stdout
