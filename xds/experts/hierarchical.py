"""The node-local policy (group-limited routing): every expert group and all of its replicas stay on
one node; node n holds slots ``n * P/N <= p < (n+1) * P/N``. A *node row* is one node of one layer.

EPLB's layout is computed exactly (it is the candidate to beat and is reported). xds adds up to two
count sets per layer, chosen by a lower bound of the layer's max rank load (a rank carries at least
its node row's mean, and an expert with c replicas on Gn ranks puts ceil(c / Gn) on one):

- set A, load-driven groups (when a node has room for more groups than EPLB gives it and there are
  more groups than nodes): groups placed by load (:mod:`.groups`), water-filled counts, and those
  counts rounded to whole multiples of the node's ranks (:func:`.replication.round_to_ranks`) on
  the node rows that stack replicas and can hold the layer's max;
- set E, EPLB's counts rounded the same way on such node rows.

Only the node rows that differ from EPLB's are packed again, in the same LPT call as EPLB's replicas;
a layer takes them when its max with them beats EPLB's. The swap search then only ever lowers a
layer's max, and a guard hands back EPLB's layout for any layer that still came out above EPLB's
(by rounding of the mean), so the result is never worse than EPLB's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .eplb import eplb_prepare
from .groups import assign_groups, node_rows
from .layout import balancedness_from_rank_load, replica_counts
from .local_search import swap_search
from .packing import lpt_pack
from .replication import round_to_ranks, waterfill

#: A node row is rounded only when its lower bound is within this fraction of its layer's highest
#: (rows far below the layer's max cannot decide it).
ROUND_ROW_SLACK = 0.05


class Shape(NamedTuple):
    """The node-local problem's sizes: layers, nodes, ranks and slots per node, group size."""
    L: int
    N: int
    Gn: int          # ranks per node
    S: int           # slots per node (P / N)
    gs: int          # experts per group


class CountSet(NamedTuple):
    """Node rows ``rows`` [n] with their experts ``ids`` int64, per-replica loads ``per_rep``
    float64 (tokens) and replica ``counts`` int64, each [n, experts per row]."""
    rows: np.ndarray
    ids: np.ndarray
    per_rep: np.ndarray
    counts: np.ndarray


class Rounded(NamedTuple):
    """Node rows ``rows`` [n] whose counts were rounded: their ``counts`` and ``per_rep`` loads
    [n, experts per row], and the ``layers`` hit with their new lower ``bounds`` (tokens)."""
    rows: np.ndarray
    counts: np.ndarray
    per_rep: np.ndarray
    layers: np.ndarray
    bounds: np.ndarray


def _rows_of(layers: np.ndarray, N: int) -> np.ndarray:
    """The node rows of ``layers``, in order."""
    return (layers[:, None] * N + np.arange(N, dtype=np.int64)).ravel()


def _row_bounds(per_rep: np.ndarray, c: np.ndarray, mean: np.ndarray, Gn: int) -> np.ndarray:
    """Lower bound of each node row's max rank load (tokens)."""
    return np.maximum(mean, (per_rep * ((c + (Gn - 1)) // Gn)).max(1))


def _offer(best_lb: np.ndarray, best_k: np.ndarray, layers: np.ndarray, lb: np.ndarray, k: int) -> None:
    """Set ``k`` for the ``layers`` whose bound ``lb`` beats their best so far (first wins ties)."""
    b = lb < best_lb[layers]
    best_lb[layers[b]] = lb[b]
    best_k[layers[b]] = k


def _round_rows(below: np.ndarray, wn: np.ndarray, c: np.ndarray, present: np.ndarray | None,
                mean: np.ndarray, rlb: np.ndarray, sh: Shape) -> Rounded | None:
    """Of the layers ``below`` (node-row bounds ``rlb`` [n, N] under counts ``c``), round the rows
    that stack replicas and whose bound is near the layer's highest (None when there are none)."""
    rows_b = _rows_of(below, sh.N)
    cb = c.take(rows_b, 0)
    near = rlb >= (1 - ROUND_ROW_SLACK) * rlb.max(1, keepdims=True)
    m = ((cb > sh.Gn) & (cb % sh.Gn != 0)).any(1).reshape(-1, sh.N) & near
    hit = m.any(1)
    if not hit.any():
        return None
    rows = rows_b[m.ravel()]
    wr = wn.take(rows, 0)
    pres = np.ones(wr.shape, dtype=bool) if present is None else present.take(rows, 0)
    cr = round_to_ranks(wr, c.take(rows, 0), sh.Gn, pres)
    u = wr / np.maximum(cr, 1)
    rlb = rlb.copy()
    rlb[m] = _row_bounds(u, cr, mean[rows], sh.Gn)
    return Rounded(rows, cr, u, below[hit], rlb.max(1)[hit])


def _count_sets(w: np.ndarray, wn: np.ndarray, cnt: np.ndarray, mlog2log: np.ndarray, K: int,
                sh: Shape) -> list[CountSet]:
    """xds's node rows to pack beside EPLB's: per layer the set (A, A rounded, E rounded; see the
    module) with the lowest bound, when one exists; all of a layer's rows for set A, the rounded
    rows for set E. ``wn`` / ``cnt`` [L*N, E/N] are EPLB's node-row loads and counts."""
    L, N, Gn, S, gs = sh
    best_lb, best_k = np.full(L, np.inf), np.full(L, -1)
    spg = S // Gn
    a_round = e_round = None
    if S // gs > K // N and K > N:
        ids_a, pres_a, wn_a = node_rows(w, assign_groups(w.reshape(L, K, gs).sum(-1), N, S // gs),
                                        N, gs, S // gs)
        # float32 loads: these counts are xds's own candidate, not EPLB's
        c_a = waterfill(wn_a.astype(np.float32), S, pres_a)
        u_a = wn_a / np.maximum(c_a, 1)
        mean_a = wn_a.sum(1) / Gn
        rlb_a = _row_bounds(u_a, c_a, mean_a, Gn).reshape(L, N)
        # offered on every layer: EPLB's packing can land far above its own bound
        _offer(best_lb, best_k, np.arange(L), rlb_a.max(1), 0)
        # rounding keeps each row's total: only layers whose highest row mean is below the best
        # bound so far can gain from it
        below = (mean_a.reshape(L, N).max(1) < best_lb).nonzero()[0] if spg > 1 else []
        if len(below):
            a_round = _round_rows(below, wn_a, c_a, pres_a, mean_a, rlb_a[below], sh)
        if a_round is not None:
            _offer(best_lb, best_k, a_round.layers, a_round.bounds, 1)
    if spg > 1:
        mean_e = wn.sum(1) / Gn
        below = (mean_e.reshape(L, N).max(1) < best_lb).nonzero()[0]
        if below.size:
            r = _rows_of(below, N)
            rlb = _row_bounds(wn.take(r, 0) / cnt.take(r, 0), cnt.take(r, 0), mean_e[r], Gn)
            e_round = _round_rows(below, wn, cnt, None, mean_e, rlb.reshape(-1, N), sh)
        if e_round is not None:
            _offer(best_lb, best_k, e_round.layers, e_round.bounds, 2)
    sets = []
    by_a = np.repeat((best_k == 0) | (best_k == 1), N).nonzero()[0]
    if by_a.size:
        c_x, u_x = c_a, u_a
        if a_round is not None:
            r1 = best_k[a_round.rows // N] == 1
            if r1.any():
                c_x, u_x = c_a.copy(), u_a.copy()
                c_x[a_round.rows[r1]], u_x[a_round.rows[r1]] = a_round.counts[r1], a_round.per_rep[r1]
        sets.append(CountSet(by_a, ids_a.take(by_a, 0), u_x.take(by_a, 0), c_x.take(by_a, 0)))
    if e_round is not None:
        i2 = (best_k[e_round.rows // N] == 2).nonzero()[0]
        if i2.size:
            rows = e_round.rows[i2]
            sets.append(CountSet(rows, mlog2log.reshape(L * N, -1).take(rows, 0), e_round.per_rep[i2],
                                 e_round.counts[i2]))
    return sets


def _expand(cs: CountSet) -> tuple[np.ndarray, np.ndarray]:
    """A count set's items, each row's experts in order with their replicas together: expert ids
    int64 and per-replica loads float64, [n, S]."""
    n = cs.counts.shape[0]
    flat = np.repeat(np.arange(cs.counts.size, dtype=np.int64), cs.counts.ravel())
    return cs.ids.ravel()[flat].reshape(n, -1), cs.per_rep.ravel()[flat].reshape(n, -1)


def _slot_major(pi: np.ndarray, rip: np.ndarray, values: np.ndarray, Gn: int, spg: int) -> np.ndarray:
    """Packed items' values [rows, S] in slot-major order [spg, rows * Gn]: slot ``rank_in_pack``
    of rank ``row * Gn + pack`` (the layout :func:`.local_search.swap_search` works on)."""
    width = pi.shape[0] * Gn
    out = np.empty(spg * width, dtype=values.dtype)
    out[(rip * width + pi + (np.arange(pi.shape[0], dtype=np.int64) * Gn)[:, None]).ravel()] = values.ravel()
    return out.reshape(spg, width)


def _rank_sums(load: np.ndarray) -> np.ndarray:
    """Per-rank sums of slot-major loads, in slot order (as :func:`.layout.rank_load_of` sums)."""
    return np.ascontiguousarray(load.T).sum(axis=1)


def balance_hier(w: np.ndarray, P: int, G: int, N: int, K: int):
    """Node-local layout of loads ``w`` float64 [L, E] (``N > 1``, ``K % N == 0``). Returns
    (phy2log [L, P], replicas [L, E], rank_load [L, G], balancedness [L], EPLB's balancedness [L])."""
    L, E = w.shape
    sh = Shape(L, N, G // N, P // N, E // K)
    R, Gn, spg = L * N, G // N, P // G
    RG = R * Gn
    mlog2log, pflat, item32, _, cnt, mg = eplb_prepare(w.astype(np.float32), P, K, N, G)
    wn = w.reshape(L * K, -1).take(mg, 0).reshape(R, E // N)   # float64 loads of EPLB's node rows
    sets = _count_sets(w, wn, cnt, mlog2log, K, sh)
    ids = [mlog2log.ravel()[pflat]]
    loads = [(wn / cnt).ravel()[pflat]]
    for cs in sets:
        i, u = _expand(cs)
        ids.append(i)
        loads.append(u)
    alt_rows = np.concatenate([cs.rows for cs in sets]) if sets else np.zeros(0, dtype=np.int64)
    Ra = alt_rows.size
    items = np.concatenate([item32] + [u.astype(np.float32) for u in loads[1:]])
    # one packing call for EPLB's replicas and ours; slot-major, EPLB's ranks first
    pi, rip = lpt_pack(items, Gn)
    ids = _slot_major(pi, rip, np.concatenate(ids), Gn, spg)
    load = _slot_major(pi, rip, np.concatenate(loads), Gn, spg)
    rank_e = _rank_sums(load[:, :RG]).reshape(L, G)
    eplb_bal = balancedness_from_rank_load(rank_e)
    eplb_ids, eplb_load = ids[:, :RG], load[:, :RG]
    if Ra:
        # a layer takes our rows when its max with them (and EPLB's other rows) beats EPLB's max
        cand = rank_e.reshape(R, Gn).max(1)
        cand[alt_rows] = load[:, RG:].sum(0).reshape(Ra, Gn).max(1)
        take = (cand.reshape(L, N).max(1) < rank_e.max(1) * (1 - 1e-12))[alt_rows // N]
        cols = np.arange(RG, dtype=np.int64)              # the column each final rank is read from
        ar_g = np.arange(Gn, dtype=np.int64)
        cols[(alt_rows[take][:, None] * Gn + ar_g).ravel()] = RG + (take.nonzero()[0][:, None] * Gn
                                                                  + ar_g).ravel()
        ids, load = ids.take(cols, 1), load.take(cols, 1)
    else:
        ids, load = ids.copy(), load.copy()
    if spg > 1:
        swap_search(load, ids, Gn, nodes=N)               # rows = layer x node
    rank_load = _rank_sums(load).reshape(L, G)
    bal = balancedness_from_rank_load(rank_load)
    # the search never raises a layer's max, but the mean can differ from EPLB's in the last bit:
    # such a layer gets EPLB's layout back, so the result is never worse, exactly
    worse = bal > eplb_bal
    if worse.any():
        back = np.repeat(worse, G).nonzero()[0]           # the ranks of those layers
        ids[:, back], load[:, back] = eplb_ids[:, back], eplb_load[:, back]
        rank_load = _rank_sums(load).reshape(L, G)
        bal = balancedness_from_rank_load(rank_load)
    lay = ids.T.reshape(L, P)
    return lay, replica_counts(lay, E), rank_load, bal, eplb_bal
