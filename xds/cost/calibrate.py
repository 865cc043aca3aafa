"""``xds calibrate``: fit a hardware spec's efficiency factors to measured points.

A points CSV has the ``xds estimate`` flags as columns (``phase``, ``chips``, ``ep``, ``batch_per_chip``,
``tokens_per_chip``, ``input_len``, ``output_len``, ``mtp``, ``eplb``, …) plus ``metric`` and
``measured``. ``phase`` may also be ``dispatch`` or ``combine`` for communication micro-benchmarks (``ep``
ranks, ``batch_per_die`` tokens per rank, ``fabric`` scale_up|scale_out or a cluster name such as ``h800-ib``
— the EP group's fabric as that cluster's topology gives it —, metric ``latency_us``).

Communication rows may name the ``kernel`` (``low_latency``, the default, or ``normal``: the
high-throughput kernel prefill uses, reference §G) and give ``latency_us`` or, for the normal kernel,
the ``bandwidth_gb_s`` the kernel reports.

The fit minimises the squared log error over all points (in units of each point's tolerance) with
ONE set of factors: a deterministic projected Levenberg–Marquardt (:mod:`.lsq`) warm-started from
the given factors, every factor kept inside the bounds a measurement gives it (:mod:`.bounds`). It
reports per-point error and MAPE before and after, the number of free parameters next to the number
of points, which factors sit on a bound, and writes a hardware YAML that ``--hardware FILE.yaml``
accepts.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..errors import XdsError
from ..spec.fileio import write_text_atomic
from ..spec.hardware import Efficiency, HardwareSpec, load_hardware
from ..spec.model import load_model
from ..spec.yamlio import read_bytes
from ..topology import build_topology
from .bounds import bounds_for
from .costmodel import CostModel
from .estimate import EstimateArgs, prepare, price
from .fabric import fabric_on
from .layout import Fabric, Layout, combine_bytes_per_copy, dispatch_bytes_per_copy
from .lsq import levenberg_marquardt

METRICS = {
    "decode": ("tpot_ms", "output_throughput_per_chip", "step_time_ms", "moe_layer_us"),
    "prefill": ("input_throughput_per_chip", "ttft_ms", "step_time_ms"),
    "dispatch": ("latency_us", "bandwidth_gb_s"),
    "combine": ("latency_us", "bandwidth_gb_s"),
}
INT_COLS = {"chips", "ep", "dp", "tp", "input_len", "output_len", "mtp", "microbatches",
            "shared_expert_dies", "redundant_experts"}
FLOAT_COLS = {"batch_per_die", "batch_per_chip", "tokens_per_chip", "mtp_acceptance", "balancedness",
              "measured", "tolerance_pct"}
STR_COLS = {"name", "model", "hardware", "cluster", "phase", "eplb", "quant", "kv_dtype", "metric",
            "fabric", "kernel", "source"}
COMM_METRICS = ("latency_us", "bandwidth_gb_s")

# ``scale_up`` is not fitted: the link fraction is measured (reference §A.4 UB read 164/196; §G DeepEP
# NVLink 158/200), and at the one payload size of the published tables (128 tokens per rank) it is
# not separable from the start-up latency and the per-token quantisation.
DEFAULT_FIT = ("compute", "attention_compute", "memory", "scale_out", "scale_up_bulk",
               "scale_out_bulk", "comm_latency_us", "comm_log_peers_us", "dispatch_quant_us",
               "step_overhead_ms", "prefill_compute")
COMM_FACTORS = ("scale_up", "scale_out", "scale_up_bulk", "scale_out_bulk", "comm_latency_us",
                "comm_log_peers_us", "dispatch_quant_us")


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


def _cluster_fabric(cluster: str, ep: int, file: str, line: int) -> Fabric:
    """The fabric an EP``ep`` group gets as ``cluster``'s topology gives it (:func:`.fabric.fabric_on`),
    on the cluster grown to enough nodes when it has fewer than ``ep`` dies: e.g. ``h800-ib`` reaches
    same-node peers over NVLink and the rest over IB, as the DeepEP README kernels do (reference §G)."""
    try:
        topo = build_topology(cluster)
        need = -(-ep // topo.dies_per_node)
        if need > topo.n_nodes:
            topo = build_topology(cluster, nodes=need)
    except XdsError as exc:
        raise XdsError(f"fabric must be scale_up, scale_out or a cluster name such as h800-ib "
                       f"(got {cluster!r}: {exc.message})", file=file, where=f"line {line}") from None
    return fabric_on(topo, np.arange(ep))


def _comm_predictor(r: dict[str, Any], file: str, line: int) -> Callable[[HardwareSpec], float]:
    model = load_model(r.get("model", "deepseek-r1"))
    ep = r.get("ep")
    tokens = r.get("batch_per_die", 128.0)
    if not ep or ep < 1:
        raise XdsError("dispatch/combine rows need ep >= 1", file=file, where=f"line {line}")
    plane = r.get("fabric", "scale_up")
    topo_fabric = None if plane in ("scale_up", "scale_out") else _cluster_fabric(plane, ep, file, line)
    op = r["phase"]
    kernel = r.get("kernel", "low_latency")
    if kernel not in ("low_latency", "normal"):
        raise XdsError(f"kernel must be low_latency or normal (got {kernel!r})", file=file, where=f"line {line}")
    if r["metric"] == "bandwidth_gb_s" and kernel != "normal":
        raise XdsError("bandwidth_gb_s rows are for kernel normal (the low-latency kernel is "
                       "measured as latency_us)", file=file, where=f"line {line}")
    kern = "bulk" if kernel == "normal" else "low_latency"

    def predict(hw: HardwareSpec) -> float:
        quant = r.get("quant", hw.default_quant)
        gb_s = hw.scale_up_gb_s_per_die if plane == "scale_up" else hw.scale_out_gb_s_per_die
        slots = ep * math.ceil(model.n_routed_experts / ep)
        lay = Layout(dies=ep, ep=ep, dp=ep, routed_slots=slots, quant=quant)
        cm = CostModel(model, hw, lay, topo_fabric or Fabric(gb_s, plane))
        copies = tokens * model.top_k
        per_copy = dispatch_bytes_per_copy(model.hidden, quant) if op == "dispatch" \
            else combine_bytes_per_copy(model.hidden)
        t = float(cm.comm_us(copies * per_copy, dispatch=op == "dispatch", tokens=tokens, kernel=kern,
                             copies=copies))
        if r["metric"] == "bandwidth_gb_s":   # what the kernel reports: bytes over the link / time
            return copies * per_copy * cm.bulk_dedup / t / 1e3
        return t

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


@dataclass
class FitInfo:
    """What :func:`fit` did: ``free``: the factors it fitted (those some point is sensitive to; the
    others keep their values); ``at_bound``: ``{factor: "low"|"high"}`` for fitted factors the data
    push against a measured bound; ``bounds``: ``{factor: (low, high, source)}`` used;
    ``evaluations``: calls of the cost model."""

    free: tuple[str, ...] = ()
    at_bound: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    evaluations: int = 0


def _identifiable(cand: list[str], x0: np.ndarray, res: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    """The factors the points can identify, in ``cand``'s order of preference: a factor no point is
    sensitive to, or whose effect on the points is (nearly) a combination of the effects of
    factors kept before it (Gram–Schmidt on the Jacobian columns), cannot be fitted and keeps its
    value. E.g. at one payload size (128 tokens per rank) a start-up latency, a per-token
    quantisation cost and a link fraction are not separable."""
    r0 = res(x0)
    kept: list[str] = []
    basis: list[np.ndarray] = []
    for i, n in enumerate(cand):
        x = x0.copy()
        step = 0.05 if x[i] <= 0.5 else -0.05
        x[i] += step
        col = (res(x) - r0) / step
        norm = float(np.linalg.norm(col))
        if norm < 1e-6:
            continue
        v = col.copy()
        for q in basis:
            v -= (q @ v) * q
        if np.linalg.norm(v) > 0.02 * norm:
            basis.append(v / np.linalg.norm(v))
            kept.append(n)
    return kept


def _fit_subset(points: list[Point], hw: HardwareSpec, names: tuple[str, ...], info: FitInfo) -> HardwareSpec:
    base = hw.efficiency.model_dump()
    bounds = info.bounds
    tol = np.array([max(p.tolerance_pct, 0.5) / 100.0 for p in points])
    meas = np.log(np.array([p.measured for p in points]))

    def values(x: np.ndarray, active: list[str]) -> dict[str, float]:
        return {n: bounds[n][0] + float(xi) * (bounds[n][1] - bounds[n][0]) for n, xi in zip(active, x)}

    def unit(n: str, v: float) -> float:
        lo, hi, _ = bounds[n]
        return min(max((v - lo) / (hi - lo), 0.0), 1.0)

    def residuals(x: np.ndarray, active: list[str]) -> np.ndarray:
        h = _with(hw, values(x, active))
        info.evaluations += 1
        return (np.log(np.maximum([p.predict(h) for p in points], 1e-30)) - meas) / tol

    cand = [n for n in names if n in bounds]
    x0 = np.array([unit(n, base[n]) for n in cand])
    active = _identifiable(cand, x0, lambda x: residuals(x, cand))
    if not active:
        return hw
    res = levenberg_marquardt(lambda x: residuals(x, active), np.array([unit(n, base[n]) for n in active]))
    vals = {}
    for i, (n, v) in enumerate(values(res.x, active).items()):
        if res.at_low[i] or res.at_high[i]:
            info.at_bound[n] = "low" if res.at_low[i] else "high"
            vals[n] = bounds[n][0] if res.at_low[i] else bounds[n][1]
        else:
            vals[n] = float(f"{v:.4g}")
    info.free = info.free + tuple(active)
    return _with(hw, vals)


def fit(points: list[Point], hw: HardwareSpec, names: tuple[str, ...] = DEFAULT_FIT
        ) -> tuple[HardwareSpec, FitInfo]:
    """Fit the named efficiency factors of ``hw`` to ``points``: ``(fitted HardwareSpec, FitInfo)``.

    Warm-starts from ``hw``'s factors (clipped into their bounds, :func:`.bounds.bounds_for`).
    Two stages, because communication micro-benchmarks depend only on the fabric factors: first the
    fabric factors on those points alone, then every other factor on all other points with the
    fabric fixed. Factors that no point is sensitive to keep their values (the fit must not invent
    numbers) and are not counted as free. Deterministic; well under a second for ~40 points.
    """
    info = FitInfo(bounds=bounds_for(hw))
    comm_pts = [p for p in points if p.metric in COMM_METRICS]
    comm_names = tuple(n for n in names if n in COMM_FACTORS)
    if comm_pts and comm_names:
        hw = _fit_subset(comm_pts, hw, comm_names, info)
        names = tuple(n for n in names if n not in COMM_FACTORS)
    other = [p for p in points if p.metric not in COMM_METRICS] if comm_pts else points
    if other and names:
        hw = _fit_subset(other, hw, names, info)
    return hw, info


def calibrate(hardware: str, points_file: str, *, out: str | None = None,
              start: str = "shipped", fit_names: tuple[str, ...] = DEFAULT_FIT) -> dict[str, Any]:
    """``xds calibrate`` as a function: returns the report document (and writes ``out``).

    ``start="defaults"`` starts the fitted factors from the schema defaults instead of the shipped
    values (used to show that the fit recovers the shipped ones); factors not fitted keep theirs.
    """
    hw = load_hardware(hardware)
    shipped = hw.efficiency.model_dump()
    if start == "defaults":   # the fitted factors start from the schema defaults; measured ones stay
        d = Efficiency().model_dump()
        hw = _with(hw, {n: d[n] for n in fit_names})
    elif start != "shipped":
        raise XdsError(f"unknown start {start!r} (allowed: shipped, defaults)", file="--start")
    points = read_points(points_file, hardware)
    before = _errors(points, hw)
    fitted, info = fit(points, hw, fit_names)
    # factors the points cannot identify keep the shipped value, whatever the start
    fitted = _with(fitted, {n: shipped[n] for n in fit_names if n not in info.free})
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
        "free_parameters": len(info.free),
        "points_count": len(points),
        "fitted": list(info.free),
        "at_bound": {n: {"side": side, "bound": info.bounds[n][0 if side == "low" else 1],
                         "source": info.bounds[n][2]} for n, side in info.at_bound.items()},
        "bounds": {n: {"low": lo, "high": hi, "source": src} for n, (lo, hi, src) in info.bounds.items()},
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
