"""Expected MoE imbalance of a step from statistics: balancedness = E[max EP-rank load] / mean rank
load, given the token-expert pairs routed in the step, the long-run expert shares and the placement.

Every dispatch/combine waits for the busiest routed rank, so the MoE stage of a layer runs at the
*expected maximum* rank load of the step, not at the long-run one. Inputs:

* the step: ``S`` sequences per microbatch, each routing ``m`` token-expert pairs (decode: top_k x
  tokens per step incl. MTP drafts; prefill: top_k x prompt length); ``N = S·m`` pairs in total;
* the long-run shares ``s[l, e]`` and the per-sequence concentration ``kappa``
  (:mod:`xds.experts.skew`): an expert's count in the step has mean ``N s_e`` and variance
  ``phi N s_e`` (Poissonized: see below), ``phi = (m + kappa) / (1 + kappa)``;
* the placement ``phy2log`` [L, P]: slot ``p`` lives on rank ``p // (P / G)``; an expert with ``c``
  replicas has its tokens spread evenly over them (xDeepServe's gather-based map rotates replicas by
  token position, reference §F "token spreading"), so rank ``r`` carries ``w[r, e] = (replicas of e on
  r) / c_e`` of expert ``e``'s count.

Rank ``r``'s load then has mean ``N Σ_e w s`` and variance ``phi N Σ_e w² s``. Its marginal is taken as
a Gamma with those moments (the Dirichlet-multinomial's limit: exact shape for one expert per rank,
right-skewed at small counts) and the ranks as independent: the expected maximum is
``∫ (1 - Π_r F_r(x)) dx``, evaluated on a grid (Gamma CDF by the Wilson–Hilferty transform). Dropping the
multinomial's negative covariance ``-N s_e s_f`` is the Poissonization that keeps the expected maximum
exact in the normal limit: with a fixed total, every rank's load is its Poisson load minus a common
share of the total's excess, which shifts all ranks alike and leaves E[max] unchanged (two uniform
ranks: ``1 + sqrt(2 / (pi N))``, the binomial's exact large-N value). Deterministic, no sampling;
a few ms per layout of 8 layers x 320 ranks. Range: steps with at least about one token-expert pair per
rank (Gamma shape >= 1; every serving batch the search and ``xds estimate`` price); below that the
Wilson–Hilferty CDF loses accuracy and the discrete nature of a handful of pairs dominates.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .policies import balance
from .skew import DEFAULT_HOT, DEFAULT_KAPPA, long_run_shares, overdispersion

GRID = 96             # integration points per layer (trapezoid; < 1e-4 error in balancedness)
TAIL_SIGMAS = 8.0     # ranks whose mean + TAIL_SIGMAS·sd lies below the others' floor never hold the max

_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)   # A&S 7.1.26


def _phi_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7), vectorised."""
    z = np.clip(z, -9.0, 9.0)
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    half_erfc = 0.5 * poly * np.exp(-x * x)
    return np.where(z >= 0, 1.0 - half_erfc, half_erfc)


def _gamma_cdf(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """CDF at ``x`` of Gammas with the given mean and variance (Wilson–Hilferty), broadcast."""
    k = mean * mean / var
    c = 1.0 / (9.0 * k)
    y = np.cbrt(np.maximum(x, 0.0) / mean)
    return _phi_cdf((y - (1.0 - c)) / np.sqrt(c))


def expected_max(mean: np.ndarray, var: np.ndarray) -> float:
    """E[max_r X_r] for independent Gamma loads with means ``mean`` [G] and variances ``var`` [G]
    (any unit; zero-variance ranks are constants)."""
    mean = np.asarray(mean, dtype=float)
    var = np.asarray(var, dtype=float)
    const = var <= 1e-18 * np.maximum(mean, 1e-300) ** 2
    floor = float(mean[const].max()) if const.any() else 0.0
    sd = np.sqrt(np.where(const, 0.0, var))
    lo = max(floor, float(np.max(mean - TAIL_SIGMAS * sd)), 0.0)
    live = ~const & (mean + TAIL_SIGMAS * sd > lo) & (mean > 0)
    if not live.any():
        return max(floor, float(mean.max()))
    m, v = mean[live], var[live]
    hi = float(np.max(m + (TAIL_SIGMAS + 3.0) * np.sqrt(v)))
    if hi <= lo:
        return lo
    xs = np.linspace(lo, hi, GRID)
    logf = np.log(np.maximum(_gamma_cdf(xs[:, None], m[None, :], v[None, :]), 1e-300)).sum(axis=1)
    tail = 1.0 - np.exp(logf)                      # P(max > x) for x >= lo (all constants are <= lo)
    return lo + float(np.trapezoid(tail, xs))


def rank_moments(phy2log: np.ndarray, shares: np.ndarray, ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer and rank: ``Σ_e w s`` (the rank's long-run share of the layer's pairs) and
    ``Σ_e w² s`` (its Poisson variance per pair), both [L, G]; ``w[r, e]`` = replicas of ``e`` on rank
    ``r`` over replicas of ``e``."""
    phy = np.atleast_2d(np.asarray(phy2log, dtype=np.int64))
    s = np.atleast_2d(np.asarray(shares, dtype=float))
    L, P = phy.shape
    E = s.shape[1]
    lidx = np.repeat(np.arange(L), P)
    e = phy.ravel()
    reps = np.bincount(lidx * E + e, minlength=L * E)
    key = (lidx * ranks + np.tile(np.arange(P) // (P // ranks), L)) * E + e
    uk, cnt = np.unique(key, return_counts=True)        # (layer, rank, expert) with its replica count
    ue = uk % E
    ul = uk // (ranks * E)
    w = cnt / reps[ul * E + ue]
    sh = s[ul, ue]
    lr = uk // E                                       # layer * ranks + rank
    mu = np.bincount(lr, weights=w * sh, minlength=L * ranks).reshape(L, ranks)
    sq = np.bincount(lr, weights=w * w * sh, minlength=L * ranks).reshape(L, ranks)
    return mu, sq


def step_balancedness(phy2log: np.ndarray, shares: np.ndarray, ranks: int, sequences: float,
                      pairs_per_sequence: float, kappa: float = DEFAULT_KAPPA) -> float:
    """Expected max / mean routed-rank load of one step (averaged over layers: each layer waits for
    its own busiest rank) for ``sequences`` sequences of ``pairs_per_sequence`` token-expert pairs each."""
    mu, sq = rank_moments(phy2log, shares, ranks)
    n = max(float(sequences), 1e-9) * max(float(pairs_per_sequence), 1.0)
    phi = overdispersion(pairs_per_sequence, kappa)
    # units of the mean rank load N / G
    mean = mu * ranks
    var = sq * ranks * ranks * phi / n
    return float(np.mean([expected_max(mean[l], var[l]) for l in range(mean.shape[0])]))


@lru_cache(maxsize=256)
def expert_layout(experts: int, slots: int, ranks: int, hot_ratio: float = DEFAULT_HOT) -> tuple[np.ndarray, np.ndarray]:
    """xds's balancer's slot map ``phy2log`` for the default long-run shares with the most skewed
    layer at ``hot_ratio``, and those shares (cached)."""
    shares = long_run_shares(experts, hot_ratio)
    return balance(shares * 1e6, slots, ranks).phy2log, shares


@lru_cache(maxsize=1024)
def expected_balancedness(experts: int, slots: int, ranks: int, sequences: float, pairs_per_sequence: float,
                          hot_ratio: float = DEFAULT_HOT, kappa: float = DEFAULT_KAPPA) -> float:
    """Balancedness xds's balancer achieves for ``slots`` slots on ``ranks`` EP ranks under the default
    statistics, for steps of ``sequences`` sequences x ``pairs_per_sequence`` pairs (cached)."""
    phy, shares = expert_layout(experts, slots, ranks, hot_ratio)
    return max(step_balancedness(phy, shares, ranks, sequences, pairs_per_sequence, kappa), 1.0)
