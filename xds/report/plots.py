"""Plots of a simulation or a chaos replay (png/svg, or SVG text for the HTML report), drawn so a
reader who sees only the picture knows whether the run passed and why not: the title says plan ×
workload × scenario and the verdict, TTFT and TPOT percentiles run over time against their SLO
lines with the violated windows shaded, throughput is shown per pool, and faults / recoveries are
marked in a colour per fault kind with a legend. One function per panel kind.

matplotlib is the optional ``plot`` extra, so it is imported inside the functions; the path is
checked before it is imported."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..engine import SimResult
from ..spec.fileio import atomic_path, check_plot_path
from .metrics import request_metrics
from .verdict import run_title, verdict_line

FAULT_COLOURS = ("tab:red", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
                 "gold", "darkred", "magenta", "teal")   # not the data lines' blue / purple
VIOLATED = "#f4a6a6"          # shading of a window that missed the SLO
SLO_STYLE = {"color": "black", "ls": ":", "lw": 1.2}


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path: str) -> None:
    """Write ``fig`` atomically in the format its suffix names, then free it."""
    suffix = path.rsplit(".", 1)[-1].lower()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix)
    plt.close(fig)


def figure_svg(fig) -> str:
    """``fig`` as SVG text (for inlining in HTML), then free it."""
    import matplotlib
    plt = _pyplot()
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "xds"}):      # stable element ids: same run, same bytes
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]          # drop the XML prolog and doctype: inline SVG


def _series(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """A timeline column as floats (NaN where a window has no value: a gap in the line)."""
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)


def _mid(rows: list[dict[str, Any]], window_s: float) -> np.ndarray:
    """Window mid-points (s) of timeline rows."""
    return np.array([r["t_s"] for r in rows], dtype=float) + window_s / 2


def _shade_violated(ax, rows: list[dict[str, Any]], window_s: float, label: bool) -> None:
    """Shade each window that missed the SLO (``slo_met`` false; stalled windows included)."""
    first = True
    for r in rows:
        if r.get("slo_met") is False:
            ax.axvspan(r["t_s"], r["t_s"] + window_s, color=VIOLATED, alpha=0.5, lw=0,
                       label="SLO window violated" if first and label else None)
            first = False


def _latency_panel(ax, docs: dict[str, dict], what: str, window_s: float) -> None:
    """p50 / p99 ``what`` (TTFT or TPOT, ms) per window for each run in ``docs``, its SLO line and
    (one run only) the violated windows shaded."""
    key = what.lower()
    single = len(docs) == 1
    for name, d in docs.items():
        rows = d["timeline"]
        t = _mid(rows, window_s)
        tag = "" if single else f"{name}: "
        line = ax.plot(t, _series(rows, f"p99_{key}_ms"), marker=".", label=f"{tag}p99 {what}")[0]
        if single:
            ax.plot(t, _series(rows, f"p50_{key}_ms"), color=line.get_color(), alpha=0.5, ls="--",
                    label=f"p50 {what}")
            _shade_violated(ax, rows, window_s, label=True)
    slo = next(iter(docs.values()))["slo"]
    ax.axhline(slo[f"{key}_ms"], **SLO_STYLE, label=f"{what} SLO {slo[f'{key}_ms']:g} ms "
                                                     f"(p{slo['percentile']:g})")
    ax.set_ylabel(f"{what} (ms)")
    ax.set_title(f"{what} per {window_s:g} s window")


def _prefill_throughput(res: SimResult, window_s: float, n: int) -> np.ndarray:
    """Prompt tokens per second per window, counted when the request's first token appears (the
    prefill pool's output)."""
    ok = ~np.isnan(res.first_token_s)
    wi = np.minimum((res.first_token_s[ok] / window_s).astype(np.int64), n - 1)
    return np.bincount(wi, weights=res.input_len[ok].astype(float), minlength=n)[:n] / window_s


def _throughput_panel(ax, docs: dict[str, dict], window_s: float, res: SimResult | None) -> None:
    """Throughput per pool over time: decode output tokens/s (and, with ``res``, prefill prompt
    tokens/s on a second axis)."""
    for name, d in docs.items():
        rows = d["timeline"]
        label = "decode: output tok/s" if len(docs) == 1 else f"{name}: decode output tok/s"
        ax.plot(_mid(rows, window_s), _series(rows, "output_throughput"), label=label)
    ax.set_ylabel("decode output tokens/s")
    ax.set_title("throughput per pool" if res is not None else "decode output throughput")
    if res is not None and len(docs) == 1:
        rows = next(iter(docs.values()))["timeline"]
        a2 = ax.twinx()
        a2.plot(_mid(rows, window_s), _prefill_throughput(res, window_s, len(rows)),
                color="tab:purple", ls="-.", label="prefill: prompt tok/s")
        a2.set_ylabel("prefill prompt tokens/s")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = a2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="best", fontsize=8)


def _cdf_panel(ax, values_ms: np.ndarray, what: str, slo_ms: float) -> None:
    """Empirical CDF of ``what`` over completed requests (ms) with the SLO bound."""
    v = np.sort(values_ms[~np.isnan(values_ms)])
    if len(v):
        ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{what} of {len(v):,} requests")
    ax.axvline(slo_ms, **SLO_STYLE, label=f"SLO {slo_ms:g} ms")
    ax.axhline(0.99, color="grey", lw=0.8, alpha=0.6, label="99th percentile")
    ax.set_xlabel(f"{what} (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{what} distribution")


def _fault_markers(axes, records: list[dict[str, Any]]) -> None:
    """A vertical line where each fault struck (solid) and where it was recovered (dashed), one
    colour per fault kind; legend entries once per kind."""
    kinds = sorted({r["fault"] for r in records})
    colours = {k: FAULT_COLOURS[i % len(FAULT_COLOURS)] for i, k in enumerate(kinds)}
    for ax in axes:
        seen: set[str] = set()
        for r in records:
            k = r["fault"]
            ax.axvline(r["at_s"], color=colours[k], lw=1.6,
                       label=None if k in seen else f"fault: {k}")
            if r.get("recovered_at_s") is not None:
                ax.axvline(r["recovered_at_s"], color=colours[k], lw=1.2, ls="--",
                           label=None if k in seen else f"recovered: {k}")
            if r.get("full_capacity_at_s") is not None and r["full_capacity_at_s"] > r["at_s"]:
                ax.axvspan(r["at_s"], r["full_capacity_at_s"], color=colours[k], alpha=0.08)
            seen.add(k)
    for r in records:
        _blast_label(axes[0], r, colours[r["fault"]])


def _blast_label(ax, rec: dict[str, Any], colour: str) -> None:
    """A fault's blast radius written along its strike line: dies, requests affected, recomputed
    tokens and capacity lost meanwhile (tok/s)."""
    b = rec.get("blast_radius")
    if not b:
        return
    ax.annotate(f"{rec['fault']}: {b['dies']} dies, {b['requests_affected']:,} req, "
                f"{b['recomputed_tokens']:,} tok recomputed, -{b['capacity_lost_tok_s']:,.0f} tok/s",
                (rec["at_s"], 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                rotation=90, va="top", ha="right", color=colour)


def _finish(fig, axes, title: str, verdict: str) -> None:
    """Title (run and verdict, the verdict coloured), grid, legends, layout."""
    colour = "tab:green" if verdict.startswith("PASS") else "tab:red"
    fig.suptitle(title, fontsize=12, fontweight="bold", y=0.995)
    fig.text(0.5, 0.955, verdict, ha="center", fontsize=10, color=colour, wrap=True)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))


def simulate_figure(doc: dict[str, Any], res: SimResult):
    """The simulate figure: TTFT and TPOT over time, throughput per pool, TTFT and TPOT CDFs and
    the queues — titled with the run and its verdict."""
    plt = _pyplot()
    W = float(doc["slo"]["window_s"])
    docs = {"run": doc}
    fig, ax = plt.subplots(2, 3, figsize=(16, 8.5))
    _latency_panel(ax[0, 0], docs, "TTFT", W)
    _latency_panel(ax[0, 1], docs, "TPOT", W)
    _throughput_panel(ax[0, 2], docs, W, res)
    m = request_metrics(res)
    done = m["completed"]
    _cdf_panel(ax[1, 0], m["ttft"][done] * 1e3, "TTFT", doc["slo"]["ttft_ms"])
    _cdf_panel(ax[1, 1], m["tpot"][done] * 1e3, "TPOT", doc["slo"]["tpot_ms"])
    _queue_panel(ax[1, 2], doc["timeline"], W)
    for a in (ax[0, 0], ax[0, 1], ax[0, 2], ax[1, 2]):
        a.set_xlabel("time (s)")
    _finish(fig, ax.ravel(), run_title(doc), verdict_line(doc))
    return fig


def _queue_panel(ax, rows: list[dict[str, Any]], window_s: float) -> None:
    """Requests waiting for prefill, waiting for a decode slot and decoding, per window."""
    t = _mid(rows, window_s)
    for key, label in (("prefill_queue", "waiting for prefill"),
                       ("decode_pending", "waiting for a decode slot"),
                       ("decode_running", "decoding")):
        ax.plot(t, _series(rows, key), label=label)
    ax.set_ylabel("requests")
    ax.set_title("queues (sampled at window ends)")


def timeline_figure(doc: dict[str, Any]):
    """The chaos figure from a result document (one policy or ``policies``): TTFT, TPOT and output
    throughput over time, fault and recovery markers by kind, violated windows shaded."""
    plt = _pyplot()
    docs = doc["policies"] if "policies" in doc else {doc.get("policy", "run"): doc}
    first = next(iter(docs.values()))
    W = float(first["slo"]["window_s"])
    fig, ax = plt.subplots(3, 1, figsize=(13, 10), sharex=True)
    _latency_panel(ax[0], docs, "TTFT", W)
    _latency_panel(ax[1], docs, "TPOT", W)
    _throughput_panel(ax[2], docs, W, None)
    _fault_markers(ax, first.get("recovery", []))
    ax[2].set_xlabel("time (s)")
    if len(docs) == 1:
        verdict = verdict_line(first)
    else:
        verdict = ("PASS" if doc["passed"] else "FAIL") + ": " + "; ".join(
            f"{p} {'passes' if d['passed'] else 'fails'} ({(d['slo_attainment'] or 0):.0%} of windows)"
            for p, d in docs.items())
    title = run_title({**first, "policy": None if len(docs) > 1 else first.get("policy")})
    for a in ax:
        a.legend(loc="best", fontsize=8, ncol=2)
    _finish(fig, ax, title, verdict)
    return fig


def write_plot(res: SimResult, path: str, doc: dict[str, Any]) -> None:
    """Write :func:`simulate_figure` of ``doc`` (needs its ``timeline``) and ``res`` to ``path``
    (.png or .svg; needs matplotlib: the ``plot`` extra)."""
    check_plot_path(path)
    plt = _pyplot()
    _save(plt, simulate_figure(doc, res), path)


def write_timeline_plot(doc: dict[str, Any], path: str) -> None:
    """Write :func:`timeline_figure` of a chaos document to ``path`` (.png or .svg)."""
    check_plot_path(path)
    plt = _pyplot()
    _save(plt, timeline_figure(doc), path)


HBM_PARTS = ("weights_attention", "weights_dense_ffn", "weights_embedding_lm_head", "weights_experts",
             "kv_cache", "comm_buffers", "reserve", "free")


def hbm_figure(plan_doc: dict[str, Any]):
    """HBM per die of each pool of a ``xds plan --json`` document (GB), stacked by what fills it,
    the die's capacity marked."""
    plt = _pyplot()
    bars = []
    for p in plan_doc["pools"]:
        bars.append((f"{p['role']} die", p["hbm_gb_per_die"]))
        if "hbm_gb_per_moe_die" in p:
            bars.append((f"{p['role']} MoE die", p["hbm_gb_per_moe_die"]))
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.7 * len(bars)))
    colours = plt.get_cmap("tab20").colors
    y = np.arange(len(bars))
    left = np.zeros(len(bars))
    for i, part in enumerate(HBM_PARTS):
        w = np.array([b.get(part, 0.0) for _, b in bars], dtype=float)
        ax.barh(y, w, left=left, color="#e0e0e0" if part == "free" else colours[i * 2 % 20],
                label=part.replace("_", " "), edgecolor="white")
        left += w
    cap = max(b.get("capacity", 0.0) for _, b in bars)
    ax.axvline(cap, **SLO_STYLE, label=f"capacity {cap:g} GB")
    ax.set_yticks(y, [name for name, _ in bars])
    ax.set_xlabel("HBM per die (GB)")
    ax.set_title(f"{plan_doc['plan']}: HBM per die", fontweight="bold")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55 if len(bars) < 3 else -0.3), ncol=5,
              fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def _headroom(v: float | None, th: dict[str, float | None]) -> float:
    """Headroom of a measured value to its thresholds as a fraction of the limit (< 0 fails; a
    limit of 0 gives 0 when met and -1 when not)."""
    if v is None:
        return -1.0
    out = []
    for bound, sign in (("max", 1.0), ("min", -1.0)):
        lim = th.get(bound)
        if lim is None:
            continue
        out.append(sign * (lim - v) / abs(lim) if lim != 0 else (0.0 if sign * (lim - v) >= 0 else -1.0))
    return min(out) if out else 0.0


def gate_figure(doc: dict[str, Any]):
    """One bar per gate check threshold: its headroom (fraction of the limit), green when met,
    red when not."""
    plt = _pyplot()
    labels, vals = [], []
    for c in doc["checks"]:
        for k, th in c["thresholds"].items():
            labels.append(f"{c['name']}: {k}")
            vals.append(_headroom(c["measured"].get(k), th))
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.3 * max(len(vals), 1)))
    y = np.arange(len(vals))
    v = np.clip(np.array(vals, dtype=float), -1.0, 1.0)
    ax.barh(y, v, color=["tab:green" if x >= 0 else "tab:red" for x in vals])
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("headroom to the threshold (fraction of the limit; below 0 fails; clipped to ±1)")
    verdict = "all checks pass" if doc["passed"] else f"{len(doc['failed_checks'])} check(s) fail"
    ax.set_title(f"xds gate {doc['suite']}: {verdict}", fontweight="bold",
                 color="tab:green" if doc["passed"] else "tab:red")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
