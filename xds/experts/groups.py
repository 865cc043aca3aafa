"""Load-driven placement of expert groups on nodes, xds's alternative to EPLB's equal group count.

EPLB puts the same number of groups on every node, so every node gets the same number of spare
slots however hot it is. Here a node holding a hot group takes fewer groups and uses its fixed P/N
slots for more replicas of it.
"""

from __future__ import annotations

import numpy as np


def assign_groups(gw: np.ndarray, N: int, cap: int) -> np.ndarray:
    """Groups to nodes by load: each group (heaviest first, lower index on ties) goes to the lightest
    node (lowest index on ties) with room (at most ``cap`` groups), keeping one group for every
    still-empty node. ``gw`` [L, K] group loads (tokens; node sums in float64). Returns the node of
    each group, int64 [L, K]."""
    L, K = gw.shape
    order = np.argsort(-gw, axis=1, kind="stable")
    rows = np.arange(L)
    node_of = np.empty((L, K), dtype=np.int64)
    node_w = np.zeros((L, N))
    node_n = np.zeros((L, N), dtype=np.int64)
    for j in range(K):
        g = order[:, j]
        empty = node_n == 0
        must = (K - j) <= empty.sum(1)
        allowed = (node_n < cap) & (~must[:, None] | empty)
        p = np.argmin(np.where(allowed, node_w, np.inf), axis=1)
        node_of[rows, g] = p
        node_w[rows, p] += gw[rows, g]
        node_n[rows, p] += 1
    return node_of


def node_rows(w: np.ndarray, node_of: np.ndarray, N: int, gs: int, cap: int):
    """The node rows of a group placement ``node_of`` [L, K]: each node's groups in index order,
    ``cap`` group places per node. Returns (ids int64 [L*N, cap*gs] global expert ids, padded with
    0..gs-1; present bool, False in the padding; loads float64, 0 in the padding)."""
    L, K = node_of.shape
    # each group's place in its node's row: groups of a node in index order
    onehot = node_of[:, :, None] == np.arange(N)
    pos = (np.cumsum(onehot, axis=1) - 1)[onehot]                       # [L*K], (layer, group) order
    slot = ((np.arange(L, dtype=np.int64)[:, None] * N + node_of) * cap).ravel() + pos
    # Global group row (layer * K + group) in each slot, an all-zero row past the end in the empty
    # ones: the loads are one gather of gs-long rows instead of one per expert.
    grow = np.full(L * N * cap, L * K, dtype=np.int64)
    grow[slot] = np.arange(L * K, dtype=np.int64)
    wl = np.concatenate([w.reshape(L * K, gs), np.zeros((1, gs))]).take(grow, 0)
    ids = np.arange(K * gs, dtype=np.int64).reshape(K, gs).take(grow % K, 0)
    present = np.repeat(grow < L * K, gs)
    return ids.reshape(L * N, cap * gs), present.reshape(L * N, cap * gs), wl.reshape(L * N, cap * gs)
