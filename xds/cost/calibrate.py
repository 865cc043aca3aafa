"""``xds calibrate``: fit a hardware spec's efficiency factors to measured points.

A points CSV has the ``xds estimate`` flags as columns (``phase``, ``chips``, ``ep``, ``batch_per_chip``,
``tokens_per_chip``, ``input_len``, ``output_len``, ``mtp``, ``eplb``, …) plus ``metric`` and
``measured``. ``phase`` may also be ``dispatch`` or ``combine`` for communication micro-benchmarks (``ep``
ranks, ``batch_per_die`` tokens per rank, ``fabric`` scale_up|scale_out, metric ``latency_us``).

The fit minimises the mean squared log error over all points with ONE set of factors (Nelder-Mead
in a bounded, transformed space, deterministic), then reports per-point error and MAPE before and
after and writes a hardware YAML that ``--hardware FILE.yaml`` accepts.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..errors import XdsError
from ..spec.fileio import write_text_atomic
from ..spec.hardware import Efficiency, HardwareSpec, load_hardware
from ..spec.model import load_model
from ..spec.yamlio import read_bytes
from .costmodel import CostModel
from .estimate import EstimateArgs, prepare, price
from .layout import Fabric, Layout, combine_bytes_per_copy, dispatch_bytes_per_copy

METRICS = {
    "decode": ("tpot_ms", "output_throughput_per_chip", "step_time_ms", "moe_layer_us"),
    "prefill": ("input_throughput_per_chip", "ttft_ms", "step_time_ms"),
    "dispatch": ("latency_us",),
    "combine": ("latency_us",),
}
INT_COLS = {"chips", "ep", "dp", "tp", "input_len", "output_len", "mtp", "microbatches",
            "shared_expert_dies", "redundant_experts"}
FLOAT_COLS = {"batch_per_die", "batch_per_chip", "tokens_per_chip", "mtp_acceptance", "balancedness",
              "measured", "tolerance_pct"}
STR_COLS = {"name", "model", "hardware", "cluster", "phase", "eplb", "quant", "kv_dtype", "metric",
            "fabric", "source"}

# Bounds of each fittable factor: (low, high). Fractions stay physical; times stay non-negative.
BOUNDS = {
    "compute": (0.2, 0.95), "memory": (0.3, 0.95), "attention_compute": (0.2, 0.95),
    "attention_memory": (0.3, 0.95), "scale_up": (0.1, 0.95), "scale_out": (0.1, 0.98),
    "comm_latency_us": (0.0, 300.0), "comm_log_peers_us": (0.0, 50.0),
    "dispatch_quant_us": (0.0, 2.0), "launch_us": (0.0, 50.0), "step_overhead_ms": (0.0, 20.0),
    "microbatch_overlap": (0.0, 1.0), "prefill_compute": (0.1, 1.0),
}
DEFAULT_FIT = ("compute", "attention_compute", "memory", "scale_up", "scale_out", "comm_latency_us",
               "comm_log_peers_us", "dispatch_quant_us", "step_overhead_ms", "microbatch_overlap",
               "prefill_compute")


@dataclass
class Point:
    """One measured point: how to predict it, and what was measured."""

    line: int
    name: str
    metric: str
    measured: float
    tolerance_pct: float
    predict: Callable[[HardwareSpec], float]


def _parse_row(row: dict[str, str], line: int, file: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k is None:
            raise XdsError("row has more fields than the header", file=file, where=f"line {line}")
        key = k.strip()
        if v is None:
            raise XdsError(f"row is missing column {key!r} (truncated line?)", file=file, where=f"line {line}")
        v = v.strip()
        if v == "":
            continue
        if key in INT_COLS:
            try:
                out[key] = int(v)
            except ValueError:
                raise XdsError(f"column {key!r} must be an integer (got {v!r})", file=file,
                               where=f"line {line}") from None
        elif key in FLOAT_COLS:
            try:
                f = float(v)
            except ValueError:
                raise XdsError(f"column {key!r} must be a number (got {v!r})", file=file,
                               where=f"line {line}") from None
            if not math.isfinite(f):
                raise XdsError(f"column {key!r} must be finite (got {v!r})", file=file, where=f"line {line}")
            out[key] = f
        elif key in STR_COLS:
            out[key] = v
        else:
            allowed = sorted(INT_COLS | FLOAT_COLS | STR_COLS)
            hint = difflib.get_close_matches(key, allowed, n=1)
            raise XdsError(f"unknown column {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" (allowed: {', '.join(allowed)})", file=file, where="line 1")
    return out


def _comm_predictor(r: dict[str, Any], file: str, line: int) -> Callable[[HardwareSpec], float]:
    model = load_model(r.get("model", "deepseek-r1"))
    ep = r.get("ep")
    tokens = r.get("batch_per_die", 128.0)
    if not ep or ep < 1:
        raise XdsError("dispatch/combine rows need ep >= 1", file=file, where=f"line {line}")
    plane = r.get("fabric", "scale_up")
    if plane not in ("scale_up", "scale_out"):
        raise XdsError(f"fabric must be scale_up or scale_out (got {plane!r})", file=file, where=f"line {line}")
    op = r["phase"]

    def predict(hw: HardwareSpec) -> float:
        quant = r.get("quant", hw.default_quant)
        gb_s = hw.scale_up_gb_s_per_die if plane == "scale_up" else hw.scale_out_gb_s_per_die
        slots = ep * math.ceil(model.n_routed_experts / ep)
        lay = Layout(dies=ep, ep=ep, dp=ep, routed_slots=slots, quant=quant)
        cm = CostModel(model, hw, lay, Fabric(gb_s, plane))
        copies = tokens * model.top_k
        if op == "dispatch":
            return float(cm.comm_us(copies * dispatch_bytes_per_copy(model.hidden, quant), dispatch=True,
                                    tokens=tokens))
        return float(cm.comm_us(copies * combine_bytes_per_copy(model.hidden), dispatch=False))

    return predict


def read_points(path: str | Path, hardware: str) -> list[Point]:
    """Read a points CSV into predictors (validated, with line numbers in errors)."""
    file = str(path)
    raw = read_bytes(path, what="points CSV")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise XdsError("not UTF-8 text; expected a CSV of measured points", file=file) from None
    if "\x00" in text:
        raise XdsError("binary data (NUL byte); expected a CSV of measured points", file=file)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        raise XdsError("no data rows; expected a header and at least one measured point", file=file)
    est_fields = {f.name for f in fields(EstimateArgs)}
    pts: list[Point] = []
    for i, row in enumerate(rows, start=2):
        r = _parse_row(row, i, file)
        for req in ("phase", "metric", "measured"):
            if req not in r:
                raise XdsError(f"missing value for column {req!r}", file=file, where=f"line {i}")
        phase, metric = r["phase"], r["metric"]
        if phase not in METRICS:
            raise XdsError(f"phase must be one of {', '.join(METRICS)} (got {phase!r})", file=file,
                           where=f"line {i}")
        if metric not in METRICS[phase]:
            raise XdsError(f"metric for {phase} must be one of {', '.join(METRICS[phase])} (got {metric!r})",
                           file=file, where=f"line {i}")
        if r["measured"] <= 0:
            raise XdsError(f"measured must be > 0 (got {r['measured']})", file=file, where=f"line {i}")
        if phase in ("dispatch", "combine"):
            pred = _comm_predictor(r, file, i)
        else:
            kw = {k: v for k, v in r.items() if k in est_fields}
            kw["hardware"] = hardware
            try:
                prep = prepare(EstimateArgs(**kw))
            except XdsError as exc:
                raise XdsError(f"{exc.file + ': ' if exc.file else ''}{exc.message}", file=file,
                               where=f"line {i}") from None

            def pred(hw: HardwareSpec, prep=prep, metric=metric) -> float:
                return float(price(prep, hw, full=False)[metric])

        pts.append(Point(i, r.get("name", f"line {i}"), metric, r["measured"],
                         r.get("tolerance_pct", 5.0), pred))
    return pts


def _with(hw: HardwareSpec, values: dict[str, float]) -> HardwareSpec:
    eff = hw.efficiency.model_copy(update=values)
    return hw.model_copy(update={"efficiency": eff})


def _errors(points: list[Point], hw: HardwareSpec) -> np.ndarray:
    pred = np.array([p.predict(hw) for p in points])
    meas = np.array([p.measured for p in points])
    return pred / meas - 1.0


def _to_unit(name: str, v: float) -> float:
    lo, hi = BOUNDS[name]
    x = min(max((v - lo) / (hi - lo), 1e-6), 1 - 1e-6)
    return math.log(x / (1 - x))


def _from_unit(name: str, z: float) -> float:
    lo, hi = BOUNDS[name]
    return lo + (hi - lo) / (1.0 + math.exp(-z))


def _nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, iters: int, step: float = 0.6):
    """Plain deterministic Nelder-Mead (no SciPy dependency)."""
    n = len(x0)
    simplex = [x0.copy()] + [x0 + step * np.eye(n)[i] for i in range(n)]
    vals = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(vals)
        simplex = [simplex[i] for i in order]
        vals = [vals[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        xr = centroid + (centroid - simplex[-1])
        fr = f(xr)
        if fr < vals[0]:
            xe = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(xe)
            simplex[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(xc)
            if fc < vals[-1]:
                simplex[-1], vals[-1] = xc, fc
            else:
                for i in range(1, n + 1):
                    simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                    vals[i] = f(simplex[i])
    best = int(np.argmin(vals))
    return simplex[best], vals[best]


COMM_FACTORS = ("scale_up", "scale_out", "comm_latency_us", "comm_log_peers_us", "dispatch_quant_us")


def _fit_subset(points: list[Point], hw: HardwareSpec, names: tuple[str, ...], rounds: int,
                iters: int) -> HardwareSpec:
    base = hw.efficiency.model_dump()
    e0 = _errors(points, hw)
    active = []
    for n in names:
        probe = _with(hw, {n: _from_unit(n, _to_unit(n, base[n]) + 0.5)})
        if np.max(np.abs(_errors(points, probe) - e0)) > 1e-6:
            active.append(n)
    if not active:
        return hw
    tol = np.array([max(p.tolerance_pct, 0.5) / 100.0 for p in points])

    def obj(z: np.ndarray) -> float:
        # errors in units of each point's tolerance, so a ±5 % target weighs more than a ±15 % one
        vals = {n: _from_unit(n, float(zi)) for n, zi in zip(active, z)}
        err = _errors(points, _with(hw, vals))
        return float(np.mean((np.log1p(err) / tol) ** 2))

    z = np.array([_to_unit(n, base[n]) for n in active])
    best = obj(z)
    for r in range(rounds):
        z_new, v = _nelder_mead(obj, z, iters, step=0.8 / (r + 1))
        if v < best:
            z, best = z_new, v
    vals = {}
    for n, zi in zip(active, z):
        lo, hi = BOUNDS[n]
        v = _from_unit(n, float(zi))
        if v - lo < (hi - lo) * 1e-4:   # pinned at the bound: report the bound, not 1e-30
            v = lo
        vals[n] = float(f"{v:.4g}")
    return _with(hw, vals)


def fit(points: list[Point], hw: HardwareSpec, names: tuple[str, ...] = DEFAULT_FIT,
        *, rounds: int = 3, iters: int = 400) -> HardwareSpec:
    """Fit the named efficiency factors of ``hw`` to ``points``; returns a new HardwareSpec.

    Two stages, because communication micro-benchmarks depend only on the fabric factors: first the
    fabric factors on those points alone, then every other factor on all points with the fabric
    fixed. Factors that no point is sensitive to keep their values (the fit must not invent numbers).
    """
    comm_pts = [p for p in points if p.metric == "latency_us"]
    comm_names = tuple(n for n in names if n in COMM_FACTORS)
    if comm_pts and comm_names:
        hw = _fit_subset(comm_pts, hw, comm_names, rounds + 2, iters)
        names = tuple(n for n in names if n not in COMM_FACTORS)
    other = [p for p in points if p.metric != "latency_us"] if comm_pts else points
    if other and names:
        hw = _fit_subset(other, hw, names, rounds, iters)
    return hw


def calibrate(hardware: str, points_file: str, *, out: str | None = None,
              start: str = "shipped", fit_names: tuple[str, ...] = DEFAULT_FIT) -> dict[str, Any]:
    """``xds calibrate`` as a function: returns the report document (and writes ``out``).

    ``start="defaults"`` starts from the schema defaults instead of the shipped factors (used to show
    that the fit recovers the shipped ones).
    """
    hw = load_hardware(hardware)
    if start == "defaults":
        hw = hw.model_copy(update={"efficiency": Efficiency()})
    elif start != "shipped":
        raise XdsError(f"unknown start {start!r} (allowed: shipped, defaults)", file="--start")
    points = read_points(points_file, hardware)
    before = _errors(points, hw)
    fitted = fit(points, hw, fit_names)
    after = _errors(points, fitted)
    doc = {
        "hardware": hw.name,
        "points": [
            {"name": p.name, "metric": p.metric, "measured": p.measured,
             "predicted_before": round(p.measured * (1 + b), 3), "error_pct_before": round(100 * b, 2),
             "predicted_after": round(p.measured * (1 + a), 3), "error_pct_after": round(100 * a, 2),
             "tolerance_pct": p.tolerance_pct, "within_tolerance": bool(abs(a) * 100 <= p.tolerance_pct)}
            for p, b, a in zip(points, before, after)
        ],
        "mape_before_pct": round(float(np.mean(np.abs(before))) * 100, 3),
        "mape_after_pct": round(float(np.mean(np.abs(after))) * 100, 3),
        "efficiency_before": hw.efficiency.model_dump(),
        "efficiency": fitted.efficiency.model_dump(),
    }
    doc["all_within_tolerance"] = all(p["within_tolerance"] for p in doc["points"])
    if out:
        write_hardware_yaml(fitted, out, source=points_file)
        doc["out"] = out
    return doc


def write_hardware_yaml(hw: HardwareSpec, out: str, *, source: str) -> None:
    """Write ``hw`` as a hardware YAML (atomically) that ``--hardware FILE.yaml`` accepts."""
    data = hw.model_dump(exclude_none=True)
    text = (f"# {hw.name} with efficiency factors fitted by `xds calibrate` to {source}\n"
            + yaml.safe_dump(data, sort_keys=False))
    write_text_atomic(out, text)
