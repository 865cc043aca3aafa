"""One sweep cell, run in a worker: validate its plan, then estimate (place + predicted figures),
simulate, or replay its fault scenario; return the collected fields as plain JSON values."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..pipeline import chaos_plan, simulate_plan
from ..plan import place
from ..spec.plan import LoadedPlan, PlanSpec
from ..spec.yamlio import validate


def field(doc: dict[str, Any], key: str) -> Any:
    """A dotted field of a result document, or None when it is absent."""
    cur: Any = doc
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def plain(obj: Any) -> Any:
    """JSON-safe and exact: NumPy to Python, NaN/inf to None; a cached cell reads back the same."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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
