"""Expert-parallel load balancing: choose redundant experts and place their slots on EP ranks.

Input is a per-layer load matrix (token counts routed to each logical expert, [layers, experts]);
output is a layout ``phy2log`` [layers, P] (:mod:`.layout`). The anchor is DeepSeek's open-source
EPLB: its layout is computed bit-exactly (:mod:`.eplb`) and kept as a candidate, so xds's result is
never worse; xds adds its own candidates (:mod:`.policies`, :mod:`.hierarchical`) and a swap search
(:mod:`.local_search`). Read top-down: loads, layout, replication, packing, eplb, groups,
local_search, hierarchical, policies, imbalance, run. Units: loads are token counts; times in s.
"""

from .layout import ExpertLayout, balancedness, load_layout
from .loads import SYNTHETIC_SPEC, load_loads, synthetic_loads
from .policies import balance
from .run import run_experts

__all__ = ["SYNTHETIC_SPEC", "ExpertLayout", "balance", "balancedness", "load_layout", "load_loads",
           "run_experts", "synthetic_loads"]
