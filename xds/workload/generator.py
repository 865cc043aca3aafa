"""Synthetic workloads: renewal arrival processes (Poisson or Gamma gaps) and token lengths drawn
from a :class:`~xds.spec.workload.LengthDist` (fixed, uniform, lognormal or resampled from a CSV
column). Vectorized and deterministic for a seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import XdsError
from ..spec.workload import MAX_INPUT_LEN, MAX_OUTPUT_LEN, MAX_REQUESTS, LengthDist
from ..spec.yamlio import validate
from .core import Workload, check_positive
from .csvtable import header_of, read_int_column
from .lines import resolve

# Columns an empirical length file may hold, in the order they are looked for (length CSV,
# Azure, BurstGPT, Mooncake-style names).
LENGTH_INPUT_COLUMNS = ("num_prefill_tokens", "ContextTokens", "Request tokens", "input_length")
LENGTH_OUTPUT_COLUMNS = ("num_decode_tokens", "GeneratedTokens", "Response tokens", "output_length")


def arrival_times(rng: np.random.Generator, n: int | None, duration_s: float | None,
                  rate_rps: float, arrival: str, cv: float) -> np.ndarray:
    """Arrival times (s) of a renewal process with mean gap 1/rate_rps: exponential gaps
    (Poisson) or Gamma gaps with shape 1/cv^2 (CV of the gaps = cv). The first request arrives
    after one gap. With ``duration_s`` only arrivals < duration_s are kept."""
    check_positive("rate_rps", rate_rps)
    check_positive("cv", cv)
    if arrival not in ("poisson", "gamma"):
        raise XdsError(f"unknown arrival process {arrival!r}; allowed: poisson, gamma",
                       where="arrival")
    if arrival == "poisson" and cv != 1.0:
        raise XdsError(f"a Poisson process has cv 1 (got {cv}); use arrival: gamma for other "
                       "burstiness", where="cv")
    mean_gap = 1.0 / rate_rps

    def gaps(k: int) -> np.ndarray:
        if arrival == "poisson":
            return rng.exponential(mean_gap, size=k)
        shape = 1.0 / (cv * cv)
        return rng.gamma(shape, mean_gap / shape, size=k)

    if n is not None:
        t = np.cumsum(gaps(n))
        if duration_s is not None:
            t = t[t < duration_s]
        return t
    assert duration_s is not None
    expected = rate_rps * duration_s
    if expected > 50_000_000:
        raise XdsError(f"rate_rps x duration_s asks for ~{expected:,.0f} requests; at most "
                       "50,000,000 are supported", where="duration_s")
    # draw a little more than expected; top up in chunks in the rare case it is not enough
    chunk = int(expected + 8 * math.sqrt(expected + 1) * max(cv, 1.0) + 64)
    parts = [np.cumsum(gaps(chunk))]
    while parts[-1][-1] < duration_s:
        parts.append(parts[-1][-1] + np.cumsum(gaps(chunk)))
    t = np.concatenate(parts)
    return t[t < duration_s]


def _as_dist(d: LengthDist | dict | int, label: str) -> LengthDist:
    if isinstance(d, LengthDist):
        return d
    if isinstance(d, bool):
        raise XdsError(f"{label} must be a length distribution", where=label)
    if isinstance(d, (int, np.integer)):
        return LengthDist(dist="fixed", value=int(d))
    if isinstance(d, dict):
        return validate(LengthDist, d, file="synthetic()", where_prefix=label)
    raise XdsError(f"{label} must be a length distribution mapping like "
                   "{dist: lognormal, mean: 1000, sigma: 1}", where=label)


def _sample_lengths(rng: np.random.Generator, d: LengthDist, n: int, *, label: str, hi: int,
                    base_dir: Path | None, rows: dict) -> np.ndarray:
    """``n`` lengths (int64 tokens, at most ``hi``) drawn from ``d``; ``rows`` remembers the row
    draws of empirical files so input and output resample the same rows."""
    if d.dist == "fixed":
        if d.value > hi:
            raise XdsError(f"value {d.value:,} exceeds the limit of {hi:,} tokens", where=label)
        return np.full(n, d.value, dtype=np.int64)
    if d.dist == "uniform":
        if d.high > hi:
            raise XdsError(f"high {d.high:,} exceeds the limit of {hi:,} tokens", where=label)
        return rng.integers(d.low, d.high, size=n, endpoint=True, dtype=np.int64)
    if d.dist == "lognormal":
        mu = math.log(d.mean) - 0.5 * d.sigma**2  # so that E[X] = mean
        x = np.rint(rng.lognormal(mu, d.sigma, size=n))
        if d.low is not None or d.high is not None:
            x = np.clip(x, d.low or 1, d.high or hi)  # explicit, user-requested clipping
        x = np.maximum(x, 1)  # a request has at least one token
        if n and x.max() > hi:
            raise XdsError(f"lognormal(mean={d.mean}, sigma={d.sigma}) drew {x.max():,.0f} tokens, "
                           f"above the limit of {hi:,}; set high to cap it", where=label)
        return x.astype(np.int64)
    # empirical
    path = resolve(d.file, base_dir, what="length file")
    column = d.column
    if column is None:
        column = _default_length_column(path, output=(label.endswith("output")))
    pool = read_int_column(path, column, lo=1, hi=hi)
    # Reuse the same row draws for input and output from one file so their correlation survives.
    key = (str(path.resolve()), len(pool))
    idx = rows.get(key)
    if idx is None:
        idx = rng.integers(0, len(pool), size=n)
        rows[key] = idx
    return pool[idx]


def _default_length_column(path: Path, *, output: bool) -> str:
    cols = header_of(path)
    options = LENGTH_OUTPUT_COLUMNS if output else LENGTH_INPUT_COLUMNS
    for c in options:
        if c in cols:
            return c
    raise XdsError(f"no {'output' if output else 'input'} length column found (looked for "
                   f"{', '.join(options)}); set column", file=str(path), where="line 1")


def synthetic(*, rate_rps: float, input: LengthDist | dict | int, output: LengthDist | dict | int,
              requests: int | None = None, duration_s: float | None = None,
              arrival: str = "poisson", cv: float = 1.0, seed: int = 0,
              base_dir: Path | None = None, name: str = "synthetic") -> Workload:
    """Generate a synthetic workload (vectorized, deterministic for a seed).

    Arrivals: renewal process at ``rate_rps`` req/s, ``poisson`` (exponential gaps) or ``gamma``
    (gap CV = ``cv``, shape 1/cv^2). Size: ``requests`` (count), ``duration_s`` (s; arrivals in
    [0, duration_s)), or both (count, then truncated at the duration). Lengths: ``input`` / ``output``
    are :class:`LengthDist` (or a mapping, or an int for a fixed length). The random stream is
    ``numpy.random.Generator(PCG64(seed))``: arrivals first, then input, then output lengths.
    """
    if requests is None and duration_s is None:
        raise XdsError("a synthetic workload needs requests or duration_s", where="requests")
    if requests is not None and (isinstance(requests, bool) or int(requests) != requests
                                 or not 1 <= requests <= MAX_REQUESTS):
        raise XdsError(f"requests must be a whole number in [1, {MAX_REQUESTS:,}] (got {requests!r})",
                       where="requests")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise XdsError(f"duration_s must be a finite number > 0 (got {duration_s!r})",
                       where="duration_s")
    din, dout = _as_dist(input, "input"), _as_dist(output, "output")
    rng = np.random.Generator(np.random.PCG64(seed))
    t = arrival_times(rng, None if requests is None else int(requests), duration_s, rate_rps,
                      arrival, cv)
    n = len(t)
    rows: dict = {}
    inp = _sample_lengths(rng, din, n, label="input", hi=MAX_INPUT_LEN, base_dir=base_dir,
                          rows=rows)
    out = _sample_lengths(rng, dout, n, label="output", hi=MAX_OUTPUT_LEN, base_dir=base_dir,
                          rows=rows)
    return Workload(t, inp, out, name=name)
