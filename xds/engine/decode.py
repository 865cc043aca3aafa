"""The decode instance: P→D KV hand-off, admission to DP ranks and the pre-booked completion ring.

A request's completion step is known at admission (``ceil(remaining / tokens_per_step)``), so its
completion is booked in a ring ``[steps, ranks]`` of per-rank decrements (active requests, Σ
context, reserved KV tokens): one decode iteration is O(ranks) NumPy work, and per-request state is
touched only in vectorized batches at admission and at faults. Completions beyond the ring's
horizon wait in ``far``. Step end times are kept per instance, so finish times are a gather at the
end. Units: s for times, tokens for context and KV.
"""

from __future__ import annotations

import math

import numpy as np

from .actor import Actor
from .requests import Grow
from .result import DEC_PENDING, DECODING

KV_TRANSFER_LATENCY_S = 100e-6   # RDMA setup + completion notification per transfer (s)
RING_MAX_CELLS = 32_000_000       # cap on the completion ring (steps × ranks); longer outputs overflow


class Decode(Actor):
    """Decode instance ``idx``: ``ranks`` DP ranks of ``tp`` dies, at most ``cap_b`` requests and
    ``cap_kv`` KV tokens per rank, ``tps`` tokens per request per step (MTP)."""

    role = "decode"

    def __init__(self, idx, cost, ranks, tp, cap_b, cap_kv, tps, horizon_steps):
        super().__init__(idx, cost)
        self.R = ranks
        self.tp = tp
        self.cap_b = cap_b
        self.cap_kv = cap_kv
        self.tps = tps
        self.alive = np.ones(ranks, dtype=bool)
        self.n = np.zeros(ranks)        # active requests per rank
        self.ctx = np.zeros(ranks)      # Σ context tokens per rank
        self.resv = np.zeros(ranks)     # reserved KV tokens (prompt + full output) per rank
        self.s = 0                      # index of the next step
        self.H = max(2, min(horizon_steps, max(RING_MAX_CELLS // max(ranks, 1), 2)))
        self.ring_n = np.zeros((self.H, ranks))
        self.ring_ctx = np.zeros((self.H, ranks))
        self.ring_resv = np.zeros((self.H, ranks))
        self.far: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.pend = Grow(np.int64)      # requests waiting for admission (KV in flight or queued)
        self.phead = 0
        self.step_end = Grow(np.float64, 4096)
        self.step_dt = Grow(np.float64, 4096)
        self.step_n = Grow(np.float64, 4096)

    @property
    def pending(self) -> int:
        return self.pend.n - self.phead

    def start(self, sim, t: float) -> None:
        if not (self.pending or self.n.sum() > 0):
            # nothing queued: a wake-up time left from before a pause would be in the past and
            # stop the clock (the main loop would pick it forever); hand_off sets a new one
            self.t_wake = math.inf
            return
        _admit(sim, self, t)
        if self.n.sum() <= 0:
            return
        dt = float(np.ravel(self.cost.decode_step_us(self.n, self.ctx))[0]) * 1e-6 * self.slow
        self.busy, self.t_start, self.t_end = True, t, t + dt
        self.t_wake = math.inf
        sim.max_dt = max(sim.max_dt, dt)

    def end(self, sim, t: float) -> None:
        self.busy, self.t_end = False, math.inf
        s = self.s
        nact = float(self.n.sum())
        self.step_end.append(t)
        self.step_dt.append(t - self.t_start)
        self.step_n.append(nact)
        self.ctx += self.n * self.tps
        row = s % self.H
        cnt = self.ring_n[row]
        c = 0.0
        if nact and cnt.any():
            c = float(cnt.sum())
            self.n -= cnt
            self.ctx -= self.ring_ctx[row]
            self.resv -= self.ring_resv[row]
            cnt[:] = 0.0
            self.ring_ctx[row] = 0.0
            self.ring_resv[row] = 0.0
        far = self.far.pop(s, None)
        if far:
            for r_f, n_f, c_f, k_f in far:
                np.subtract.at(self.n, r_f, n_f)
                np.subtract.at(self.ctx, r_f, c_f)
                np.subtract.at(self.resv, r_f, k_f)
                c += float(n_f.sum())
        if c:
            self._clip()
            sim.req.finished(int(round(c)), t)
        self.s = s + 1

    def _clip(self) -> None:
        # the per-rank aggregates are float sums of decrements: rounding can undershoot zero
        np.maximum(self.n, 0.0, out=self.n)
        np.maximum(self.ctx, 0.0, out=self.ctx)
        np.maximum(self.resv, 0.0, out=self.resv)


def build_decode(placed, out: np.ndarray) -> list[Decode]:
    """The plan's decode instances; ``out`` (output lengths) sizes the completion ring."""
    pool = placed.decode
    D = []
    for i, inst in enumerate(list(pool.instances) if pool is not None else []):
        lay = inst.layout
        tps = float(lay.tokens_per_step())
        rd = np.asarray(inst.rank_dies)
        ranks = int(rd.shape[0]) if rd.ndim >= 1 and rd.size else lay.dp
        tp = int(rd.shape[1]) if rd.ndim == 2 else lay.tp
        # batch_per_die is the cap per DP rank (see PoolSpec), whatever its TP
        cap_b = int(pool.batch_cap_per_rank or round(pool.spec.batch_per_die))
        cap_kv = float(pool.kv_tokens_per_rank or 1e18)
        max_steps = int(np.ceil(out.max() / tps)) + 2
        horizon = 1 << int(math.ceil(math.log2(max(max_steps, 2))))
        D.append(Decode(i, inst.cost, ranks, tp, max(cap_b, 1), cap_kv, tps, horizon))
    return D


def ramp_s(D: list[Decode], req) -> float:
    """Closed loop: estimated latency of one request at the target concurrency (s), over which
    the first N requests are staggered so the loop starts near steady state."""
    d = D[0]
    n = req.conc
    per_rank = max(min(n / max(len(D) * d.R, 1), d.cap_b), 1.0)
    ctx = float(np.mean(req.inp[:n] + req.out[:n] / 2.0))
    b = np.full(d.R, per_rank)
    step = float(np.ravel(d.cost.decode_step_us(b, b * ctx))[0]) * 1e-6
    steps = float(np.mean(req.out[:n] - 1)) / d.tps
    return max(step * steps, 1e-3)


def hand_off(sim, ids: np.ndarray, t: float, t_kv: float, src: int | None = None) -> None:
    """Prefill of ``ids`` (on prefill instance ``src``) finished at ``t`` (s): single-token outputs
    complete; the rest start the KV transfer (at ``t_kv``) to the decode instance with the most free
    KV (across pods: at the scale-out bandwidth, plus its latency, ``sim.kv_pair``)."""
    req = sim.req
    one = req.out[ids] - req.gen_base[ids] <= 1
    if one.any():
        req.complete(ids[one], t)
        ids = ids[~one]
    if len(ids) == 0:
        return
    live = [d for d in sim.D if not d.down] or sim.D
    if len(live) > 1:
        # least reserved KV + waiting requests per live rank
        load = np.array([(d.resv.sum() / max(d.cap_kv, 1.0) + d.n.sum() / d.cap_b + d.pending
                          / d.cap_b) / max(int(d.alive.sum()), 1) for d in live])
        d = live[int(np.argmin(load))]
    else:
        d = live[0]
    ctx = (req.inp[ids] + req.gen_base[ids]).astype(float)
    # each TP die of the rank receives its share of the KV: GQA splits by head, MLA's latent whole
    bw, lat = 1.0, 0.0
    if src is not None and sim.kv_pair is not None:
        bw, lat = float(sim.kv_pair[0][src, d.idx]), float(sim.kv_pair[1][src, d.idx])
    tx = ctx * sim.kv_bpt / (sim.kv_bps * bw * d.kv_bw * d.cost.kv_split) + KV_TRANSFER_LATENCY_S + lat \
        if sim.P else 0.0
    # a stalled transport (KvStall: RDMA glitch) holds every transfer until the link is back
    req.ready[ids] = max(t_kv, d.kv_hold) + tx
    req.status[ids] = DEC_PENDING
    req.d_inst[ids] = d.idx
    d.pend.extend(ids)
    if not d.busy and d.t_wake > float(np.min(req.ready[ids])):
        d.t_wake = float(np.min(req.ready[ids]))


def _admit(sim, d: Decode, t: float) -> None:
    """Admit ready pending requests at ``t`` (s) to the alive ranks with the least reserved KV,
    within the batch cap and KV capacity; keep the rest queued in order."""
    req = sim.req
    npend = d.pending
    if npend <= 0:
        return
    free_slots = int(((d.cap_b - d.n) * d.alive).clip(min=0).sum())
    if free_slots <= 0:
        d.t_wake = math.inf
        return
    W = int(min(npend, 2 * free_slots + 64))
    win = d.pend.a[d.phead: d.phead + W]
    valid = req.status[win] == DEC_PENDING
    cand = win[valid & (req.ready[win] <= t)]
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
            need = (req.inp[c] + req.out[c]).astype(float)
            fit = d.resv[rk] + need <= d.cap_kv
            if not fit.any():
                break
            c, rk, need = c[fit], rk[fit], need[fit]
            ctx0 = (req.inp[c] + req.gen_base[c] + 1).astype(float)
            d.n[rk] += 1.0
            d.resv[rk] += need
            d.ctx[rk] += ctx0
            adm_ids.append(c)
            adm_rk.append(rk)
            cand = np.concatenate([cand[:m][~fit], cand[m:]])
        if adm_ids:
            taken = np.concatenate(adm_ids)
            _book(req, d, taken, np.concatenate(adm_rk), t)
    _compact(req, d, win, valid, taken, t)


def _compact(req, d: Decode, win: np.ndarray, valid: np.ndarray, taken: np.ndarray,
             t: float) -> None:
    """Drop admitted and stale entries from the admission window ``win``, keep order, and set the
    wake-up time to the next KV arrival (s)."""
    W = len(win)
    keep = valid.copy()
    if len(taken):
        keep &= ~np.isin(win, taken)
    rest = win[keep]
    d.pend.a[d.phead + W - len(rest): d.phead + W] = rest
    d.phead += W - len(rest)
    if d.phead > 65536 and d.phead * 2 > d.pend.n:
        v = d.pend.view()[d.phead:].copy()
        d.pend = Grow(np.int64, max(1024, 2 * len(v)))
        d.pend.extend(v)
        d.phead = 0
    nr = rest[req.ready[rest] > t] if len(rest) else rest
    d.t_wake = float(req.ready[nr].min()) if len(nr) else math.inf


def _book(req, d: Decode, c: np.ndarray, rk: np.ndarray, t: float) -> None:
    """Admit ``c`` on ranks ``rk`` at the start of step ``d.s`` (time ``t``, s); pre-book their
    completions in the ring (or ``far`` beyond its horizon)."""
    remain = (req.out[c] - req.gen_base[c] - 1).astype(float)
    k = np.maximum(np.ceil(remain / d.tps - 1e-9), 1).astype(np.int64)
    fin = d.s + k - 1
    req.status[c] = DECODING
    req.d_rank[c] = rk
    req.adm[c] = d.s
    req.fin[c] = fin
    f = req.first[c]
    req.first[c] = np.where(np.isnan(f), t, f)
    ctx_end = (req.inp[c] + req.gen_base[c] + 1).astype(float) + k * d.tps
    need = (req.inp[c] + req.out[c]).astype(float)
    near = k <= d.H
    if near.all():
        rows = fin % d.H
        np.add.at(d.ring_n, (rows, rk), 1.0)
        np.add.at(d.ring_ctx, (rows, rk), ctx_end)
        np.add.at(d.ring_resv, (rows, rk), need)
        return
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


def decode_lost(sim, d: Decode, ranks: np.ndarray, *, pending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Requests on decode ``ranks`` of ``d`` lose their KV: take them off the ranks and the ring
    (vectorized scan; faults are rare). ``pending``: also empty the admission queue. Returns (the
    requests that were decoding, the pending ones) for the caller to requeue or fail."""
    req = sim.req
    on = (req.status == DECODING) & (req.d_inst == d.idx) & (req.fin >= d.s)
    on &= np.isin(req.d_rank, ranks)
    ids = np.flatnonzero(on)
    if len(ids):
        _unbook(req, d, ids)
    pend = np.zeros(0, np.int64)
    if pending:
        pv = d.pend.view()[d.phead:]
        pend = pv[req.status[pv] == DEC_PENDING].copy()
        d.pend = Grow(np.int64)
        d.phead = 0
    return ids, pend


def _unbook(req, d: Decode, ids: np.ndarray) -> None:
    """Take decoding ``ids`` off their ranks and booked completions; record the tokens they had
    generated (kept across the retry)."""
    rk = req.d_rank[ids]
    steps = d.s - req.adm[ids]
    k = req.fin[ids] - req.adm[ids] + 1
    ctx0 = (req.inp[ids] + req.gen_base[ids] + 1).astype(float)
    need = (req.inp[ids] + req.out[ids]).astype(float)
    np.subtract.at(d.n, rk, 1.0)
    np.subtract.at(d.ctx, rk, ctx0 + steps * d.tps)
    np.subtract.at(d.resv, rk, need)
    fin = req.fin[ids]
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
    gen = np.minimum(req.gen_base[ids] + 1 + np.floor(steps * d.tps).astype(np.int64),
                     req.out[ids] - 1)
    req.gen_base[ids] = gen
    req.d_rank[ids] = -1
    req.fin[ids] = -1
    d._clip()
