"""Expert popularity (long-run shares per layer) and its per-step overdispersion: the defaults, their
derivation from reference §F, and the fit from a user's expert-count matrix (``xds calibrate
--expert-counts``).

Model (used by :mod:`xds.experts.imbalance`):

* **Long-run shares** ``s[l, e]`` (rows sum to 1): Zipf per layer, ``s ∝ rank^-a`` with the ranking
  shuffled per layer, the hottest expert of layer ``l`` at ``hot_l`` x the mean share; ``hot_l`` is
  log-spaced over ``LAYERS`` representative layers from ``HOT_MIN`` to the plan's ``hot_ratio``
  (the most skewed layer). ``HOT_MIN`` = 1.5: DeepSeek's MoE layers are not all skewed alike; the
  least skewed representative layer is taken as nearly flat.
* **Per-sequence concentration** ``kappa``: the experts one sequence routes to are drawn from its own
  distribution ``p_j ~ Dirichlet(kappa · s)``; its ``m`` token-expert pairs of the step are drawn
  from ``p_j``. Summed over the ``S`` sequences of a step (``N = S·m`` pairs), an expert's count has
  mean ``N s_e`` and variance ``phi · N s_e (1 - s_e)`` with the overdispersion
  ``phi = (m + kappa) / (1 + kappa)`` (Dirichlet-multinomial). A decode step (m = top_k x tokens per
  step, 8–16) is nearly multinomial; a prefill microbatch of long prompts (m = 32K pairs) behaves as
  ``S (1 + kappa)`` independent draws, which is why prefill sees far more imbalance than decode.

Default, derived from reference §F ("one DeepSeek-R1 layer on ShareGPT: 20 % of experts get more than
average load; the hottest gets 30x the average", a per-window snapshot) — :func:`snapshot_stats`
reproduces the table, ``benchmarks/derive_imbalance_defaults.py`` re-derives it:

* A snapshot of ``n_eff`` effective draws from long-run shares has an *expected* hottest/mean and
  fraction-above-average that depend on both the long-run skew and ``n_eff`` (256 experts, mean of 2,000
  snapshots, seed 0)::

      long-run hottest/mean   n_eff=20     n_eff=23     n_eff=30     n_eff=1e5
      1.0 (uniform)           32.6 / 15 %  29.7 / 17 %  25.0 / 19 %  1.2 / 49 %
      3.7 (Zipf a=0.3)        33.0 / 15 %  29.8 / 16 %  25.0 / 19 %  3.7 / 32 %
      6.0 (Zipf a=0.42)       33.1 / 15 %  30.2 / 16 %  25.8 / 18 %  6.0 / 29 %
      17  (Zipf a=0.7)        36.1 / 14 %  33.2 / 15 %  29.1 / 17 %  17  / 23 %
      28  (Zipf a=0.85)       40.5 / 13 %  38.9 / 13 %  34.8 / 15 %  28  / 19 %

  Both published figures hold either for a large window of a strongly skewed layer (a≈0.85, 28x) or
  for a small window (n_eff ≈ 25) of a mildly skewed one. The large-window reading cannot hold for
  DeepSeek-R1 serving as published: the MoE-attention layout (reference §B.3, §C.6) runs one expert per
  die with *no* redundant slot, so its MoE stage (0.12 ms per layer, measured) would be gated by a die
  with 28x the mean load at every such layer. The small-window reading fits all published figures: the
  snapshot is one sequence's routing (a window of one ShareGPT prompt: ``n_eff = 1 + kappa``), so
  ``kappa = 22`` makes hottest = 30x / above-average = 16 % the expected snapshot, and in that regime the
  snapshot is insensitive to the long-run skew up to ≈6x (rows 1–3). xds takes the largest long-run
  skew in that insensitive range, ``DEFAULT_HOT = 6`` for the most skewed layer, and ``DEFAULT_KAPPA =
  22``. Cross-check (a calibration point, not used to set either number): with these, CloudMatrix-Infer
  prefill (EP32, 9 slots per rank, 32 prompts of 4K per microbatch) runs ≈15 % below perfect balance,
  the published gap (reference §C.1: 5,655 vs 6,688 tok/s/NPU).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XdsError
from .loads import load_loads

HOT_MIN = 1.5          # least skewed representative layer: hottest / mean long-run share
DEFAULT_HOT = 6.0      # most skewed layer (see module docstring: §F, small-window reading)
DEFAULT_KAPPA = 22.0   # per-sequence Dirichlet concentration (§F snapshot = one sequence, n_eff = 1 + kappa)
LAYERS = 8             # representative layers the default shares are built for


def zipf_exponent(experts: int, hot_ratio: float) -> float:
    """Zipf exponent ``a`` whose hottest share (``s ∝ rank^-a``) is ``hot_ratio`` x the mean share."""
    k = np.arange(1, experts + 1, dtype=float)
    lo, hi = 0.0, 64.0
    for _ in range(60):           # hottest / mean = E / Σ k^-a grows with a, from 1 (a = 0) to E
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if experts / (k ** -mid).sum() < hot_ratio else (lo, mid)
    return 0.5 * (lo + hi)


@lru_cache(maxsize=64)
def long_run_shares(experts: int, hot_ratio: float = DEFAULT_HOT, layers: int = LAYERS,
                    seed: int = 0) -> np.ndarray:
    """Long-run expert shares [layers, experts] (rows sum to 1): Zipf rows, the hottest expert of
    each layer log-spaced between ``HOT_MIN``x and ``hot_ratio``x the mean, the ranking shuffled per
    layer (seeded: deterministic)."""
    hot = np.geomspace(min(HOT_MIN, hot_ratio), hot_ratio, layers)
    rng = np.random.default_rng(seed)
    return np.array([zipf_shares(experts, float(h))[rng.permutation(experts)] for h in hot])


def zipf_shares(experts: int, hot_ratio: float) -> np.ndarray:
    """Zipf shares [experts] in descending order (sum 1), the hottest at ``hot_ratio`` x the mean."""
    row = np.arange(1, experts + 1, dtype=float) ** -zipf_exponent(experts, min(hot_ratio, experts - 1e-6))
    return row / row.sum()


def overdispersion(pairs_per_sequence: float, kappa: float = DEFAULT_KAPPA) -> float:
    """Variance of a step's expert counts over the multinomial's (dimensionless, >= 1):
    ``(m + kappa) / (1 + kappa)`` for ``m`` token-expert pairs per sequence; 1 when ``kappa`` is inf."""
    if not np.isfinite(kappa):
        return 1.0
    m = max(float(pairs_per_sequence), 1.0)
    return (m + kappa) / (1.0 + kappa)


def snapshot_stats(hot_ratio: float, n_eff: float, experts: int = 256, draws: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """Expected (hottest / mean, fraction of experts above the mean) of a snapshot of ``n_eff``
    effective draws from one Zipf layer whose long-run hottest share is ``hot_ratio`` x the mean
    (Gamma limit of the Dirichlet-multinomial; deterministic for a seed). Used for the derivation of
    the defaults in the module docstring."""
    s = zipf_shares(experts, hot_ratio)
    g = np.random.default_rng(seed).gamma(np.maximum(n_eff * s, 1e-12), size=(draws, experts))
    g /= g.sum(axis=1, keepdims=True)
    return float((g.max(axis=1) * experts).mean()), float((g > 1.0 / experts).mean())


def _zipf_hot(shares: np.ndarray) -> np.ndarray:
    """Hottest / mean share of each row of ``shares`` [L, E]."""
    return shares.max(axis=1) * shares.shape[1]


def fit_skew(counts: Any, *, pairs_per_sequence: float = 8.0, file: str = "--expert-counts") -> dict[str, Any]:
    """Fit the skew (and, from per-step counts, the overdispersion) of a user's expert-count matrix.

    ``counts``: token counts [layers, experts] (long-run) or [steps, layers, experts] (per step).
    Returns ``hot_ratio`` (the most skewed layer's hottest / mean long-run share, the ``balancing:
    hot_ratio`` the model reads), ``hot_ratio_per_layer``, and for per-step counts the measured
    overdispersion ``phi`` (method of moments: the variance of a step's counts about ``N_t s_e`` over
    the multinomial variance ``N_t s_e (1 - s_e)``, pooled over steps, layers and experts) and the
    per-sequence concentration ``kappa = (m - phi) / (phi - 1)`` for ``m = pairs_per_sequence``
    (top_k x tokens per sequence per step in the recorded run; inf when ``phi <= 1``).
    """
    arr = np.asarray(counts, dtype=float)
    if arr.ndim not in (2, 3) or arr.shape[-1] < 2 or arr.size == 0:
        raise XdsError(f"expected [layers, experts] or [steps, layers, experts] token counts, got shape "
                       f"{list(arr.shape)}", file=file)
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise XdsError("counts must be finite non-negative token counts", file=file)
    if not (pairs_per_sequence >= 1) or not np.isfinite(pairs_per_sequence):
        raise XdsError(f"must be >= 1 (got {pairs_per_sequence})", file="--pairs-per-sequence")
    total = arr.sum(axis=-1) if arr.ndim == 2 else arr.sum(axis=(0, -1))
    if (total <= 0).any():
        l = int(np.argmax(np.ravel(total) <= 0))
        raise XdsError(f"layer {l} has no tokens (all counts zero)", file=file)
    long_run = arr if arr.ndim == 2 else arr.sum(axis=0)
    shares = long_run / long_run.sum(axis=1, keepdims=True)
    hot = _zipf_hot(shares)
    doc: dict[str, Any] = {"layers": int(shares.shape[0]), "experts": int(shares.shape[1]),
                           "hot_ratio": round(float(hot.max()), 4),
                           "hot_ratio_per_layer": [round(float(h), 4) for h in hot],
                           "steps": int(arr.shape[0]) if arr.ndim == 3 else None,
                           "phi": None, "kappa": None, "pairs_per_sequence": float(pairs_per_sequence)}
    if arr.ndim == 3:
        if arr.shape[0] < 2:
            raise XdsError("per-step counts need at least 2 steps to measure the overdispersion", file=file)
        n_t = arr.sum(axis=-1, keepdims=True)                       # [T, L, 1] pairs per step
        expect = n_t * shares[None]                                 # [T, L, E]
        var_mult = (n_t * shares[None] * (1.0 - shares[None])).sum()
        if var_mult <= 0:
            raise XdsError("counts carry no variance to measure (one expert per layer?)", file=file)
        # shares estimated from the same T steps take 1/T of the variance with them (equal N_t)
        T = arr.shape[0]
        phi = float(((arr - expect) ** 2).sum() / var_mult) * T / (T - 1)
        m = float(pairs_per_sequence)
        kappa = float("inf") if phi <= 1.0 else max((m - phi) / (phi - 1.0), 0.0)
        doc["phi"] = round(phi, 4)
        doc["kappa"] = round(kappa, 4) if np.isfinite(kappa) else None
    return doc


def load_expert_counts(path: str, *, label: str = "--expert-counts") -> np.ndarray:
    """Read an expert-count matrix: ``.npy`` [layers, experts] or [steps, layers, experts], or ``.csv``
    [layers, experts] (one layer per line). Returns float64; bad input raises :class:`XdsError`
    naming the file."""
    if str(path).lower().endswith(".npy"):
        p = Path(path)
        if not p.is_file():
            raise XdsError(f"{label} file not found", file=str(p))
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise XdsError(f"not a valid .npy array ({' '.join(str(exc).split())[:120]})", file=str(p)) from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise XdsError("expected a numeric .npy array of token counts", file=str(p))
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise XdsError(f"expected shape [layers, experts] or [steps, layers, experts], got "
                           f"{list(arr.shape)}", file=str(p))
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise XdsError("counts must be finite non-negative token counts", file=str(p))
        return arr
    return load_loads(path, label=label)


def balancing_yaml(fit: dict[str, Any]) -> str:
    """The ``balancing:`` block a plan reads (``hot_ratio``, ``concentration``) for a :func:`fit_skew`
    result; merge it into a plan file."""
    lines = [f"# fitted by xds calibrate --expert-counts ({fit['layers']} layers x {fit['experts']} experts"
             + (f", {fit['steps']} steps)" if fit["steps"] else ")"),
             "balancing:", f"  hot_ratio: {fit['hot_ratio']:g}"]
    if fit["kappa"] is not None:
        lines.append(f"  concentration: {fit['kappa']:g}")
    return "\n".join(lines) + "\n"
