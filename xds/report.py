"""Report: metrics, SLO windows, the result JSON document and per-request CSV of a simulation.

The document uses vLLM benchmark field names (DESIGN.md §3.2) plus xds fields. It is deterministic:
no wall-clock fields unless ``wall_seconds`` is passed explicitly (``xds simulate --timing``).

Definitions (times in ms in the document, s in the arrays):
* TTFT = first token − arrival; TPOT = (e2e − TTFT) / (output_len − 1) for output_len > 1;
  E2EL = finish − arrival; ITL = decode iteration gaps, weighted by the requests in each iteration.
* SLO windows: completed requests grouped by completion time into windows of ``slo.window_s``; a
  window meets the SLO when its p{percentile} TTFT ≤ ttft_ms and p{percentile} TPOT ≤ tpot_ms;
  ``slo_attainment`` = fraction of windows with completions that meet it; ``passed`` = attainment
  ≥ ``slo.attainment`` and no request failed.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from .engine import COMPLETED, FAILED, SimResult


def _r(x: float, nd: int = 4) -> float | None:
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def _wpct(x: np.ndarray, w: np.ndarray, q: float) -> float:
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


def slo_windows(res: SimResult, slo) -> dict[str, Any]:
    """Per-window SLO evaluation (windows by completion time)."""
    m = request_metrics(res)
    done = m["completed"]
    W = res.window_s
    nw = max(int(math.ceil(res.duration / W)), 1)
    wi = np.minimum((np.nan_to_num(res.finish_s, nan=0.0) / W).astype(np.int64), nw - 1)
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


def _workload_summary(workload) -> dict[str, Any] | None:
    """What was offered: requests, span (s), rate (req/s) and mean lengths (tokens)."""
    if workload is None or not len(workload):
        return None
    w = workload.summary()
    return {"name": w["name"], "requests": w["requests"], "span_s": _r(w["span_s"], 3),
            "rate_rps": _r(w["rate_rps"], 4), "input_mean": _r(w["input"]["mean"], 2),
            "output_mean": _r(w["output"]["mean"], 2)}


def build_report(res: SimResult, placed, *, workload=None, wall_seconds: float | None = None,
                 timeline: bool = True) -> dict[str, Any]:
    """The ``xds simulate --json`` document (deterministic for the same inputs)."""
    spec = placed.spec
    slo = spec.slo
    sw = slo_windows(res, slo)
    m = sw["metrics"]
    done = m["completed"]
    failed = res.status == FAILED
    dur = res.duration if res.duration > 0 else float("nan")
    ttft, tpot, e2el = m["ttft"][done] * 1e3, m["tpot"][done] * 1e3, m["e2el"][done] * 1e3
    tpot = tpot[~np.isnan(tpot)]
    tin = int(res.input_len[done].sum())
    tout = int(res.generated[done].sum())
    chips, dies = int(placed.chips), int(placed.dies)
    reasons = {}
    if failed.any():
        cnt = np.bincount(res.reason[failed].astype(np.int64), minlength=len(res.reason_names))
        reasons = {res.reason_names[i]: int(c) for i, c in enumerate(cnt) if c}
    itl = res.itl_s * 1e3
    mean_itl = float((itl * res.itl_w).sum() / res.itl_w.sum()) if res.itl_w.sum() > 0 else float("nan")
    out_tp = tout / dur
    passed = bool(sw["attainment"] >= slo.attainment and not failed.any() and done.any())
    doc: dict[str, Any] = {
        "plan": spec.name, "model": spec.model, "hardware": spec.hardware, "cluster": spec.cluster,
        "workload": getattr(workload, "name", "") or "",
        "workload_summary": _workload_summary(workload),
        "requests": int(len(res)),
        "concurrency": res.concurrency,
        "seed": res.info.get("seed", 0),
        "completed": int(done.sum()),
        "failed": int(failed.sum()),
        "failed_reasons": reasons,
        "total_input_tokens": tin,
        "total_output_tokens": tout,
        "request_throughput": _r(done.sum() / dur),
        "output_throughput": _r(out_tp, 2),
        "total_token_throughput": _r((tin + tout) / dur, 2),
        "mean_ttft_ms": _r(np.mean(ttft)) if len(ttft) else None,
        "median_ttft_ms": _r(_pct(ttft, 50)),
        "p99_ttft_ms": _r(_pct(ttft, 99)),
        "mean_tpot_ms": _r(np.mean(tpot)) if len(tpot) else None,
        "median_tpot_ms": _r(_pct(tpot, 50)),
        "p99_tpot_ms": _r(_pct(tpot, 99)),
        "mean_itl_ms": _r(mean_itl),
        "median_itl_ms": _r(_wpct(itl, res.itl_w, 50)),
        "p99_itl_ms": _r(_wpct(itl, res.itl_w, 99)),
        "mean_e2el_ms": _r(np.mean(e2el)) if len(e2el) else None,
        "median_e2el_ms": _r(_pct(e2el, 50)),
        "p99_e2el_ms": _r(_pct(e2el, 99)),
        "duration": _r(res.duration, 6),
        "chips": chips,
        "dies": dies,
        "output_throughput_per_chip": _r(out_tp / chips, 2),
        "input_throughput_per_chip": _r(tin / dur / chips, 2),
        "pools": {},
        "slo_attainment": _r(sw["attainment"]),
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "percentile": slo.percentile,
                "window_s": slo.window_s, "windows_total": sw["total"],
                "windows_violated": sw["violated"], "attainment": _r(sw["attainment"]),
                "target": slo.attainment},
        "passed": passed,
        "prefix_cache_hit_rate": _r(res.prefix_cache_hit_rate) if res.prefix_cache_hit_rate is not None else None,
        "recomputed_requests": int((res.recomputed > 0).sum()),
        "recomputed_tokens": int(res.recomputed_tokens.sum()),
    }
    for pool in placed.pools():
        d = {"instances": len(pool.instances), "chips": int(pool.chips), "dies": int(pool.dies)}
        if pool.role == "decode":
            d["output_throughput_per_chip"] = _r(out_tp / pool.chips, 2)
            d["batch_cap_per_rank"] = res.info.get("batch_cap_per_rank")
            # how full the decode batches were, sampled at window boundaries (requests per DP rank)
            ranks = sum(int(np.asarray(i.rank_dies).shape[0]) for i in pool.instances)
            running = np.asarray(res.series.get("decode_running", np.zeros(0)), dtype=float)
            if len(running) and ranks:
                d["mean_batch_per_rank"] = _r(float(running.mean()) / ranks, 2)
                d["peak_batch_per_rank"] = _r(float(running.max()) / ranks, 2)
            d["tokens_per_step"] = [_r(x) for x in res.info.get("tokens_per_step", [])]
            d["steps"] = res.info.get("decode_steps")
        else:
            d["input_throughput_per_chip"] = _r(tin / dur / pool.chips, 2)
        doc["pools"][pool.role] = d
    if wall_seconds is not None:
        doc["wall_seconds"] = _r(wall_seconds, 3)
        doc["simulated_requests_per_wall_second"] = _r(len(res) / max(wall_seconds, 1e-9), 1)
    if timeline:
        doc["timeline"] = timeline_rows(res, sw)
    return doc


def timeline_rows(res: SimResult, sw: dict | None = None) -> list[dict[str, Any]]:
    """One row per window: completions, output throughput, p50/p99 TTFT/TPOT, queues, KV usage."""
    W = res.window_s
    nw = max(int(math.ceil(res.duration / W)), 1)
    m = request_metrics(res)
    done = m["completed"]
    wi = np.minimum((np.nan_to_num(res.finish_s, nan=0.0) / W).astype(np.int64), nw - 1)[done]
    cnt = np.bincount(wi, minlength=nw)
    cols = {}
    for name, key in (("ttft", "ttft"), ("tpot", "tpot")):
        for q in (50, 99):
            cols[f"p{q}_{name}_ms"] = group_percentile(wi, m[key][done], q, nw) * 1e3
    s = res.series
    met = sw["met"] if sw is not None else None
    rows = []
    for i in range(nw):
        row = {"t_s": _r(i * W, 3), "completed": int(cnt[i]),
               "output_throughput": _r(s["output_tokens"][i] / W, 2)}
        for k, v in cols.items():
            row[k] = _r(v[i])
        row["prefill_queue"] = int(s["prefill_queue"][i])
        row["decode_pending"] = int(s["decode_pending"][i])
        row["decode_running"] = int(s["decode_running"][i])
        row["kv_usage"] = {"decode": _r(s["kv_usage_decode"][i])}
        if met is not None and sw["has"][i]:
            row["slo_met"] = bool(met[i])      # stalled windows (no token produced) count as missed
        rows.append(row)
    return rows


CSV_COLUMNS = ("id", "arrival_s", "first_token_s", "finish_s", "input_len", "output_len", "generated",
               "cached_tokens", "status", "reason", "ttft_ms", "tpot_ms", "e2el_ms",
               "prefill_instance", "decode_instance", "decode_rank", "recomputed",
               "recomputed_tokens")


def requests_csv(res: SimResult) -> str:
    """Per-request records as CSV text (vectorized formatting, one row per request)."""
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
    step = 200_000
    for i in range(0, n, step):
        block = [c[i:i + step].astype(str) for c in cols]
        lines = block[0]
        for c in block[1:]:
            lines = np.char.add(np.char.add(lines, ","), c)
        buf.write("\n".join(lines.tolist()))
        buf.write("\n")
    return buf.getvalue()


def write_plot(res: SimResult, path: str) -> None:
    """TTFT / TPOT CDFs and the throughput / p99 TPOT timeline (needs matplotlib: ``plot`` extra)."""
    from .spec.fileio import atomic_path, check_plot_path
    check_plot_path(path)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = request_metrics(res)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for a, key, label in ((ax[0], "ttft", "TTFT (ms)"), (ax[1], "tpot", "TPOT (ms)")):
        v = np.sort(m[key][~np.isnan(m[key])]) * 1e3
        if len(v):
            a.plot(v, np.arange(1, len(v) + 1) / len(v))
        a.set_xlabel(label)
        a.set_ylabel("CDF")
        a.grid(alpha=0.3)
    rows = timeline_rows(res)
    t = [r["t_s"] for r in rows]
    ax[2].plot(t, [r["output_throughput"] or 0 for r in rows], label="output tok/s")
    ax[2].set_xlabel("time (s)")
    ax[2].set_ylabel("output tokens/s")
    a2 = ax[2].twinx()
    a2.plot(t, [r["p99_tpot_ms"] if r["p99_tpot_ms"] is not None else float("nan") for r in rows],
            color="tab:red", label="p99 TPOT")
    a2.set_ylabel("p99 TPOT (ms)")
    fig.tight_layout()
    suffix = path.rsplit(".", 1)[-1].lower()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix)
    plt.close(fig)


def write_timeline_plot(doc: dict[str, Any], path: str, *, markers: list[dict[str, Any]] = ()) -> None:
    """p99 TPOT and output throughput per window from a result document, with fault (red) and
    recovery (green) markers — the chaos view (needs matplotlib: ``plot`` extra)."""
    from .spec.fileio import atomic_path, check_plot_path
    check_plot_path(path)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    suffix = path.rsplit(".", 1)[-1].lower()
    docs = doc["policies"] if "policies" in doc else {doc.get("policy", "run"): doc}
    fig, ax = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for name, d in docs.items():
        rows = d["timeline"]
        t = [r["t_s"] for r in rows]
        ax[0].plot(t, [r["p99_tpot_ms"] if r["p99_tpot_ms"] is not None else float("nan") for r in rows],
                   label=name)
        ax[1].plot(t, [r["output_throughput"] or 0 for r in rows], label=name)
        for rec in d.get("recovery", []):
            for a in ax:
                a.axvline(rec["at_s"], color="tab:red", alpha=0.4, lw=1)
                if rec.get("recovered_at_s") is not None:
                    a.axvline(rec["recovered_at_s"], color="tab:green", alpha=0.4, lw=1, ls="--")
        slo = d["slo"]["tpot_ms"]
    ax[0].axhline(slo, color="black", ls=":", lw=1, label="TPOT SLO")
    ax[0].set_ylabel("p99 TPOT (ms)")
    ax[1].set_ylabel("output tokens/s")
    ax[1].set_xlabel("time (s)")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix)
    plt.close(fig)
