"""The :class:`Workload` type (one NumPy array per request attribute, sorted by arrival) and the
array helpers its builders share: CSR gathers of prefix-block chains and block-id densification."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import XdsError

DEFAULT_BLOCK_TOKENS = 512  # Mooncake hash_ids block size (tokens)


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests of one workload, sorted by arrival.

    ``arrival_s`` float64 seconds since the workload start (ascending); ``input_len`` and
    ``output_len`` int64 tokens (>= 1). ``block_offsets``/``block_ids`` hold each request's prefix
    block chain in CSR form (request r owns ``block_ids[block_offsets[r]:block_offsets[r+1]]``), each
    block covering ``block_tokens`` prompt tokens. ``skipped`` counts rows the reader dropped
    (BurstGPT failed requests).
    """

    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    block_offsets: np.ndarray | None = None
    block_ids: np.ndarray | None = None
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    name: str = ""
    skipped: int = 0

    def __post_init__(self) -> None:
        # Internal consistency: these are programming errors, not user errors.
        n = len(self.arrival_s)
        if len(self.input_len) != n or len(self.output_len) != n:
            raise ValueError("arrival_s, input_len and output_len must have the same length")
        if (self.block_offsets is None) != (self.block_ids is None):
            raise ValueError("block_offsets and block_ids must be given together")
        if self.block_offsets is not None:
            if len(self.block_offsets) != n + 1 or self.block_offsets[-1] != len(self.block_ids):
                raise ValueError("block_offsets must have len n+1 and end at len(block_ids)")
        if n > 1 and bool(np.any(np.diff(self.arrival_s) < 0)):
            raise ValueError("arrival_s must be sorted ascending")

    def __len__(self) -> int:
        return int(len(self.arrival_s))

    @property
    def span_s(self) -> float:
        """Time from the first to the last arrival (s)."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) else 0.0

    @property
    def has_blocks(self) -> bool:
        return self.block_ids is not None

    def summary(self) -> dict:
        """Counts, span (s), mean arrival rate (req/s = requests / span) and length statistics
        (tokens: mean, p50, p90, p99, max; NumPy's linear percentiles)."""
        n = len(self)

        def stats(a: np.ndarray) -> dict:
            if n == 0:
                return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0}
            p50, p90, p99 = np.percentile(a, [50, 90, 99])
            return {"mean": float(a.mean()), "p50": float(p50), "p90": float(p90),
                    "p99": float(p99), "max": int(a.max())}

        span = self.span_s
        out = {
            "name": self.name,
            "requests": n,
            "skipped": int(self.skipped),
            "span_s": span,
            "rate_rps": (n / span) if span > 0 else 0.0,
            "total_input_tokens": int(self.input_len.sum()),
            "total_output_tokens": int(self.output_len.sum()),
            "input": stats(self.input_len),
            "output": stats(self.output_len),
        }
        if self.block_ids is not None:
            out["blocks"] = int(len(self.block_ids))
            out["unique_blocks"] = unique_count(self.block_ids)
            out["block_tokens"] = int(self.block_tokens)
        return out


def csr_take(offsets: np.ndarray, ids: np.ndarray,
             idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather CSR rows ``idx`` (any order, repeats allowed) into a new CSR pair (vectorized)."""
    lengths = np.diff(offsets)[idx]
    new_off = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    total = int(new_off[-1])
    if total == 0:
        return new_off, ids[:0].copy()
    # position j of the output reads ids[start_of_its_row + (j - new_start_of_its_row)]
    shift = np.repeat(offsets[:-1][idx] - new_off[:-1], lengths)
    return new_off, ids[np.arange(total, dtype=np.int64) + shift]


def head(w: Workload, k: int) -> Workload:
    """The first ``k`` requests (cheap slice, no gather)."""
    off = ids = None
    if w.block_ids is not None:
        off = w.block_offsets[: k + 1]
        ids = w.block_ids[: int(off[-1])]
    return Workload(w.arrival_s[:k], w.input_len[:k], w.output_len[:k], off, ids,
                    w.block_tokens, w.name, w.skipped)


def finish(arrival: np.ndarray, inp: np.ndarray, out: np.ndarray, *, name: str,
           skipped: int = 0) -> Workload:
    """A block-less workload from per-request columns: arrivals (s) shifted to start at 0, requests
    sorted stably by arrival (ties keep file order)."""
    arrival = np.asarray(arrival, dtype=np.float64)
    inp = np.asarray(inp, dtype=np.int64)
    out = np.asarray(out, dtype=np.int64)
    if len(arrival):
        arrival = arrival - arrival.min()
    if not is_sorted(arrival):
        order = np.argsort(arrival, kind="stable")
        arrival, inp, out = arrival[order], inp[order], out[order]
    return Workload(arrival, inp, out, name=name, skipped=skipped)


def is_sorted(a: np.ndarray) -> bool:
    """True when ``a`` is ascending (ties allowed)."""
    return len(a) < 2 or not bool(np.any(a[1:] < a[:-1]))


def dense_ids(ids: np.ndarray) -> np.ndarray:
    """Block ids as small non-negative ints usable as array indices. Mooncake ids are already
    dense (0..unique-1); sparse ids (e.g. raw 64-bit hashes) are remapped with a sort."""
    if len(ids) == 0 or int(ids.max()) < 8 * len(ids) + (1 << 20):
        return ids
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def unique_count(ids: np.ndarray) -> int:
    """Number of distinct block ids."""
    dense = dense_ids(ids)
    return int(np.count_nonzero(np.bincount(dense))) if len(dense) else 0


def check_positive(name: str, v: object) -> None:
    """Raise a located :class:`XdsError` unless ``v`` is a finite real number > 0 (bools are not
    numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise XdsError(f"{name} must be a finite number > 0 (got {v!r})", where=name)
