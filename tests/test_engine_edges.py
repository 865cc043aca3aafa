"""Engine edge cases from review: long outputs drain, closed-loop slots survive up-front failures,
failed-on-arrival requests do not finish before they arrive, MLA KV capacity under TP; the
package's modules import one way."""

from __future__ import annotations

import ast
import json

import numpy as np

from xds.engine import simulate
from xds.plan import place
from xds.spec.plan import load_plan
from xds.workload import Workload

from .conftest import PLANS, ROOT, run_cli

PLAN = PLANS / "cloudmatrix-infer-pd.yaml"


def _placed():
    return place(load_plan(PLAN))


def test_a_very_long_output_drains_instead_of_failing():
    res = run_cli("simulate", PLAN, "--rate", "1", "--input-len", "100", "--output-len", "60000",
                  "--requests", "2", "--json")
    doc = json.loads(res.stdout)
    assert doc["completed"] == 2 and doc["failed"] == 0, doc["failed_reasons"]


def test_closed_loop_slot_freed_by_an_up_front_failure():
    placed = _placed()
    inp = np.array([600_000, 1000, 1000, 1000], dtype=np.int64)   # the first can never fit HBM
    w = Workload(arrival_s=np.arange(4, dtype=float), input_len=inp,
                 output_len=np.full(4, 50, dtype=np.int64), name="edge")
    res = simulate(placed, w, concurrency=1)
    names = [res.reason_names[r] for r in res.reason]
    assert names.count("kv_too_large") == 1 and names.count("") == 3       # the rest complete
    failed = np.flatnonzero(res.reason == res.reason_names.index("kv_too_large"))
    assert np.all(res.finish_s[failed] >= res.arrival_s[failed])


def test_open_loop_failure_on_arrival_keeps_time_order():
    placed = _placed()
    w = Workload(arrival_s=np.array([0.0, 3.4]), input_len=np.array([1000, 600_000], dtype=np.int64),
                 output_len=np.array([20, 20], dtype=np.int64), name="edge")
    res = simulate(placed, w)
    assert res.finish_s[1] == res.arrival_s[1] == 3.4


def test_mla_kv_capacity_is_not_multiplied_by_tp():
    placed = _placed()
    pre = placed.prefill   # TP4 prefill attention on DeepSeek (MLA): every TP die holds the latent
    hbm = pre.hbm
    per_die_tokens = (hbm["capacity"] - (hbm["total"] - hbm["kv_cache"])) * 1e9 / placed.kv_bytes_per_token
    assert pre.kv_tokens_per_rank <= per_die_tokens * 1.001


# xds/engine/ bottom-up: a module may import only the ones before it (the package re-exports)
ENGINE_LAYERS = ("result", "requests", "actor", "decode", "prefill", "events", "sim")


def test_engine_modules_import_one_way_at_module_top():
    pkg = ROOT / "xds" / "engine"
    assert sorted(p.stem for p in pkg.glob("*.py")) == sorted(ENGINE_LAYERS + ("__init__",))
    for i, name in enumerate(ENGINE_LAYERS):
        tree = ast.parse((pkg / f"{name}.py").read_text())
        top = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                assert node in top, f"{name}.py: import inside a function (line {node.lineno})"
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module in ENGINE_LAYERS[:i], f"{name}.py imports .{node.module}"
