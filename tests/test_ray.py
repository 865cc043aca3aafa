"""The Ray backend of xds.parallel, on a REAL local Ray instance (no mocks): the same outcomes as
in-process, a killed worker process loses no cell, and the user errors of ``--ray``.

Skipped only when Ray is not installed (``pip install '.[ray]'``; CI installs it). The tests that
need a running instance share one module-scoped ``ray.init(num_cpus=2, include_dashboard=False)``
(Executor reuses an initialized Ray), shut down at the end of the module."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES, PLANS, assert_user_error, run_cli
from xds.errors import XdsError
from xds.parallel import Executor
from xds.pipeline import chaos_plan
from xds.sweep import run_sweep

ray = pytest.importorskip("ray")

PLAN = str(PLANS / "cloudmatrix-infer-pd.yaml")
SUITE = str(FIXTURES / "suites" / "small.yaml")
CHAOS = dict(random=True, rate_per_1000_chip_days=8000.0, hours=0.02, trials=2, policy="fine-grained",
             seed=2, rate=20.0, input_len=1024, output_len=64)


def cube(x: int) -> int:
    if x == 4:
        raise XdsError("four is bad input", file="cell")
    return x ** 3


def die_once(cell: tuple[str, int]) -> int:
    """Kill this worker process the first time a cell runs; the retry finds the marker file."""
    folder, x = cell
    marker = Path(folder) / f"ran-{x}"
    if not marker.exists():
        marker.write_text("1")
        os._exit(1)
    return x * 10


def _by_index(outcomes):
    return sorted(outcomes, key=lambda o: o.index)


def test_ray_missing_is_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(XdsError, match=r"--ray: Ray is not installed: install the ray extra \(pip install 'xds\[ray\]'"):
        Executor(ray="local")
    assert_user_error(run_cli("gate", SUITE, "--ray", "local", "--json"), "xds[ray]")


@pytest.mark.skipif(ray.is_initialized(), reason="needs no Ray in this process")
def test_ray_auto_without_a_cluster_is_exit_2(monkeypatch):
    # RAY_ADDRESS is what --ray auto resolves to first; point it where nothing listens
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    res = run_cli("gate", SUITE, "--ray", "auto", "--json")
    assert_user_error(res, "--ray", "cannot reach a Ray cluster", "ray start --head")
    assert res.stdout == ""
    assert_user_error(run_cli("gate", SUITE, "--ray", "nohost"), "HOST:PORT")



@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


def test_same_outcomes_as_in_process(local_ray):
    cells = list(range(7))
    want = _by_index(Executor(workers=1).map(cube, cells))
    for batch in (None, 1, 3):
        assert _by_index(Executor(ray="local").map(cube, cells, batch=batch)) == want
    assert want[4].error == "cell: four is bad input" and want[6].value == 216


def test_killed_worker_loses_no_cell(local_ray, tmp_path):
    cells = [(str(tmp_path), x) for x in range(4)]
    out = _by_index(Executor(ray="local").map(die_once, cells, batch=1))
    assert [(o.index, o.value, o.error) for o in out] == [(i, i * 10, None) for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ran-{i}" for i in range(4)]


def test_random_chaos_on_ray_equals_in_process(local_ray):
    here = chaos_plan(PLAN, workers=1, **CHAOS)
    there = chaos_plan(PLAN, ray="local", **CHAOS)
    assert json.dumps(there) == json.dumps(here)
    assert here["faults_per_trial"] == [1, 1]
    assert here["policies"]["fine-grained"]["slo_attainment"]["per_trial"] == [0.875, 0.875]


def test_gate_on_ray_equals_one_worker(local_ray):
    def strip(text):
        doc = json.loads(text)
        for c in doc["checks"]:
            c.pop("seconds")
        doc.pop("seconds")
        return doc
    a = run_cli("gate", SUITE, "--ray", "local", "--json")
    b = run_cli("gate", SUITE, "--workers", "1", "--json")
    assert a.exit_code == b.exit_code == 1, (a.stderr, b.stderr)
    assert strip(a.stdout) == strip(b.stdout)
    assert a.stderr == ""


def test_sweep_on_a_local_ray_instance_matches_in_process_and_resumes(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": {"plan": str(PLAN)}, "run": "estimate",
                                    "axes": {"pools.decode.batch_per_die": [16, 32, 48],
                                             "pools.decode.chips": [160, 150]}}, sort_keys=False))
    local = run_sweep(str(path))
    cache = tmp_path / "cache"
    on_ray = run_sweep(str(path), executor=Executor(ray="local"), cache=str(cache))
    assert on_ray["rows"] == local["rows"] and on_ray["best"] == local["best"]
    assert on_ray["summary"] == {"cells": 6, "completed": 3, "failed": 3, "cached": 0, "computed": 6}
    again = run_sweep(str(path), executor=Executor(ray="local"), cache=str(cache))
    assert again["summary"]["computed"] == 0 and again["rows"] == local["rows"]
