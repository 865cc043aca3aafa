"""What a run returns: request status codes, failure reasons, :class:`SimResult`, the per-window
series and the close-out that turns the engine's final state into a result.

Units: seconds (s) for every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# request status codes
WAITING, PREFILL, DEC_PENDING, DECODING, COMPLETED, FAILED = 0, 1, 2, 3, 4, 5
STATUS_NAMES = ("waiting", "prefill", "decode_pending", "decoding", "completed", "failed")
# failure reasons (index 0 = none)
REASONS = ("", "rank_lost", "instance_restart", "retries_exhausted", "unfinished", "kv_too_large",
           "no_instance", "kv_corrupted")
R_NONE, R_RANK_LOST, R_RESTART, R_RETRIES, R_UNFINISHED, R_KV, R_NO_INSTANCE, R_KV_CORRUPT = range(8)


@dataclass
class SimResult:
    """Per-request records (arrays of length N, workload order) and per-window time series.

    Times in s (NaN where undefined). ``status`` is COMPLETED or FAILED for every request;
    ``reason`` indexes :attr:`reason_names`. ``decode_rank`` is the DP rank within the decode
    instance (-1 if never admitted). ``series`` holds per-window arrays keyed by name
    (``t_s``, ``prefill_queue``, ``decode_pending``, ``decode_running``, ``kv_usage_decode``,
    ``output_tokens``); ``itl_s``/``itl_w`` are decode step gaps (s) weighted by active requests.
    """

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    generated: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    prefill_instance: np.ndarray
    decode_instance: np.ndarray
    decode_rank: np.ndarray
    recomputed: np.ndarray
    recomputed_tokens: np.ndarray
    cached_tokens: np.ndarray
    duration: float
    window_s: float
    series: dict[str, np.ndarray]
    itl_s: np.ndarray
    itl_w: np.ndarray
    prefix_cache_hit_rate: float | None = None
    reason_names: tuple[str, ...] = REASONS
    concurrency: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrival_s)


class Series:
    """Snapshots of queue depths, running requests and decode KV usage at each window boundary
    (every ``window_s`` s of simulated time)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.snap: dict[str, list] = {k: [] for k in (
            "prefill_queue", "decode_pending", "decode_running", "kv_usage_decode")}
        self.next_t = window_s      # time of the next snapshot (s)

    def take(self, P: list, D: list) -> None:
        s = self.snap
        s["prefill_queue"].append(sum(a.q.n - a.head for a in P))
        s["decode_pending"].append(sum(d.pending for d in D))
        s["decode_running"].append(float(sum(d.n.sum() for d in D)))
        cap = sum(d.cap_kv * d.R for d in D)
        s["kv_usage_decode"].append(float(sum(d.ctx.sum() for d in D)) / cap if cap < 1e17 else 0.0)
        self.next_t += self.window_s


def _close_requests(req, D: list, t: float) -> None:
    """At the end time ``t`` (s): decode requests whose booked last step ran complete; everything
    else still in flight fails ``unfinished``."""
    dec = np.flatnonzero(req.status == DECODING)
    if len(dec):
        inst = req.d_inst[dec]
        done = np.zeros(len(dec), dtype=bool)
        for d in D:
            m = inst == d.idx
            if not m.any():
                continue
            ids = dec[m]
            ok = req.fin[ids] < d.s
            ends = d.step_end.view()
            fi = ids[ok]
            req.finish[fi] = ends[req.fin[fi]]
            req.generated[fi] = req.out[fi]
            req.status[fi] = COMPLETED
            done[np.flatnonzero(m)[ok]] = True
            nf = ids[~ok]
            req.generated[nf] = np.minimum(
                req.gen_base[nf] + 1 + np.floor((d.s - req.adm[nf]) * d.tps).astype(np.int64),
                req.out[nf] - 1)
        left = dec[~done]
        req.status[left] = FAILED
        req.reason[left] = R_UNFINISHED
        req.finish[left] = t
    rest = np.flatnonzero((req.status != COMPLETED) & (req.status != FAILED))
    if len(rest):
        req.status[rest] = FAILED
        req.reason[rest] = R_UNFINISHED
        req.generated[rest] = req.gen_base[rest]
        req.finish[rest] = t


def _window_series(req, P: list, D: list, series: Series, nw: int):
    """Per-window arrays over ``nw`` windows, plus decode step gaps (s) and their weights."""
    while len(series.snap["prefill_queue"]) < nw:
        series.take(P, D)
    out = {k: np.asarray(v[:nw], dtype=float) for k, v in series.snap.items()}
    out["t_s"] = np.arange(nw) * series.window_s
    toks = np.zeros(nw)
    itl_s, itl_w = [], []
    for d in D:
        te, nn = d.step_end.view(), d.step_n.view()
        if len(te):
            wi = np.minimum((te / series.window_s).astype(np.int64), nw - 1)
            toks += np.bincount(wi, weights=nn * d.tps, minlength=nw)[:nw]
            itl_s.append(d.step_dt.view().copy())
            itl_w.append(nn)
    ft = req.first[np.isfinite(req.first)]
    if len(ft):
        toks += np.bincount(np.minimum((ft / series.window_s).astype(np.int64), nw - 1),
                            minlength=nw)[:nw]
    out["output_tokens"] = toks
    return (out, np.concatenate(itl_s) if itl_s else np.zeros(0),
            np.concatenate(itl_w) if itl_w else np.zeros(0))


def collect(req, P: list, D: list, series: Series, t: float, seed: int) -> SimResult:
    """Close out a run that stopped at ``t`` (s) into a :class:`SimResult`."""
    _close_requests(req, D, t)
    arr = np.where(np.isfinite(req.arr), req.arr, t)
    fin_ok = req.finish[req.status == COMPLETED]
    duration = float(max(fin_ok.max() if len(fin_ok) else 0.0, 0.0))
    if (req.status == FAILED).any():
        duration = max(duration, float(np.nanmax(req.finish)))
    nw = max(int(math.ceil(duration / series.window_s)), 1)
    windows, itl_s, itl_w = _window_series(req, P, D, series, nw)
    info = {"decode_steps": [int(d.s) for d in D],
            "tokens_per_step": [float(d.tps) for d in D],
            "decode_ranks": [int(d.R) for d in D],
            "batch_cap_per_rank": [int(d.cap_b) for d in D],
            "kv_tokens_per_rank": [float(d.cap_kv) for d in D],
            "prefill_instances": len(P), "seed": seed}
    return SimResult(
        arrival_s=arr, first_token_s=req.first, finish_s=req.finish, input_len=req.inp,
        output_len=req.out, generated=req.generated, status=req.status.copy(),
        reason=req.reason.copy(), prefill_instance=req.pf_inst, decode_instance=req.d_inst,
        decode_rank=req.d_rank, recomputed=req.recomp, recomputed_tokens=req.recomp_tok,
        cached_tokens=req.cached, duration=duration, window_s=series.window_s, series=windows,
        itl_s=itl_s, itl_w=itl_w, prefix_cache_hit_rate=req.hit_rate, concurrency=req.conc,
        info=info)
