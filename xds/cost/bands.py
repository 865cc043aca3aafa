"""Error bands: a 90 % interval next to every predicted TPOT, TTFT and throughput.

The bands come from ``xds validate``: the leave-one-out residuals of the cost model over the shipped
table of published figures (``xds/data/validation/published.csv``), grouped by *regime*

    vendor (ascend | nvidia) × phase (decode | prefill) × batch class (decode: small | large)

and written once to ``xds/data/validation/bands.json`` (``xds validate --write-bands``); a test fails
when the shipped file is stale relative to the table and the shipped efficiency factors.

Residuals are in *time orientation*: ``r = log(true time / predicted time)``, so a throughput figure
contributes ``log(predicted / published)`` (a predicted throughput 10 % too high is a time 10 % too
short). A band is the 5th and 95th percentile of a regime's residuals (NumPy's linear
interpolation), widened to include 0 so the interval always contains the point estimate.

Pooling rule (few rows): a regime with fewer than :data:`MIN_ROWS` residuals takes the residuals of
its vendor's end-to-end rows (decode and prefill, both batch classes); with fewer than that, of all
end-to-end rows. Communication micro-benchmarks are reported by ``xds validate`` but do not enter the
bands (they price one operator, not a step); ratio rows (published effects) do not either.

Applying a band ``[lo, hi]`` (log units) to a prediction ``x``: a time field gets
``[x·e^lo, x·e^hi]``, a rate field ``[x·e^-hi, x·e^-lo]``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..spec.builtins import DATA_ROOT
from ..spec.hardware import HardwareSpec

BANDS_FILE = DATA_ROOT / "validation" / "bands.json"
MIN_ROWS = 4             # residuals a regime needs to stand on its own
LEVEL = 0.90             # central interval: 5th to 95th percentile
SMALL_BATCH_PER_DIE = 32.0   # decode batch per die below which a step is "small batch" (fixed-cost bound)
RATE_FIELDS = ("output_throughput_per_chip", "input_throughput_per_chip")
_CACHE: dict[str, Any] = {}


def vendor_of(hw: HardwareSpec) -> str:
    """``ascend`` for Huawei hardware, ``nvidia`` otherwise (the two families the table covers)."""
    return "ascend" if hw.vendor.lower() == "huawei" else "nvidia"


def regime(vendor: str, phase: str, batch_per_die: float | None = None) -> str:
    """Regime key, e.g. ``ascend/decode/large`` or ``nvidia/prefill``."""
    if phase == "decode":
        cls = "small" if (batch_per_die or 0.0) < SMALL_BATCH_PER_DIE else "large"
        return f"{vendor}/decode/{cls}"
    return f"{vendor}/{phase}"


def time_residual(field: str, predicted: float, published: float) -> float:
    """Log residual in time orientation (see module doc)."""
    r = math.log(published / predicted)
    return -r if field in RATE_FIELDS else r


def _band(res: list[float], source: str) -> dict[str, Any]:
    a = np.asarray(res, dtype=float)
    q = (1.0 - LEVEL) / 2.0
    lo, hi = (float(v) for v in np.quantile(a, [q, 1.0 - q]))
    return {"lo": round(min(lo, 0.0), 6), "hi": round(max(hi, 0.0), 6), "rows": int(a.size),
            "source": source}


def compute_bands(residuals: list[tuple[str, float]]) -> dict[str, Any]:
    """Bands per regime from ``(regime key, time-oriented log residual)`` pairs (end-to-end rows
    only), with the pooling rule of the module doc. Keys cover every regime of both vendors."""
    by: dict[str, list[float]] = {}
    for key, r in residuals:
        by.setdefault(key, []).append(float(r))
    every = [r for _, r in residuals]
    out: dict[str, Any] = {}
    for vendor in ("ascend", "nvidia"):
        vend = [r for k, r in residuals if k.startswith(vendor + "/")]
        for key in (f"{vendor}/decode/small", f"{vendor}/decode/large", f"{vendor}/prefill"):
            own = by.get(key, [])
            if len(own) >= MIN_ROWS:
                out[key] = _band(own, "regime")
            elif len(vend) >= MIN_ROWS:
                out[key] = _band(vend, f"pooled: {vendor}")
            elif every:
                out[key] = _band(every, "pooled: all")
    return {"level": LEVEL, "min_rows": MIN_ROWS, "small_batch_per_die": SMALL_BATCH_PER_DIE,
            "orientation": "log(true time / predicted time)", "bands": out}


def load_bands() -> dict[str, Any]:
    """The shipped bands (``bands.json``), read once; empty when the file is absent."""
    if "doc" not in _CACHE:
        _CACHE["doc"] = json.loads(BANDS_FILE.read_text()) if BANDS_FILE.exists() else {"bands": {}}
    return _CACHE["doc"]


def forget_bands() -> None:
    """Drop the cached bands (after ``xds validate --write-bands`` rewrote the file)."""
    _CACHE.clear()


def interval(value: float | None, field: str, key: str, bands: dict[str, Any] | None = None) -> list[float] | None:
    """90 % interval ``[lo, hi]`` of a predicted ``value`` of ``field`` in regime ``key`` (same
    units as ``value``; a field ending in a throughput name is a rate); None when there is no value
    or no band."""
    b = (bands if bands is not None else load_bands()).get("bands", {}).get(key)
    if value is None or b is None or not math.isfinite(value):
        return None
    lo, hi = (-b["hi"], -b["lo"]) if field.endswith(RATE_FIELDS) else (b["lo"], b["hi"])
    digits = 4 if abs(value) < 100 else 2
    return [round(value * math.exp(lo), digits), round(value * math.exp(hi), digits)]


def add_intervals(doc: dict[str, Any], hw: HardwareSpec, phase: str, batch_per_die: float | None,
                  fields: tuple[str, ...], bands: dict[str, Any] | None = None) -> None:
    """Insert ``<field>_interval`` right after each of ``fields`` present in ``doc`` (in place), from
    the band of the regime of ``hw`` × ``phase`` × batch class."""
    key = regime(vendor_of(hw), phase, batch_per_die)
    ivs = {f: interval(doc[f], f, key, bands) for f in fields if f in doc}
    if not any(v is not None for v in ivs.values()):
        return
    items = list(doc.items())
    doc.clear()
    for k, v in items:
        doc[k] = v
        if ivs.get(k) is not None:
            doc[k + "_interval"] = ivs[k]


def fmt_interval(value: float, iv: list[float] | None, digits: int = 1, sep: str = ",") -> str:
    """``49.4 (45–54)`` for tables; just the value without an interval."""
    fmt = f"{{:{sep}.{digits}f}}"
    if not iv:
        return fmt.format(value)
    return f"{fmt.format(value)} ({fmt.format(iv[0])}–{fmt.format(iv[1])})"
