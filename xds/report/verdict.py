"""A run's verdict in words, from its result document alone: whether it passed and, if not, why
(which SLO bound the violated windows broke, failed requests). The plots' titles and the HTML
report's headline use it, so the picture and the page say the same thing as the JSON."""

from __future__ import annotations

from typing import Any


def _count_over(rows: list[dict[str, Any]], key: str, limit: float) -> int:
    """Violated windows whose ``key`` (ms) is above ``limit`` (ms)."""
    return sum(1 for r in rows if r.get("slo_met") is False and r.get(key) is not None
               and r[key] > limit)


def why_failed(doc: dict[str, Any]) -> list[str]:
    """Reasons a simulate/chaos document did not pass (empty when it passed): windows violated and
    by which bound (the per-window p99 columns; attributed only when the SLO percentile is 99),
    failed requests and their reasons, no completion at all."""
    if doc.get("passed"):
        return []
    slo = doc["slo"]
    out = []
    if doc.get("completed", 0) == 0:
        out.append("no request completed")
    if slo["windows_violated"]:
        text = f"{slo['windows_violated']} of {slo['windows_total']} windows violated"
        rows = doc.get("timeline") or []
        if rows and float(slo["percentile"]) == 99.0:
            parts = [f"p99 {name} above {lim:,.0f} ms in {n}" for name, key, lim in
                     (("TTFT", "p99_ttft_ms", slo["ttft_ms"]), ("TPOT", "p99_tpot_ms", slo["tpot_ms"]))
                     if (n := _count_over(rows, key, lim))]
            stalled = sum(1 for r in rows if r.get("slo_met") is False and r.get("completed") == 0)
            if stalled:
                parts.append(f"no completion (stalled) in {stalled}")
            if parts:
                text += " (" + ", ".join(parts) + ")"
        out.append(text)
    if doc.get("failed"):
        reasons = ", ".join(f"{k}: {v:,}" for k, v in (doc.get("failed_reasons") or {}).items())
        out.append(f"{doc['failed']:,} requests failed" + (f" ({reasons})" if reasons else ""))
    return out


def verdict_line(doc: dict[str, Any], *, reasons: bool = True) -> str:
    """``PASS: SLO met in 100.0% of 12 windows (target 90%)`` or ``FAIL: …; why`` (without the why
    when ``reasons`` is false)."""
    slo = doc["slo"]
    att = doc.get("slo_attainment") or 0.0
    head = (f"{'PASS' if doc['passed'] else 'FAIL'}: SLO met in {att:.1%} of {slo['windows_total']} "
            f"windows (target {slo['target']:.0%})")
    why = why_failed(doc) if reasons else []
    return head + ("; " + "; ".join(why) if why else "")


def run_title(doc: dict[str, Any]) -> str:
    """``plan × workload × scenario`` of a simulate/chaos document (``no faults`` without one)."""
    scenario = doc.get("scenario") or "no faults"
    if doc.get("policy"):
        scenario += f" ({doc['policy']} recovery)"
    return f"{doc['plan']} × {doc.get('workload') or 'synthetic workload'} × {scenario}"
