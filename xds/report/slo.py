"""SLO windows: completed requests grouped by completion time into windows of ``slo.window_s``
(s); a window meets the SLO when its p{percentile} TTFT ≤ ``ttft_ms`` and p{percentile} TPOT ≤
``tpot_ms``; attainment = fraction of windows with completions (or stalled) that meet it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import SimResult
from .metrics import group_percentile, request_metrics, windows


def slo_windows(res: SimResult, slo) -> dict[str, Any]:
    """Per-window SLO evaluation (windows by completion time)."""
    m = request_metrics(res)
    done = m["completed"]
    W = res.window_s
    nw, wi = windows(res)
    g = wi[done]
    q = float(slo.percentile)
    cnt = np.bincount(g, minlength=nw)
    p_ttft = group_percentile(g, m["ttft"][done], q, nw)
    p_tpot = group_percentile(g, m["tpot"][done], q, nw)
    ok_ttft = np.isnan(p_ttft) | (p_ttft * 1e3 <= slo.ttft_ms)
    ok_tpot = np.isnan(p_tpot) | (p_tpot * 1e3 <= slo.tpot_ms)
    # A window with requests in flight but not one token produced is a stall (an outage, a
    # restart): it has no completions to take percentiles of, yet users waited through it, so it
    # counts as a violated window rather than vanishing from the denominator.
    arr = np.sort(res.arrival_s)
    fin = np.sort(np.where(np.isnan(res.finish_s), np.inf, res.finish_s))
    edges = np.arange(nw + 1) * W
    started = np.searchsorted(arr, edges[1:], side="left")
    ended = np.searchsorted(fin, edges[:-1], side="left")
    inflight = (started - ended) > 0
    out = np.zeros(nw)
    tok = np.asarray(res.series.get("output_tokens", np.zeros(0)), dtype=float)[:nw]
    out[: len(tok)] = tok
    stalled = (cnt == 0) & inflight & (out <= 0)
    has = (cnt > 0) | stalled
    met = (cnt > 0) & ok_ttft & ok_tpot
    total = int(has.sum())
    att = float(met.sum() / total) if total else 0.0
    return {"n": nw, "count": cnt, "met": met, "has": has, "attainment": att, "total": total,
            "violated": int(total - met.sum()), "p_ttft": p_ttft, "p_tpot": p_tpot,
            "group": wi, "metrics": m}
