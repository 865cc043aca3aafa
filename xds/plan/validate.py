"""``xds validate`` as a function: the cost model against every published figure, in sample and out.

For each row of the validation table (:mod:`.validation_table`) it reports

* ``in_sample``: the prediction with the shipped efficiency factors (for rows that are calibration
  points this is a fit error, not a validation);
* ``loo``: the prediction with the factors refitted on *all other rows* of the same vendor
  (leave-one-out), and the error of each; then the median and worst |error| per vendor (Ascend,
  NVIDIA) over value rows, and for effects (ratio rows, reference §C.6) whether the sign is
  reproduced and the size is within half of the published effect.

Leave-one-out refits (``loo="newton"``, the default): the factors of :data:`xds.cost.calibrate.DEFAULT_FIT`
in :data:`~xds.cost.calibrate.BOUNDS`, in the same bounded logit space and with the same objective
as ``xds calibrate`` (mean squared log error in units of each row's tolerance), are refitted from the
shipped values by Levenberg-Marquardt: the Jacobian of the rows' log predictions (forward
differences) is taken where each stage starts (stage 1 at the shipped factors, shared by every
left-out refit; stage 2 after that refit's fabric stage), each stage takes up to :data:`LM_TRIES`
trial steps on it, keeping a step only when the real model's error falls, and the left-out row is
priced with the real model at the refitted factors. Measured against ``loo="fit"`` on the shipped
table: CM decode b96 TPOT 49.66 vs 49.44 ms (0.3 s vs 75 s of CPU), CM prefill default EPLB 5,570 vs
5,857 tok/s (0.2 s vs 80 s), DeepSeek H800 decode 2,359 vs 2,324 tok/s (0.06 s vs 17 s): within
~5 % of the full refit, whose own optimum is not unique where a stage has fewer rows than factors. One vendor's factors are one vector of logit shifts
applied to each row's own hardware spec (H800 and H100 share NVIDIA's fit). ``loo="fit"`` runs
:func:`xds.cost.calibrate.fit` itself per left-out row, warm-started at the shipped factors (exact,
slower: it is as fast as that fit).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from ..cost.bands import BANDS_FILE, compute_bands, forget_bands, regime, time_residual, vendor_of
from ..cost.calibrate import BOUNDS, COMM_FACTORS, DEFAULT_FIT, Point, fit
from ..errors import XdsError
from ..spec.builtins import DATA_ROOT
from ..spec.fileio import write_text_atomic
from ..spec.hardware import HardwareSpec
from ..spec.yamlio import read_bytes
from .validation_table import Row, read_table

LM_TRIES = 16            # Levenberg-Marquardt trial steps per round of a left-out refit
REFRESHES = 0            # extra Jacobian refreshes per stage. Measured with 1 vs calibrate.fit: CM b96
                         # TPOT 49.50 vs 49.44 ms, CM prefill 5,713 vs 5,857, H800 decode 2,519 vs 2,324
                         # (an under-determined stage) at ~2x the CPU: not better, so off
FD_STEP = 0.05           # forward-difference step in logit units
DAMPING = 1e-2           # initial Levenberg-Marquardt damping (relative to the diagonal of JᵀWJ)
MAX_STEP = 3.0           # largest logit shift per factor in one refit
LOO_MODES = ("newton", "fit")
THRESHOLDS = DATA_ROOT / "validation" / "thresholds.yaml"
THRESHOLD_KEYS = ("loo_median_pct", "loo_worst_pct", "loo_effects_wrong")


def _logit(name: str, v: float) -> float:
    lo, hi = BOUNDS[name]
    x = min(max((v - lo) / (hi - lo), 1e-6), 1 - 1e-6)
    return math.log(x / (1 - x))


def _unlogit(name: str, z: float) -> float:
    lo, hi = BOUNDS[name]
    return lo + (hi - lo) / (1.0 + math.exp(-z))


def shifted(hw: HardwareSpec, names: tuple[str, ...], delta: np.ndarray) -> HardwareSpec:
    """``hw`` with each named factor moved by ``delta`` in the bounded logit space (0 = shipped)."""
    if not np.any(delta):
        return hw
    base = hw.efficiency.model_dump()
    vals = {n: _unlogit(n, _logit(n, base[n]) + float(d)) for n, d in zip(names, delta) if d}
    return hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=vals)})


@dataclass
class _Group:
    """One vendor's rows and their linearisation at the shipped factors."""

    rows: list[Row]
    names: tuple[str, ...]
    weight: np.ndarray      # 1 / tolerance (fraction)
    target: np.ndarray      # log published
    base: np.ndarray        # log prediction at the shipped factors
    jac: np.ndarray         # d log prediction / d logit factor, rows × factors

    def jacobian(self, delta: np.ndarray, idx: list[int], cols: list[int]) -> np.ndarray:
        """d log prediction / d logit factor at ``delta`` for rows ``idx`` and factors ``cols``."""
        if not np.any(delta):
            return self.jac[np.ix_(idx, cols)]
        base = self.log_pred(delta, idx)
        out = np.empty((len(idx), len(cols)))
        for c, k in enumerate(cols):
            d = delta.copy()
            d[k] += FD_STEP
            out[:, c] = (self.log_pred(d, idx) - base) / FD_STEP
        return out

    def log_pred(self, delta: np.ndarray, idx: list[int] | None = None) -> np.ndarray:
        idx = list(range(len(self.rows))) if idx is None else idx
        return np.array([math.log(self.rows[i].predict(shifted(self.rows[i].base_hw, self.names, delta)))
                         for i in idx])


def _group(rows: list[Row]) -> _Group:
    names = tuple(n for n in DEFAULT_FIT if n in BOUNDS)
    base = np.array([math.log(r.predict(r.base_hw)) for r in rows])
    jac = np.zeros((len(rows), len(names)))
    for k in range(len(names)):
        d = np.zeros(len(names))
        d[k] = FD_STEP
        jac[:, k] = (np.array([math.log(r.predict(shifted(r.base_hw, names, d))) for r in rows]) - base) / FD_STEP
    keep = np.any(np.abs(jac) > 1e-9, axis=0)           # factors no row is sensitive to stay shipped
    names = tuple(n for n, k in zip(names, keep) if k)
    return _Group(rows, names, np.array([1.0 / max(r.tolerance_pct, 0.5) * 100.0 for r in rows]),
                  np.log([r.published for r in rows]), base, jac[:, keep])


def _lm(g: _Group, train: list[int], cols: list[int], delta: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt on the tolerance-weighted squared log error over ``train`` in the factors
    ``cols`` from ``delta``, with the Jacobian at ``delta``; a step is kept only when the real model's
    error falls (damping ÷3 after a kept step, ×10 after a rejected one)."""
    w = g.weight[train]
    J = g.jacobian(delta, train, cols) * w[:, None]
    A = J.T @ J
    scale = np.maximum(np.diag(A), 1e-9 * max(float(np.max(np.diag(A))), 1e-12))
    lam = DAMPING
    pred = g.log_pred(delta, train)
    cost = float(np.sum(((pred - g.target[train]) * w) ** 2))
    tries = 0
    while tries < LM_TRIES and lam < 1e6:
        tries += 1
        step = np.zeros_like(delta)
        step[cols] = -np.linalg.solve(A + lam * np.diag(scale), J.T @ ((pred - g.target[train]) * w))
        cand = np.clip(delta + step, -MAX_STEP, MAX_STEP)
        p = g.log_pred(cand, train)
        c = float(np.sum(((p - g.target[train]) * w) ** 2))
        if c < cost:
            converged = cost - c < 1e-6 * max(cost, 1e-12)
            delta, pred, cost, lam = cand, p, c, lam / 3.0
            if converged:
                break
        else:
            lam *= 10.0
    return delta


def _chord(g: _Group, train: list[int], cols: list[int], delta: np.ndarray) -> np.ndarray:
    """One stage of a refit: :func:`_lm` on the shipped-point Jacobian, then :data:`REFRESHES` more
    rounds each on a Jacobian re-taken where the previous round stopped."""
    if not train or not cols:
        return delta
    for _ in range(1 + REFRESHES):
        delta = _lm(g, train, cols, delta)
    return delta


def _newton_loo(g: _Group, i: int) -> float:
    """Log prediction of row ``i`` with the factors refitted on the group's other rows, in the two
    stages of :func:`xds.cost.calibrate.fit`: communication factors on the communication rows, then
    every other factor on the other rows."""
    others = [j for j in range(len(g.rows)) if j != i]
    comm_rows = [j for j in others if g.rows[j].metric == "latency_us"]
    comm_cols = [k for k, n in enumerate(g.names) if n in COMM_FACTORS]
    delta = np.zeros(len(g.names))
    rest_cols = list(range(len(g.names)))
    if comm_rows and comm_cols:
        delta = _chord(g, comm_rows, comm_cols, delta)
        rest_cols = [k for k in rest_cols if k not in comm_cols]
    rest_rows = [j for j in others if g.rows[j].metric != "latency_us"] if comm_rows else others
    delta = _chord(g, rest_rows, rest_cols, delta)
    return float(g.log_pred(delta, [i])[0])


def _fit_loo(g: _Group, i: int) -> float:
    """Log prediction of row ``i`` after :func:`xds.cost.calibrate.fit` on the other rows, warm-started
    at the shipped factors; the fitted factors are applied to each row's own chip (H800 and H100)."""
    pts = [Point(r.line, r.name, r.metric, r.published, r.tolerance_pct,
                 (lambda hw, r=r: r.predict(r.base_hw.model_copy(update={"efficiency": hw.efficiency}))))
           for j, r in enumerate(g.rows) if j != i]
    fitted = fit(pts, g.rows[i].base_hw, g.names)
    return math.log(g.rows[i].predict(fitted))


def _effect_ok(pred: float, pub: float) -> bool:
    """Sign of the effect reproduced and its size within half of the published one."""
    e_pred, e_pub = pred - 1.0, pub - 1.0
    return (e_pred > 0) == (e_pub > 0) and abs(e_pred - e_pub) <= 0.5 * abs(e_pub)


def validate(rows_file: str | None = None, *, hardware: str | None = None, loo: str = "newton") -> dict[str, Any]:
    """Run the validation; returns the ``xds validate --json`` document (see module doc)."""
    if loo not in LOO_MODES:
        raise XdsError(f"unknown mode {loo!r} (allowed: {', '.join(LOO_MODES)})", file="--loo")
    rows = read_table(rows_file)
    if hardware is not None:
        names = sorted({r.hardware for r in rows} | {vendor_of(r.base_hw) for r in rows})
        if hardware not in names:
            raise XdsError(f"no rows for {hardware!r} (the table has: {', '.join(names)})", file="--hardware")
    out_rows: list[dict[str, Any]] = []
    for vendor in ("ascend", "nvidia"):
        vrows = [r for r in rows if vendor_of(r.base_hw) == vendor]
        if not vrows or (hardware is not None and not any(hardware in (r.hardware, vendor) for r in vrows)):
            continue
        g = _group(vrows)
        for i, r in enumerate(vrows):
            if hardware is not None and hardware not in (r.hardware, vendor):
                continue
            lo = _newton_loo(g, i) if loo == "newton" else _fit_loo(g, i)
            out_rows.append(_row_doc(r, vendor, math.exp(g.base[i]), math.exp(lo)))
    return {"table": rows_file or "shipped", "loo": loo, "rows": out_rows, "summary": summarize(out_rows),
            "fit_factors": {"count": len(DEFAULT_FIT), "names": list(DEFAULT_FIT)}}


def _row_doc(r: Row, vendor: str, ins: float, loo: float) -> dict[str, Any]:
    digits = 4 if r.kind == "effect" else 3
    d = {"name": r.name, "hardware": r.hardware, "vendor": vendor, "kind": r.kind, "metric": r.metric,
         "phase": r.phase, "calibration": r.calibration, "published": r.published,
         "in_sample": round(ins, digits), "in_sample_error_pct": round(100 * (ins / r.published - 1), 2),
         "loo": round(loo, digits), "loo_error_pct": round(100 * (loo / r.published - 1), 2),
         "tolerance_pct": r.tolerance_pct, "source": r.source}
    if r.kind == "effect":
        d["in_sample_effect_ok"] = _effect_ok(ins, r.published)
        d["loo_effect_ok"] = _effect_ok(loo, r.published)
    elif r.phase in ("decode", "prefill"):
        d["regime"] = regime(vendor, r.phase, r.batch_per_die)
        d["loo_time_residual"] = round(time_residual(r.metric, loo, r.published), 6)
    if r.plan:
        d["plan"] = r.plan
    if r.note:
        d["note"] = r.note
    return d


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst |error| (%) per vendor over value rows, in sample and leave-one-out, and the
    effects reproduced."""
    out: dict[str, Any] = {}
    for vendor in ("ascend", "nvidia"):
        vals = [r for r in rows if r["vendor"] == vendor and r["kind"] == "value"]
        eff = [r for r in rows if r["vendor"] == vendor and r["kind"] == "effect"]
        if not vals and not eff:
            continue
        s: dict[str, Any] = {"rows": len(vals), "effects": len(eff)}
        for k in ("in_sample", "loo"):
            e = np.abs([r[f"{k}_error_pct"] for r in vals]) if vals else np.zeros(0)
            s[f"{k}_median_pct"] = round(float(np.median(e)), 2) if e.size else None
            s[f"{k}_worst_pct"] = round(float(np.max(e)), 2) if e.size else None
            s[f"{k}_effects_ok"] = sum(bool(r[f"{k}_effect_ok"]) for r in eff)
        s["loo_effects_wrong"] = len(eff) - s["loo_effects_ok"]
        e2e = np.abs([r["loo_error_pct"] for r in vals if r["metric"] != "latency_us"])
        s["end_to_end_rows"] = int(e2e.size)      # decode/prefill figures (no operator micro-benchmarks)
        s["end_to_end_loo_median_pct"] = round(float(np.median(e2e)), 2) if e2e.size else None
        s["end_to_end_loo_worst_pct"] = round(float(np.max(e2e)), 2) if e2e.size else None
        out[vendor] = s
    return out


def bands_from(doc: dict[str, Any]) -> dict[str, Any]:
    """The error bands (:func:`xds.cost.bands.compute_bands`) from a validation document's
    leave-one-out residuals of end-to-end value rows."""
    res = [(r["regime"], r["loo_time_residual"]) for r in doc["rows"] if "regime" in r]
    return {"loo": doc["loo"], **compute_bands(res)}


def check(doc: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Regressions of ``doc`` past ``thresholds`` (``{vendor: {loo_median_pct, loo_worst_pct,
    loo_effects_wrong}}``): one line each; empty when none."""
    bad = []
    for vendor, lim in thresholds.items():
        s = doc["summary"].get(vendor)
        if s is None:
            continue
        for key in ("loo_median_pct", "loo_worst_pct", "loo_effects_wrong"):
            if key in lim and s.get(key) is not None and s[key] > lim[key]:
                bad.append(f"{vendor} {key} {s[key]:g} > threshold {lim[key]:g}")
    return bad


def thresholds_from(doc: dict[str, Any], margin_pct: float = 1.0) -> dict[str, Any]:
    """Today's measured values plus a small margin (``margin_pct`` percentage points, ×1.05)."""
    return {v: {"loo_median_pct": round(s["loo_median_pct"] * 1.05 + margin_pct, 2),
                "loo_worst_pct": round(s["loo_worst_pct"] * 1.05 + margin_pct, 2),
                "loo_effects_wrong": s["loo_effects_wrong"]}
            for v, s in doc["summary"].items() if s.get("loo_median_pct") is not None}


def load_thresholds(path: str | None = None) -> dict[str, Any]:
    """Read a thresholds YAML (default: the shipped ``xds/data/validation/thresholds.yaml``)."""
    file = str(path or THRESHOLDS)
    try:
        doc = yaml.safe_load(read_bytes(path or THRESHOLDS, what="thresholds YAML"))
    except yaml.YAMLError as exc:
        raise XdsError(f"not valid YAML: {' '.join(str(exc).split())}", file=file) from None
    if not isinstance(doc, dict) or not doc:
        raise XdsError("expected a mapping vendor -> {loo_median_pct, loo_worst_pct, loo_effects_wrong}",
                       file=file)
    for vendor, lim in doc.items():
        if vendor not in ("ascend", "nvidia"):
            hint = difflib.get_close_matches(str(vendor), ["ascend", "nvidia"], n=1)
            raise XdsError(f"unknown vendor {vendor!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + " (allowed: ascend, nvidia)", file=file, where=str(vendor))
        if not isinstance(lim, dict):
            raise XdsError("expected a mapping of limits", file=file, where=str(vendor))
        for k, v in lim.items():
            if k not in THRESHOLD_KEYS:
                hint = difflib.get_close_matches(str(k), THRESHOLD_KEYS, n=1)
                raise XdsError(f"unknown limit {k!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                               + f" (allowed: {', '.join(THRESHOLD_KEYS)})", file=file, where=f"{vendor}.{k}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise XdsError(f"must be a number >= 0 (got {v!r})", file=file, where=f"{vendor}.{k}")
    return doc


def write_thresholds(doc: dict[str, Any], path: str | None = None) -> str:
    """Write today's values + margin (:func:`thresholds_from`) as the thresholds YAML; returns the path."""
    out = str(path or THRESHOLDS)
    text = ("# Regression thresholds of `xds validate --check` (.ci/run): leave-one-out median / worst\n"
            "# |error| (%) over value rows and effects not reproduced, per vendor. Written by\n"
            "# `xds validate --write-thresholds` from the measured values x1.05 + 1 percentage point.\n"
            + yaml.safe_dump(thresholds_from(doc), sort_keys=False))
    write_text_atomic(out, text)
    return out


def write_bands(doc: dict[str, Any], path: str | None = None) -> str:
    """Write the bands of a validation document (:func:`bands_from`) as JSON; returns the path."""
    if doc["table"] != "shipped":
        raise XdsError("bands are computed from the shipped table only (drop --rows)", file="--write-bands")
    out = str(path or BANDS_FILE)
    write_text_atomic(out, json.dumps(bands_from(doc), indent=2) + "\n")
    forget_bands()
    return out
