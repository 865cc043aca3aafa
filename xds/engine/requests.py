"""Per-request state of a run: one NumPy array per quantity, indexed by request id (workload
order), plus the completion count and the closed-loop arrival release.

Units: seconds (s) for times, tokens for lengths.
"""

from __future__ import annotations

import numpy as np

from ..errors import XdsError
from ..workload import Workload, prefix_cache_stats
from .result import COMPLETED, FAILED, R_KV, R_RETRIES, WAITING


class Grow:
    """Append-only NumPy array with amortised doubling (request-id queues, per-step records)."""

    def __init__(self, dtype, cap: int = 1024):
        self.a = np.empty(cap, dtype=dtype)
        self.n = 0

    def extend(self, x: np.ndarray) -> None:
        k = len(x)
        if self.n + k > len(self.a):
            new = np.empty(max(2 * len(self.a), self.n + k), dtype=self.a.dtype)
            new[: self.n] = self.a[: self.n]
            self.a = new
        self.a[self.n: self.n + k] = x
        self.n += k

    def append(self, v) -> None:
        if self.n == len(self.a):
            new = np.empty(2 * len(self.a), dtype=self.a.dtype)
            new[: self.n] = self.a[: self.n]
            self.a = new
        self.a[self.n] = v
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[: self.n]


def _prefix_cache(placed, w: Workload) -> tuple[np.ndarray, float | None]:
    """Leading prompt tokens served from the prefix cache per request, and the hit rate (None
    without a cache or block hashes)."""
    cap_gb = float(placed.spec.prefix_cache.capacity_gb)
    if cap_gb > 0 and w.has_blocks:
        blocks = int(cap_gb * 1e9 // (placed.kv_bytes_per_token * w.block_tokens))
        st = prefix_cache_stats(w, blocks)
        return st.cached_tokens.astype(np.int64), float(st.hit_rate)
    return np.zeros(len(w), dtype=np.int64), None


class Requests:
    """State of the N requests of ``w`` on ``placed``; ``concurrency`` is the closed-loop number of
    requests in flight (None: open loop, the workload's arrival times)."""

    def __init__(self, w: Workload, placed, concurrency: int | None, max_retries: int):
        self.max_retries = int(max_retries)
        N = len(w)
        if N == 0:
            raise XdsError("the workload has no requests", where="workload")
        if concurrency is not None and (int(concurrency) != concurrency or concurrency < 1):
            raise XdsError(f"must be a whole number >= 1 (got {concurrency})", file="--concurrency")
        self.N = N
        self.conc = None if concurrency is None else int(min(concurrency, N))
        self.inp = np.asarray(w.input_len, dtype=np.int64)
        self.out = np.asarray(w.output_len, dtype=np.int64)
        self.arr = np.array(w.arrival_s, dtype=np.float64)
        self.cached, self.hit_rate = _prefix_cache(placed, w)
        self.status = np.zeros(N, dtype=np.int8)
        self.reason = np.zeros(N, dtype=np.int8)
        self.first = np.full(N, np.nan)
        self.finish = np.full(N, np.nan)
        self.generated = np.zeros(N, dtype=np.int64)
        self.gen_base = np.zeros(N, dtype=np.int64)      # tokens generated before this attempt
        self.pre = self.inp - self.cached                # tokens to prefill this attempt
        self.pre_ctx0 = self.cached.copy()               # context already present (cached)
        self.pf_done = np.zeros(N, dtype=np.int64)
        self.pf_inst = np.full(N, -1, dtype=np.int16)
        self.d_inst = np.full(N, -1, dtype=np.int16)
        self.d_rank = np.full(N, -1, dtype=np.int32)
        self.adm = np.zeros(N, dtype=np.int64)          # decode step of admission
        self.fin = np.full(N, -1, dtype=np.int64)       # decode step of the last token (booked)
        self.ready = np.zeros(N)                        # KV arrived at the decode instance (s)
        self.retries = np.zeros(N, dtype=np.int16)
        self.recomp = np.zeros(N, dtype=np.int16)
        self.recomp_tok = np.zeros(N, dtype=np.int64)
        self.done = 0
        self.n_rel = N                                  # requests released to arrive so far

    def fail_oversized(self, cap_kv: float) -> None:
        """Requests whose KV (prompt + output tokens) exceeds ``cap_kv`` tokens can never fit one
        decode rank: they fail ``kv_too_large`` up front."""
        too_big = (self.inp + self.out).astype(float) > cap_kv
        if too_big.any():
            ids = np.flatnonzero(too_big)
            self.fail(ids, R_KV, 0.0, count=False)
            self.finish[ids] = self.arr[ids]       # fails as it arrives, not before (closed loop: re-set at release)

    def start_arrivals(self, ramp_s: float | None) -> None:
        """Closed loop (``ramp_s`` given): release the first ``conc`` requests staggered over
        ``ramp_s`` s; the rest arrive as slots free up."""
        if self.conc is None:
            self.n_rel = self.N
            return
        self.arr[:] = np.inf
        self.arr[: self.conc] = np.arange(self.conc) * (ramp_s / self.conc)
        self.n_rel = self.conc

    def arrive(self, lo: int, hi: int, t: float) -> np.ndarray:
        """Requests ``lo..hi-1`` arrive at ``t`` (s); returns those still waiting (the others
        failed up front but, in a closed loop, still used a slot)."""
        ids = np.arange(lo, hi, dtype=np.int64)
        waiting = self.status[ids] == WAITING
        if self.conc is not None and not waiting.all():
            gone = ids[~waiting]
            self.finish[gone] = np.maximum(self.arr[gone], 0.0)
            self.release(len(gone), t)
        return ids[waiting]

    def release(self, k: int, t: float) -> None:
        """Closed loop: ``k`` slots freed at ``t`` (s) let the next ``k`` requests arrive."""
        j = min(self.n_rel + k, self.N)
        # a slot freed during the initial ramp must not issue before the ramp's later starts:
        # arrivals stay sorted (admission relies on it) and first token never precedes arrival
        self.arr[self.n_rel: j] = max(t, float(self.arr[self.n_rel - 1])) if self.n_rel else t
        self.n_rel = j

    def finished(self, k: int, t: float) -> None:
        """``k`` requests completed at ``t`` (s)."""
        self.done += k
        if self.conc is not None:
            self.release(k, t)

    def complete(self, ids: np.ndarray, t: float) -> None:
        """``ids`` produce their first and last token at ``t`` (s) (single-token outputs)."""
        self.first[ids] = np.where(np.isnan(self.first[ids]), t, self.first[ids])
        self.finish[ids] = t
        self.generated[ids] = self.out[ids]
        self.status[ids] = COMPLETED
        self.finished(len(ids), t)

    def fail(self, ids: np.ndarray, code: int, t: float, *, count: bool = True) -> None:
        """``ids`` fail with reason ``code`` at ``t`` (s); ``count=False``: no closed-loop slot."""
        if len(ids) == 0:
            return
        self.status[ids] = FAILED
        self.reason[ids] = code
        self.finish[ids] = t
        self.generated[ids] = self.gen_base[ids]
        self.done += len(ids)
        if self.conc is not None and count:
            self.release(len(ids), t)

    def retry(self, ids: np.ndarray, t: float) -> np.ndarray:
        """Count one more attempt for ``ids``; those over the retry limit fail
        ``retries_exhausted`` at ``t`` (s). Returns the rest."""
        self.retries[ids] += 1
        over = self.retries[ids] > self.max_retries
        self.fail(ids[over], R_RETRIES, t)
        return ids[~over]
