"""DeepSeek EPLB's layout, bit-exact with ``rebalance_experts`` of its open-source code (the
candidate xds's own layouts must beat, and the figure reported next to them), vectorized over layers.

EPLB packs expert groups onto nodes (an equal group count per node), replicates each node's experts
greedily into its P/N slots, and packs the replicas onto the node's ranks; with ``groups % nodes``
not 0 it uses one group and one node (its global policy). All arithmetic is float32, as EPLB's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .packing import lpt_pack
from .replication import greedy_replicas


class EplbPrep(NamedTuple):
    """EPLB up to its last packing (see :func:`eplb_prepare`)."""
    mlog2log: np.ndarray    #: [L, E] global expert at each node-major position
    pflat: np.ndarray       #: [L*N, P/N] each physical item's node-major expert, flat (see there)
    items: np.ndarray       #: [L*N, P/N] float32 per-replica load of each physical item
    packs: int              #: ranks per node (G / N): the packs of the last packing
    counts: np.ndarray      #: [L*N, E/N] replica count of each node-major expert
    mg: np.ndarray          #: [L*K] global group row (layer * K + group) at each node-major position


def eplb_prepare(w32: np.ndarray, P: int, K: int, N: int, G: int) -> EplbPrep:
    """EPLB up to its last packing: group packing onto nodes and greedy replication per node.
    ``pflat`` holds each physical item's node-major expert as a flat index into the [L*N, E/N] node
    rows (the node's experts in order, then the redundant picks), which is also its flat index into
    ``mlog2log``; with ``mg``, node rows of any [L, E] array are one row gather of its [L*K, E/K]
    view. Built with flat indices; the values are EPLB's exactly."""
    if K % N:
        K, N = 1, 1
    L, E = w32.shape
    gs = E // K
    gpn = K // N
    En = E // N
    R = L * N
    gpi, grp = lpt_pack(w32.reshape(L, K, gs).sum(-1), N)
    lk = (np.arange(L, dtype=np.int64) * K)[:, None]
    mg = np.empty(L * K, dtype=np.int64)
    mg[(gpi * gpn + grp + lk).ravel()] = np.arange(L * K, dtype=np.int64)
    # group rows are gs contiguous loads: one row gather instead of one per expert
    mlog2log = np.arange(E, dtype=np.int64).reshape(K, gs).take((mg.reshape(L, K) - lk).ravel(), 0)
    tokens_per_mlog = w32.reshape(L * K, gs).take(mg, 0).reshape(R, En)
    mlogcnt, picks = greedy_replicas(tokens_per_mlog, P // N)
    rows = (np.arange(R, dtype=np.int64) * En)[:, None]
    pflat = np.empty((R, P // N), dtype=np.int64)
    pflat[:, :En] = rows + np.arange(En, dtype=np.int64)
    np.add(picks, rows, out=pflat[:, En:])
    per_rep = tokens_per_mlog / mlogcnt.astype(np.float32)
    return EplbPrep(mlog2log.reshape(L, E), pflat, per_rep.ravel().take(pflat), G // N, mlogcnt, mg)


def eplb_finish(prep: EplbPrep, pi: np.ndarray, rip: np.ndarray, P: int, G: int) -> np.ndarray:
    """EPLB's ``phy2log`` [L, P] from :func:`eplb_prepare`'s output and the packing of its replicas."""
    mlog2log, pflat = prep.mlog2log, prep.pflat
    L = mlog2log.shape[0]
    # each item to its slot in its node's row (pack * slots per pack + rank in pack); pflat already
    # indexes mlog2log with the node's offset
    slot = np.empty_like(pflat)
    np.put_along_axis(slot, pi * (P // G) + rip, pflat, 1)
    return mlog2log.ravel().take(slot).reshape(L, P)


def eplb_layout(w32: np.ndarray, P: int, K: int, N: int, G: int) -> np.ndarray:
    """DeepSeek EPLB's ``phy2log`` [L, P] (hierarchical when K % N == 0, else global); identical to
    ``rebalance_experts`` of the reference implementation, computed without its per-layer/per-item
    Python loops over layers and items (replication vectorized over rows, run-at-a-time packing)."""
    prep = eplb_prepare(w32, P, K, N, G)
    pi, rip = lpt_pack(prep.items, prep.packs)
    return eplb_finish(prep, pi, rip, P, G)


