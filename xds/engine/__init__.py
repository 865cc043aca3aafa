"""Engine: vectorized request-level simulation of a placed plan over a workload (DESIGN.md §2.3).

Flow: arrivals → router (prefill instance with the fewest queued tokens; long and short prompts kept
apart when the plan reserves long-prompt instances) → prefill batches up to the token budget (long
prompts chunked) → P→D KV transfer over the RDMA plane (KV bytes of the prompt / per-die bandwidth +
latency) → decode admission (DP rank with the least KV among non-full ranks; batch cap; KV capacity,
backpressure when full) → decode iterations until each request's output length is reached (MTP:
expected tokens per step) → completion.

Modules: :mod:`.result` (status codes, :class:`SimResult`, window series), :mod:`.requests`
(per-request state arrays), :mod:`.actor` (what instances share), :mod:`.decode` (hand-off,
admission, completion ring), :mod:`.prefill` (routing, batches), :mod:`.events` (perturbations),
:mod:`.sim` (the main loop). Each imports only the ones listed before it.

Perturbations (the chaos layer compiles faults into these; see :class:`RanksDown`, :class:`Pause`,
:class:`Slowdown`, :class:`Rollback`, :class:`SetCost`, :class:`KvBandwidth`, :class:`Stall`,
:class:`KvStall`, :class:`KvAbort`, :class:`KvCorrupt`) are applied at their
``at_s``. Every request ends either ``completed`` or ``failed`` with a reason (:data:`REASONS`).

Units: seconds (s) for all times in arrays; µs only at the cost-model boundary.
"""

from .events import (
                     Event,
                     KvAbort,
                     KvBandwidth,
                     KvCorrupt,
                     KvStall,
                     Pause,
                     RanksDown,
                     Rollback,
                     SetCost,
                     Slowdown,
                     Stall,
)
from .result import COMPLETED, FAILED, REASONS, STATUS_NAMES, SimResult
from .sim import MAX_RETRIES, simulate

__all__ = ["COMPLETED", "FAILED", "MAX_RETRIES", "REASONS", "STATUS_NAMES", "Event", "KvAbort",
           "KvBandwidth", "KvCorrupt", "KvStall", "Pause", "RanksDown", "Rollback", "SetCost",
           "SimResult", "Slowdown", "Stall", "simulate"]
