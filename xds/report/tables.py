"""Tables of a simulation: one row per SLO window (the ``timeline``) and one CSV row per request."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..engine import COMPLETED, SimResult
from .metrics import group_percentile, request_metrics, rnd, windows


def timeline_rows(res: SimResult, sw: dict | None = None) -> list[dict[str, Any]]:
    """One row per window of ``res.window_s`` s: completions, output throughput (tokens/s), p50/p99
    TTFT/TPOT (ms), queues (requests), decode KV usage (fraction); ``slo_met`` when the SLO windows
    ``sw`` are given."""
    W = res.window_s
    nw, wi = windows(res)
    m = request_metrics(res)
    done = m["completed"]
    wi = wi[done]
    cnt = np.bincount(wi, minlength=nw)
    cols = {}
    for name, key in (("ttft", "ttft"), ("tpot", "tpot")):
        for q in (50, 99):
            cols[f"p{q}_{name}_ms"] = group_percentile(wi, m[key][done], q, nw) * 1e3
    s = res.series
    met = sw["met"] if sw is not None else None
    rows = []
    for i in range(nw):
        row = {"t_s": rnd(i * W, 3), "completed": int(cnt[i]),
               "output_throughput": rnd(s["output_tokens"][i] / W, 2)}
        for k, v in cols.items():
            row[k] = rnd(v[i])
        row["prefill_queue"] = int(s["prefill_queue"][i])
        row["decode_pending"] = int(s["decode_pending"][i])
        row["decode_running"] = int(s["decode_running"][i])
        row["kv_usage"] = {"decode": rnd(s["kv_usage_decode"][i])}
        if met is not None and sw["has"][i]:
            row["slo_met"] = bool(met[i])      # stalled windows (no token produced) count as missed
        rows.append(row)
    return rows


CSV_COLUMNS = ("id", "arrival_s", "first_token_s", "finish_s", "input_len", "output_len", "generated",
               "cached_tokens", "status", "reason", "ttft_ms", "tpot_ms", "e2el_ms",
               "prefill_instance", "decode_instance", "decode_rank", "recomputed",
               "recomputed_tokens")
CSV_BLOCK = 200_000     # rows formatted per NumPy pass: bounds the temporary string arrays


def requests_csv(res: SimResult) -> str:
    """Per-request records as CSV text (vectorized formatting, one row per request; times in s,
    latencies in ms, empty where undefined)."""
    m = request_metrics(res)
    n = len(res)
    status = np.where(res.status == COMPLETED, "completed", "failed")
    reason = np.asarray(res.reason_names, dtype=object)[res.reason.astype(np.int64)]

    def f(a, nd):
        s = np.char.mod(f"%.{nd}f", np.nan_to_num(a, nan=0.0))
        return np.where(np.isnan(a), "", s)

    cols = [np.arange(n).astype(str), f(res.arrival_s, 6), f(res.first_token_s, 6), f(res.finish_s, 6),
            res.input_len.astype(str), res.output_len.astype(str), res.generated.astype(str),
            res.cached_tokens.astype(str), status, reason.astype(str), f(m["ttft"] * 1e3, 3),
            f(m["tpot"] * 1e3, 3), f(m["e2el"] * 1e3, 3), res.prefill_instance.astype(str),
            res.decode_instance.astype(str), res.decode_rank.astype(str),
            res.recomputed.astype(str), res.recomputed_tokens.astype(str)]
    buf = io.StringIO()
    buf.write(",".join(CSV_COLUMNS) + "\n")
    for i in range(0, n, CSV_BLOCK):
        block = [c[i:i + CSV_BLOCK].astype(str) for c in cols]
        lines = block[0]
        for c in block[1:]:
            lines = np.char.add(np.char.add(lines, ","), c)
        buf.write("\n".join(lines.tolist()))
        buf.write("\n")
    return buf.getvalue()


def node_ranges(nodes) -> str:
    """Node ids as compact ranges: ``[0, 1, 2, 3, 7]`` → ``"0-3, 7"``."""
    ids = sorted(int(n) for n in nodes)
    parts: list[str] = []
    for i, n in enumerate(ids):
        if i and n == ids[i - 1] + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)


def pool_nodes(pool: dict[str, Any]) -> str:
    """Which nodes a pool of ``xds plan --json`` sits on, instance by instance
    (``"0-3 (instance 0), 4-7 (instance 1)"``); a fault scenario names these nodes."""
    return ", ".join(f"{node_ranges(i['nodes'])} (instance {i['index']})" for i in pool["instances"])
