"""``balance()``: choose replica counts and place physical expert slots on EP ranks, per layer.

With ``nodes > 1`` and ``groups % nodes == 0`` the node-local policy (:mod:`.hierarchical`) keeps
every expert group and its replicas on one node; otherwise the global policy below (as EPLB does).
Either way DeepSeek EPLB's layout is one candidate and the result is never worse than it.

Global policy, several slots per rank: greedy replication can give a hot expert G+1 replicas on G
ranks, stacking two on one rank, so EPLB's counts rounded to whole multiples of the ranks are a
second candidate; both are packed, improved by the swap search, and the better one per layer kept.
At one slot per rank nothing is packed: water-filled counts are optimal.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .eplb import eplb_finish, eplb_prepare
from .hierarchical import balance_hier
from .layout import (
    ExpertLayout,
    balancedness_from_rank_load,
    check_layout_args,
    rank_load_of,
    replica_counts,
)
from .loads import check_float32_sums, check_loads
from .local_search import swap_search
from .packing import lpt_pack
from .replication import round_to_ranks, waterfill


def balance(loads: Any, slots: int, ranks: int, *, nodes: int = 1, groups: int = 1) -> ExpertLayout:
    """Choose replica counts and place ``slots`` physical expert slots on ``ranks`` EP ranks, per layer.

    ``loads`` [L, E] (or [E]) non-negative token counts. Slot p lives on rank p // (slots/ranks).
    With ``nodes > 1`` and ``groups % nodes == 0`` the node-local (group-limited routing) policy is
    used: each of the ``groups`` contiguous expert groups and all its replicas stay on one node; else
    the global policy. The result's balancedness is never worse than DeepSeek EPLB's on the same input.
    """
    t0 = time.perf_counter()
    w = check_loads(loads)
    check_float32_sums(w)
    L, E = w.shape
    check_layout_args(E, slots, ranks, nodes, groups)
    if nodes > 1 and groups % nodes == 0:
        lay, counts, rank_load, bal, eplb_bal = balance_hier(w, slots, ranks, nodes, groups)
        policy = "hierarchical"
    elif slots == ranks:
        # one slot per rank: each rank's load is its one replica's, and water-filling attains the
        # optimum of the max per-replica load (EPLB's greedy reaches the same); nothing to pack
        counts = waterfill(w, slots)
        flat = np.repeat(np.arange(counts.size, dtype=np.int64), counts.ravel()).reshape(L, -1)
        rank_load = (w / counts).ravel()[flat]
        lay = flat - (np.arange(L, dtype=np.int64) * E)[:, None]
        bal, eplb_bal, policy = balancedness_from_rank_load(rank_load), None, "global"
    else:
        lay, counts, rank_load, bal, eplb_bal = _balance_global(w, slots, ranks, nodes, groups)
        policy = "global"
    return ExpertLayout(phy2log=lay, replicas=counts, rank_load=rank_load, balancedness=bal,
                        ranks=ranks, nodes=nodes, groups=groups, policy=policy,
                        seconds=time.perf_counter() - t0, eplb_balancedness=eplb_bal)


def _balance_global(w: np.ndarray, P: int, G: int, N: int, K: int):
    """Global policy with several slots per rank (see the module). Returns (phy2log [L, P],
    replicas [L, E], rank_load [L, G], balancedness [L], EPLB's balancedness [L])."""
    L, E = w.shape
    spg = P // G
    prep = eplb_prepare(w.astype(np.float32), P, K, N, G)
    # (prep.counts are in EPLB's node-major expert order: the expert order unless nodes == 1 and
    # groups > 1, where EPLB orders the groups by load and this candidate pairs mismatched counts)
    c_round = round_to_ranks(w, prep.counts, G, np.ones((L, E), dtype=bool))
    rounded = not np.array_equal(c_round, prep.counts)
    item_w = prep.items
    if rounded:
        items = np.repeat(np.arange(E, dtype=np.int64)[None, :].repeat(L, 0).ravel(),
                          c_round.ravel()).reshape(L, P)
        item_w = np.concatenate([item_w, np.take_along_axis((w / c_round).astype(np.float32), items, 1)])
    # one packing call for EPLB's replicas and ours
    pi, rip = lpt_pack(item_w, prep.packs)
    cands = [eplb_finish(prep, pi[:L], rip[:L], P, G)]
    if rounded:
        placed = np.empty_like(items)
        np.put_along_axis(placed, pi[L:] * spg + rip[L:], items, 1)
        cands.append(placed)
    # the swap search over each candidate's ranks, then the better one per layer
    C = len(cands)
    flat = np.concatenate(cands)                               # [C * L, P]
    wt = np.tile(w, (C, 1))
    cnt = replica_counts(flat, E)
    item_load = np.take_along_axis(wt / cnt, flat, 1)
    eplb_bal = balancedness_from_rank_load(item_load[:L].reshape(L, G, spg).sum(-1))
    lT = np.ascontiguousarray(item_load.reshape(C * L * G, spg).T)
    idT = np.ascontiguousarray(flat.reshape(C * L * G, spg).T)
    # rank sums in row-major order, as the layouts are scored (ties break the same way)
    swap_search(lT, idT, G, rank_sum=item_load.reshape(-1, spg).sum(1))
    flat = np.ascontiguousarray(idT.T).reshape(C * L, P)
    rl = rank_load_of(flat, wt, cnt, G)
    bal = balancedness_from_rank_load(rl).reshape(C, L)
    best = np.argmin(bal, axis=0)                              # first (EPLB-based) wins ties
    at = (best, np.arange(L))
    return (flat.reshape(C, L, P)[at], cnt.reshape(C, L, E)[at], rl.reshape(C, L, G)[at], bal[at],
            eplb_bal)
