"""Pairwise-swap local search: lowers each layer's max rank load after packing, never raises it.

Only a layer's maximum matters, so each step works on the row (layer, or node of a layer) holding
the layer's max rank load: its most-loaded rank tries its best swap with each of the ``pairs``
least-loaded ranks, and at the same time the 2nd..``pairs``-th most-loaded ranks each try the
matching least-loaded one (disjoint rank pairs, so all the swaps apply at once). A swap is taken only
when it lowers the larger load of its pair; a layer stops when its max rank finds no improving swap.
"""

from __future__ import annotations

import numpy as np

#: Iteration cap (each iteration moves one swap per pair in every still-improving layer).
MAX_SWAP_ITERS = 256


def swap_search(lT: np.ndarray, idT: np.ndarray, G: int, nodes: int = 1, *,
                rank_sum: np.ndarray | None = None, max_iter: int = MAX_SWAP_ITERS, pairs: int = 4
                ) -> None:
    """The search, in place, on slot-major arrays: ``lT`` float64 / ``idT`` int64 [s, R*G] hold the
    item load (tokens) / item id in slot k of global rank g (g = row * G + rank in row); a layer's
    ``nodes`` rows are consecutive and swaps stay inside a row. Slot-major so a pair's items gather
    into [s, pairs] blocks. ``rank_sum`` [R*G] (default ``lT.sum(0)``) is each rank's starting load;
    the caller passes it summed in the order its layouts are scored, so ties break the same way."""
    s, RG = lT.shape
    R = RG // G
    if G < 2 or s < 1:
        return
    lTf, idf = lT.reshape(-1), idT.reshape(-1)
    if not (np.shares_memory(lTf, lT) and np.shares_memory(idf, idT)):
        raise ValueError("swap_search needs C-contiguous arrays (it works in place)")
    T = min(pairs, G // 2)
    # pairs: (0, j) for the max rank with each of the T lowest, then (i, i) for the next high ranks;
    # as columns of a row's ascending rank order: the high ranks, then the low ones
    hs = np.array([0] * T + list(range(1, T)), dtype=np.int64)
    ls = np.array(list(range(T)) + list(range(1, T)), dtype=np.int64)
    cols = np.concatenate([G - 1 - hs, ls])
    rank_sum = (lT.sum(0) if rank_sum is None else np.array(rank_sum, dtype=np.float64)).reshape(R, G)
    L = R // nodes
    layers = np.arange(L)
    # the s x s tables of all pairs, reused: a fresh one each step would be page-faulted in anew
    dev_buf = np.empty(s * s * L * (cols.size // 2))
    for _ in range(max_iter):
        if layers.size == 0:
            break
        # the row (node) holding each still-improving layer's max rank load
        active = (layers if nodes == 1 else
                  layers * nodes + rank_sum.reshape(L, nodes * G).take(layers, 0).argmax(axis=1) // G)
        hl, best, use = _best_swaps(lT, rank_sum, active, cols, T, G, dev_buf)
        layers = layers[np.logical_or.reduce(use[:T], axis=0)]   # the others cannot lower their max
        m = use.reshape(-1).nonzero()[0]
        _apply_swaps(lTf, idf, rank_sum.reshape(-1), hl[0][m], hl[1][m], best[m], s, RG)


def _best_swaps(lT: np.ndarray, rank_sum: np.ndarray, active: np.ndarray, cols: np.ndarray, T: int,
                G: int, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the ``active`` rows: the rank pairs (``hl`` [2, pairs * A], high / low global rank,
    pair-major), each pair's best swap (entry a * s + b of the s x s table: item a of the high rank
    for item b of the low one) and which pairs swap (``use`` bool [pairs, A])."""
    s = lT.shape[0]
    A = active.size
    npair = cols.size // 2
    hl = rank_sum.take(active, 0).argsort(axis=1).T.take(cols, 0)   # rank in row, [2 * npair, A]
    hl += active * G
    hl = hl.reshape(2, A * npair)
    lh, ll = rank_sum.reshape(-1)[hl]
    la = lT.take(hl[0], axis=1)
    lb = lT.take(hl[1], axis=1)
    lb += 0.5 * (lh - ll)
    # the pair's new max after swapping a and b is mid + |a - b - half|
    dev = buf[:s * s * A * npair].reshape(s, s, A * npair)
    np.subtract(la[:, None, :], lb[None, :, :], out=dev)
    np.abs(dev, out=dev)
    dev = dev.reshape(s * s, A * npair)
    new = (0.5 * (lh + ll) + dev.min(axis=0)).reshape(npair, A)
    good = new < (lh * (1 - 1e-12)).reshape(npair, A)
    # the max rank takes its best partner (its pairs share one threshold, so the smallest new is
    # good iff any is); a high rank whose partner it took sits this step out
    j = new[:T].argmin(axis=0)
    use = np.empty((npair, A), dtype=bool)
    use[:T] = (np.arange(T)[:, None] == j) & good[:T]
    use[T:] = good[T:] & ~use[1:T]
    return hl, dev.argmin(axis=0), use


def _apply_swaps(lTf: np.ndarray, idf: np.ndarray, rsf: np.ndarray, rh: np.ndarray, rl: np.ndarray,
                 best: np.ndarray, s: int, RG: int) -> None:
    """Swap item ``best // s`` of rank ``rh`` with item ``best % s`` of rank ``rl`` (disjoint pairs)
    in the flat slot-major arrays, and move the difference between the rank sums ``rsf``."""
    ta, tb = best // s * RG + rh, best % s * RG + rl
    va, vb = lTf[ta], lTf[tb]
    lTf[ta], lTf[tb] = vb, va
    xa, xb = idf[ta], idf[tb]
    idf[ta], idf[tb] = xb, xa
    d = vb - va
    rsf[rh] += d
    rsf[rl] -= d
