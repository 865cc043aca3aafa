"""Baseline for tests and benchmarks: a faithful NumPy / pure-Python re-implementation of DeepSeek's
open-source Expert-Parallelism Load Balancer (EPLB, ``eplb.py`` in deepseek-ai/EPLB).

Written from the published algorithm, keeping its structure and its Python loops on purpose (it is the
baseline whose quality xds must match and whose speed xds must beat):

- ``replicate_experts``: greedy replication, one redundant replica at a time to the expert with the
  highest per-replica load (vectorized over layers, as the original is with torch);
- ``balanced_packing``: per layer, items sorted by weight (descending), each put on the lightest pack
  that still has room (Python loops over layers and items, as in the original);
- ``rebalance_experts_hierarchical``: pack expert groups onto nodes (equal group count per node),
  replicate within each node (every node gets the same P/N slots), pack replicas onto the node's GPUs;
- ``rebalance_experts``: hierarchical policy when ``num_groups % num_nodes == 0``, else the global policy
  (the hierarchical code with one group and one node).

Arithmetic is float32 like the original (``weight.float()``). Sorting uses a stable descending order so
the result is deterministic (torch's default sort does not specify tie order).
"""

from __future__ import annotations

import numpy as np


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack ``n`` weighted items into ``num_packs`` packs of ``n / num_packs`` items each, per layer.

    Returns ``pack_index`` and ``rank_in_pack``, both int64 [layers, n].
    """
    num_layers, num_groups = weight.shape
    assert num_groups % num_packs == 0
    groups_per_pack = num_groups // num_packs

    if groups_per_pack == 1:
        pack_index = np.broadcast_to(np.arange(num_groups, dtype=np.int64), weight.shape).copy()
        rank_in_pack = np.zeros(weight.shape, dtype=np.int64)
        return pack_index, rank_in_pack

    indices = np.argsort(-weight.astype(np.float32), axis=-1, kind="stable")
    pack_index = np.full(weight.shape, -1, dtype=np.int64)
    rank_in_pack = np.full(weight.shape, -1, dtype=np.int64)
    for i in range(num_layers):
        pack_weights = [0] * num_packs
        pack_items = [0] * num_packs
        for group in indices[i]:
            pack = min((j for j in range(num_packs) if pack_items[j] < groups_per_pack),
                       key=pack_weights.__getitem__)
            assert pack_items[pack] < groups_per_pack
            pack_index[i, group] = pack
            rank_in_pack[i, group] = pack_items[pack]
            pack_weights[pack] += weight[i, group]
            pack_items[pack] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_phy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replicate ``num_log`` experts into ``num_phy`` replicas minimising the max per-replica load.

    Returns ``phy2log`` [n, num_phy], ``rank`` (replica index of each physical expert) and ``logcnt``
    [n, num_log] (replica count of each logical expert).
    """
    n, num_log = weight.shape
    num_redundant = num_phy - num_log
    assert num_redundant >= 0
    phy2log = np.tile(np.arange(num_phy, dtype=np.int64), (n, 1))
    rank = np.zeros((n, num_phy), dtype=np.int64)
    logcnt = np.ones((n, num_log), dtype=np.int64)
    arangen = np.arange(n, dtype=np.int64)
    for i in range(num_log, num_phy):
        redundant_indices = np.argmax(weight / logcnt.astype(np.float32), axis=-1)
        phy2log[:, i] = redundant_indices
        rank[:, i] = logcnt[arangen, redundant_indices]
        logcnt[arangen, redundant_indices] += 1
    return phy2log, rank, logcnt


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1], dtype=np.int64), perm.shape), axis=1)
    return inv


def rebalance_experts_hierarchical(weight: np.ndarray, num_physical_experts: int, num_groups: int,
                                   num_nodes: int, num_gpus: int):
    """EPLB's hierarchical policy (see module docstring). ``weight`` float32 [layers, experts]."""
    num_layers, num_logical_experts = weight.shape
    assert num_logical_experts % num_groups == 0
    group_size = num_logical_experts // num_groups
    assert num_groups % num_nodes == 0
    groups_per_node = num_groups // num_nodes
    assert num_gpus % num_nodes == 0
    assert num_physical_experts % num_gpus == 0
    phy_experts_per_gpu = num_physical_experts // num_gpus

    # Step 1: pack groups to nodes
    tokens_per_group = weight.reshape(num_layers, num_groups, group_size).sum(-1)
    group_pack_index, group_rank_in_pack = balanced_packing(tokens_per_group, num_nodes)
    log2mlog = (((group_pack_index * groups_per_node + group_rank_in_pack) * group_size)[..., None]
                + np.arange(group_size, dtype=np.int64)).reshape(num_layers, -1)
    mlog2log = _inverse(log2mlog)

    # Step 2: construct redundant experts within nodes
    tokens_per_mlog = np.take_along_axis(weight, mlog2log, -1).reshape(-1, num_logical_experts // num_nodes)
    phy2mlog, phyrank, mlogcnt = replicate_experts(tokens_per_mlog, num_physical_experts // num_nodes)

    # Step 3: pack physical experts to GPUs
    tokens_per_phy = np.take_along_axis(tokens_per_mlog / mlogcnt.astype(np.float32), phy2mlog, -1)
    pack_index, rank_in_pack = balanced_packing(tokens_per_phy, num_gpus // num_nodes)
    phy2pphy = pack_index * phy_experts_per_gpu + rank_in_pack
    pphy2phy = _inverse(phy2pphy)

    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, -1)
    pphy2mlog = (pphy2mlog.reshape(num_layers, num_nodes, -1)
                 + np.arange(0, num_logical_experts, num_logical_experts // num_nodes,
                             dtype=np.int64).reshape(1, -1, 1)).reshape(num_layers, -1)
    pphy2log = np.take_along_axis(mlog2log, pphy2mlog, -1)
    pphyrank = np.take_along_axis(phyrank, pphy2phy, -1).reshape(num_layers, -1)
    logcnt = np.take_along_axis(mlogcnt.reshape(num_layers, -1), log2mlog, -1)
    return pphy2log, pphyrank, logcnt


def rebalance_experts(weight: np.ndarray, num_replicas: int, num_groups: int, num_nodes: int,
                      num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry point of EPLB. Returns ``phy2log`` [L, P], ``log2phy`` [L, E, max replicas] (-1 padded)
    and ``logcnt`` [L, E]."""
    weight = np.asarray(weight, dtype=np.float32)
    num_layers, num_logical_experts = weight.shape
    if num_groups % num_nodes == 0:
        phy2log, phyrank, logcnt = rebalance_experts_hierarchical(weight, num_replicas, num_groups,
                                                                  num_nodes, num_gpus)
    else:
        phy2log, phyrank, logcnt = rebalance_experts_hierarchical(weight, num_replicas, 1, 1, num_gpus)
    maxlogcnt = num_replicas - num_logical_experts + 1
    log2phy = np.full((num_layers, num_logical_experts * maxlogcnt), -1, dtype=np.int64)
    np.put_along_axis(log2phy, phy2log * maxlogcnt + phyrank,
                      np.broadcast_to(np.arange(num_replicas, dtype=np.int64), (num_layers, num_replicas)),
                      axis=-1)
    return phy2log, log2phy.reshape(num_layers, num_logical_experts, maxlogcnt), logcnt
