"""Balanced P/D pool sizing: how many prefill and decode instances a workload's rate and *length
distribution* need so that neither pool idles (used by ``xds plan --search`` and ``xds size``).

Mechanisms (no fitted knobs):

* **Decode, Little's law.** A decode instance holding a mean batch of ``b`` requests per DP rank
  emits ``thr(b) × chips`` tokens/s, so it completes ``thr(b) × chips / E[O]`` requests/s. We size
  to a mean batch of ``DECODE_FILL`` × the batch cap the layout was priced at (the cap absorbs the
  Poisson fluctuation above the mean; the remaining ``1 - DECODE_FILL`` is that headroom).
* **Length-biased decode context.** A request stays in the decode batch for a time ∝ its output
  length, so the batch's mean context is ``E[O·(I + O/2)] / E[O]``, not ``E[I] + E[O]/2``: decode is
  priced at ``I_d = E[O·I]/E[O]`` input and ``O_d = E[O²]/E[O]`` output tokens (equal to the means
  for fixed lengths). Long-output requests dominate what the batch holds.
* **Prefill, queueing at the TTFT percentile.** A prefill instance runs batches of its token budget
  in ``T`` ms; a prompt at the SLO percentile needs ``ceil(I_p / budget)`` batches, and the wait for
  the batch in front is, in the heavy-traffic (Kingman) approximation for a single deterministic
  server, exponential with mean ``ρ T / (2 (1 - ρ))``, so its p-quantile is that mean times
  ``ln(ρ / (1 - p))``. The highest utilisation ρ whose TTFT_p stays within the target sets how much
  of an instance's full-batch throughput the pool may plan on.

Units: tokens, req/s, ms; throughput in tokens/s (per chip where named so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DECODE_FILL = 0.9     # target mean decode batch / priced batch cap (the rest absorbs fluctuation)
MAX_PREFILL_UTIL = 0.95


@dataclass(frozen=True)
class LengthStats:
    """What pool sizing needs of a length distribution (tokens): means, the input length at the SLO
    percentile, the length-biased decode lengths (module docstring) and the rate (req/s, None when
    the workload has no timestamps)."""

    input_mean: float
    output_mean: float
    input_pct: float
    decode_input: float
    decode_output: float
    percentile: float = 99.0
    rate_rps: float | None = None

    @classmethod
    def of(cls, input_len: np.ndarray, output_len: np.ndarray, *, percentile: float = 99.0,
           rate_rps: float | None = None) -> "LengthStats":
        """Statistics of per-request lengths (tokens)."""
        i = np.asarray(input_len, dtype=float)
        o = np.asarray(output_len, dtype=float)
        eo = float(o.mean())
        return cls(input_mean=float(i.mean()), output_mean=eo,
                   input_pct=float(np.percentile(i, percentile)),
                   decode_input=float((o * i).mean() / eo), decode_output=float((o * o).mean() / eo),
                   percentile=float(percentile), rate_rps=rate_rps)

    @classmethod
    def fixed(cls, input_len: float, output_len: float, *, percentile: float = 99.0) -> "LengthStats":
        """Every request ``input_len`` in / ``output_len`` out."""
        I, O = float(input_len), float(output_len)
        return cls(I, O, I, I, O, float(percentile))

    def to_json(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def decode_rate_at(batch: np.ndarray, thr_per_chip: np.ndarray, chips: int, output_mean: float,
                   at_batch: float) -> float:
    """Requests/s one decode instance completes at a mean batch of ``at_batch`` requests per DP rank,
    from its priced throughput curve ``thr_per_chip(batch)`` (tokens/s/chip; linear in between)."""
    thr = float(np.interp(at_batch, batch, thr_per_chip))
    return thr * chips / output_mean


def prefill_util(t_batch_ms: float, chunks: int, ttft_ms: float, percentile: float) -> float:
    """Highest utilisation ρ of a prefill instance (full batch ``t_batch_ms``; the SLO-percentile
    prompt needs ``chunks`` batches) whose TTFT at ``percentile`` meets ``ttft_ms`` (module
    docstring); 0 when even an idle instance misses it."""
    base = t_batch_ms * chunks
    if base > ttft_ms:
        return 0.0
    p = percentile / 100.0

    def ttft(rho: float) -> float:
        wait = rho * t_batch_ms / (2.0 * (1.0 - rho)) * max(math.log(rho / (1.0 - p)), 0.0)
        return base + wait

    lo, hi = 0.0, MAX_PREFILL_UTIL
    if ttft(hi) <= ttft_ms:
        return hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ttft(mid) <= ttft_ms else (lo, mid)
    return lo


def prefill_rate(cand: dict, lengths: LengthStats, ttft_ms: float) -> tuple[float, float]:
    """(requests/s one prefill instance ``cand`` serves within the TTFT target, its utilisation).
    ``cand`` is a search prefill candidate: ``chips``, ``dies``, ``token_budget_per_die``,
    ``ttft_full_batch_ms``, ``input_throughput_per_chip``."""
    budget = cand["token_budget_per_die"] * cand["dies"]
    chunks = max(1, math.ceil(lengths.input_pct / budget))
    rho = prefill_util(cand["ttft_full_batch_ms"], chunks, ttft_ms, lengths.percentile)
    return rho * cand["input_throughput_per_chip"] * cand["chips"] / lengths.input_mean, rho


def best_prefill(cands: list[dict], lengths: LengthStats, ttft_ms: float) -> dict | None:
    """The prefill candidate with the most requests/s per chip within the TTFT target (with its
    ``rate_rps`` and ``utilisation``), or None when none meets it."""
    best, best_v = None, 0.0
    for c in cands:
        r, rho = prefill_rate(c, lengths, ttft_ms)
        if r / c["chips"] > best_v:
            best, best_v = {**c, "rate_rps": r, "utilisation": rho}, r / c["chips"]
    return best


def pool_counts(rate_rps: float, decode_rps: float, prefill_rps: float) -> tuple[int, int]:
    """(prefill, decode) instances whose capacities cover ``rate_rps``: each pool
    ``ceil(rate / per-instance rate)``, at least 1."""
    n_p = max(1, math.ceil(rate_rps / prefill_rps - 1e-9))
    n_d = max(1, math.ceil(rate_rps / decode_rps - 1e-9))
    return n_p, n_d
