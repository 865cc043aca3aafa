"""Replica counts: how many physical slots each logical expert gets.

Greedy replication (DeepSeek EPLB's ``replicate_experts``) gives each present expert one replica,
then hands out the rest one at a time to the expert with the highest per-replica load ``w / count``
(lowest index on ties). Its counts minimise the max per-replica load (water-filling). Rounding then
moves replicas so that no expert with more replicas than ranks stacks an extra one on some rank.
Loads ``w`` are token counts [rows, experts]; a row is a layer (global policy) or a node of a layer.
"""

from __future__ import annotations

import numpy as np


def greedy_steps(w: np.ndarray, counts: np.ndarray, lim: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Greedy, one replica a step, in place on ``counts`` int64 [R, E] (C-ordered): row r takes
    ``steps[r]`` steps; each gives one replica to the expert with the highest ``w / max(count, 1)``
    (divided in ``w``'s dtype, as EPLB divides; lowest index on ties) among those that have taken
    fewer than ``lim`` [R, E] this call. Returns the picked experts int64 [R, max(steps)] in pick
    order (-1 padded)."""
    R, E = w.shape
    picks = np.full((R, max(int(steps.max(initial=0)), 0)), -1, dtype=np.int64)
    key = np.where(lim > 0, w / np.maximum(counts, 1).astype(w.dtype), -np.inf).astype(w.dtype)
    # only the picked expert's key changes in a step: recompute it alone (same division, same value)
    flat_key, flat_cnt, flat_w = key.reshape(-1), counts.reshape(-1), w.reshape(-1)
    taken = np.zeros(R * E, dtype=np.int64)
    lim = lim.reshape(-1)
    live = np.arange(R)
    for i in range(picks.shape[1]):
        live = live[steps[live] > i]
        e = (key if live.size == R else key[live]).argmax(axis=1)
        picks[live, i] = e
        f = live * E + e
        flat_cnt[f] += 1
        taken[f] += 1
        flat_key[f] = np.where(taken[f] < lim[f], flat_w[f] / flat_cnt[f].astype(w.dtype), -np.inf)
    return picks


def greedy_replicas(w: np.ndarray, S: int, present: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """EPLB's greedy replication of each row's present experts (``present`` bool [R, E], None: all)
    into ``S`` slots. Returns counts int64 [R, E] (0 for absent experts) and the redundant picks
    int64 [R, max extra] in pick order (-1 padded), exactly as EPLB's loop takes them."""
    counts = (np.ones(w.shape, dtype=np.int64) if present is None
              else present.astype(np.int64, order="C"))
    red = S - counts.sum(1)
    lim = np.where(counts > 0, S + 1, 0)                   # no cap: only absent experts are out
    return counts, greedy_steps(w, counts, lim, red)


def waterfill(w: np.ndarray, S: int, present: np.ndarray | None = None) -> np.ndarray:
    """The counts of :func:`greedy_replicas` without its step per replica (the loop is most of
    :func:`xds.experts.balance`'s time at one slot per rank).

    The k-th extra replica of expert e is taken at key ``w_e / k`` (in ``w``'s dtype); an expert's
    keys decrease and greedy's picks never rise, so greedy takes the ``red = S - present`` largest
    keys, lowest expert first among equal ones. The last pick is at least the water level
    ``total / S`` (the final max per-replica load is at least the mean) and the red-th largest first
    key, so only ``k <= w_e / level`` can be picked (a 1e-6 margin covers the keys' rounding). Rows
    where the margin is not representable (loads near the denormal range) or with too few pairs
    take the loop."""
    R, E = w.shape
    counts = (np.ones(w.shape, dtype=np.int64) if present is None
              else present.astype(np.int64, order="C"))
    red = S - counts.sum(1)
    wp = w.astype(np.float64) * counts                     # absent experts: 0
    level = wp.sum(1) / S
    r0 = int(red.max())
    if 0 < r0 <= E:
        # and at least the r0-th largest first key w_e / 1 (r0 >= red: a bound for every row)
        top = np.partition(wp, E - r0, axis=1)[:, E - r0:]
        level = np.maximum(level, top[:, 0])
        # and for the experts H above it: sum over H of floor(w / t) > sum_H w / t - |H| = red at
        # t = sum_H w / (red + |H|), so at least red keys are >= t
        hot = top >= level[:, None]
        level = np.maximum(level, (top * hot).sum(1) / np.maximum(red + hot.sum(1), 1))
    level *= 1 - 1e-6
    fi = np.finfo(w.dtype)
    good = level > fi.tiny * 2.0 ** (fi.nmant + 1)
    kc = np.minimum(np.floor(wp / np.where(good, level, 1.0)[:, None]), red[:, None])
    kc = (kc * good[:, None]).astype(np.int64).reshape(-1)
    item = np.repeat(np.arange(R * E, dtype=np.int64), kc)   # pairs in (row, expert, k) order
    k = np.arange(1, item.size + 1, dtype=np.int64) - np.repeat(np.cumsum(kc) - kc, kc)
    key = w.reshape(-1)[item] / k.astype(w.dtype)
    row = item // E
    per_row = np.bincount(row, minlength=R)
    good &= per_row >= red
    if item.size:
        # each row's red-th largest key: rows padded with -inf, partitioned at every row's place
        width = int(per_row.max())
        mat = np.full((R, width), -np.inf, dtype=key.dtype)
        mat[row, np.arange(item.size) - (np.cumsum(per_row) - per_row)[row]] = key
        kth = width - np.clip(red, 1, width)
        mat.partition(np.unique(kth), axis=1)
        tau = mat[np.arange(R), kth][row]
        take = key > tau
        eq = (key == tau).nonzero()[0]
        need = red - np.bincount(row[take], minlength=R)
        # of the keys equal to it, the lowest experts (pairs are in expert order within a row)
        er = row[eq]
        take[eq[np.arange(eq.size) - np.searchsorted(er, er) < need[er]]] = True
        counts.reshape(-1)[:] += np.bincount(item[take & good[row]], minlength=R * E)
    bad = ~good & (red > 0)
    if bad.any():
        counts[bad] = greedy_replicas(w[bad], S, None if present is None else present[bad])[0]
    return counts


def round_to_ranks(w: np.ndarray, c: np.ndarray, ranks: int, present: np.ndarray) -> np.ndarray:
    """Counts ``c`` [R, E] rounded where they stack: an expert with more replicas than ranks but not
    a whole multiple of them necessarily puts two on some rank. Its count is rounded down to a
    multiple of ``ranks`` and the freed replicas go, greedily by per-replica load (float64), to
    present experts with fewer than ``ranks``; only when none is left to the rounded experts."""
    over = (c > ranks) & (c % ranks != 0)
    rows = over.any(1).nonzero()[0]
    c = c.copy()
    if not rows.size:
        return c
    W, C, ov, pres = w[rows], c[rows], over[rows], present[rows]
    freed = C % ranks * ov
    F = freed.sum(1)
    C = np.ascontiguousarray(C - freed)
    lim = np.maximum(ranks - C, 0) * (pres & ~ov)
    room = lim.sum(1)
    greedy_steps(W, C, lim, np.minimum(F, room))
    rest = np.maximum(F - room, 0)
    if rest.any():
        greedy_steps(W, C, (pres & ov) * rest[:, None], rest)
    c[rows] = C
    return c
