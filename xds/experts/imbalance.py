"""Expected MoE imbalance (balancedness = max EP-rank load / mean) under realistic expert loads.

Why batches matter: a layout is balanced for the long-run expert popularity, but every iteration
routes one batch, and the tokens of one sequence concentrate on a subset of experts. So the load a
batch puts on each expert fluctuates around the long-run share with an effective sample size of
``sequences × KAPPA`` rather than the token count. Large decode batches (thousands of requests) see
nearly the long-run load; a prefill microbatch of a few dozen long prompts sees much more skew, which
is why CloudMatrix-Infer's measured prefill (default EPLB) runs ≈15 % below perfect balance
(reference §C.1) while its decode barely notices.

Model (documented assumptions, used by ``--eplb default`` and by plans without measured loads):
* long-run shares: Zipf per layer, the hottest expert between ``HOT_MIN``× and ``hot_ratio``× the
  mean across layers. Reference §F's "hottest expert ≈ 30× the mean" is a per-window snapshot of one
  layer; snapshots include the batch fluctuation modelled below, so the long-run skew is lower. The
  default ``DEFAULT_HOT`` = 6× (with ``KAPPA``) is the value under which one model reproduces both the
  published decode figures (one expert per die, EP320) and the ≈15 % prefill default-vs-perfect gap;
  plans with measured load statistics should use them instead (``balancing.loads``);
* the layout: xds's own balancer (:func:`xds.experts.balance`) on those shares;
* per-batch loads: Gamma(sequences × KAPPA × share) per expert (a Dirichlet-multinomial limit).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .layout import balancedness
from .loads import synthetic_loads
from .policies import balance

HOT_MIN = 1.5
DEFAULT_HOT = 6.0
KAPPA = 32.0
LAYERS = 8
DRAWS = 8


@lru_cache(maxsize=64)
def long_run_shares(experts: int, hot_ratio: float = DEFAULT_HOT, layers: int = LAYERS, seed: int = 0) -> np.ndarray:
    """Long-run expert shares [layers, experts] (rows sum to 1), hottest expert per layer log-spaced
    between ``HOT_MIN``× and ``hot_ratio``× the mean."""
    hot = np.geomspace(min(HOT_MIN, hot_ratio), hot_ratio, layers)
    rows = [synthetic_loads(1, experts, hot_ratio=float(min(h, experts - 1e-6)), seed=seed + i,
                            tokens=1 << 22) for i, h in enumerate(hot)]
    w = np.concatenate(rows).astype(float)
    return w / w.sum(axis=1, keepdims=True)


def batch_balancedness(phy2log: np.ndarray, shares: np.ndarray, ranks: int, sequences: float,
                       *, draws: int = DRAWS, seed: int = 0) -> float:
    """Mean balancedness of a layout over sampled batches of ``sequences`` sequences."""
    rng = np.random.default_rng(seed)
    n_eff = max(float(sequences), 1.0) * KAPPA
    shape = np.broadcast_to(n_eff * shares, (draws,) + shares.shape)
    loads = rng.gamma(shape)
    ph = np.broadcast_to(phy2log, (draws,) + phy2log.shape).reshape(-1, phy2log.shape[-1])
    return float(balancedness(np.ascontiguousarray(ph), loads.reshape(-1, shares.shape[-1]), ranks).mean())


@lru_cache(maxsize=512)
def expected_balancedness(experts: int, slots: int, ranks: int, sequences: float,
                          hot_ratio: float = DEFAULT_HOT) -> float:
    """Balancedness xds's balancer achieves for ``slots`` slots on ``ranks`` EP ranks, averaged over
    layers and over batches of ``sequences`` sequences (cached)."""
    shares = long_run_shares(experts, hot_ratio)
    lay = balance(shares * 1e6, slots, ranks)
    return batch_balancedness(lay.phy2log, shares, ranks, round(sequences, 1))
