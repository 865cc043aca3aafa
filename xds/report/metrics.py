"""Per-request latency metrics of a simulation and the percentile helpers the report uses.

TTFT = first token − arrival; TPOT = (e2e − TTFT) / (output_len − 1) for output_len > 1;
E2EL = finish − arrival (all in s here; the documents show ms)."""

from __future__ import annotations

import math

import numpy as np

from ..engine import COMPLETED, SimResult


def rnd(x: float, nd: int = 4) -> float | None:
    """``x`` rounded to ``nd`` decimals for a document; None when not finite (JSON has no NaN)."""
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def pct(a: np.ndarray, q: float) -> float:
    """``q``-th percentile (NumPy linear interpolation); NaN for no values."""
    return float(np.percentile(a, q)) if len(a) else float("nan")


def wpct(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """Weighted percentile (lower interpolation on the weighted CDF)."""
    if len(x) == 0 or w.sum() <= 0:
        return float("nan")
    o = np.argsort(x, kind="stable")
    cw = np.cumsum(w[o])
    i = int(np.searchsorted(cw, q / 100.0 * cw[-1], side="left"))
    return float(x[o][min(i, len(x) - 1)])


def group_percentile(group: np.ndarray, values: np.ndarray, q: float, n_groups: int) -> np.ndarray:
    """Per-group ``q``-th percentile (NumPy linear interpolation), vectorized; NaN for groups
    without values (NaN values are ignored)."""
    ok = ~np.isnan(values)
    g, v = group[ok], values[ok]
    out = np.full(n_groups, np.nan)
    if len(v) == 0:
        return out
    o = np.lexsort((v, g))
    g, v = g[o], v[o]
    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    pos = (counts[has] - 1) * (q / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    frac = pos - lo
    s = starts[has]
    out[has] = v[s + lo] + (v[s + hi] - v[s + lo]) * frac
    return out


def request_metrics(res: SimResult) -> dict[str, np.ndarray]:
    """Per-request TTFT / TPOT / E2EL in seconds (NaN where undefined or not completed)."""
    done = res.status == COMPLETED
    ttft = np.where(done, res.first_token_s - res.arrival_s, np.nan)
    e2e = np.where(done, res.finish_s - res.arrival_s, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (res.output_len > 1),
                        (e2e - ttft) / (res.output_len - 1).astype(float), np.nan)
    return {"ttft": ttft, "tpot": tpot, "e2el": e2e, "completed": done}


def windows(res: SimResult) -> tuple[int, np.ndarray]:
    """(number of windows of ``res.window_s`` over the run, each request's window by finish time;
    unfinished requests fall in window 0, clipped to the last window)."""
    W = res.window_s
    nw = max(int(math.ceil(res.duration / W)), 1)
    wi = np.minimum((np.nan_to_num(res.finish_s, nan=0.0) / W).astype(np.int64), nw - 1)
    return nw, wi
