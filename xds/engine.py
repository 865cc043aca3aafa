"""Engine: vectorized request-level simulation of a placed plan over a workload (DESIGN.md §2.3).

Flow: arrivals → router (prefill instance with the fewest queued tokens; long and short prompts kept
apart when the plan reserves long-prompt instances) → prefill batches up to the token budget (long
prompts chunked) → P→D KV transfer over the RDMA plane (KV bytes of the prompt / per-die bandwidth +
latency) → decode admission (DP rank with the least KV among non-full ranks; batch cap; KV capacity,
backpressure when full) → decode iterations until each request's output length is reached (MTP:
expected tokens per step) → completion.

Hot-path design: every per-request quantity is a NumPy array indexed by request id; every instance
keeps per-rank aggregates (active requests, Σ context, reserved KV tokens). A request's completion
step is known at admission (``ceil(remaining / tokens_per_step)``), so completions are pre-booked in a
ring ``[steps, ranks]`` of per-rank decrements: one decode iteration is O(ranks) NumPy work, and
per-request state is touched only in vectorized batches at admission, at prefill completion and at
chaos events. Step end times are stored per instance, so finish times / TPOT are a gather at the end.

Perturbations (the chaos layer compiles faults into these; see :class:`RanksDown`, :class:`Pause`,
:class:`Slowdown`, :class:`Rollback`, :class:`SetCost`) are applied at their ``at_s``. Every request
ends either ``completed`` or ``failed`` with a reason (:data:`REASONS`).

Units: seconds (s) for all times in arrays; µs only at the cost-model boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .cost import CostModel
from .errors import XdsError
from .workload import Workload

# request status codes
WAITING, PREFILL, DEC_PENDING, DECODING, COMPLETED, FAILED = 0, 1, 2, 3, 4, 5
STATUS_NAMES = ("waiting", "prefill", "decode_pending", "decoding", "completed", "failed")
# failure reasons (index 0 = none)
REASONS = ("", "rank_lost", "instance_restart", "retries_exhausted", "unfinished", "kv_too_large",
           "no_instance")
R_NONE, R_RANK_LOST, R_RESTART, R_RETRIES, R_UNFINISHED, R_KV, R_NO_INSTANCE = range(7)

KV_TRANSFER_LATENCY_S = 100e-6   # RDMA setup + completion notification per transfer (s)
MAX_RETRIES = 3                   # requeues per request before it fails "retries_exhausted"
DRAIN_MIN_S = 600.0               # keep simulating at least this long after the last arrival (s)
RING_MAX_CELLS = 32_000_000       # cap on the completion ring (steps × ranks); longer outputs overflow


# --------------------------------------------------------------------------------------------
# perturbation events (compiled from chaos scenarios)
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Pause:
    """The instance does not step during [at_s, until_s) (restart / detection gap); in-flight
    requests are kept, requeued or failed (``instance_restart``)."""

    at_s: float
    role: str
    instance: int
    until_s: float
    on_inflight: str = "keep"


@dataclass(frozen=True)
class Slowdown:
    """Step times of the instance × ``factor`` during [at_s, until_s) (straggler, degraded link)."""

    at_s: float
    role: str
    instance: int
    factor: float
    until_s: float | None = None


@dataclass(frozen=True)
class Rollback:
    """The iteration in progress at ``at_s`` is lost and redone (its time counts twice; no tokens
    are lost). ``instance=None``: every instance of ``role``."""

    at_s: float
    role: str
    instance: int | None = None


@dataclass(frozen=True)
class SetCost:
    """Price the instance's iterations with ``cost`` during [at_s, until_s) (fewer experts, less
    bandwidth, ...)."""

    at_s: float
    role: str
    instance: int
    cost: CostModel
    until_s: float | None = None


@dataclass(frozen=True)
class KvBandwidth:
    """KV transfers into decode ``instance`` run at ``factor`` × the plan's per-die bandwidth during
    [at_s, until_s) (a degraded RDMA/UB path between the pools)."""

    at_s: float
    instance: int
    factor: float
    until_s: float | None = None
    role: str = "decode"


Event = RanksDown | Pause | Slowdown | Rollback | SetCost | KvBandwidth


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


@dataclass
class SimResult:
    """Per-request records (arrays of length N, workload order) and per-window time series.

    Times in s (NaN where undefined). ``status`` is COMPLETED or FAILED for every request;
    ``reason`` indexes :attr:`reason_names`. ``decode_rank`` is the DP rank within the decode
    instance (-1 if never admitted). ``series`` holds per-window arrays keyed by name
    (``t_s``, ``prefill_queue``, ``decode_pending``, ``decode_running``, ``kv_usage_decode``,
    ``output_tokens``); ``itl_s``/``itl_w`` are decode step gaps (s) weighted by active requests.
    """

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    generated: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    prefill_instance: np.ndarray
    decode_instance: np.ndarray
    decode_rank: np.ndarray
    recomputed: np.ndarray
    recomputed_tokens: np.ndarray
    cached_tokens: np.ndarray
    duration: float
    window_s: float
    series: dict[str, np.ndarray]
    itl_s: np.ndarray
    itl_w: np.ndarray
    prefix_cache_hit_rate: float | None = None
    reason_names: tuple[str, ...] = REASONS
    concurrency: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrival_s)


# --------------------------------------------------------------------------------------------
# internals
# --------------------------------------------------------------------------------------------


class _Grow:
    """Append-only NumPy array with amortised doubling."""

    def __init__(self, dtype, cap: int = 1024):
        self.a = np.empty(cap, dtype=dtype)
        self.n = 0

    def extend(self, x: np.ndarray) -> None:
        k = len(x)
        if self.n + k > len(self.a):
            new = np.empty(max(2 * len(self.a), self.n + k), dtype=self.a.dtype)
            new[: self.n] = self.a[: self.n]
            self.a = new
        self.a[self.n: self.n + k] = x
        self.n += k

    def append(self, v) -> None:
        if self.n == len(self.a):
            new = np.empty(2 * len(self.a), dtype=self.a.dtype)
            new[: self.n] = self.a[: self.n]
            self.a = new
        self.a[self.n] = v
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class _Actor:
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
        self.slow = 1.0
        self.kv_bw = 1.0       # factor on the KV-transfer bandwidth into this instance (decode)


class _Prefill(_Actor):
    role = "prefill"

    def __init__(self, idx, cost, dies, budget, long):
        super().__init__(idx, cost)
        self.dies = dies
        self.budget = budget       # tokens per batch over the instance
        self.long = long
        self.q = _Grow(np.int64)
        self.head = 0
        self.q_tokens = 0.0
        self.batch_full = None     # request ids finishing prefill in the current batch
        self.batch_part = -1       # request id of the chunked request (-1: none)
        self.batch_part_tok = 0
        self.batch_tokens = 0.0


class _Decode(_Actor):
    role = "decode"

    def __init__(self, idx, cost, ranks, tp, cap_b, cap_kv, tps, horizon_steps):
        super().__init__(idx, cost)
        self.R = ranks
        self.tp = tp
        self.cap_b = cap_b
        self.cap_kv = cap_kv
        self.tps = tps
        self.alive = np.ones(ranks, dtype=bool)
        self.n = np.zeros(ranks)
        self.ctx = np.zeros(ranks)
        self.resv = np.zeros(ranks)
        self.s = 0
        self.H = max(2, min(horizon_steps, max(RING_MAX_CELLS // max(ranks, 1), 2)))
        self.ring_n = np.zeros((self.H, ranks))
        self.ring_ctx = np.zeros((self.H, ranks))
        self.ring_resv = np.zeros((self.H, ranks))
        self.far: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.pend = _Grow(np.int64)
        self.phead = 0
        self.step_end = _Grow(np.float64, 4096)
        self.step_dt = _Grow(np.float64, 4096)
        self.step_n = _Grow(np.float64, 4096)

    @property
    def pending(self) -> int:
        return self.pend.n - self.phead


def _instances(pool) -> list:
    return list(pool.instances) if pool is not None else []


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------


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
    def __init__(self, placed, w: Workload, seed, concurrency, events, progress, max_retries):
        self.p = placed
        self.w = w
        self.seed = seed
        self.progress = progress
        self.max_retries = int(max_retries)
        N = len(w)
        self.N = N
        if N == 0:
            raise XdsError("the workload has no requests", where="workload")
        if concurrency is not None and (int(concurrency) != concurrency or concurrency < 1):
            raise XdsError(f"must be a whole number >= 1 (got {concurrency})", file="--concurrency")
        self.conc = None if concurrency is None else int(min(concurrency, N))
        self.inp = np.asarray(w.input_len, dtype=np.int64)
        self.out = np.asarray(w.output_len, dtype=np.int64)
        self.arr = np.array(w.arrival_s, dtype=np.float64)
        spec = placed.spec
        self.window_s = float(spec.slo.window_s)
        # prefix cache: cut prefill tokens by the leading cached blocks
        self.cached = np.zeros(N, dtype=np.int64)
        self.hit_rate = None
        cap_gb = float(spec.prefix_cache.capacity_gb)
        if cap_gb > 0 and w.has_blocks:
            from .workload import prefix_cache_stats
            blocks = int(cap_gb * 1e9 // (placed.kv_bytes_per_token * w.block_tokens))
            st = prefix_cache_stats(w, blocks)
            self.cached = st.cached_tokens.astype(np.int64)
            self.hit_rate = float(st.hit_rate)
        # per-request state
        self.status = np.zeros(N, dtype=np.int8)
        self.reason = np.zeros(N, dtype=np.int8)
        self.first = np.full(N, np.nan)
        self.finish = np.full(N, np.nan)
        self.generated = np.zeros(N, dtype=np.int64)
        self.gen_base = np.zeros(N, dtype=np.int64)      # tokens generated before this attempt
        self.pre = self.inp - self.cached                # tokens to prefill this attempt
        self.pre_ctx0 = self.cached.copy()               # context already present (cached)
        self.pf_done = np.zeros(N, dtype=np.int64)
        self.pf_inst = np.full(N, -1, dtype=np.int16)
        self.d_inst = np.full(N, -1, dtype=np.int16)
        self.d_rank = np.full(N, -1, dtype=np.int32)
        self.adm = np.zeros(N, dtype=np.int64)
        self.fin = np.full(N, -1, dtype=np.int64)
        self.ready = np.zeros(N)
        self.retries = np.zeros(N, dtype=np.int16)
        self.recomp = np.zeros(N, dtype=np.int16)
        self.recomp_tok = np.zeros(N, dtype=np.int64)
        self.done = 0
        # actors
        hw = placed.hw
        pre_pool, dec_pool = placed.prefill, placed.decode
        self.P: list[_Prefill] = []
        if pre_pool is not None:
            budget_die = pre_pool.token_budget_per_die or 16384 // max(hw.dies_per_chip, 1)
            self.long_thr = pre_pool.spec.long_prompt_threshold
            for i, inst in enumerate(_instances(pre_pool)):
                nd = int(len(inst.dies)) or inst.layout.dies
                self.P.append(_Prefill(i, inst.cost, nd, float(budget_die) * nd,
                                       bool(inst.long_prompts)))
        else:
            self.long_thr = None
        self.D: list[_Decode] = []
        tps_max = 1.0
        for i, inst in enumerate(_instances(dec_pool)):
            lay = inst.layout
            tps = float(lay.tokens_per_step())
            tps_max = max(tps_max, tps)
            rd = np.asarray(inst.rank_dies)
            ranks = int(rd.shape[0]) if rd.ndim >= 1 and rd.size else lay.dp
            tp = int(rd.shape[1]) if rd.ndim == 2 else lay.tp
            # batch_per_die is the cap per DP rank (see PoolSpec), whatever its TP
            cap_b = int(dec_pool.batch_cap_per_rank or round(dec_pool.spec.batch_per_die))
            cap_kv = float(dec_pool.kv_tokens_per_rank or 1e18)
            max_steps = int(np.ceil(self.out.max() / tps)) + 2
            horizon = 1 << int(math.ceil(math.log2(max(max_steps, 2))))
            self.D.append(_Decode(i, inst.cost, ranks, tp, max(cap_b, 1), cap_kv, tps, horizon))
        if not self.D:
            raise XdsError("the plan has no decode instance", where="pools")
        self.actors: list[_Actor] = self.P + self.D
        self.kv_bps = float(placed.kv_transfer_gb_s) * 1e9
        self.kv_bpt = float(placed.kv_bytes_per_token)
        # requests whose KV can never fit one decode rank fail up front
        need = (self.inp + self.out).astype(float)
        too_big = need > max(d.cap_kv for d in self.D)
        if too_big.any():
            ids = np.flatnonzero(too_big)
            self._fail(ids, R_KV, 0.0, count=False)
            self.finish[ids] = self.arr[ids]       # fails as it arrives, not before (closed loop: re-set at release)
        self.events = self._compile(events)
        self.max_dt = 0.0
        # window snapshots
        self.snap: dict[str, list] = {k: [] for k in (
            "prefill_queue", "decode_pending", "decode_running", "kv_usage_decode")}
        self.next_snap = self.window_s

    # ------------------------------------------------------------------ events
    def _actor(self, role: str, inst: int | None) -> list[_Actor]:
        pool = self.P if role == "prefill" else self.D if role == "decode" else None
        if pool is None:
            raise XdsError(f"unknown role {role!r} (allowed: prefill, decode)", where="events")
        if inst is None:
            return list(pool)
        if not (0 <= inst < len(pool)):
            raise XdsError(f"{role} instance {inst} does not exist (the plan has {len(pool)})",
                           where="events")
        return [pool[inst]]

    def _compile(self, events) -> list:
        acts = []
        for k, ev in enumerate(events):
            at = float(ev.at_s)
            if not math.isfinite(at) or at < 0:
                raise XdsError(f"event at_s must be >= 0 (got {ev.at_s})", where="events")
            until = getattr(ev, "until_s", None)
            if until is not None and until < at:
                raise XdsError(f"until_s ({until}) before at_s ({at})", where="events")
            if isinstance(ev, RanksDown):
                if ev.on_loss not in ("requeue", "fail"):
                    raise XdsError(f"on_loss must be requeue or fail (got {ev.on_loss!r})", where="events")
                (a,) = self._actor(ev.role, ev.instance)
                ranks = None
                if ev.ranks is not None:
                    if ev.role != "decode":
                        raise XdsError("ranks apply to decode instances only", where="events")
                    ranks = np.unique(np.asarray(ev.ranks, dtype=np.int64))
                    if ranks.size and (ranks.min() < 0 or ranks.max() >= a.R):
                        raise XdsError(f"decode rank out of range 0..{a.R - 1}", where="events")
                acts.append((at, k, 0, "down", a, (ranks, ev.on_loss)))
                if until is not None:
                    acts.append((float(until), k, 1, "up", a, ranks))
            elif isinstance(ev, Pause):
                if ev.on_inflight not in ("keep", "requeue", "fail"):
                    raise XdsError(f"on_inflight must be keep, requeue or fail (got {ev.on_inflight!r})",
                                   where="events")
                (a,) = self._actor(ev.role, ev.instance)
                acts.append((at, k, 0, "pause", a, ev.on_inflight))
                acts.append((float(ev.until_s), k, 1, "resume", a, None))
            elif isinstance(ev, Slowdown):
                if not (ev.factor > 0 and math.isfinite(ev.factor)):
                    raise XdsError(f"slowdown factor must be > 0 (got {ev.factor})", where="events")
                (a,) = self._actor(ev.role, ev.instance)
                acts.append((at, k, 0, "slow", a, float(ev.factor)))
                if until is not None:
                    acts.append((float(until), k, 1, "slow", a, 1.0 / float(ev.factor)))
            elif isinstance(ev, KvBandwidth):
                if not (0 < ev.factor and math.isfinite(ev.factor)):
                    raise XdsError(f"KV bandwidth factor must be > 0 (got {ev.factor})", where="events")
                (a,) = self._actor("decode", ev.instance)
                acts.append((at, k, 0, "kvbw", a, float(ev.factor)))
                if until is not None:
                    acts.append((float(until), k, 1, "kvbw", a, 1.0 / float(ev.factor)))
            elif isinstance(ev, Rollback):
                for a in self._actor(ev.role, ev.instance):
                    acts.append((at, k, 0, "rollback", a, None))
            elif isinstance(ev, SetCost):
                (a,) = self._actor(ev.role, ev.instance)
                acts.append((at, k, 0, "cost", a, ev.cost))
                if until is not None:
                    acts.append((float(until), k, 1, "cost", a, None))
            else:
                raise XdsError(f"unknown event type {type(ev).__name__}", where="events")
        acts.sort(key=lambda x: (x[0], x[1], x[2]))
        return acts

    def _apply(self, act, t: float) -> None:
        _, _, _, kind, a, arg = act
        if kind == "down":
            ranks, on_loss = arg
            if a.role == "prefill":
                self._prefill_lost(a, t, R_RANK_LOST if on_loss == "fail" else None)
                a.down = True
            else:
                rk = np.arange(a.R) if ranks is None else ranks
                a.alive[rk] = False
                self._decode_lost(a, t, rk, R_RANK_LOST if on_loss == "fail" else None,
                                  pending=ranks is None)
                if ranks is None:
                    a.down = True
        elif kind == "up":
            if a.role == "prefill" or arg is None:
                a.down = False
            if a.role == "decode":
                a.alive[np.arange(a.R) if arg is None else arg] = True
        elif kind == "pause":
            a.paused += 1
            if a.busy:       # the iteration in progress is abandoned; redone after the pause
                a.busy, a.t_end = False, math.inf
            if arg != "keep":
                code = R_RESTART if arg == "fail" else None
                if a.role == "prefill":
                    self._prefill_lost(a, t, code)
                else:
                    self._decode_lost(a, t, np.arange(a.R), code, pending=True)
        elif kind == "resume":
            a.paused = max(0, a.paused - 1)
        elif kind == "slow":
            a.slow *= arg
        elif kind == "kvbw":
            a.kv_bw *= arg
        elif kind == "rollback":
            if a.busy:
                a.t_end += a.t_end - a.t_start
        elif kind == "cost":
            a.cost = a.base_cost if arg is None else arg

    # ------------------------------------------------------------------ failures / requeue
    def _fail(self, ids: np.ndarray, code: int, t: float, *, count: bool = True) -> None:
        if len(ids) == 0:
            return
        self.status[ids] = FAILED
        self.reason[ids] = code
        self.finish[ids] = t
        self.generated[ids] = self.gen_base[ids]
        self.done += len(ids)
        if self.conc is not None and count:
            self._release(len(ids), t)

    def _requeue(self, ids: np.ndarray, t: float, *, recompute: bool) -> None:
        """Send ``ids`` back to prefill (their KV is lost): prompt + generated tokens recomputed."""
        if len(ids) == 0:
            return
        self.retries[ids] += 1
        over = self.retries[ids] > self.max_retries
        self._fail(ids[over], R_RETRIES, t)
        ids = ids[~over]
        if recompute and len(ids):
            self.recomp[ids] += 1
            self.recomp_tok[ids] += self.inp[ids] + self.gen_base[ids]
        self.pre[ids] = self.inp[ids] + self.gen_base[ids]
        self.pre_ctx0[ids] = 0
        self.pf_done[ids] = 0
        self._route(ids, t)

    def _prefill_lost(self, a: _Prefill, t: float, code: int | None) -> None:
        """Prefill instance ``a`` stops or restarts: its batch and queue are re-routed or failed."""
        q = a.q.view()[a.head:].copy()
        inb = []
        if a.busy or a.batch_full is not None:
            if a.batch_full is not None:
                inb.append(a.batch_full)
            if a.batch_part >= 0:
                inb.append(np.array([a.batch_part], dtype=np.int64))
        a.busy, a.t_end = False, math.inf
        a.batch_full, a.batch_part, a.batch_part_tok, a.batch_tokens = None, -1, 0, 0.0
        a.q = _Grow(np.int64)
        a.head, a.q_tokens = 0, 0.0
        batch = np.unique(np.concatenate(inb)) if inb else np.zeros(0, np.int64)
        rest = q[~np.isin(q, batch)] if batch.size else q
        if code is not None:
            self._fail(np.concatenate([batch, rest]), code, t)
            return
        was_down, a.down = a.down, True      # route elsewhere if any other instance is up
        wasted = self.pf_done[batch]
        self.recomp[batch[wasted > 0]] += 1
        self.recomp_tok[batch] += wasted
        self.retries[batch] += 1
        over = batch[self.retries[batch] > self.max_retries]
        self._fail(over, R_RETRIES, t)
        batch = batch[self.retries[batch] <= self.max_retries]
        self.pf_done[batch] = 0
        self._route(np.concatenate([batch, rest]), t)
        a.down = was_down

    def _decode_lost(self, d: _Decode, t: float, ranks: np.ndarray, code: int | None, *,
                     pending: bool) -> None:
        """Requests on decode ``ranks`` of ``d`` lose their KV (vectorized scan; events are rare)."""
        on = (self.status == DECODING) & (self.d_inst == d.idx) & (self.fin >= d.s)
        on &= np.isin(self.d_rank, ranks)
        ids = np.flatnonzero(on)
        if len(ids):
            rk = self.d_rank[ids]
            steps = d.s - self.adm[ids]
            k = self.fin[ids] - self.adm[ids] + 1
            ctx0 = (self.inp[ids] + self.gen_base[ids] + 1).astype(float)
            need = (self.inp[ids] + self.out[ids]).astype(float)
            np.subtract.at(d.n, rk, 1.0)
            np.subtract.at(d.ctx, rk, ctx0 + steps * d.tps)
            np.subtract.at(d.resv, rk, need)
            fin = self.fin[ids]
            near = fin - d.s < d.H
            if near.any():
                rows = fin[near] % d.H
                np.subtract.at(d.ring_n, (rows, rk[near]), 1.0)
                np.subtract.at(d.ring_ctx, (rows, rk[near]), (ctx0 + k * d.tps)[near])
                np.subtract.at(d.ring_resv, (rows, rk[near]), need[near])
            if (~near).any():
                for s_f, r_f, c_f, n_f in zip(fin[~near].tolist(), rk[~near].tolist(),
                                              (ctx0 + k * d.tps)[~near].tolist(), need[~near].tolist()):
                    d.far.setdefault(s_f, []).append((np.array([r_f]), np.array([-1.0]),
                                                      np.array([-c_f]), np.array([-n_f])))
            gen = np.minimum(self.gen_base[ids] + 1 + np.floor(steps * d.tps).astype(np.int64),
                             self.out[ids] - 1)
            self.gen_base[ids] = gen
            self.d_rank[ids] = -1
            self.fin[ids] = -1
            np.maximum(d.n, 0.0, out=d.n)
            np.maximum(d.resv, 0.0, out=d.resv)
            np.maximum(d.ctx, 0.0, out=d.ctx)
        pend = np.zeros(0, np.int64)
        if pending:
            pv = d.pend.view()[d.phead:]
            pend = pv[self.status[pv] == DEC_PENDING].copy()
            d.pend = _Grow(np.int64)
            d.phead = 0
        allids = np.concatenate([ids, pend])
        if code is not None:
            self._fail(allids, code, t)
        else:
            was_down, d.down = d.down, True   # prefer another decode instance for the retry
            self._requeue(ids, t, recompute=True)
            self._requeue(pend, t, recompute=True)
            d.down = was_down

    # ------------------------------------------------------------------ routing
    def _route(self, ids: np.ndarray, t: float) -> None:
        """Assign requests to prefill instances by load (queued tokens), long/short apart."""
        if len(ids) == 0:
            return
        if not self.P:
            self.pf_done[ids] = self.pre[ids]
            self._to_decode(ids, t, t)
            return
        self.status[ids] = PREFILL
        if self.long_thr is not None and any(a.long for a in self.P):
            is_long = self.pre[ids] >= self.long_thr
            groups = [(ids[is_long], [a for a in self.P if a.long]),
                      (ids[~is_long], [a for a in self.P if not a.long])]
        else:
            groups = [(ids, self.P)]
        for g, pool in groups:
            if len(g) == 0:
                continue
            live = [a for a in pool if not a.down] or [a for a in self.P if not a.down] or pool
            load = np.array([a.q_tokens + a.batch_tokens for a in live])
            order = np.argsort(load, kind="stable")
            if len(live) == 1:
                parts = [(live[0], g)]
            else:
                who = order[np.arange(len(g)) % len(live)]
                parts = [(live[j], g[who == j]) for j in range(len(live))]
            for a, sub in parts:
                if len(sub):
                    a.q.extend(sub)
                    a.q_tokens += float((self.pre[sub] - self.pf_done[sub]).sum())
                    self.pf_inst[sub] = a.idx

    def _to_decode(self, ids: np.ndarray, t: float, t_kv: float) -> None:
        """Prefill of ``ids`` finished at ``t``: single-token outputs complete; the rest start the
        KV transfer to the decode instance with the most free KV."""
        one = self.out[ids] - self.gen_base[ids] <= 1
        if one.any():
            c = ids[one]
            self.first[c] = np.where(np.isnan(self.first[c]), t, self.first[c])
            self.finish[c] = t
            self.generated[c] = self.out[c]
            self.status[c] = COMPLETED
            self.done += len(c)
            if self.conc is not None:
                self._release(len(c), t)
            ids = ids[~one]
        if len(ids) == 0:
            return
        live = [d for d in self.D if not d.down] or self.D
        if len(live) > 1:
            # least reserved KV + waiting requests per live rank
            load = np.array([(d.resv.sum() / max(d.cap_kv, 1.0) + d.n.sum() / d.cap_b + d.pending
                              / d.cap_b) / max(int(d.alive.sum()), 1) for d in live])
            d = live[int(np.argmin(load))]
        else:
            d = live[0]
        ctx = (self.inp[ids] + self.gen_base[ids]).astype(float)
        # each TP die of the rank receives its share of the KV: GQA splits by head, MLA's latent whole
        tx = ctx * self.kv_bpt / (self.kv_bps * d.kv_bw * d.cost.kv_split) + KV_TRANSFER_LATENCY_S \
            if self.P else 0.0
        self.ready[ids] = t_kv + tx
        self.status[ids] = DEC_PENDING
        self.d_inst[ids] = d.idx
        d.pend.extend(ids)
        if not d.busy and d.t_wake > float(np.min(self.ready[ids])):
            d.t_wake = float(np.min(self.ready[ids]))

    # ------------------------------------------------------------------ prefill iterations
    def _start_prefill(self, a: _Prefill, t: float) -> None:
        if a.batch_full is None and a.batch_part < 0:
            n_q = a.q.n - a.head
            if n_q <= 0:
                return
            W = min(n_q, 4096)
            ids = a.q.a[a.head: a.head + W]
            rem = self.pre[ids] - self.pf_done[ids]
            cs = np.cumsum(rem)
            m = int(np.searchsorted(cs, a.budget, side="right"))
            full = ids[:m].copy()
            used = float(cs[m - 1]) if m else 0.0
            part, part_tok = -1, 0
            if m < W and a.budget - used >= 1:
                part = int(ids[m])
                part_tok = int(min(a.budget - used, rem[m]))
            a.head += m
            a.batch_full, a.batch_part, a.batch_part_tok = full, part, part_tok
            a.batch_tokens = used + part_tok
            a.q_tokens -= a.batch_tokens
        # price: chunk [lo, hi) of each request's prompt on top of the cached context
        full, part = a.batch_full, a.batch_part
        lo = self.pre_ctx0[full] + self.pf_done[full]
        hi = self.pre_ctx0[full] + self.pre[full]
        pairs = float(((hi - lo) * (lo + 1 + hi) / 2.0).sum())
        seqs = float(len(full))
        if part >= 0:
            lo_p = self.pre_ctx0[part] + self.pf_done[part]
            hi_p = lo_p + a.batch_part_tok
            pairs += (hi_p - lo_p) * (lo_p + 1 + hi_p) / 2.0
            seqs += 1
        nd = a.dies
        dt = float(a.cost.prefill_batch_us(a.batch_tokens / nd, pairs / nd, seqs / nd)) * 1e-6 * a.slow
        a.busy, a.t_start, a.t_end = True, t, t + dt
        self.max_dt = max(self.max_dt, dt)

    def _end_prefill(self, a: _Prefill, t: float) -> None:
        a.busy, a.t_end = False, math.inf
        full, part = a.batch_full, a.batch_part
        if part >= 0:
            self.pf_done[part] += a.batch_part_tok
        a.batch_full, a.batch_part, a.batch_part_tok, a.batch_tokens = None, -1, 0, 0.0
        if full is not None and len(full):
            self.pf_done[full] = self.pre[full]
            self._to_decode(full, t, t)

    # ------------------------------------------------------------------ decode iterations
    def _admit(self, d: _Decode, t: float) -> None:
        npend = d.pending
        if npend <= 0:
            return
        free_slots = int(((d.cap_b - d.n) * d.alive).clip(min=0).sum())
        if free_slots <= 0:
            d.t_wake = math.inf
            return
        W = int(min(npend, 2 * free_slots + 64))
        win = d.pend.a[d.phead: d.phead + W]
        valid = self.status[win] == DEC_PENDING
        rdy = valid & (self.ready[win] <= t)
        cand = win[rdy]
        taken = np.zeros(0, np.int64)
        if len(cand):
            adm_ids, adm_rk = [], []
            while len(cand):
                el = np.flatnonzero(d.alive & (d.n < d.cap_b))
                if not len(el):
                    break
                order = el[np.argsort(d.resv[el], kind="stable")]
                m = min(len(cand), len(order))
                c, rk = cand[:m], order[:m]
                need = (self.inp[c] + self.out[c]).astype(float)
                fit = d.resv[rk] + need <= d.cap_kv
                if not fit.any():
                    break
                c, rk, need = c[fit], rk[fit], need[fit]
                ctx0 = (self.inp[c] + self.gen_base[c] + 1).astype(float)
                d.n[rk] += 1.0
                d.resv[rk] += need
                d.ctx[rk] += ctx0
                adm_ids.append(c)
                adm_rk.append(rk)
                cand = np.concatenate([cand[:m][~fit], cand[m:]])
            if adm_ids:
                c = np.concatenate(adm_ids)
                rk = np.concatenate(adm_rk)
                self._book(d, c, rk, t)
                taken = c
        # compact the window: drop admitted and stale entries, keep order
        keep = valid.copy()
        if len(taken):
            keep &= ~np.isin(win, taken)
        rest = win[keep]
        d.pend.a[d.phead + W - len(rest): d.phead + W] = rest
        d.phead += W - len(rest)
        if d.phead > 65536 and d.phead * 2 > d.pend.n:
            v = d.pend.view()[d.phead:].copy()
            d.pend = _Grow(np.int64, max(1024, 2 * len(v)))
            d.pend.extend(v)
            d.phead = 0
        nr = rest[self.ready[rest] > t] if len(rest) else rest
        d.t_wake = float(self.ready[nr].min()) if len(nr) else math.inf

    def _book(self, d: _Decode, c: np.ndarray, rk: np.ndarray, t: float) -> None:
        """Admit ``c`` on ranks ``rk`` at the start of step ``d.s``; pre-book their completions."""
        remain = (self.out[c] - self.gen_base[c] - 1).astype(float)
        k = np.maximum(np.ceil(remain / d.tps - 1e-9), 1).astype(np.int64)
        fin = d.s + k - 1
        self.status[c] = DECODING
        self.d_rank[c] = rk
        self.adm[c] = d.s
        self.fin[c] = fin
        f = self.first[c]
        self.first[c] = np.where(np.isnan(f), t, f)
        ctx_end = (self.inp[c] + self.gen_base[c] + 1).astype(float) + k * d.tps
        need = (self.inp[c] + self.out[c]).astype(float)
        near = k <= d.H
        if near.all():
            rows = fin % d.H
            np.add.at(d.ring_n, (rows, rk), 1.0)
            np.add.at(d.ring_ctx, (rows, rk), ctx_end)
            np.add.at(d.ring_resv, (rows, rk), need)
        else:
            rows = fin[near] % d.H
            np.add.at(d.ring_n, (rows, rk[near]), 1.0)
            np.add.at(d.ring_ctx, (rows, rk[near]), ctx_end[near])
            np.add.at(d.ring_resv, (rows, rk[near]), need[near])
            far = ~near
            ff, fr, fc, fn = fin[far], rk[far], ctx_end[far], need[far]
            order = np.argsort(ff, kind="stable")
            ff, fr, fc, fn = ff[order], fr[order], fc[order], fn[order]
            bounds = np.flatnonzero(np.diff(ff)) + 1
            for s_f, r_f, c_f, n_f in zip(np.split(ff, bounds), np.split(fr, bounds),
                                          np.split(fc, bounds), np.split(fn, bounds)):
                d.far.setdefault(int(s_f[0]), []).append((r_f, np.ones(len(r_f)), c_f, n_f))

    def _start_decode(self, d: _Decode, t: float) -> None:
        self._admit(d, t)
        if d.n.sum() <= 0:
            return
        dt = float(np.ravel(d.cost.decode_step_us(d.n, d.ctx))[0]) * 1e-6 * d.slow
        d.busy, d.t_start, d.t_end = True, t, t + dt
        d.t_wake = math.inf
        self.max_dt = max(self.max_dt, dt)

    def _end_decode(self, d: _Decode, t: float) -> None:
        d.busy, d.t_end = False, math.inf
        s = d.s
        nact = float(d.n.sum())
        d.step_end.append(t)
        d.step_dt.append(t - d.t_start)
        d.step_n.append(nact)
        d.ctx += d.n * d.tps
        row = s % d.H
        cnt = d.ring_n[row]
        c = 0.0
        if nact and cnt.any():
            c = float(cnt.sum())
            d.n -= cnt
            d.ctx -= d.ring_ctx[row]
            d.resv -= d.ring_resv[row]
            cnt[:] = 0.0
            d.ring_ctx[row] = 0.0
            d.ring_resv[row] = 0.0
        far = d.far.pop(s, None)
        if far:
            for r_f, n_f, c_f, k_f in far:
                np.subtract.at(d.n, r_f, n_f)
                np.subtract.at(d.ctx, r_f, c_f)
                np.subtract.at(d.resv, r_f, k_f)
                c += float(n_f.sum())
        if c:
            np.maximum(d.n, 0.0, out=d.n)
            np.maximum(d.ctx, 0.0, out=d.ctx)
            np.maximum(d.resv, 0.0, out=d.resv)
            nc = int(round(c))
            self.done += nc
            if self.conc is not None:
                self._release(nc, t)
        d.s = s + 1

    # ------------------------------------------------------------------ closed loop
    def _release(self, k: int, t: float) -> None:
        j = min(self.n_rel + k, self.N)
        # a slot freed during the initial ramp must not issue before the ramp's later starts:
        # arrivals stay sorted (admission relies on it) and first token never precedes arrival
        self.arr[self.n_rel: j] = max(t, float(self.arr[self.n_rel - 1])) if self.n_rel else t
        self.n_rel = j

    def _ramp_s(self) -> float:
        """Closed loop: estimated latency of one request at the target concurrency (s), over which
        the first N requests are staggered so the loop starts near steady state."""
        d = self.D[0]
        n = self.conc
        per_rank = max(min(n / max(len(self.D) * d.R, 1), d.cap_b), 1.0)
        ctx = float(np.mean(self.inp[:n] + self.out[:n] / 2.0))
        b = np.full(d.R, per_rank)
        step = float(np.ravel(d.cost.decode_step_us(b, b * ctx))[0]) * 1e-6
        steps = float(np.mean(self.out[:n] - 1)) / d.tps
        return max(step * steps, 1e-3)

    # ------------------------------------------------------------------ main loop
    def run(self) -> SimResult:
        N = self.N
        if self.conc is not None:
            self.n_rel = 0
            ramp = self._ramp_s()
            self.arr[:] = np.inf
            self.arr[: self.conc] = np.arange(self.conc) * (ramp / self.conc)
            self.n_rel = self.conc
        else:
            self.n_rel = N
        nxt = 0                      # next request to arrive (arrival order)
        ev_i = 0
        acts = self.events
        t = 0.0
        horizon = math.inf
        loops = 0
        actors = self.actors
        arr = self.arr
        while self.done < N:
            t_arr = arr[nxt] if nxt < self.n_rel else math.inf
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
                # drain long enough for the longest output to finish at the slowest step seen
                longest = float(self.out.max()) if self.N else 0.0
                min_tps = min((d.tps for d in self.D), default=1.0) or 1.0
                horizon = t + max(DRAIN_MIN_S, 10.0 * self.max_dt,
                                  2.0 * (longest / min_tps + 10.0) * max(self.max_dt, 1e-3))
            if t_new == math.inf:
                break                      # nothing can happen any more (e.g. pools down for good)
            if t_new > horizon:
                t = horizon
                break
            t = max(t, t_new)
            while t >= self.next_snap:
                self._snapshot()
            while ev_i < len(acts) and acts[ev_i][0] <= t:
                self._apply(acts[ev_i], t)
                ev_i += 1
            if nxt < self.n_rel and arr[nxt] <= t:
                # Route every arrival up to the next moment anything can look at the queues (an
                # actor's step end, a fault event, a snapshot) in one vectorised call: queue loads do
                # not change before then. An idle prefill instance would start at once, so then
                # only the arrivals of this instant are routed.
                limit = t
                if self.P and not any(not a.busy and not a.down and not a.paused for a in self.P):
                    limit = min(t_act, t_ev, self.next_snap)
                j = int(np.searchsorted(arr[: self.n_rel], max(limit, t), side="right"))
                ids = np.arange(nxt, j, dtype=np.int64)
                nxt = j
                waiting = self.status[ids] == WAITING
                if self.conc is not None and not waiting.all():
                    # requests that failed up front (KV can never fit) still used a closed-loop slot
                    gone = ids[~waiting]
                    self.finish[gone] = np.maximum(self.arr[gone], 0.0)
                    self._release(len(gone), t)
                ids = ids[waiting]
                self._route(ids, t)
            for a in actors:
                if a.busy and a.t_end <= t:
                    if a.role == "prefill":
                        self._end_prefill(a, t)
                    else:
                        self._end_decode(a, t)
            for a in actors:
                if not a.busy and not a.down and not a.paused:
                    if a.role == "prefill":
                        self._start_prefill(a, t)
                    elif a.pending or a.n.sum() > 0:
                        self._start_decode(a, t)
            loops += 1
            if self.progress is not None and loops % 2048 == 0:
                self.progress(t, self.done, N)
        self.t_end = t
        if self.progress is not None:
            self.progress(t, self.done, N)
        return self._finish()

    def _snapshot(self) -> None:
        s = self.snap
        s["prefill_queue"].append(sum(a.q.n - a.head for a in self.P))
        s["decode_pending"].append(sum(d.pending for d in self.D))
        s["decode_running"].append(float(sum(d.n.sum() for d in self.D)))
        cap = sum(d.cap_kv * d.R for d in self.D)
        s["kv_usage_decode"].append(float(sum(d.ctx.sum() for d in self.D)) / cap if cap < 1e17 else 0.0)
        self.next_snap += self.window_s

    def _finish(self) -> SimResult:
        t = self.t_end
        # decode requests: finished iff their booked step has been run
        dec = np.flatnonzero(self.status == DECODING)
        if len(dec):
            inst = self.d_inst[dec]
            done = np.zeros(len(dec), dtype=bool)
            for d in self.D:
                m = inst == d.idx
                if not m.any():
                    continue
                ids = dec[m]
                ok = self.fin[ids] < d.s
                ends = d.step_end.view()
                fi = ids[ok]
                self.finish[fi] = ends[self.fin[fi]]
                self.generated[fi] = self.out[fi]
                self.status[fi] = COMPLETED
                done[np.flatnonzero(m)[ok]] = True
                nf = ids[~ok]
                self.generated[nf] = np.minimum(
                    self.gen_base[nf] + 1 + np.floor((d.s - self.adm[nf]) * d.tps).astype(np.int64),
                    self.out[nf] - 1)
            left = dec[~done]
            self.status[left] = FAILED
            self.reason[left] = R_UNFINISHED
            self.finish[left] = t
        rest = np.flatnonzero((self.status != COMPLETED) & (self.status != FAILED))
        if len(rest):
            self.status[rest] = FAILED
            self.reason[rest] = R_UNFINISHED
            self.generated[rest] = self.gen_base[rest]
            self.finish[rest] = t
        arr = np.where(np.isfinite(self.arr), self.arr, t)
        fin_ok = self.finish[self.status == COMPLETED]
        duration = float(max(fin_ok.max() if len(fin_ok) else 0.0, 0.0))
        if (self.status == FAILED).any():
            duration = max(duration, float(np.nanmax(self.finish)))
        # per-window series
        nw = max(int(math.ceil(duration / self.window_s)), 1)
        while len(self.snap["prefill_queue"]) < nw:
            self._snapshot()
        series = {k: np.asarray(v[:nw], dtype=float) for k, v in self.snap.items()}
        series["t_s"] = np.arange(nw) * self.window_s
        toks = np.zeros(nw)
        itl_s, itl_w = [], []
        for d in self.D:
            te, nn = d.step_end.view(), d.step_n.view()
            if len(te):
                wi = np.minimum((te / self.window_s).astype(np.int64), nw - 1)
                toks += np.bincount(wi, weights=nn * d.tps, minlength=nw)[:nw]
                itl_s.append(d.step_dt.view().copy())
                itl_w.append(nn)
        ft = self.first[np.isfinite(self.first)]
        if len(ft):
            toks += np.bincount(np.minimum((ft / self.window_s).astype(np.int64), nw - 1),
                                minlength=nw)[:nw]
        series["output_tokens"] = toks
        info = {"decode_steps": [int(d.s) for d in self.D],
                "tokens_per_step": [float(d.tps) for d in self.D],
                "decode_ranks": [int(d.R) for d in self.D],
                "batch_cap_per_rank": [int(d.cap_b) for d in self.D],
                "kv_tokens_per_rank": [float(d.cap_kv) for d in self.D],
                "prefill_instances": len(self.P), "seed": self.seed}
        return SimResult(
            arrival_s=arr, first_token_s=self.first, finish_s=self.finish, input_len=self.inp,
            output_len=self.out, generated=self.generated, status=self.status.copy(),
            reason=self.reason.copy(), prefill_instance=self.pf_inst, decode_instance=self.d_inst,
            decode_rank=self.d_rank, recomputed=self.recomp, recomputed_tokens=self.recomp_tok,
            cached_tokens=self.cached, duration=duration, window_s=self.window_s, series=series,
            itl_s=np.concatenate(itl_s) if itl_s else np.zeros(0),
            itl_w=np.concatenate(itl_w) if itl_w else np.zeros(0),
            prefix_cache_hit_rate=self.hit_rate, concurrency=self.conc, info=info)
