"""One sweep cell, run in a worker: validate its plan, then estimate (place + predicted figures),
simulate, or replay its fault scenario; return the collected fields as plain JSON values."""

from __future__ import annotations

import json
from typing import Any

from ..pipeline import chaos_plan, simulate_plan
from ..plan import place
from ..report.values import field, plain
from ..spec.plan import LoadedPlan, PlanSpec
from ..spec.yamlio import validate


def estimate_doc(loaded: LoadedPlan) -> dict[str, Any]:
    """``run: estimate``: the plan placed, whether it fits, and its predicted figures."""
    placed = place(loaded)
    return {"fits": placed.fits, "chips": placed.chips, "dies": placed.dies, **placed.predicted()}


def result_doc(cell: dict[str, Any]) -> dict[str, Any]:
    """The full result document of a cell (the run kind's JSON document)."""
    loaded = LoadedPlan(validate(PlanSpec, cell["plan"], file=cell["plan_path"]), cell["plan_path"])
    if cell["run"] == "estimate":
        return estimate_doc(loaded)
    if cell["run"] == "chaos" and cell["scenario"]:
        return chaos_plan(loaded, scenario=cell["scenario"], policy=cell["policy"], seed=cell["seed"],
                          workers=1)
    doc, _ = simulate_plan(loaded, seed=cell["seed"], timeline=False)
    if cell["run"] == "chaos":          # no fault in this cell: the fault-free run, chaos-shaped
        doc["requests_total"] = doc["requests"]
        doc["recomputed"] = {"requests": doc["recomputed_requests"], "tokens": doc["recomputed_tokens"]}
    return doc


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """The collected fields of one cell (a module-level function for the executor)."""
    doc = result_doc(cell)
    values = {k: field(doc, k) for k in cell["collect"]}
    return json.loads(json.dumps(plain(values), allow_nan=False))
