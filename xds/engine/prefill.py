"""The prefill instance: routing of arrivals and requeues to instances, token-budget batches with
chunked long prompts, and the loss of an instance's batch and queue at a fault.

Units: s for times, tokens for budgets and queues.
"""

from __future__ import annotations

import math

import numpy as np

from ..plan import PREFILL_TOKENS_PER_CHIP
from .actor import Actor
from .decode import hand_off
from .requests import Grow
from .result import PREFILL


class Prefill(Actor):
    """Prefill instance ``idx`` over ``dies`` dies; batches up to ``budget`` tokens (over the
    instance); ``long``: reserved for prompts at or above the plan's long-prompt threshold."""

    role = "prefill"

    def __init__(self, idx, cost, dies, budget, long):
        super().__init__(idx, cost)
        self.dies = dies
        self.budget = budget
        self.long = long
        self.q = Grow(np.int64)
        self.head = 0
        self.q_tokens = 0.0
        self.batch_full = None     # request ids finishing prefill in the current batch
        self.batch_part = -1       # request id of the chunked request (-1: none)
        self.batch_part_tok = 0
        self.batch_tokens = 0.0

    def _take_batch(self, req) -> bool:
        """Fill the next batch from the queue head: whole prompts up to the budget, then a chunk of
        the next one. False if the queue is empty."""
        n_q = self.q.n - self.head
        if n_q <= 0:
            return False
        W = min(n_q, 4096)
        ids = self.q.a[self.head: self.head + W]
        rem = req.pre[ids] - req.pf_done[ids]
        cs = np.cumsum(rem)
        m = int(np.searchsorted(cs, self.budget, side="right"))
        full = ids[:m].copy()
        used = float(cs[m - 1]) if m else 0.0
        part, part_tok = -1, 0
        if m < W and self.budget - used >= 1:
            part = int(ids[m])
            part_tok = int(min(self.budget - used, rem[m]))
        self.head += m
        self.batch_full, self.batch_part, self.batch_part_tok = full, part, part_tok
        self.batch_tokens = used + part_tok
        self.q_tokens -= self.batch_tokens
        return True

    def start(self, sim, t: float) -> None:
        req = sim.req
        if self.batch_full is None and self.batch_part < 0 and not self._take_batch(req):
            return
        # price: chunk [lo, hi) of each request's prompt on top of the cached context
        full, part = self.batch_full, self.batch_part
        lo = req.pre_ctx0[full] + req.pf_done[full]
        hi = req.pre_ctx0[full] + req.pre[full]
        pairs = float(((hi - lo) * (lo + 1 + hi) / 2.0).sum())
        seqs = float(len(full))
        if part >= 0:
            lo_p = req.pre_ctx0[part] + req.pf_done[part]
            hi_p = lo_p + self.batch_part_tok
            pairs += (hi_p - lo_p) * (lo_p + 1 + hi_p) / 2.0
            seqs += 1
        nd = self.dies
        dt = float(self.cost.prefill_batch_us(self.batch_tokens / nd, pairs / nd, seqs / nd)) \
            * 1e-6 * self.slow
        self.busy, self.t_start, self.t_end = True, t, t + dt
        sim.max_dt = max(sim.max_dt, dt)

    def end(self, sim, t: float) -> None:
        req = sim.req
        self.busy, self.t_end = False, math.inf
        full, part = self.batch_full, self.batch_part
        if part >= 0:
            req.pf_done[part] += self.batch_part_tok
        self._clear_batch()
        if full is not None and len(full):
            req.pf_done[full] = req.pre[full]
            hand_off(sim, full, t, t, self.idx)

    def _clear_batch(self) -> None:
        self.batch_full, self.batch_part, self.batch_part_tok, self.batch_tokens = None, -1, 0, 0.0


def build_prefill(placed) -> tuple[list[Prefill], int | None]:
    """The plan's prefill instances and its long-prompt threshold (tokens; None without a prefill
    pool)."""
    pool = placed.prefill
    if pool is None:
        return [], None
    budget_die = pool.token_budget_per_die or PREFILL_TOKENS_PER_CHIP // max(placed.hw.dies_per_chip, 1)
    P = []
    for i, inst in enumerate(pool.instances):
        nd = int(len(inst.dies)) or inst.layout.dies
        P.append(Prefill(i, inst.cost, nd, float(budget_die) * nd, bool(inst.long_prompts)))
    return P, pool.spec.long_prompt_threshold


def route(sim, ids: np.ndarray, t: float) -> None:
    """Assign ``ids`` at ``t`` (s) to prefill instances by load (queued tokens), long and short
    prompts apart; without a prefill pool they go straight to decode."""
    if len(ids) == 0:
        return
    req, P = sim.req, sim.P
    if not P:
        req.pf_done[ids] = req.pre[ids]
        hand_off(sim, ids, t, t)
        return
    req.status[ids] = PREFILL
    if sim.long_thr is not None and any(a.long for a in P):
        is_long = req.pre[ids] >= sim.long_thr
        groups = [(ids[is_long], [a for a in P if a.long]),
                  (ids[~is_long], [a for a in P if not a.long])]
    else:
        groups = [(ids, P)]
    for g, pool in groups:
        if len(g) == 0:
            continue
        live = [a for a in pool if not a.down] or [a for a in P if not a.down] or pool
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
                a.q_tokens += float((req.pre[sub] - req.pf_done[sub]).sum())
                req.pf_inst[sub] = a.idx


def requeue(sim, ids: np.ndarray, t: float) -> None:
    """Send ``ids`` back to prefill at ``t`` (s): their KV is lost, prompt + generated tokens are
    recomputed."""
    if len(ids) == 0:
        return
    req = sim.req
    ids = req.retry(ids, t)
    if len(ids):
        req.recomp[ids] += 1
        req.recomp_tok[ids] += req.inp[ids] + req.gen_base[ids]
    req.pre[ids] = req.inp[ids] + req.gen_base[ids]
    req.pre_ctx0[ids] = 0
    req.pf_done[ids] = 0
    route(sim, ids, t)


def prefill_lost(sim, a: Prefill, t: float, code: int | None) -> None:
    """Prefill instance ``a`` stops or restarts at ``t`` (s): its batch and queue are re-routed
    (``code=None``) or fail with reason ``code``."""
    req = sim.req
    q = a.q.view()[a.head:].copy()
    inb = []
    if a.busy or a.batch_full is not None:
        if a.batch_full is not None:
            inb.append(a.batch_full)
        if a.batch_part >= 0:
            inb.append(np.array([a.batch_part], dtype=np.int64))
    a.busy, a.t_end = False, math.inf
    a._clear_batch()
    a.q = Grow(np.int64)
    a.head, a.q_tokens = 0, 0.0
    batch = np.unique(np.concatenate(inb)) if inb else np.zeros(0, np.int64)
    rest = q[~np.isin(q, batch)] if batch.size else q
    if code is not None:
        req.fail(np.concatenate([batch, rest]), code, t)
        return
    was_down, a.down = a.down, True      # route elsewhere if any other instance is up
    wasted = req.pf_done[batch]
    req.recomp[batch[wasted > 0]] += 1
    req.recomp_tok[batch] += wasted
    batch = req.retry(batch, t)
    req.pf_done[batch] = 0
    route(sim, np.concatenate([batch, rest]), t)
    a.down = was_down
