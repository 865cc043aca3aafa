"""xds.pipeline: every command's pipeline as a Python function, with the CLI's features."""

from __future__ import annotations

import json

import pytest

from xds.errors import XdsError
from xds.pipeline import build_workload, chaos_plan, simulate_plan
from xds.spec.plan import load_plan

from .conftest import FIXTURES, PLANS, run_cli

PLAN = str(PLANS / "cloudmatrix-infer-pd.yaml")
SMALL = dict(rate=20, input_len=1024, output_len=64, duration=30)


def test_simulate_plan_is_the_cli_document():
    doc, res = simulate_plan(PLAN, seed=3, **SMALL)
    cli = run_cli("simulate", PLAN, "--rate", "20", "--input-len", "1024", "--output-len", "64",
                  "--duration", "30", "--seed", "3", "--json")
    assert cli.exit_code in (0, 1)
    assert json.loads(cli.stdout) == json.loads(json.dumps(doc))
    assert doc["completed"] + doc["failed"] == len(res.status)


def test_chaos_plan_takes_a_whole_workload_block_like_a_gate_check():
    block = {"rate_rps": 20, "input": {"dist": "fixed", "value": 1024},
             "output": {"dist": "fixed", "value": 64}, "duration_s": 40}
    doc = chaos_plan(PLAN, scenario=str(FIXTURES / "faults/die_down.yaml"), policy="fine-grained",
                     workload=block)
    assert doc["completed"] + doc["failed"] == doc["requests_total"] > 0


def test_unknown_option_and_bad_values_name_what_the_user_gave():
    with pytest.raises(XdsError, match="unknown workload option 'rates'"):
        simulate_plan(PLAN, rates=20)
    with pytest.raises(XdsError) as exc:
        build_workload(load_plan(PLAN), rate_scale=-1)
    assert exc.value.file == "--rate-scale"
    with pytest.raises(XdsError, match="not both"):
        build_workload(load_plan(PLAN), input_len=10, input_dist="{dist: fixed, value: 3}")


def test_random_chaos_refuses_a_plot_before_running(tmp_path):
    with pytest.raises(XdsError, match="--plot"):
        chaos_plan(PLAN, random=True, rate_per_1000_chip_days=1, hours=0.01,
                   plot=str(tmp_path / "x.png"))
