"""The result document of a simulation (``xds simulate --json``): vLLM benchmark field names
(DESIGN.md §3.2) plus xds fields. Deterministic: no wall-clock fields unless ``wall_seconds`` is
passed explicitly (``xds simulate --timing``). Times in ms in the document; throughputs in
requests/s or tokens/s; ``passed`` = SLO attainment ≥ ``slo.attainment`` and no request failed."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import FAILED, SimResult
from .metrics import pct, rnd, wpct
from .slo import slo_windows
from .tables import timeline_rows


def _workload_summary(workload) -> dict[str, Any] | None:
    """What was offered: requests, span (s), rate (req/s) and mean lengths (tokens)."""
    if workload is None or not len(workload):
        return None
    w = workload.summary()
    return {"name": w["name"], "requests": w["requests"], "span_s": rnd(w["span_s"], 3),
            "rate_rps": rnd(w["rate_rps"], 4), "input_mean": rnd(w["input"]["mean"], 2),
            "output_mean": rnd(w["output"]["mean"], 2)}


def _latency_fields(res: SimResult, m: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean / median / p99 of TTFT, TPOT, ITL and E2EL over completed requests (ms); ITL weighted
    by the requests in each decode iteration."""
    done = m["completed"]
    ttft, tpot, e2el = m["ttft"][done] * 1e3, m["tpot"][done] * 1e3, m["e2el"][done] * 1e3
    tpot = tpot[~np.isnan(tpot)]
    itl = res.itl_s * 1e3
    mean_itl = float((itl * res.itl_w).sum() / res.itl_w.sum()) if res.itl_w.sum() > 0 else float("nan")
    return {
        "mean_ttft_ms": rnd(np.mean(ttft)) if len(ttft) else None,
        "median_ttft_ms": rnd(pct(ttft, 50)),
        "p99_ttft_ms": rnd(pct(ttft, 99)),
        "mean_tpot_ms": rnd(np.mean(tpot)) if len(tpot) else None,
        "median_tpot_ms": rnd(pct(tpot, 50)),
        "p99_tpot_ms": rnd(pct(tpot, 99)),
        "mean_itl_ms": rnd(mean_itl),
        "median_itl_ms": rnd(wpct(itl, res.itl_w, 50)),
        "p99_itl_ms": rnd(wpct(itl, res.itl_w, 99)),
        "mean_e2el_ms": rnd(np.mean(e2el)) if len(e2el) else None,
        "median_e2el_ms": rnd(pct(e2el, 50)),
        "p99_e2el_ms": rnd(pct(e2el, 99)),
    }


def _pool_fields(res: SimResult, pool, out_tp: float, in_tp: float) -> dict[str, Any]:
    """One pool's size and throughput per chip (tokens/s; ``out_tp`` / ``in_tp`` are the run's
    totals); for decode also how full its batches were (requests per DP rank)."""
    d = {"instances": len(pool.instances), "chips": int(pool.chips), "dies": int(pool.dies)}
    if pool.role == "decode":
        d["output_throughput_per_chip"] = rnd(out_tp / pool.chips, 2)
        d["batch_cap_per_rank"] = res.info.get("batch_cap_per_rank")
        # how full the decode batches were, sampled at window boundaries (requests per DP rank)
        ranks = sum(int(np.asarray(i.rank_dies).shape[0]) for i in pool.instances)
        running = np.asarray(res.series.get("decode_running", np.zeros(0)), dtype=float)
        if len(running) and ranks:
            d["mean_batch_per_rank"] = rnd(float(running.mean()) / ranks, 2)
            d["peak_batch_per_rank"] = rnd(float(running.max()) / ranks, 2)
        d["tokens_per_step"] = [rnd(x) for x in res.info.get("tokens_per_step", [])]
        d["steps"] = res.info.get("decode_steps")
    else:
        d["input_throughput_per_chip"] = rnd(in_tp / pool.chips, 2)
    return d


def _failed_reasons(res: SimResult, failed: np.ndarray) -> dict[str, int]:
    """Failed requests per failure reason (reasons with none left out)."""
    if not failed.any():
        return {}
    cnt = np.bincount(res.reason[failed].astype(np.int64), minlength=len(res.reason_names))
    return {res.reason_names[i]: int(c) for i, c in enumerate(cnt) if c}


def build_report(res: SimResult, placed, *, workload=None, wall_seconds: float | None = None,
                 timeline: bool = True) -> dict[str, Any]:
    """The ``xds simulate --json`` document (deterministic for the same inputs)."""
    spec = placed.spec
    slo = spec.slo
    sw = slo_windows(res, slo)
    done = sw["metrics"]["completed"]
    failed = res.status == FAILED
    dur = res.duration if res.duration > 0 else float("nan")
    tin = int(res.input_len[done].sum())
    tout = int(res.generated[done].sum())
    chips, dies = int(placed.chips), int(placed.dies)
    out_tp = tout / dur
    doc: dict[str, Any] = {
        "plan": spec.name, "model": spec.model, "hardware": spec.hardware, "cluster": spec.cluster,
        "workload": getattr(workload, "name", "") or "",
        "workload_summary": _workload_summary(workload),
        "requests": int(len(res)),
        "concurrency": res.concurrency,
        "seed": res.info.get("seed", 0),
        "completed": int(done.sum()),
        "failed": int(failed.sum()),
        "failed_reasons": _failed_reasons(res, failed),
        "total_input_tokens": tin,
        "total_output_tokens": tout,
        "request_throughput": rnd(done.sum() / dur),
        "output_throughput": rnd(out_tp, 2),
        "total_token_throughput": rnd((tin + tout) / dur, 2),
        **_latency_fields(res, sw["metrics"]),
        "duration": rnd(res.duration, 6),
        "chips": chips,
        "dies": dies,
        "output_throughput_per_chip": rnd(out_tp / chips, 2),
        "input_throughput_per_chip": rnd(tin / dur / chips, 2),
        "pools": {pool.role: _pool_fields(res, pool, out_tp, tin / dur) for pool in placed.pools()},
        "slo_attainment": rnd(sw["attainment"]),
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "percentile": slo.percentile,
                "window_s": slo.window_s, "windows_total": sw["total"],
                "windows_violated": sw["violated"], "attainment": rnd(sw["attainment"]),
                "target": slo.attainment},
        "passed": bool(sw["attainment"] >= slo.attainment and not failed.any() and done.any()),
        "prefix_cache_hit_rate": rnd(res.prefix_cache_hit_rate) if res.prefix_cache_hit_rate is not None else None,
        "recomputed_requests": int((res.recomputed > 0).sum()),
        "recomputed_tokens": int(res.recomputed_tokens.sum()),
    }
    if wall_seconds is not None:
        doc["wall_seconds"] = rnd(wall_seconds, 3)
        doc["simulated_requests_per_wall_second"] = rnd(len(res) / max(wall_seconds, 1e-9), 1)
    if timeline:
        doc["timeline"] = timeline_rows(res, sw)
    return doc
