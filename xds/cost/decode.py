"""The time of one decode iteration (µs) from the priced operators (DESIGN.md §2.2, reference §B.1).

Every MoE layer runs two streams over ``m`` microbatches — the attention stream (prolog projections,
the attention kernel over the KV cache, output projection) and the MoE stream (gate, dispatch,
expert GEMMs, combine). With ``m ≥ 2`` the two streams run concurrently on disjoint core sets
(reference §B.1): while one microbatch is in attention the other is in MoE, so a layer takes
``m × max(attention, moe)`` — at least the HBM traffic both streams share — and each forward pays
one pipeline fill; with one microbatch the streams run back to back on the whole die. Dispatch/combine synchronise every EP rank, so the MoE stream is priced
at the most loaded rank (``balancedness``) and the attention stream at the slowest DP rank
(lockstep). MTP with ``k`` drafts verifies ``1 + k`` tokens per request in the main forward, runs the
MTP module ``k`` times on one token per request, and yields ``1 + a + … + a^k`` tokens per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .operators import Operators, StepOps


def layer_us(ops: Operators, attention, moe: dict[str, Any], hbm=None, fabric=0.0) -> Any:
    """One layer (µs) from the attention stream's time and the MoE stream's operator times (both per
    microbatch); ``hbm``: µs of HBM traffic of both streams per microbatch; ``fabric``: µs the
    dispatch/combine payload of one microbatch occupies the link (MA only)."""
    lay = ops.lay
    moe_total = sum(moe.values())
    if lay.attention_dies:
        # MA disaggregation (xDeepServe §5.2, reference §C.6 and §D): the attention dies run only
        # attention; each microbatch's round trip A2E → MoE → E2A is a latency path that hides behind
        # the other microbatch's attention (intra-domain microbatching), so one domain's layer takes
        # m × max(attention, round trip). The MoE dies and the fabric are shared resources: the MoE
        # dies compute every domain's microbatches, and only one domain uses A2E/E2A at a time, so
        # the layer also takes at least domains × m × (MoE compute) and domains × m × (link
        # occupancy of the payload — not the round-trip latency). Published decomposition: 0.7 ms
        # attention per microbatch vs A2E 0.17 + MoE 0.12 + E2A 0.19 ms overlapped (§C.6).
        mbs, dom = lay.microbatches, lay.ma_domains
        comm = moe.get("dispatch", 0.0) + moe.get("combine", 0.0)
        compute = moe_total - comm
        return np.maximum(np.maximum(dom * mbs * fabric, dom * mbs * compute),
                          mbs * np.maximum(attention, moe_total))
    return ops.overlap_streams(attention, moe_total, hbm)


def forward_us(ops: Operators, b, ctx, q: int, want_ops: bool):
    """One forward over all layers for ``q`` query tokens per request: ``(µs, MoE-layer ops,
    dense-layer ops or None, attention-stream µs)``. ``b``/``ctx``: requests / Σ context per DP rank
    on the last axis."""
    lay, m = ops.lay, ops.m
    mb = lay.microbatches
    tok_mb = b * (q / mb)
    ctx_mb = ctx * (q / mb)
    roof = ops.attention_roofline(q)
    # per-rank attention time; the slowest rank gates every layer (lockstep)
    attention_rank = roof.total_us(tok_mb, ctx_mb)
    attention_ops: dict[str, Any] = {}
    attention_bound: dict[str, str] = {}
    if want_ops:
        per_rank, attention_bound = roof.ops(tok_mb, ctx_mb)
        i = np.argmax(attention_rank, axis=-1)[..., None]
        attention_ops = {k: np.take_along_axis(v, i, -1)[..., 0] for k, v in per_rank.items()}
    attention = attention_rank.max(axis=-1)
    attention_hbm = roof.hbm_us(ctx_mb).max(axis=-1)
    ranks = b.shape[-1]
    tok_total_mb = tok_mb.sum(axis=-1) * (lay.dp / ranks)
    tok_max = tok_mb.max(axis=-1)
    moe_ops = StepOps(attention=attention_ops, bound=dict(attention_bound))
    ops.moe_ops(tok_max, tok_total_mb, True, moe_ops)
    moe_total = sum(moe_ops.moe.values())
    moe_ops.layer_us = layer_us(ops, attention, moe_ops.moe, attention_hbm + moe_ops.moe_hbm_us,
                                moe_ops.fabric_us)
    total = m.moe_layers * moe_ops.layer_us
    dense_ops = None
    if m.dense_layers:
        dense_ops = StepOps(attention=attention_ops, bound=dict(attention_bound))
        ops.moe_ops(tok_max, tok_total_mb, False, dense_ops)
        dense_ops.layer_us = layer_us(ops, attention, dense_ops.moe, attention_hbm + dense_ops.moe_hbm_us,
                                      dense_ops.fabric_us)
        total = total + m.dense_layers * dense_ops.layer_us
    if not lay.attention_dies:
        total = total + ops.pipeline_fill_us(attention, moe_total)
    return total, moe_ops, dense_ops, attention


def decode_step_us(ops: Operators, batch, ctx_sum, *, detail: bool = False):
    """Time of one decode iteration in µs.

    ``batch[..., r]``: requests on DP rank ``r``; ``ctx_sum[..., r]``: Σ context tokens of those
    requests. The last axis is reduced (lockstep: the slowest rank gates every layer). Returns an
    array of shape ``batch.shape[:-1]`` (µs), or ``(total, breakdown, bound, per_layer)`` with
    ``detail``.
    """
    lay, m, e = ops.lay, ops.m, ops.e
    b = np.asarray(batch, dtype=float)
    ctx = np.asarray(ctx_sum, dtype=float)
    if b.ndim == 0:
        b, ctx = b[None], ctx[None]
    q = 1 + lay.mtp
    layers_us, moe_ops, dense_ops, attention = forward_us(ops, b, ctx, q, detail)
    # LM head (BF16, full die) on every verified token of the busiest rank
    b_max = b.max(axis=-1)
    head_us = ops.lm_head_us(b_max, q)
    mtp_us = 0.0
    if lay.mtp:
        # the MTP module: one decoder layer on one token per request, its 2h→h projection and head
        one, _, _, _ = forward_us(ops, b, ctx, 1, False)
        per_layer = one / max(m.layers, 1)
        eh, _, _ = ops.gemm(2 * m.hidden * m.hidden, b_max, 1.0)
        mtp_us = lay.mtp * (per_layer + eh + ops.lm_head_us(b_max))
    overhead = e.step_overhead_ms * 1e3
    total = layers_us + head_us + mtp_us + overhead
    if not detail:
        return total
    bd, bound = _breakdown(ops, layers_us, moe_ops, dense_ops)
    bd["lm_head"] = head_us
    if lay.mtp:
        bd["mtp_layers"] = mtp_us
    bd["sampling_scheduling"] = overhead + 0 * total
    dense_us = dense_ops.layer_us if dense_ops is not None else 0.0
    per_layer_us = {"moe_layer_us": moe_ops.layer_us, "dense_layer_us": dense_us}
    return total, bd, bound, per_layer_us


def _breakdown(ops: Operators, layers_us, moe_ops: StepOps, dense_ops: StepOps | None):
    """µs of every layer operator over the step, what the stream overlap hid, and the bounds."""
    m, mb = ops.m, ops.lay.microbatches
    bd: dict[str, Any] = {}
    for step_ops, n in ((moe_ops, m.moe_layers), (dense_ops, m.dense_layers)):
        if step_ops is None or n == 0:
            continue
        for stream in (step_ops.attention, step_ops.moe):
            for k, v in stream.items():
                bd[k] = bd.get(k, 0.0) + v * mb * n
    bd["overlap_hidden"] = layers_us - sum(bd.values())
    bound = dict(moe_ops.bound)
    if dense_ops is not None:
        bound.update(dense_ops.bound)
    bound.update(lm_head="memory", mtp_layers="mixed", sampling_scheduling="overhead",
                 overlap_hidden="overlap")
    return bd, bound
