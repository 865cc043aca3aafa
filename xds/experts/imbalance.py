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
``∫ (1 - Π_r F_r(x)) dx``, evaluated by Gauss–Legendre quadrature (Gamma CDF by the Wilson–Hilferty transform). Dropping the
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

NODES = 48            # Gauss–Legendre nodes per layer (3e-5 from a 96-point trapezoid; < 1e-4 error)
TAIL_SIGMAS = 8.0     # ranks whose mean + TAIL_SIGMAS·sd lies below the others' floor never hold the max

_GL_X, _GL_W = np.polynomial.legendre.leggauss(NODES)
_WORK = np.float32    # the [rows, nodes, ranks] pass: 1e-7 relative is far below the 1e-4 target

_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)   # A&S 7.1.26


def _phi_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7), vectorised."""
    z = np.minimum(np.maximum(z, -9.0), 9.0)      # Φ(±9) is 0 / 1 to double precision
    x = np.abs(z) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    half_erfc = 0.5 * poly * np.exp(-x * x)
    return np.where(z >= 0, 1.0 - half_erfc, half_erfc)


def expected_max_rows(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """E[max_r X_r] per row for independent Gamma loads with means ``mean`` [R, G] and variances
    ``var`` [R, G] (any unit; zero-variance ranks are constants), all rows in one array pass.

    Per row the integral runs from ``lo`` (the floor no rank can be below with any weight: the
    largest constant, or the largest ``mean - TAIL_SIGMAS·sd``) to ``hi`` (``TAIL_SIGMAS + 3`` sds
    above the highest live mean) by ``NODES``-point Gauss–Legendre; ranks that cannot reach ``lo``
    contribute ``F = 1`` and are masked out."""
    mean = np.atleast_2d(np.asarray(mean, dtype=float))
    var = np.atleast_2d(np.asarray(var, dtype=float))
    const = var <= 1e-18 * np.maximum(mean, 1e-300) ** 2
    floor = np.where(const, mean, 0.0).max(axis=1)
    sd = np.sqrt(np.where(const, 0.0, var))
    lo = np.maximum(np.maximum(floor, np.max(mean - TAIL_SIGMAS * sd, axis=1)), 0.0)
    live = ~const & (mean + TAIL_SIGMAS * sd > lo[:, None]) & (mean > 0)
    hi = np.where(live, mean + (TAIL_SIGMAS + 3.0) * sd, -np.inf).max(axis=1)
    out = np.where(live.any(axis=1), lo, np.maximum(floor, mean.max(axis=1)))
    rows = np.flatnonzero(live.any(axis=1) & (hi > lo))
    if rows.size == 0:
        return out
    lv = live[rows]
    m = np.where(lv, mean[rows], 1.0)                  # masked ranks: any finite moments (slope 0 below)
    v = np.where(lv, var[rows], 1.0)
    a, b = lo[rows], hi[rows]
    half = 0.5 * (b - a)
    xs = (a + half)[:, None] + half[:, None] * _GL_X[None, :]                        # [R, N]
    # Wilson–Hilferty: z = (cbrt(x / m) - (1 - c)) / sqrt(c), c = v / (9 m²); cbrt(x) is taken once
    # per node and the per-rank scale folded into a slope and an offset (the [R, N, G] pass has no cbrt)
    c = v / (9.0 * m * m)
    slope = np.where(lv, 1.0 / (np.cbrt(m) * np.sqrt(c)), 0.0)
    offset = np.where(lv, (1.0 - c) / np.sqrt(c), -9.0)    # masked ranks: z = 9, log F = 0
    # z is a difference of two large numbers when a rank's sd is small: form it in float64, then run
    # the transcendental part in float32
    z = (np.cbrt(xs)[:, :, None] * slope[:, None, :] - offset[:, None, :]).astype(_WORK)
    logf = np.log(_phi_cdf(z)).sum(axis=2, dtype=float)
    tail = 1.0 - np.exp(logf)                          # P(max > x) for x >= lo (all constants are <= lo)
    out[rows] = a + half * (tail @ _GL_W)
    return out


def expected_max(mean: np.ndarray, var: np.ndarray) -> float:
    """E[max_r X_r] for independent Gamma loads with means ``mean`` [G] and variances ``var`` [G]
    (one row of :func:`expected_max_rows`)."""
    return float(expected_max_rows(np.asarray(mean, dtype=float)[None, :],
                                   np.asarray(var, dtype=float)[None, :])[0])


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


def step_balancedness_many(phy2log: np.ndarray, shares: np.ndarray, ranks: int, sequences,
                           pairs_per_sequence: float, kappa: float = DEFAULT_KAPPA) -> np.ndarray:
    """:func:`step_balancedness` for each entry of ``sequences`` (one placement; the rank moments are
    computed once and every (sequence count, layer) row is integrated in one pass)."""
    mu, sq = rank_moments(phy2log, shares, ranks)
    seqs = np.atleast_1d(np.asarray(sequences, dtype=float))
    n = np.maximum(seqs, 1e-9) * max(float(pairs_per_sequence), 1.0)
    phi = overdispersion(pairs_per_sequence, kappa)
    # units of the mean rank load N / G
    mean = np.broadcast_to(mu * ranks, (len(seqs),) + mu.shape)
    var = (sq * ranks * ranks * phi)[None, :, :] / n[:, None, None]
    L, G = mu.shape
    em = expected_max_rows(mean.reshape(-1, G), var.reshape(-1, G)).reshape(len(seqs), L)
    return em.mean(axis=1)


def step_balancedness(phy2log: np.ndarray, shares: np.ndarray, ranks: int, sequences: float,
                      pairs_per_sequence: float, kappa: float = DEFAULT_KAPPA) -> float:
    """Expected max / mean routed-rank load of one step (averaged over layers: each layer waits for
    its own busiest rank) for ``sequences`` sequences of ``pairs_per_sequence`` token-expert pairs each."""
    return float(step_balancedness_many(phy2log, shares, ranks, [sequences], pairs_per_sequence, kappa)[0])


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
