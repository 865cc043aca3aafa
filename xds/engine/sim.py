"""The simulation loop: jump to the next arrival, event or step end, and act on it."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import XdsError
from ..workload import Workload
from .decode import build_decode, ramp_s
from .events import Event, schedule
from .prefill import build_prefill, route
from .requests import Requests
from .result import Series, SimResult, collect

MAX_RETRIES = 3                   # requeues per request before it fails "retries_exhausted"
DRAIN_MIN_S = 600.0               # keep simulating at least this long after the last arrival (s)


def simulate(placed, workload: Workload, *, seed: int = 0, concurrency: int | None = None,
             events: Sequence[Event] = (), progress: Callable[[float, int, int], None] | None = None,
             max_retries: int = MAX_RETRIES) -> SimResult:
    """Simulate ``workload`` on ``placed`` (a :class:`xds.plan.PlacedPlan`).

    ``concurrency=N``: closed loop — N requests in flight; the first N start staggered over one
    estimated request latency, every later request arrives when one finishes (the workload's
    arrival times are ignored, its lengths are used in order). ``events``: perturbations applied at
    their ``at_s``. ``progress(sim_time_s, done, total)`` is called now and then.
    Deterministic: the engine draws no random numbers (``seed`` is recorded; it seeds the workload).
    """
    return _Sim(placed, workload, seed, concurrency, events, progress, max_retries).run()


class _Sim:
    """One run; the ``sim`` the other modules are handed: ``req``, prefill ``P`` and decode ``D``
    instances, ``long_thr``, ``kv_bps``/``kv_bpt`` (P→D B/s, B/token), ``max_dt`` (s), ``series``."""

    def __init__(self, placed, w: Workload, seed, concurrency, events, progress, max_retries):
        self.seed, self.progress = seed, progress
        self.req = Requests(w, placed, concurrency, max_retries)
        self.series = Series(float(placed.spec.slo.window_s))
        self.P, self.long_thr = build_prefill(placed)
        self.D = build_decode(placed, self.req.out)
        if not self.D:
            raise XdsError("the plan has no decode instance", where="pools")
        self.actors = self.P + self.D
        self.kv_bps = float(placed.kv_transfer_gb_s) * 1e9       # per-die P→D bandwidth (B/s)
        self.kv_bpt = float(placed.kv_bytes_per_token)           # KV bytes per token
        self.kv_pair = getattr(placed, "kv_pair", None)          # cross-pod (factor, extra s) [P, D]
        self.req.fail_oversized(max(d.cap_kv for d in self.D))
        self.events = schedule(self, events)
        self.max_dt = 0.0                                        # longest step seen (s)
        self.stalled: set[int] = set()                           # Stall events holding an idle actor

    def run(self) -> SimResult:
        req, N, acts, actors, series = self.req, self.req.N, self.events, self.actors, self.series
        req.start_arrivals(ramp_s(self.D, req) if req.conc is not None else None)
        arr = req.arr
        nxt = ev_i = loops = 0       # next request to arrive (arrival order), next event action
        t, horizon = 0.0, math.inf
        while req.done < N:
            t_arr = arr[nxt] if nxt < req.n_rel else math.inf
            t_ev = acts[ev_i][0] if ev_i < len(acts) else math.inf
            t_act = math.inf
            for a in actors:
                if a.down or a.paused:
                    continue               # they resume through an event
                te = a.t_end if a.busy else a.t_wake
                if te < t_act:
                    t_act = te
            t_new = min(t_arr, t_ev, t_act)
            if nxt >= N and horizon == math.inf:
                horizon = self._drain_until(t)
            if t_new == math.inf:
                break                      # nothing can happen any more (e.g. pools down for good)
            if t_new > horizon:
                t = horizon
                break
            t = max(t, t_new)
            while t >= series.next_t:
                series.take(self.P, self.D)
            while ev_i < len(acts) and acts[ev_i][0] <= t:
                acts[ev_i][3](self, t)
                ev_i += 1
            if nxt < req.n_rel and arr[nxt] <= t:
                nxt = self._arrive(nxt, t, min(t_act, t_ev, series.next_t))
            for a in actors:
                if a.busy and a.t_end <= t:
                    a.end(self, t)
            for a in actors:
                if not a.busy and not a.down and not a.paused:
                    a.start(self, t)
            loops += 1
            if self.progress is not None and loops % 2048 == 0:
                self.progress(t, req.done, N)
        if self.progress is not None:
            self.progress(t, req.done, N)
        return collect(req, self.P, self.D, series, t, self.seed)

    def _arrive(self, nxt: int, t: float, t_next: float) -> int:
        """Route the arrivals from request ``nxt`` on at ``t`` (s); returns the next one to come.
        Every arrival up to ``t_next`` (the next actor step end, event or snapshot: queue loads do
        not change before then) is routed in one vectorised call, unless an idle prefill instance
        would start at once: then only the arrivals of this instant are."""
        limit = t
        if self.P and not any(not a.busy and not a.down and not a.paused for a in self.P):
            limit = t_next
        j = int(np.searchsorted(self.req.arr[: self.req.n_rel], max(limit, t), side="right"))
        route(self, self.req.arrive(nxt, j, t), t)
        return j

    def _drain_until(self, t: float) -> float:
        """After the last arrival at ``t`` (s): run until the longest output can finish at the
        slowest step seen (s)."""
        longest = float(self.req.out.max())
        min_tps = min(d.tps for d in self.D) or 1.0
        return t + max(DRAIN_MIN_S, 10.0 * self.max_dt,
                       2.0 * (longest / min_tps + 10.0) * max(self.max_dt, 1e-3))
