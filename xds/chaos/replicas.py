"""Expert replicas after losing EP ranks: which experts are left without a live copy, and how much
worse the survivors' balance gets when each expert's load is split over its remaining replicas."""

from __future__ import annotations

import numpy as np


def expert_state(pool, lost_ep: set[int], shares_all: np.ndarray) -> tuple[int, float]:
    """(experts left without any replica, balancedness ratio new/old ≥ 1) after losing ``lost_ep``.

    ``shares_all``: per-expert load shares the plan balanced (measured or synthetic). Ratio 1 and no
    missing expert when the pool has no physical expert map or no routed rank was lost."""
    em = pool.expert_map or {}
    ph = em.get("phy2log")
    if ph is None or not lost_ep:
        return 0, 1.0
    ph = np.asarray(ph)
    spr = int(em["slots_per_rank"])
    routed = int(em["routed_ranks"])
    E = int(em["experts"])
    lost_routed = sorted(r for r in lost_ep if r < routed)
    if not lost_routed:
        return 0, 1.0
    alive = np.ones(ph.shape[1], dtype=bool)
    for r in lost_routed:
        alive[r * spr:(r + 1) * spr] = False
    missing = 0
    for layer in ph:
        have = np.bincount(layer[alive], minlength=E)
        missing = max(missing, int((have == 0).sum()))
    # in-sample balancedness before/after with each expert's share split over its live replicas,
    # on the same long-run loads the plan balanced
    shares = np.resize(shares_all, (ph.shape[0], E))
    live_ranks = np.array([r not in lost_ep for r in range(routed)])
    if not live_ranks.any():
        # every routed rank of the instance is gone (e.g. a one-node instance lost its node): no
        # expert has a replica left and there is no load to balance
        return E, 1.0
    before = _balancedness(ph, shares, np.ones_like(alive), live_ranks, routed, spr, E)
    after = _balancedness(ph, shares, alive, live_ranks, routed, spr, E)
    return missing, max(after / before, 1.0)


def _balancedness(ph: np.ndarray, shares: np.ndarray, mask: np.ndarray, live_ranks: np.ndarray,
                  routed: int, spr: int, E: int) -> float:
    """Mean over layers of max / mean load of the live ranks, with live slots ``mask``."""
    vals = []
    for layer, sh in zip(ph, shares):
        cnt = np.bincount(layer[mask], minlength=E).astype(float)
        per = np.where(cnt > 0, sh / np.maximum(cnt, 1), 0.0)
        slot_load = np.where(mask, per[layer], 0.0)
        rank_load = slot_load.reshape(routed, spr).sum(axis=1)
        live = rank_load[live_ranks]
        vals.append(live.max() / max(live.mean(), 1e-12))
    return float(np.mean(vals))
