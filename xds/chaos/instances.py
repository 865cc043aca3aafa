"""What a fault hits in a placed plan: which instance and rank own each die, and how long
restarting an instance takes (s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Owner:
    """Who uses one die: pool ``role``, ``instance`` index, attention DP ``rank`` (None: a MoE-only
    die of an MA instance) and ``ep_rank`` (None: an attention-only die of an MA instance)."""

    role: str
    instance: int
    rank: int | None
    ep_rank: int | None


def die_owners(placed) -> dict[int, Owner]:
    """Die id → its owner, over every instance of every pool (unused dies are absent)."""
    out: dict[int, Owner] = {}
    for pool in placed.pools():
        for inst in pool.instances:
            lay = inst.layout
            for r, dies in enumerate(np.asarray(inst.rank_dies)):
                for d in np.atleast_1d(dies):
                    out[int(d)] = Owner(pool.role, inst.index, r, None)
            for e, d in enumerate(moe_dies(inst)[:lay.ep]):
                o = out.get(int(d))
                if o is None:
                    out[int(d)] = Owner(pool.role, inst.index, None, e)
                else:
                    o.ep_rank = e
    return out


def moe_dies(inst) -> np.ndarray:
    """The dies of an instance that run MoE layers (all of them unless attention is disaggregated)."""
    return inst.dies[inst.layout.attention_dies:] if inst.layout.attention_dies else inst.dies


def pool_of(placed, role: str):
    """The prefill or decode pool of ``placed``."""
    return placed.prefill if role == "prefill" else placed.decode


def instance(placed, role: str, idx: int):
    """Instance ``idx`` of the ``role`` pool."""
    return pool_of(placed, role).instances[idx]


def weights_gb(inst) -> float:
    """Weights one die of the instance holds (GB), what a restart reloads."""
    hbm = inst.cost.hbm_gb(0, 0)
    return sum(v for k, v in hbm.items() if k.startswith("weights_"))


def load_s(total_gb: float, per_die_gb: float, params: dict[str, Any]) -> float:
    """Time to restore ``total_gb`` spread as at most ``per_die_gb`` on one die (s): the store
    serves at most ``store_gb_s`` in aggregate and each die pulls at most ``reload_gb_s``, all dies
    in parallel, so the slower of the two bounds sets the time."""
    return max(total_gb / params["store_gb_s"], per_die_gb / params["reload_gb_s"])


def restart_s(inst, params: dict[str, Any]) -> float:
    """Time to restart an instance (s): the override ``restart_s``, else graph warm-up plus
    restoring every die's weights (:func:`load_s`: ``dies x weights per die`` GB)."""
    if params.get("restart_s") is not None:
        return float(params["restart_s"])
    per_die = weights_gb(inst)
    return params["warmup_s"] + load_s(per_die * len(inst.dies), per_die, params)
