"""Load a sweep, check every axis path and value against the base plan, and expand the grid into
cells (the cartesian product of the axes, first axis slowest), each with its content-hash key.

Nothing runs here: a bad path or value is a one-line error naming the axis
(``axes.pools.decode.batch_per_die[2]``) before the first cell starts.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import __version__
from ..errors import XdsError
from ..spec.fileio import resolve_relative
from ..spec.plan import PlanSpec, load_plan
from ..spec.scenario import load_scenario
from ..spec.sweep import SPECIAL_AXES, SweepSpec, check_fields
from ..spec.workload import WorkloadSpec
from ..spec.yamlio import describe_validation_error, first_model, load_yaml, read_bytes, validate

POLICY_VALUES = ("restart", "pd-failover", "fine-grained")
ROLES = ("prefill", "decode")
PATH_AXES = ("workload.trace", "workload.input.file", "workload.output.file", "balancing.loads")


@dataclass
class Sweep:
    """A validated sweep: its spec, file, base plan path and the expanded cells."""

    spec: SweepSpec
    path: str
    plan_path: str
    cells: list[dict[str, Any]]

    @property
    def axes(self) -> dict[str, list[Any]]:
        return self.spec.axes


def _walk(model: type[BaseModel], parts: list[str], key: str, file: str) -> None:
    """Each part of a dotted path names a field of the model it descends into."""
    cur: type[BaseModel] | None = model
    for i, part in enumerate(parts):
        if cur is None:
            raise XdsError(f"{'.'.join(parts[:i])!r} is a value, not a mapping: the path cannot "
                           f"go deeper", file=file, where=f"axes.{key}")
        names = tuple(cur.model_fields)
        if part not in names:
            hint = difflib.get_close_matches(part, names, n=1)
            raise XdsError(f"unknown field {part!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" (allowed: {', '.join(names)})", file=file, where=f"axes.{key}")
        cur = first_model(cur.model_fields[part].annotation)


def check_path(key: str, plan: dict[str, Any], file: str) -> None:
    """An axis path names a plan field, a workload field or a special axis."""
    if key in SPECIAL_AXES:
        return
    parts = key.split(".")
    if parts[0] == "pools":
        if len(parts) < 3 or parts[1] not in ROLES:
            raise XdsError("pool fields are addressed by role: pools.prefill.FIELD or "
                           "pools.decode.FIELD", file=file, where=f"axes.{key}")
        if not any(isinstance(p, dict) and p.get("role") == parts[1] for p in plan.get("pools", [])):
            raise XdsError(f"the base plan has no {parts[1]} pool", file=file, where=f"axes.{key}")
        _walk(PlanSpec.model_fields["pools"].annotation.__args__[0], parts[2:], key, file)
    elif parts[0] == "workload":
        if len(parts) < 2:
            raise XdsError("name a workload field: workload.FIELD (e.g. workload.rate_scale)",
                           file=file, where=f"axes.{key}")
        _walk(WorkloadSpec, parts[1:], key, file)
    else:
        if parts[0] not in PlanSpec.model_fields:
            names = tuple(PlanSpec.model_fields) + SPECIAL_AXES
            hint = difflib.get_close_matches(parts[0], names, n=1)
            raise XdsError(f"unknown field {parts[0]!r}" + (f"; did you mean {hint[0]!r}?" if hint
                           else "") + " (axes: a plan field such as pools.decode.batch_per_die or "
                           "slo.tpot_ms, workload.FIELD, scenario, policy, seed)",
                           file=file, where=f"axes.{key}")
        _walk(PlanSpec, parts, key, file)


def _set(d: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        nxt = d.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            d[part] = nxt
        d = nxt
    d[parts[-1]] = copy.deepcopy(value)


def apply_axis(plan: dict[str, Any], key: str, value: Any) -> None:
    """Set a plan or workload field (dotted path) in a plan dict in place."""
    parts = key.split(".")
    if parts[0] == "pools":
        pool = next(p for p in plan["pools"] if isinstance(p, dict) and p.get("role") == parts[1])
        _set(pool, parts[2:], value)
    elif parts[0] == "workload":
        if not isinstance(plan.get("workload"), dict):
            plan["workload"] = {}
        _set(plan["workload"], parts[1:], value)
    else:
        _set(plan, parts, value)


def _check_plan(plan: dict[str, Any], file: str, where: str) -> None:
    try:
        PlanSpec.model_validate(plan)
    except ValidationError as exc:
        at, msg = describe_validation_error(exc, PlanSpec)
        raise XdsError(f"{msg} (plan field {at})", file=file, where=where) from None


def _special(key: str, values: list[Any], base: Path, file: str) -> list[Any]:
    """Check (and resolve) the values of the scenario / policy / seed axes."""
    out = []
    for i, v in enumerate(values):
        where = f"axes.{key}[{i}]"
        if key == "seed":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise XdsError(f"a seed is a whole number >= 0 (got {v!r})", file=file, where=where)
        elif key == "policy":
            if v not in POLICY_VALUES:
                raise XdsError(f"unknown policy {v!r} (allowed: {', '.join(POLICY_VALUES)})",
                               file=file, where=where)
        elif v is not None:
            if not isinstance(v, str):
                raise XdsError(f"a scenario is a file path or null (got {v!r})", file=file, where=where)
            v = resolve_relative(base, v, "scenario", file, where)
            load_scenario(v)
        out.append(v)
    return out


def _base_plan(spec: SweepSpec, plan_path: str, base: Path, file: str) -> dict[str, Any]:
    """The plan as a dict with the sweep's workload block (paths resolved) in place of its own."""
    load_plan(plan_path)
    plan = load_yaml(plan_path, what="plan")
    if spec.base.workload is not None:
        wl = spec.base.workload.model_dump(exclude_unset=True)
        if "trace" in wl:
            wl["trace"] = str(Path(resolve_relative(base, wl["trace"], "trace", file, "base.workload.trace"))
                              .resolve())
        for side in ("input", "output"):
            d = wl.get(side)
            if isinstance(d, dict) and d.get("file"):
                d["file"] = str(Path(resolve_relative(base, d["file"], "length", file,
                                              f"base.workload.{side}.file")).resolve())
        plan["workload"] = wl
    if spec.run != "estimate" and not plan.get("workload") and not any(
            k.startswith("workload.") for k in spec.axes):
        raise XdsError(f"run: {spec.run} needs a workload: give base.workload (the plan has none)",
                       file=file, where="base.workload")
    return plan


def _digest(path: Path, memo: dict[str, str]) -> str | None:
    key = str(path)
    if key not in memo:
        memo[key] = (hashlib.sha256(read_bytes(path, max_bytes=1 << 34)).hexdigest()
                     if path.is_file() else None)
    return memo[key]


def _inputs_digest(plan: dict[str, Any], plan_dir: Path, memo: dict[str, str]) -> dict[str, Any]:
    """Content hashes of the files a cell's plan reads (trace, length files, expert loads)."""
    def find(rel: Any) -> Path | None:
        if not isinstance(rel, str):
            return None
        p = Path(rel)
        return p if p.is_absolute() else (plan_dir / p if (plan_dir / p).exists() else p)

    wl = plan.get("workload") if isinstance(plan.get("workload"), dict) else {}
    files = {"trace": wl.get("trace"),
             "loads": (plan.get("balancing") or {}).get("loads")}
    for side in ("input", "output"):
        if isinstance(wl.get(side), dict):
            files[side] = wl[side].get("file")
    return {k: _digest(p, memo) for k, v in files.items() if (p := find(v)) is not None}


def cell_key(cell: dict[str, Any], digests: dict[str, Any], scenario_sha: str | None) -> str:
    """sha256 of everything that determines a cell's result."""
    doc = {"plan": cell["plan"], "files": digests, "scenario": scenario_sha,
           # without a fault the policy changes nothing: those cells share one key and one run
           "policy": cell["policy"] if scenario_sha else None, "seed": cell["seed"], "run": cell["run"],
           "collect": cell["collect"], "xds": __version__}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_sweep(path: str | Path) -> Sweep:
    """Validate a sweep and everything it names, and expand its cells (nothing runs)."""
    file = str(path)
    spec = validate(SweepSpec, load_yaml(path, what="sweep"), file=file)
    check_fields(spec, file)
    base = Path(path).resolve().parent
    plan_path = resolve_relative(base, spec.base.plan, "plan", file, "base.plan")
    plan = _base_plan(spec, plan_path, base, file)
    values: dict[str, list[Any]] = {}
    for key, vals in spec.axes.items():
        check_path(key, plan, file)
        if key in SPECIAL_AXES:
            values[key] = _special(key, vals, base, file)
            continue
        if key in PATH_AXES:        # files resolve from the sweep's folder, like base.workload's
            vals = [str(Path(resolve_relative(base, v, "input", file, f"axes.{key}[{i}]")).resolve())
                    if isinstance(v, str) and v != "synthetic" else v for i, v in enumerate(vals)]
        for i, v in enumerate(vals):
            trial = copy.deepcopy(plan)
            apply_axis(trial, key, v)
            _check_plan(trial, file, f"axes.{key}[{i}]")
        values[key] = vals
    if spec.base.scenario is not None:
        spec_scen = resolve_relative(base, spec.base.scenario, "scenario", file, "base.scenario")
        load_scenario(spec_scen)
    else:
        spec_scen = None
    return Sweep(spec, file, plan_path, _expand(spec, plan, plan_path, values, spec_scen))


def _expand(spec: SweepSpec, plan: dict[str, Any], plan_path: str, values: dict[str, list[Any]],
            base_scenario: str | None) -> list[dict[str, Any]]:
    keys = list(values)
    memo: dict[str, str] = {}
    plan_dir = Path(plan_path).resolve().parent
    cells = []
    for index, combo in enumerate(itertools.product(*(values[k] for k in keys))):
        applied = copy.deepcopy(plan)
        shown = (spec.axes[k][j] for k, j in zip(keys, _positions(index, [len(values[k]) for k in keys])))
        cell = {"index": index, "axes": dict(zip(keys, shown)),
                "plan_path": plan_path, "scenario": base_scenario, "policy": spec.base.policy,
                "seed": spec.base.seed, "run": spec.run, "collect": spec.fields}
        for k, v in zip(keys, combo):
            if k in SPECIAL_AXES:
                cell[k] = v
            else:
                apply_axis(applied, k, v)
        cell["plan"] = applied
        scen_sha = _digest(Path(cell["scenario"]), memo) if cell["scenario"] else None
        cell["key"] = cell_key(cell, _inputs_digest(applied, plan_dir, memo), scen_sha)
        cells.append(cell)
    return cells


def _positions(index: int, sizes: list[int]) -> list[int]:
    """The value index on each axis of cell ``index`` (first axis slowest)."""
    out = []
    for n in reversed(sizes):
        out.append(index % n)
        index //= n
    return out[::-1]
