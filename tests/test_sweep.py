"""``xds sweep``: grid expansion, exact cell values against the direct pipeline, determinism over
worker counts, the resumable ``--cache``, recorded failing cells, outputs, and one-line errors for
bad sweeps (fixtures/bad/sweeps) before anything runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from xds.errors import XdsError
from xds.parallel import Executor
from xds.pipeline import chaos_plan, simulate_plan
from xds.plan import place
from xds.spec.plan import load_plan
from xds.sweep import load_sweep, run_sweep

from .conftest import FIXTURES, PLANS, assert_user_error, run_cli

PLAN = PLANS / "cloudmatrix-infer-pd.yaml"
DIE_DOWN = FIXTURES / "faults" / "die_down.yaml"
SMALL = {"rate_rps": 20, "input": {"dist": "fixed", "value": 512},
         "output": {"dist": "fixed", "value": 16}, "duration_s": 5}
BAD = FIXTURES / "bad" / "sweeps"


def _write(tmp_path: Path, doc: dict, name: str = "sweep.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _sim_sweep(tmp_path: Path, **over) -> str:
    doc = {"name": "small", "base": {"plan": str(PLAN), "workload": SMALL},
           "axes": {"pools.decode.batch_per_die": [8, 48], "seed": [0, 1]}, "run": "simulate",
           "collect": ["p99_tpot_ms", "completed", "output_throughput_per_chip", "slo.attainment"]}
    doc.update(over)
    return _write(tmp_path, doc)


def _plan_with(tmp_path: Path, **pool_fields) -> str:
    """The base plan with decode-pool fields changed and the small workload, as a file."""
    data = yaml.safe_load(PLAN.read_text())
    data["pools"][0].update(pool_fields)
    data["workload"] = SMALL
    (tmp_path / "direct").mkdir(exist_ok=True)
    path = tmp_path / "direct" / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_cells_are_the_cartesian_product_first_axis_slowest(tmp_path):
    sw = load_sweep(_sim_sweep(tmp_path))
    assert [c["axes"] for c in sw.cells] == [
        {"pools.decode.batch_per_die": 8, "seed": 0}, {"pools.decode.batch_per_die": 8, "seed": 1},
        {"pools.decode.batch_per_die": 48, "seed": 0}, {"pools.decode.batch_per_die": 48, "seed": 1}]
    assert [c["seed"] for c in sw.cells] == [0, 1, 0, 1]
    assert [c["plan"]["pools"][0]["batch_per_die"] for c in sw.cells] == [8, 8, 48, 48]
    assert len({c["key"] for c in sw.cells}) == 4           # every input changes the key
    assert load_sweep(_sim_sweep(tmp_path)).cells[3]["key"] == sw.cells[3]["key"]


def test_simulate_rows_equal_simulate_plan_of_that_cell(tmp_path):
    doc = run_sweep(_sim_sweep(tmp_path))
    assert doc["summary"] == {"cells": 4, "completed": 4, "failed": 0, "cached": 0, "computed": 4}
    direct, _ = simulate_plan(_plan_with(tmp_path, batch_per_die=48), seed=1, timeline=False)
    row = doc["rows"][3]
    assert row["axes"] == {"pools.decode.batch_per_die": 48, "seed": 1} and row["error"] is None
    assert row["result"] == {"p99_tpot_ms": direct["p99_tpot_ms"], "completed": direct["completed"],
                             "output_throughput_per_chip": direct["output_throughput_per_chip"],
                             "slo.attainment": direct["slo"]["attainment"]}
    assert direct["failed"] == 0 and row["result"]["completed"] == direct["requests"]
    assert doc["best"]["p99_tpot_ms"]["goal"] == "min"
    assert set(doc["best"]) == {"p99_tpot_ms", "output_throughput_per_chip"}


def test_estimate_rows_equal_the_plans_predicted_figures(tmp_path):
    path = _write(tmp_path, {"base": {"plan": str(PLAN)}, "run": "estimate",
                             "axes": {"pools.decode.batch_per_die": [32, 48], "slo.tpot_ms": [40, 50]},
                             "collect": ["decode.tpot_ms", "meets_slo", "fits", "slo.tpot_margin"]})
    doc = run_sweep(path)
    data = yaml.safe_load(PLAN.read_text())
    data["pools"][0]["batch_per_die"] = 32
    data["slo"]["tpot_ms"] = 40
    data["workload"]["trace"] = str(FIXTURES / "traces" / "azure_llm_2023_conv.csv")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    placed = place(load_plan(tmp_path / "p.yaml"))
    pred = placed.predicted()
    assert doc["rows"][0]["result"] == {"decode.tpot_ms": pred["decode"]["tpot_ms"],
                                        "meets_slo": pred["meets_slo"], "fits": placed.fits,
                                        "slo.tpot_margin": pred["slo"]["tpot_margin"]}
    # the base plan's own prediction (batch 48, SLO 50 ms) is the last cell
    base = place(load_plan(PLAN)).predicted()
    assert doc["rows"][3]["result"]["decode.tpot_ms"] == base["decode"]["tpot_ms"]


def test_chaos_cells_replay_their_scenario_and_policy(tmp_path):
    wl = dict(SMALL, duration_s=70)
    path = _write(tmp_path, {"base": {"plan": str(PLAN), "workload": wl}, "run": "chaos",
                             "axes": {"scenario": [None, str(DIE_DOWN)], "policy": ["restart"]},
                             "collect": ["requests_total", "recomputed.requests", "failed"]})
    doc = run_sweep(path)
    assert doc["summary"]["failed"] == 0
    direct = chaos_plan(_plan_with(tmp_path), scenario=str(DIE_DOWN), policy="restart",
                        workload=None, seed=0, duration=70)
    assert doc["rows"][1]["result"] == {"requests_total": direct["requests_total"],
                                        "recomputed.requests": direct["recomputed"]["requests"],
                                        "failed": direct["failed"]}
    assert doc["rows"][0]["result"]["recomputed.requests"] == 0     # no fault, nothing recomputed
    assert doc["rows"][0]["result"]["requests_total"] == direct["requests_total"]   # same workload


def test_json_is_identical_for_one_and_two_workers(tmp_path):
    path = _sim_sweep(tmp_path)
    one = run_cli("sweep", path, "--workers", "1", "--json")
    two = run_cli("sweep", path, "--workers", "2", "--json")
    assert one.exit_code == 0 and two.exit_code == 0, (one.stderr, two.stderr)
    assert one.stdout == two.stdout
    assert one.stderr == "" and json.loads(one.stdout)["summary"]["completed"] == 4


def test_cache_resumes_computing_only_missing_cells(tmp_path):
    path, cache = _sim_sweep(tmp_path), tmp_path / "cache"
    first = run_sweep(path, cache=str(cache))
    files = sorted(cache.iterdir())
    assert [f.name for f in files] == sorted(f"{r['key']}.json" for r in first["rows"])
    again = run_sweep(path, cache=str(cache), executor=Executor(workers=2))
    assert again["summary"] == {"cells": 4, "completed": 4, "failed": 0, "cached": 4, "computed": 0}
    assert again["rows"] == first["rows"] and again["best"] == first["best"]
    files[2].unlink()
    resumed = run_sweep(path, cache=str(cache))
    assert resumed["summary"]["cached"] == 3 and resumed["summary"]["computed"] == 1
    assert resumed["rows"] == first["rows"]
    assert len(list(cache.iterdir())) == 4 and not list(cache.glob(".*"))   # no temp files left


def test_a_corrupt_cache_file_is_recomputed(tmp_path):
    path, cache = _sim_sweep(tmp_path, axes={"seed": [0]}), tmp_path / "cache"
    first = run_sweep(path, cache=str(cache))
    next(cache.iterdir()).write_text("{ truncated")
    again = run_sweep(path, cache=str(cache))
    assert again["summary"]["computed"] == 1 and again["rows"] == first["rows"]


def test_a_changed_input_is_a_new_cell(tmp_path):
    cache = tmp_path / "cache"
    run_sweep(_sim_sweep(tmp_path, axes={"seed": [0]}), cache=str(cache))
    doc = run_sweep(_sim_sweep(tmp_path, axes={"seed": [0]}, collect=["p99_tpot_ms"]), cache=str(cache))
    assert doc["summary"]["computed"] == 1                  # the collect list is part of the key


def test_failing_cell_is_recorded_and_exit_is_1(tmp_path):
    path = _write(tmp_path, {"base": {"plan": str(PLAN)}, "run": "estimate",
                             "axes": {"pools.decode.chips": [160, 150]}})
    cache = tmp_path / "cache"
    res = run_cli("sweep", path, "--json", "--workers", "1", "--cache", str(cache))
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["summary"] == {"cells": 2, "completed": 1, "failed": 1, "cached": 0, "computed": 2}
    assert doc["rows"][0]["error"] is None and doc["rows"][1]["result"] is None
    assert "must equal the instance's 300 dies" in doc["rows"][1]["error"]
    again = json.loads(run_cli("sweep", path, "--json", "--cache", str(cache)).stdout)
    assert again["summary"]["cached"] == 2 and again["rows"] == doc["rows"]   # user errors cached too


def test_outputs_csv_out_table_and_plot(tmp_path):
    path = _sim_sweep(tmp_path)
    out, csv_file = tmp_path / "o.json", tmp_path / "o.csv"
    res = run_cli("sweep", path, "--workers", "1", "--out", str(out), "--csv", str(csv_file))
    assert res.exit_code == 0, res.stderr
    assert "best cell per objective" in res.stdout and "4 completed, 0 failed, 0 cached" in res.stdout
    doc = json.loads(out.read_text())
    assert list(doc) == ["name", "run", "axes", "collect", "rows", "best", "summary"]
    rows = list(csv.reader(csv_file.open()))
    assert rows[0] == ["cell", "pools.decode.batch_per_die", "seed", "p99_tpot_ms", "completed",
                       "output_throughput_per_chip", "slo.attainment", "error"]
    assert rows[4][:3] == ["3", "48", "1"] and float(rows[4][3]) == doc["rows"][3]["result"]["p99_tpot_ms"]
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    res = run_cli("sweep", path, "--json", "--plot", str(png), "--x", "seed", "--y", "p99_tpot_ms")
    assert res.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_plot_arguments_are_checked_before_running(tmp_path):
    path = _sim_sweep(tmp_path)
    assert_user_error(run_cli("sweep", path, "--plot", str(tmp_path / "p.png"), "--x", "rate"),
                      "--x", "not an axis")
    assert_user_error(run_cli("sweep", path, "--plot", str(tmp_path / "p.png"), "--y", "p50"),
                      "--y", "not a collected field")
    assert_user_error(run_cli("sweep", path, "--x", "seed"), "--x", "--plot")
    assert_user_error(run_cli("sweep", path, "--cache", str(tmp_path / "no" / "dir")), "--cache")
    (tmp_path / "f").write_text("")
    assert_user_error(run_cli("sweep", path, "--cache", str(tmp_path / "f")), "--cache", "a file")


def test_shipped_example_sweeps_validate():
    sweeps = Path(__file__).resolve().parent.parent / "sweeps"
    sw = load_sweep(sweeps / "pd-batch-rate.yaml")
    assert len(sw.cells) == 9 and sw.spec.run == "simulate"
    sw = load_sweep(sweeps / "pd-faults-policies.yaml")
    assert len(sw.cells) == 9 and len({c["key"] for c in sw.cells}) == 7   # fault-free: one run


WHERE = {
    "unknown_axis_path.yaml": ("axes.pools.decode.batch_per_dei", "did you mean 'batch_per_die'"),
    "unknown_axis_top.yaml": ("axes.seeds", "did you mean 'seed'"),
    "bad_axis_value.yaml": ("axes.pools.decode.batch_per_die[2]", "greater than 0"),
    "unknown_collect.yaml": ("collect[0]", "did you mean 'decode.tpot_ms'"),
    "missing_plan.yaml": ("base.plan", "not found"),
    "unknown_role.yaml": ("axes.pools.attention.instances", "by role"),
    "unknown_plan_field.yaml": ("axes.slo.tpot", "did you mean 'tpot_ms'"),
    "unknown_workload_field.yaml": ("axes.workload.rate_scael", "did you mean 'rate_scale'"),
    "bad_workload_value.yaml": ("axes.workload.rate_scale[1]",),
    "policy_without_chaos.yaml": ("axes.policy", "run: chaos"),
    "bad_policy.yaml": ("axes.policy[1]", "reboot"),
    "missing_scenario.yaml": ("axes.scenario[1]", "not found"),
    "bad_seed.yaml": ("axes.seed[1]",),
    "empty_axis.yaml": ("axes", "no values"),
    "unknown_top_key.yaml": ("did you mean 'axes'",),
    "unknown_run.yaml": ("run",),
    "unknown_objective.yaml": ("objectives.prefill.ttft_ms",),
    "bad_objective_goal.yaml": ("objectives.decode.tpot_ms",),
    "path_too_deep.yaml": ("axes.slo.tpot_ms.value", "not a mapping"),
    "pools_without_role.yaml": ("axes.pools.batch_per_die", "by role"),
    "axes_not_list.yaml": ("axes.slo.tpot_ms", "list"),
    "base_workload_unknown_key.yaml": ("base.workload.rate_rsp", "did you mean 'rate_rps'"),
    "missing_trace.yaml": ("base.workload.trace", "not found"),
    "too_many_cells.yaml": ("200,000 cells",),
}


def test_every_bad_sweep_fixture_is_listed():
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(WHERE)


@pytest.mark.parametrize("name", sorted(WHERE))
def test_bad_sweep_is_one_line_naming_the_entry(name):
    assert_user_error(run_cli("sweep", str(BAD / name), "--workers", "1"), name, *WHERE[name])


def test_file_axes_resolve_from_the_sweep_folder(tmp_path):
    (tmp_path / "a.csv").write_text("num_prefill_tokens,num_decode_tokens\n512,16\n")
    (tmp_path / "b.csv").write_text("num_prefill_tokens,num_decode_tokens\n1024,16\n")
    sub = tmp_path / "sweeps"
    sub.mkdir()
    doc = {"base": {"plan": str(PLAN), "workload": {"trace": "../a.csv", "rate_rps": 20, "duration_s": 2}},
           "axes": {"workload.trace": ["../a.csv", "../b.csv"]},
           "collect": ["completed", "total_input_tokens"]}
    res = run_sweep(_write(sub, doc))
    assert [r["axes"] for r in res["rows"]] == [{"workload.trace": "../a.csv"}, {"workload.trace": "../b.csv"}]
    for row, n in zip(res["rows"], (512, 1024)):
        assert row["error"] is None and row["result"]["total_input_tokens"] == n * row["result"]["completed"]
    doc["axes"] = {"workload.trace": ["../missing.csv"]}
    with pytest.raises(XdsError, match=r"axes\.workload\.trace\[0\].*not found"):
        load_sweep(_write(sub, doc))


def test_ctrl_c_keeps_finished_cells_and_a_rerun_computes_the_rest(tmp_path, monkeypatch):
    import xds.sweep.run

    real, calls = xds.sweep.run.run_cell, []

    def interrupted_third(cell):
        calls.append(cell["index"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cell)

    path, cache = _sim_sweep(tmp_path), tmp_path / "cache"
    monkeypatch.setattr(xds.sweep.run, "run_cell", interrupted_third)
    res = run_cli("sweep", path, "--workers", "1", "--cache", str(cache), "--json")
    assert res.exit_code == 130 and "Traceback" not in res.stderr and res.stdout == ""
    assert len(list(cache.iterdir())) == 2
    monkeypatch.setattr(xds.sweep.run, "run_cell", real)
    doc = run_sweep(path, cache=str(cache))
    assert doc["summary"]["cached"] == 2 and doc["summary"]["computed"] == 2
    assert doc["rows"] == run_sweep(path)["rows"]


def test_fault_free_cells_run_once_whatever_the_policy(tmp_path):
    path = _write(tmp_path, {"base": {"plan": str(PLAN), "workload": SMALL}, "run": "chaos",
                             "axes": {"scenario": [None], "policy": ["restart", "fine-grained"],
                                      "seed": [0, 1]}, "collect": ["completed"]})
    doc = run_sweep(path)
    assert doc["summary"] == {"cells": 4, "completed": 4, "failed": 0, "cached": 0, "computed": 2}
    assert doc["rows"][0]["key"] == doc["rows"][2]["key"] != doc["rows"][1]["key"]
    assert doc["rows"][0]["result"] == doc["rows"][2]["result"]
