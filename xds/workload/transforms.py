"""Workload transforms: rate scaling (time compression), truncation and looping a trace to a
duration. Each returns a new :class:`Workload`; arrays are shared where nothing changes."""

from __future__ import annotations

import math

import numpy as np

from ..errors import XdsError
from .core import Workload, check_positive, head


def rate_scale(w: Workload, x: float) -> Workload:
    """Compress time by ``x``: arrivals / x, so the offered rate is multiplied by x (x > 0)."""
    check_positive("rate_scale", x)
    return Workload(w.arrival_s / float(x), w.input_len, w.output_len, w.block_offsets,
                    w.block_ids, w.block_tokens, w.name, w.skipped)


def truncate(w: Workload, *, requests: int | None = None,
             duration_s: float | None = None) -> Workload:
    """Keep the first ``requests`` requests and/or those arriving before ``duration_s`` (s)."""
    k = len(w)
    if duration_s is not None:
        k = min(k, int(np.searchsorted(w.arrival_s, duration_s, side="left")))
    if requests is not None:
        k = min(k, int(requests))
    return w if k == len(w) else head(w, k)


def loop_to_duration(w: Workload, duration_s: float) -> Workload:
    """Repeat the trace to fill ``duration_s`` seconds, truncated at ``duration_s``.

    Repetition k is shifted by k * (span + mean inter-arrival gap), so the seam between two loops
    looks like an ordinary gap. Prefix block ids are kept as they are: a looped trace replays the
    same conversations, so a later loop hitting blocks of an earlier one is real reuse (a prefix
    cache large enough to hold a whole loop will see a higher hit rate on looped traces).
    """
    check_positive("duration_s", duration_s)
    n = len(w)
    if n == 0:
        raise XdsError("cannot loop an empty workload", where="duration_s")
    if n < 2 or w.span_s <= 0:
        raise XdsError("cannot loop a workload whose requests all arrive at once (span 0 s)",
                       where="duration_s")
    start = float(w.arrival_s[0])
    span = w.span_s
    period = span + span / (n - 1)
    if start + span >= duration_s:
        return truncate(w, duration_s=duration_s)
    needed = ((duration_s - start) / period + 1.0) * n
    if needed > 200_000_000:
        raise XdsError(f"looping to {duration_s:g} s needs ~{needed:.3g} requests; at most "
                       "200,000,000 are supported", where="duration_s")
    reps = int(math.ceil((duration_s - start) / period)) + 1
    arrival = (w.arrival_s[None, :] + (np.arange(reps, dtype=np.float64) * period)[:, None]).ravel()
    k = int(np.searchsorted(arrival, duration_s, side="left"))
    arrival = arrival[:k]
    full, rest = divmod(k, n)
    off = ids = None
    if w.block_ids is not None:
        lengths = np.diff(w.block_offsets)
        all_len = np.concatenate([np.tile(lengths, full), lengths[:rest]])
        off = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(all_len, out=off[1:])
        ids = np.concatenate([np.tile(w.block_ids, full), w.block_ids[: w.block_offsets[rest]]])

    def rep(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.tile(a, full), a[:rest]])

    return Workload(arrival, rep(w.input_len), rep(w.output_len), off, ids, w.block_tokens,
                    w.name, w.skipped)
