"""``xds validate`` as a function: the cost model against every published figure, in sample and out.

For each row of the validation table (:mod:`.validation_table`) it reports

* ``in_sample``: the prediction with the shipped efficiency factors (for rows that are calibration
  points this is a fit error, not a validation);
* ``loo``: the prediction with the factors refitted on *all other rows* of the same vendor
  (leave-one-out), and the error of each; then the median and worst |error| per vendor (Ascend,
  NVIDIA) over value rows, and for effects (ratio rows, reference §C.6) whether the sign is
  reproduced and the size is within half of the published effect.

Leave-one-out refits run :func:`xds.cost.calibrate.fit` itself once per left-out row (the same
factors, bounds, two stages and objective as ``xds calibrate``), warm-started at the shipped factors;
one vendor's fitted factors are applied to each row's own chip (H800 and H100 share NVIDIA's fit).
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
from ..cost.calibrate import DEFAULT_FIT, Point, fit
from ..errors import XdsError
from ..spec.builtins import DATA_ROOT
from ..spec.fileio import write_text_atomic
from ..spec.yamlio import read_bytes
from .validation_table import Row, read_table

THRESHOLDS = DATA_ROOT / "validation" / "thresholds.yaml"
THRESHOLD_KEYS = ("loo_median_pct", "loo_worst_pct", "loo_effects_wrong")


@dataclass
class _Group:
    """One vendor's rows, their published values and their predictions at the shipped factors."""

    rows: list[Row]
    base: np.ndarray        # log prediction at the shipped factors


def _group(rows: list[Row]) -> _Group:
    return _Group(rows, np.array([math.log(r.predict(r.base_hw)) for r in rows]))


def _fit_loo(g: _Group, i: int) -> float:
    """Log prediction of row ``i`` after :func:`xds.cost.calibrate.fit` on the other rows, warm-started
    at the shipped factors; the fitted factors are applied to each row's own chip (H800 and H100)."""
    pts = [Point(r.line, r.name, r.metric, r.published, r.tolerance_pct,
                 (lambda hw, r=r: r.predict(r.base_hw.model_copy(update={"efficiency": hw.efficiency}))))
           for j, r in enumerate(g.rows) if j != i]
    fitted, _ = fit(pts, g.rows[i].base_hw, DEFAULT_FIT)
    return math.log(g.rows[i].predict(fitted))


def _effect_ok(pred: float, pub: float) -> bool:
    """Sign of the effect reproduced and its size within half of the published one."""
    e_pred, e_pub = pred - 1.0, pub - 1.0
    return (e_pred > 0) == (e_pub > 0) and abs(e_pred - e_pub) <= 0.5 * abs(e_pub)


def validate(rows_file: str | None = None, *, hardware: str | None = None) -> dict[str, Any]:
    """Run the validation; returns the ``xds validate --json`` document (see module doc)."""
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
            lo = _fit_loo(g, i)
            out_rows.append(_row_doc(r, vendor, math.exp(g.base[i]), math.exp(lo)))
    return {"table": rows_file or "shipped", "loo": "calibrate.fit", "rows": out_rows, "summary": summarize(out_rows),
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
