"""What a plan's inputs resolve to, shared by placement (:mod:`.place`) and search (:mod:`.search`):
the workload's mean lengths (tokens) and rate (req/s), the long-run expert shares, built-in names vs
paths, and errors located in the plan file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import XdsError
from ..experts import load_loads
from ..experts.skew import DEFAULT_HOT, long_run_shares
from ..spec.hardware import HardwareSpec
from ..spec.model import ModelSpec
from ..spec.plan import LoadedPlan
from ..workload import plan_workload

DEFAULT_LENGTHS = (4096, 256)   # (input, output) tokens when a plan has no workload (CMv2 §5.2 decode)


def plan_error(loaded: LoadedPlan, where: str, msg: str) -> XdsError:
    """A user error located at field ``where`` of the plan file."""
    return XdsError(msg, file=loaded.path, where=where)


def spec_ref(loaded: LoadedPlan, name: str) -> str:
    """A built-in name stays a name; something that looks like a path resolves from the plan folder."""
    if "/" in name or name.endswith((".yaml", ".yml", ".json")):
        return str(loaded.resolve_path(name))
    return name


def located(loaded: LoadedPlan, where: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``, re-raising its user error against the plan's field ``where`` (the
    original file and field, if any, stay in parentheses) since the plan is what the user edits."""
    try:
        return fn(*args, **kw)
    except XdsError as exc:
        raise XdsError(exc.message, file=loaded.path,
                       where=where + (f" ({exc.file}{': ' + exc.where if exc.where else ''})"
                                      if exc.file else "")) from None


def chip_mismatch(hw: HardwareSpec, topo: Any) -> str | None:
    """Why ``hw`` cannot run on topology ``topo`` (dies per chip differ), or None when it can."""
    if topo.dies_per_chip == hw.dies_per_chip:
        return None
    return (f"{hw.name} has {hw.dies_per_chip} dies per chip but cluster {topo.name} is built of "
            f"{topo.dies_per_chip}-die chips")


def workload_lengths(loaded: LoadedPlan) -> dict[str, Any]:
    """Mean input/output lengths (tokens) and offered rate (req/s) of the plan's default workload;
    DEFAULT_LENGTHS and no rate when the plan has none."""
    spec = loaded.spec
    if spec.workload is None:
        return {"source": "default", "input_len": float(DEFAULT_LENGTHS[0]),
                "output_len": float(DEFAULT_LENGTHS[1]), "rate_rps": None}

    try:
        w = plan_workload(loaded, seed=0)
    except XdsError as exc:
        raise exc.at(file=loaded.path, where="workload") from None
    s = w.summary()
    return {"source": s["name"] or "workload", "input_len": float(s["input"]["mean"]),
            "output_len": float(s["output"]["mean"]),
            "rate_rps": float(s["rate_rps"]) if s["rate_rps"] else None, "requests": s["requests"]}


def expert_shares(loaded: LoadedPlan, model: ModelSpec) -> tuple[np.ndarray, str]:
    """Long-run expert shares [layers, experts] (rows sum to 1) and where they came from."""
    bal = loaded.spec.balancing
    E = model.n_routed_experts
    if bal.loads == "synthetic":
        hot = float(min(bal.hot_ratio if bal.hot_ratio is not None else DEFAULT_HOT, E - 1e-6))
        return long_run_shares(E, hot), f"synthetic (hottest expert {hot:g}x mean)"
    path = loaded.resolve_path(bal.loads)
    try:
        w = load_loads(path, label="balancing.loads")
    except XdsError as exc:
        raise exc.at(file=loaded.path, where="balancing.loads") from None
    if w.shape[1] != E:
        raise plan_error(loaded, "balancing.loads",
                         f"{path} has {w.shape[1]} experts per layer but {model.name} has {E} routed experts")
    tot = w.sum(axis=1, keepdims=True).astype(float)
    if np.any(tot <= 0):
        raise plan_error(loaded, "balancing.loads", f"{path} has a layer with no load (all zeros)")
    return w / tot, str(path)
