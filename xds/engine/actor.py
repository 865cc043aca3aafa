"""What prefill and decode instances share: the step clock and the fault state that events set."""

from __future__ import annotations

import math

from ..cost import CostModel


class Actor:
    """One serving instance stepping through iterations. Times in s.

    The main loop ends a step at ``t_end`` (``end``) and starts the next when the instance is idle,
    up and not paused (``start``); ``t_wake`` is when an idle instance gets work it can start on.
    """

    role = ""

    def __init__(self, idx: int, cost: CostModel):
        self.idx = idx
        self.cost = cost
        self.base_cost = cost
        self.busy = False
        self.t_start = 0.0
        self.t_end = math.inf
        self.t_wake = math.inf     # idle but work becomes ready then
        self.down = False
        self.paused = 0            # nesting count of active pauses
        self.slow = 1.0            # factor on step times (stragglers)
        self.kv_bw = 1.0           # factor on the KV-transfer bandwidth into this instance (decode)
        self.kv_hold = 0.0         # KV transfers into this instance cannot progress before then (s)

    def start(self, sim, t: float) -> None:
        """Start the next iteration at ``t`` if there is work."""
        raise NotImplementedError

    def end(self, sim, t: float) -> None:
        """The iteration in progress ends at ``t``."""
        raise NotImplementedError
