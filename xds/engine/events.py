"""Perturbation events, compiled from chaos scenarios (xds/chaos/ builds them).

Each event is checked against the run when scheduled (:func:`schedule`), changes the engine's state
in ``apply(sim, t)`` at ``at_s`` and, if it has an ``until_s``, undoes that in ``end(sim, t)``.
Times in s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..cost import CostModel
from ..errors import XdsError
from .decode import decode_lost
from .prefill import prefill_lost, requeue
from .result import DEC_PENDING, R_KV_CORRUPT, R_RANK_LOST, R_RESTART


def _actors(sim, role: str, inst: int | None) -> list:
    """The instances an event names: one, or every instance of ``role`` with ``inst=None``."""
    pool = sim.P if role == "prefill" else sim.D if role == "decode" else None
    if pool is None:
        raise XdsError(f"unknown role {role!r} (allowed: prefill, decode)", where="events")
    if inst is None:
        return list(pool)
    if not (0 <= inst < len(pool)):
        raise XdsError(f"{role} instance {inst} does not exist (the plan has {len(pool)})",
                       where="events")
    return [pool[inst]]


def _one(sim, role: str, inst: int | None):
    """The single instance an event names (unpacking fails for ``inst=None`` on a multi-instance
    pool, as before)."""
    (a,) = _actors(sim, role, inst)
    return a


def _lose(sim, a, t: float, code: int | None, ranks: np.ndarray | None) -> None:
    """Instance ``a`` (decode: its ``ranks``, None = all and its admission queue) loses its
    in-flight requests at ``t``: requeued to prefill (``code=None``) or failed with ``code``."""
    if a.role == "prefill":
        prefill_lost(sim, a, t, code)
        return
    ids, pend = decode_lost(sim, a, np.arange(a.R) if ranks is None else ranks,
                            pending=ranks is None)
    if code is not None:
        sim.req.fail(np.concatenate([ids, pend]), code, t)
        return
    was_down, a.down = a.down, True   # prefer another decode instance for the retry
    requeue(sim, ids, t)
    requeue(sim, pend, t)
    a.down = was_down


@dataclass(frozen=True)
class RanksDown:
    """At ``at_s`` decode DP ``ranks`` (or the whole instance with ``ranks=None``) of ``instance``
    stop; their requests lose KV and are requeued to prefill (``on_loss="requeue"``, recomputing
    prompt + generated tokens) or fail ``rank_lost``. They come back at ``until_s`` (None: never)."""

    at_s: float
    role: str
    instance: int
    ranks: tuple[int, ...] | None = None
    until_s: float | None = None
    on_loss: str = "requeue"

    def _ranks(self) -> np.ndarray | None:
        return None if self.ranks is None else np.unique(np.asarray(self.ranks, dtype=np.int64))

    def check(self, sim) -> None:
        if self.on_loss not in ("requeue", "fail"):
            raise XdsError(f"on_loss must be requeue or fail (got {self.on_loss!r})", where="events")
        a = _one(sim, self.role, self.instance)
        if self.ranks is not None:
            if self.role != "decode":
                raise XdsError("ranks apply to decode instances only", where="events")
            ranks = self._ranks()
            if ranks.size and (ranks.min() < 0 or ranks.max() >= a.R):
                raise XdsError(f"decode rank out of range 0..{a.R - 1}", where="events")

    def apply(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        ranks = self._ranks()
        if a.role == "decode":
            a.alive[np.arange(a.R) if ranks is None else ranks] = False
        _lose(sim, a, t, R_RANK_LOST if self.on_loss == "fail" else None, ranks)
        if ranks is None:
            a.down = True

    def end(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        ranks = self._ranks()
        if ranks is None:
            a.down = False
        if a.role == "decode":
            a.alive[np.arange(a.R) if ranks is None else ranks] = True


@dataclass(frozen=True)
class Pause:
    """The instance does not step during [at_s, until_s) (restart / detection gap); in-flight
    requests are kept, requeued or failed (``instance_restart``)."""

    at_s: float
    role: str
    instance: int
    until_s: float
    on_inflight: str = "keep"

    def check(self, sim) -> None:
        if self.on_inflight not in ("keep", "requeue", "fail"):
            raise XdsError(f"on_inflight must be keep, requeue or fail (got {self.on_inflight!r})",
                           where="events")
        _one(sim, self.role, self.instance)
        float(self.until_s)      # a pause must end (a TypeError for None, as the event contract says)

    def apply(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        a.paused += 1
        if a.busy:       # the iteration in progress is abandoned; redone after the pause
            a.busy, a.t_end = False, math.inf
        if self.on_inflight != "keep":
            _lose(sim, a, t, R_RESTART if self.on_inflight == "fail" else None, None)

    def end(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        a.paused = max(0, a.paused - 1)


@dataclass(frozen=True)
class Slowdown:
    """Step times of the instance × ``factor`` during [at_s, until_s) (straggler, degraded link)."""

    at_s: float
    role: str
    instance: int
    factor: float
    until_s: float | None = None

    def check(self, sim) -> None:
        if not (self.factor > 0 and math.isfinite(self.factor)):
            raise XdsError(f"slowdown factor must be > 0 (got {self.factor})", where="events")
        _one(sim, self.role, self.instance)

    def apply(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        a.slow *= float(self.factor)

    def end(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        a.slow *= 1.0 / float(self.factor)


@dataclass(frozen=True)
class Rollback:
    """The iteration in progress at ``at_s`` is lost and redone (its time counts twice; no tokens
    are lost). ``instance=None``: every instance of ``role``."""

    at_s: float
    role: str
    instance: int | None = None

    def check(self, sim) -> None:
        _actors(sim, self.role, self.instance)

    def apply(self, sim, t: float) -> None:
        for a in _actors(sim, self.role, self.instance):
            if a.busy:
                a.t_end += a.t_end - a.t_start


@dataclass(frozen=True)
class SetCost:
    """Price the instance's iterations with ``cost`` during [at_s, until_s) (fewer experts, less
    bandwidth, ...)."""

    at_s: float
    role: str
    instance: int
    cost: CostModel
    until_s: float | None = None

    def check(self, sim) -> None:
        _one(sim, self.role, self.instance)

    def apply(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        a.cost = self.cost

    def end(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        a.cost = a.base_cost


@dataclass(frozen=True)
class KvBandwidth:
    """KV transfers into decode ``instance`` run at ``factor`` × the plan's per-die bandwidth during
    [at_s, until_s) (a degraded RDMA/UB path between the pools)."""

    at_s: float
    instance: int
    factor: float
    until_s: float | None = None
    role: str = "decode"

    def check(self, sim) -> None:
        if not (0 < self.factor and math.isfinite(self.factor)):
            raise XdsError(f"KV bandwidth factor must be > 0 (got {self.factor})", where="events")
        _one(sim, "decode", self.instance)

    def apply(self, sim, t: float) -> None:
        a = _one(sim, "decode", self.instance)
        a.kv_bw *= float(self.factor)

    def end(self, sim, t: float) -> None:
        a = _one(sim, "decode", self.instance)
        a.kv_bw *= 1.0 / float(self.factor)


@dataclass(frozen=True)
class Stall:
    """The instance's collectives hang during [at_s, until_s) (a network glitch the transport
    rides out): the iteration in flight ends ``until_s - at_s`` later, an idle instance starts
    nothing before ``until_s``. ``redo``: the iteration in flight is then rolled back and
    recomputed once more (xDeepServe stage 3, reference §E). Nothing is lost."""

    at_s: float
    role: str
    instance: int
    until_s: float
    redo: bool = False

    def check(self, sim) -> None:
        _one(sim, self.role, self.instance)
        float(self.until_s)

    def apply(self, sim, t: float) -> None:
        a = _one(sim, self.role, self.instance)
        held = sim.stalled
        if a.busy:
            dur = a.t_end - a.t_start
            a.t_end = max(a.t_end, t) + (self.until_s - t) + (dur if self.redo else 0.0)
        else:
            a.paused += 1
            held.add(id(self))

    def end(self, sim, t: float) -> None:
        held = sim.stalled
        if id(self) in held:
            held.discard(id(self))
            a = _one(sim, self.role, self.instance)
            a.paused = max(0, a.paused - 1)


@dataclass(frozen=True)
class KvStall:
    """P→D KV transfers into decode ``instance`` stall during [at_s, until_s) (an RDMA-plane
    glitch): a transfer in flight at ``at_s`` resumes at ``until_s`` with what it had left; one
    issued meanwhile starts at ``until_s``."""

    at_s: float
    instance: int
    until_s: float
    role: str = "decode"

    def check(self, sim) -> None:
        _one(sim, "decode", self.instance)
        float(self.until_s)

    def apply(self, sim, t: float) -> None:
        d = _one(sim, "decode", self.instance)
        d.kv_hold = max(d.kv_hold, self.until_s)
        ids = _in_flight_kv(sim, d, t)
        if len(ids):
            sim.req.ready[ids] = self.until_s + (sim.req.ready[ids] - t)

    def end(self, sim, t: float) -> None:
        """Nothing to undo: ``kv_hold`` has passed."""


@dataclass(frozen=True)
class KvAbort:
    """At ``at_s`` the transport gives up on the P→D KV transfers still in flight into decode
    ``instance`` (the outage outlasted its retry window): their requests go back to prefill (one
    retry each, ``retries_exhausted`` past the budget)."""

    at_s: float
    instance: int
    role: str = "decode"

    def check(self, sim) -> None:
        _one(sim, "decode", self.instance)

    def apply(self, sim, t: float) -> None:
        d = _one(sim, "decode", self.instance)
        ids = _in_flight_kv(sim, d, t)
        was_down, d.down = d.down, True   # the retry prefers another decode instance
        requeue(sim, ids, t)
        d.down = was_down


def _in_flight_kv(sim, d, t: float) -> np.ndarray:
    """Requests whose KV transfer into decode ``d`` has not arrived at ``t`` (s)."""
    pv = d.pend.view()[d.phead:]
    req = sim.req
    return pv[(req.status[pv] == DEC_PENDING) & (req.ready[pv] > t)].copy()


@dataclass(frozen=True)
class KvCorrupt:
    """At ``at_s`` an uncorrectable HBM error corrupts the KV of the requests decoding on decode
    ``ranks`` of ``instance`` (reference §E: CANN remaps around the bad region, "some KV and
    individual requests may be lost, but service continues"): they fail ``kv_corrupted``; the
    ranks keep serving."""

    at_s: float
    instance: int
    ranks: tuple[int, ...]
    role: str = "decode"

    def check(self, sim) -> None:
        d = _one(sim, "decode", self.instance)
        r = np.asarray(self.ranks, dtype=np.int64)
        if r.size and (r.min() < 0 or r.max() >= d.R):
            raise XdsError(f"decode rank out of range 0..{d.R - 1}", where="events")

    def apply(self, sim, t: float) -> None:
        d = _one(sim, "decode", self.instance)
        ids, _ = decode_lost(sim, d, np.asarray(self.ranks, dtype=np.int64), pending=False)
        sim.req.fail(ids, R_KV_CORRUPT, t)


Event = RanksDown | Pause | Slowdown | Rollback | SetCost | KvBandwidth | Stall | KvStall | KvAbort \
    | KvCorrupt
EVENT_TYPES = (RanksDown, Pause, Slowdown, Rollback, SetCost, KvBandwidth, Stall, KvStall, KvAbort,
               KvCorrupt)
Action = tuple[float, int, int, Callable[..., None]]   # (time s, event index, 0 start / 1 end, fn)


def schedule(sim, events) -> list[Action]:
    """Check ``events`` against the run and return their actions in time order (ties: event order,
    start before end)."""
    acts: list[Action] = []
    for k, ev in enumerate(events):
        at = float(ev.at_s)
        if not math.isfinite(at) or at < 0:
            raise XdsError(f"event at_s must be >= 0 (got {ev.at_s})", where="events")
        until = getattr(ev, "until_s", None)
        if until is not None and until < at:
            raise XdsError(f"until_s ({until}) before at_s ({at})", where="events")
        if not isinstance(ev, EVENT_TYPES):
            raise XdsError(f"unknown event type {type(ev).__name__}", where="events")
        ev.check(sim)
        acts.append((at, k, 0, ev.apply))
        if until is not None:
            acts.append((float(until), k, 1, ev.end))
    acts.sort(key=lambda x: (x[0], x[1], x[2]))
    return acts
