"""Plots of a simulation or a chaos replay (png/svg). matplotlib is the optional ``plot`` extra, so
it is imported inside the functions; the path is checked before it is imported."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import SimResult
from ..spec.fileio import atomic_path, check_plot_path
from .metrics import request_metrics
from .tables import timeline_rows


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


def _p99_tpot(rows: list[dict[str, Any]]) -> list[float]:
    """p99 TPOT per timeline row (ms; NaN leaves a gap where a window has none)."""
    return [r["p99_tpot_ms"] if r["p99_tpot_ms"] is not None else float("nan") for r in rows]


def _throughput(rows: list[dict[str, Any]]) -> list[float]:
    """Output throughput per timeline row (tokens/s; 0 where undefined)."""
    return [r["output_throughput"] or 0 for r in rows]


def write_plot(res: SimResult, path: str) -> None:
    """TTFT / TPOT CDFs and the throughput / p99 TPOT timeline (needs matplotlib: ``plot`` extra)."""
    check_plot_path(path)
    plt = _pyplot()
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
    ax[2].plot(t, _throughput(rows), label="output tok/s")
    ax[2].set_xlabel("time (s)")
    ax[2].set_ylabel("output tokens/s")
    a2 = ax[2].twinx()
    a2.plot(t, _p99_tpot(rows), color="tab:red", label="p99 TPOT")
    a2.set_ylabel("p99 TPOT (ms)")
    fig.tight_layout()
    _save(plt, fig, path)


def _mark_fault(ax, rec: dict[str, Any]) -> None:
    """One fault on the chaos timeline: strike (red), service back (green dashed), degraded until
    full capacity (shaded), and its blast radius as a label (dies, requests, recomputed tokens,
    capacity lost)."""
    for a in ax:
        a.axvline(rec["at_s"], color="tab:red", alpha=0.4, lw=1)
        if rec.get("recovered_at_s") is not None:
            a.axvline(rec["recovered_at_s"], color="tab:green", alpha=0.4, lw=1, ls="--")
        if rec.get("full_capacity_at_s") is not None and rec["full_capacity_at_s"] > rec["at_s"]:
            a.axvspan(rec["at_s"], rec["full_capacity_at_s"], color="tab:orange", alpha=0.08)
    b = rec.get("blast_radius")
    if b:
        ax[0].annotate(f"{rec['fault']}: {b['dies']} dies, {b['requests_affected']:,} req, "
                       f"{b['recomputed_tokens']:,} tok recomputed, -{b['capacity_lost_tok_s']:,.0f} tok/s",
                       (rec["at_s"], 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                       rotation=90, va="top", ha="right", color="tab:red")


def write_timeline_plot(doc: dict[str, Any], path: str) -> None:
    """p99 TPOT and output throughput per window from a result document, with fault (red) and
    recovery (green) markers — the chaos view (needs matplotlib: ``plot`` extra)."""
    check_plot_path(path)
    plt = _pyplot()
    docs = doc["policies"] if "policies" in doc else {doc.get("policy", "run"): doc}
    fig, ax = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for name, d in docs.items():
        rows = d["timeline"]
        t = [r["t_s"] for r in rows]
        ax[0].plot(t, _p99_tpot(rows), label=name)
        ax[1].plot(t, _throughput(rows), label=name)
        for rec in d.get("recovery", []):
            _mark_fault(ax, rec)
        slo = d["slo"]["tpot_ms"]
    ax[0].axhline(slo, color="black", ls=":", lw=1, label="TPOT SLO")
    ax[0].set_ylabel("p99 TPOT (ms)")
    ax[1].set_ylabel("output tokens/s")
    ax[1].set_xlabel("time (s)")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)
