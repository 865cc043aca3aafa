"""Planner: place a plan's instances, ranks and expert slots on concrete dies of the topology, check
HBM, and predict steady-state performance with the cost model; or search layouts (``--search``).

Modules, bottom up: :mod:`.inputs` (workload lengths, expert shares, plan-located errors),
:mod:`.predict` (TPOT/TTFT vs SLO), :mod:`.placed` (:class:`PlacedPlan` and its parts),
:mod:`.placement` (:func:`place`), :mod:`.candidates` / :mod:`.write` / :mod:`.search` (``--search``) and
:mod:`.command` (:func:`plan_command`). This file only re-exports.
"""

from __future__ import annotations

from .command import plan_command
from .inputs import DEFAULT_LENGTHS, expert_shares, workload_lengths
from .placed import PlacedInstance, PlacedPlan, PlacedPool
from .placement import PREFILL_TOKENS_PER_CHIP, place
from .search import run_search

__all__ = ["DEFAULT_LENGTHS", "PREFILL_TOKENS_PER_CHIP", "PlacedInstance", "PlacedPlan", "PlacedPool",
           "expert_shares", "place", "plan_command", "run_search", "workload_lengths"]
