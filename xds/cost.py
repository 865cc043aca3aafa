"""Cost model: the time of one prefill or decode iteration from first principles.

Every operator is priced as ``max(FLOPs / (peak × efficiency), bytes / (HBM bandwidth × efficiency))
+ launch overhead``; communication as ``latency + bytes / (link bandwidth × efficiency)``. The
efficiency factors are the hardware spec's (``HardwareSpec.efficiency``), one set per chip, fitted by
``xds calibrate`` to published measurements.

Structure of a decode iteration (DESIGN.md §2.2, reference §B.1): every MoE layer runs two streams
over ``m`` microbatches — stream 0 is attention (prolog projections, the attention kernel over the KV
cache, output projection), stream 1 is MoE (gate, dispatch, expert GEMMs, combine). While one
microbatch is in attention the other is in MoE, so a layer takes ``m × max(S0, S1)`` plus the part of
the shorter stream that does not hide (``1 − microbatch_overlap``). Dispatch/combine synchronise every
EP rank, so stream 1 is priced at the most loaded rank (``balancedness``) and stream 0 at the slowest DP
rank (lockstep). MTP with ``k`` drafts verifies ``1 + k`` tokens per request in the main forward, runs
the MTP module ``k`` times on one token per request, and yields ``1 + a + … + a^k`` tokens per step.

All step-time functions broadcast over NumPy arrays: the engine prices every iteration's per-rank
state and the planner thousands of layouts in one call.

Units: times in µs inside, ms at the interface (``*_ms``); bytes; GB/s = 1e9 bytes/s (= 1e3 bytes/µs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from .errors import XdsError
from .spec.model import ModelSpec
from .spec.hardware import HardwareSpec

WEIGHT_BYTES = {"w8a8": 1.0, "fp8": 1.0, "bf16": 2.0}
KV_DTYPES = ("bf16", "int8", "fp8")


def dispatch_bytes_per_copy(hidden: int, quant: str) -> float:
    """Bytes of one token copy sent by dispatch: INT8 hidden + a 512 B scale slot on Ascend
    (reference §B.1: 7 KB + 512 B = 7.5 KB for DeepSeek), FP8 + one FP32 scale per 128 on Hopper
    (DeepEP), BF16 otherwise."""
    if quant == "w8a8":
        return hidden + 512.0
    if quant == "fp8":
        return hidden + hidden / 128 * 4.0
    return 2.0 * hidden


def combine_bytes_per_copy(hidden: int) -> float:
    """Combine returns BF16 expert outputs (reference §B.1: 14 KB per token for DeepSeek)."""
    return 2.0 * hidden


@dataclass(frozen=True)
class Layout:
    """Parallel layout of one serving instance (one model copy).

    ``dies`` run the instance; attention is data-parallel over ``dp`` groups of ``tp`` dies
    (``dp × tp == attention dies``); MoE is expert-parallel over ``ep`` dies. ``shared_dies`` of the
    EP dies hold only shared-expert copies (CloudMatrix-Infer decode: 32 of 320), otherwise the shared
    expert runs on every EP die. ``routed_slots`` is the number of physical routed-expert slots in the
    instance (logical experts + redundant copies). ``attention_dies > 0`` selects MoE-attention
    disaggregation: attention runs on its own dies in ``ma_domains`` DP domains and the ``ep`` MoE dies
    serve the domains in turn.
    """

    dies: int
    ep: int
    dp: int
    tp: int = 1
    shared_dies: int = 0
    routed_slots: int = 0
    mtp: int = 0
    mtp_acceptance: float = 0.7
    microbatches: int = 2
    quant: str = "w8a8"
    kv_dtype: str = "bf16"
    balancedness: float = 1.0
    attention_dies: int = 0
    ma_domains: int = 1

    def tokens_per_step(self) -> float:
        """Accepted tokens per request per iteration: 1 + a + … + a^k."""
        a = self.mtp_acceptance
        return float(sum(a**i for i in range(self.mtp + 1)))


@dataclass(frozen=True)
class Fabric:
    """Bandwidth the EP all-to-all gets per die (GB/s, unidirectional) and which efficiency applies."""

    gb_s: float
    plane: str = "scale_up"     # "scale_up" (UB / NVLink) or "scale_out" (RDMA / IB)


def _op(flops, bytes_, peak_flops, compute_eff, hbm_bps, mem_eff, launch_us):
    """Roofline time of one operator in µs (arrays broadcast). ``peak_flops`` in FLOP/s, ``hbm_bps``
    in bytes/s."""
    tc = flops / (peak_flops * compute_eff) * 1e6
    tm = bytes_ / (hbm_bps * mem_eff) * 1e6
    return np.maximum(tc, tm) + launch_us, tc, tm


@dataclass
class _Ops:
    """Per-microbatch operator times (µs) of one layer kind, with the bound of each."""

    s0: dict[str, Any] = field(default_factory=dict)
    s1: dict[str, Any] = field(default_factory=dict)
    bound: dict[str, str] = field(default_factory=dict)


class CostModel:
    """Prices iterations of one instance layout of ``model`` on ``hw``.

    Construct once per layout; call :meth:`decode_step_us` / :meth:`prefill_batch_us` as often as
    needed (vectorised). ``fabric`` is the per-die all-to-all bandwidth from the topology.
    """

    def __init__(self, model: ModelSpec, hw: HardwareSpec, layout: Layout, fabric: Fabric | None = None):
        check_layout(model, layout)
        self.m, self.hw, self.lay = model, hw, layout
        self.fabric = fabric or Fabric(hw.scale_up_gb_s_per_die, "scale_up")
        e = hw.efficiency
        self.e = e
        self.wb = WEIGHT_BYTES[layout.quant]
        self.peak_gemm = hw.peak_flops(layout.quant)            # FLOP/s per die
        self.peak_attn = hw.peak_flops("bf16")                  # attention kernels run in BF16
        self.hbm = hw.hbm_gb_s_per_die * 1e9                    # bytes/s per die
        self.comm_eff = e.scale_up if self.fabric.plane == "scale_up" else e.scale_out
        h = model.hidden
        self.msg_dispatch = dispatch_bytes_per_copy(h, layout.quant)
        self.msg_combine = combine_bytes_per_copy(h)
        # parameter groups (elements)
        if model.attention == "mla":
            qk = model.qk_nope_head_dim + model.qk_rope_head_dim
            q = (h * model.q_lora_rank + model.q_lora_rank * model.heads * qk) if model.q_lora_rank \
                else h * model.heads * qk
            kv_a = h * (model.kv_lora_rank + model.qk_rope_head_dim)
            w_uk = model.heads * model.qk_nope_head_dim * model.kv_lora_rank
            w_uv = model.heads * model.kv_lora_rank * model.v_head_dim
            self.p_prolog = q + kv_a + w_uk                      # decode, weight-absorbed
            self.p_out = w_uv + model.heads * model.v_head_dim * h
        else:
            q_out, kv_out = model.heads * model.head_dim, model.kv_heads * model.head_dim
            self.p_prolog = h * (q_out + 2 * kv_out)
            self.p_out = q_out * h
        self.p_attn = model.attention_params()
        self.p_dense = 3 * h * model.dense_intermediate
        self.p_expert = model.expert_params()
        self.p_shared = model.shared_expert_params()
        self.p_gate = model.n_routed_experts * h
        self.p_head = model.vocab * h
        self.kv_layer_bytes = model.kv_bytes_per_token(layout.kv_dtype) / model.layers
        # TP splits GQA's KV heads across dies; MLA's compressed latent is shared by every head, so
        # each TP die reads (and holds) the whole latent cache of its DP rank
        self.kv_split = 1 if model.attention == "mla" else min(layout.tp, model.kv_heads)
        # attention FLOPs per (query, cached key) pair in decode: MLA runs weight-absorbed, scoring
        # over latent + RoPE and mixing values in the latent; GQA scores and mixes over head_dim
        if model.attention == "mla":
            self.decode_flops_per_pair = 2.0 * model.heads * (2 * model.kv_lora_rank + model.qk_rope_head_dim)
        else:
            self.decode_flops_per_pair = 4.0 * model.heads * model.head_dim
        self._cache: dict = {}

    # ------------------------------------------------------------------ helpers
    @cached_property
    def routed_ranks(self) -> int:
        lay = self.lay
        return max(lay.ep - lay.shared_dies, 1)

    @cached_property
    def slots_per_rank(self) -> float:
        lay, m = self.lay, self.m
        slots = lay.routed_slots or max(m.n_routed_experts, self.routed_ranks)
        return slots / self.routed_ranks

    def comm_us(self, nbytes, *, dispatch: bool, tokens=0.0):
        """Dispatch/combine time (µs) for ``nbytes`` per die over the EP group."""
        e = self.e
        peers = max(self.lay.ep, 2)
        t = e.comm_latency_us + e.comm_log_peers_us * math.log2(peers)
        t = t + nbytes / (self.fabric.gb_s * self.comm_eff * 1e3)
        if dispatch and self.lay.quant != "bf16":
            t = t + e.dispatch_quant_us * tokens
        return t

    def _gemm(self, params, tokens, share, eff=None):
        eff = self.e.compute if eff is None else eff
        return _op(2.0 * params * tokens, params * self.wb, self.peak_gemm * share, eff,
                   self.hbm, self.e.memory, self.e.launch_us)

    def _attn_core(self, q_tokens, ctx_tokens, share, q=1, eff_c=None):
        """Attention kernel over the KV cache: ``q_tokens`` queries, ``ctx_tokens`` = Σ over queries
        of the tokens each attends to; KV bytes are read once per request (``ctx_tokens / q`` for
        ``q`` query tokens per request)."""
        per_pair = self.decode_flops_per_pair
        flops = per_pair * ctx_tokens / self.lay.tp
        kv_bytes = ctx_tokens / q * self.kv_layer_bytes / self.kv_split
        eff_c = self.e.attention_compute if eff_c is None else eff_c
        return _op(flops, kv_bytes, self.peak_attn * share, eff_c, self.hbm,
                   self.e.attention_memory, self.e.launch_us)

    def _combine_streams(self, s0, s1):
        m = self.lay.microbatches
        if m <= 1:
            return s0 + s1
        ov = self.e.microbatch_overlap
        return m * np.maximum(s0, s1) + (1.0 - ov) * m * np.minimum(s0, s1)

    # ------------------------------------------------------------------ decode
    def _shares(self) -> tuple[float, float]:
        """Fractions of the cube cores for the attention and MoE streams (reference §B.1 split)."""
        lay, e = self.lay, self.e
        if lay.microbatches > 1 and lay.attention_dies == 0:
            return e.attention_stream_share, 1.0 - e.attention_stream_share
        return 1.0, 1.0

    def _s0_ops(self, tok_mb, ctx_mb, ops: _Ops, q: int) -> None:
        """Attention-stream operators (µs) for one layer and microbatch, per DP rank (arrays)."""
        sh0, _ = self._shares()
        tp = self.lay.tp
        for name, (t, c, mm) in (("attn_prolog", self._gemm(self.p_prolog / tp, tok_mb, sh0)),
                                 ("attn_core", self._attn_core(tok_mb, ctx_mb, sh0, q)),
                                 ("attn_out", self._gemm(self.p_out / tp, tok_mb, sh0))):
            ops.s0[name], ops.bound[name] = t, _bound(c, mm)
        if tp > 1:
            coef, lat = self._tp_allreduce_coeffs()
            ops.s0["tp_allreduce"] = tok_mb * coef + lat
            ops.bound["tp_allreduce"] = "communication"

    def _s0_coeffs(self, q: int) -> tuple[float, ...]:
        """The attention stream as ``max(a1·t, w1) + max(a3·t, w3) + c·ctx + 3·launch`` (µs), the same
        roofline as :meth:`_s0_ops` folded into constants: a GEMM's compute time grows with tokens
        ``t`` while its weight read is fixed, and the attention kernel's FLOPs and KV bytes both grow
        with the attended context, so its roofline is linear in ``ctx``."""
        sh0, _ = self._shares()
        e, lay = self.e, self.lay
        tp = lay.tp

        def gemm(params):
            return (2.0 * params / tp / (self.peak_gemm * sh0 * e.compute) * 1e6,
                    params / tp * self.wb / (self.hbm * e.memory) * 1e6)

        a1, w1 = gemm(self.p_prolog)
        a3, w3 = gemm(self.p_out)
        per_pair = self.decode_flops_per_pair
        c_flops = per_pair / tp / (self.peak_attn * sh0 * e.attention_compute) * 1e6
        c_bytes = self.kv_layer_bytes / q / self.kv_split / (self.hbm * e.attention_memory) * 1e6
        # TP > 1: an all-reduce of the attention output across the TP dies (ring: 2(tp-1)/tp of it)
        tp_coef, tp_lat = self._tp_allreduce_coeffs()
        return a1, w1, a3, w3, max(c_flops, c_bytes), 3.0 * e.launch_us, tp_coef, tp_lat

    def _tp_allreduce_coeffs(self) -> tuple[float, float]:
        """µs per query token and fixed µs of the decode TP all-reduce (0, 0 when TP is 1)."""
        tp = self.lay.tp
        if tp <= 1:
            return 0.0, 0.0
        per_token = 2.0 * self.m.hidden * 2.0 * (tp - 1) / tp
        return per_token / (self.fabric.gb_s * self.comm_eff * 1e3), self.e.comm_latency_us

    def _s0_fast(self, tok_mb, ctx_mb, q: int):
        key = ("s0", q)
        if key not in self._cache:
            self._cache[key] = self._s0_coeffs(q)
        a1, w1, a3, w3, c, launch, tp_coef, tp_lat = self._cache[key]
        out = np.maximum(tok_mb * a1, w1)
        out += np.maximum(tok_mb * a3, w3)
        out += ctx_mb * c
        out += launch + tp_lat
        if tp_coef:
            out += tok_mb * tp_coef
        return out

    def _s1_ops(self, tok_max, tok_total_mb, moe: bool, ops: _Ops) -> None:
        """MoE-stream operators (µs) for one layer and microbatch. ``tok_max``: query tokens of the
        busiest DP rank (it sends the most); ``tok_total_mb``: query tokens of the whole instance."""
        lay, e, m = self.lay, self.e, self.m
        _, sh1 = self._shares()
        if not moe:
            t, c, mm = self._gemm(self.p_dense / lay.tp, tok_max, sh1)
            ops.s1["dense_ffn"], ops.bound["dense_ffn"] = t, _bound(c, mm)
            return
        t, c, mm = _op(2.0 * self.p_gate * tok_max, self.p_gate * 2.0, self.peak_attn * sh1,
                       e.compute, self.hbm, e.memory, e.launch_us)
        ops.s1["gate"], ops.bound["gate"] = t, _bound(c, mm)
        # the most loaded routed rank: its share of all token-expert pairs, times the imbalance
        load = tok_total_mb * m.top_k / self.routed_ranks * lay.balancedness
        copies = np.maximum(tok_max * m.top_k, load)
        ops.s1["dispatch"] = self.comm_us(copies * self.msg_dispatch, dispatch=True, tokens=tok_max)
        ops.bound["dispatch"] = "communication"
        w_routed = self.slots_per_rank * self.p_expert
        tr, c, mm = _op(2.0 * self.p_expert * load, w_routed * self.wb, self.peak_gemm * sh1,
                        e.compute, self.hbm, e.memory, e.launch_us)
        if self.p_shared and lay.shared_dies:
            ts, c2, m2 = self._gemm(self.p_shared, tok_total_mb / lay.shared_dies, sh1)
            ops.s1["experts"] = np.maximum(tr, ts)
            ops.bound["experts"] = _bound(np.maximum(c, c2), np.maximum(mm, m2))
        elif self.p_shared:
            ts, c2, m2 = self._gemm(self.p_shared, tok_max, sh1)
            ops.s1["experts"], ops.s1["shared_expert"] = tr, ts
            ops.bound["experts"], ops.bound["shared_expert"] = _bound(c, mm), _bound(c2, m2)
        else:
            ops.s1["experts"], ops.bound["experts"] = tr, _bound(c, mm)
        ops.s1["combine"] = self.comm_us(copies * self.msg_combine, dispatch=False)
        ops.bound["combine"] = "communication"

    def _layer_us(self, s0, s1: dict[str, Any]) -> Any:
        """One layer (µs) from the attention stream ``s0`` and the MoE-stream operators ``s1``."""
        lay = self.lay
        total1 = sum(s1.values())
        if lay.attention_dies:
            # MA disaggregation (xDeepServe §5.2): MoE dies run persistent kernels on separate
            # streams, so their expert compute overlaps the A2E/E2A traffic of another domain; only one
            # domain uses the fabric at a time. A layer takes the longest of: the fabric serving every
            # domain's microbatches, the MoE dies computing them, and one domain's own critical path.
            mbs, dom = lay.microbatches, lay.ma_domains
            comm = s1.get("dispatch", 0.0) + s1.get("combine", 0.0)
            compute = total1 - comm
            return np.maximum(np.maximum(dom * mbs * comm, dom * mbs * compute), mbs * s0 + total1)
        return self._combine_streams(s0, total1)

    def _stage(self, b, ctx, q, want_ops: bool):
        """One forward over all layers for ``q`` query tokens per request: (µs, ops by kind)."""
        lay, m = self.lay, self.m
        mb = lay.microbatches
        tok_mb = b * (q / mb)
        ctx_mb = ctx * (q / mb)
        # per-rank attention time; the slowest rank gates every layer (lockstep)
        ops0 = _Ops()
        if want_ops:
            self._s0_ops(tok_mb, ctx_mb, ops0, q)
            s0_rank = sum(ops0.s0.values())
            i = np.argmax(s0_rank, axis=-1)
            ops0.s0 = {k: np.take_along_axis(v, i[..., None], -1)[..., 0] for k, v in ops0.s0.items()}
        else:
            s0_rank = self._s0_fast(tok_mb, ctx_mb, q)
        s0 = s0_rank.max(axis=-1)
        ranks = b.shape[-1]
        tok_total_mb = tok_mb.sum(axis=-1) * (lay.dp / ranks)
        tok_max = tok_mb.max(axis=-1)
        opsm = _Ops(s0=ops0.s0, bound=dict(ops0.bound))
        self._s1_ops(tok_max, tok_total_mb, True, opsm)
        total = m.moe_layers * self._layer_us(s0, opsm.s1)
        opsd = None
        if m.dense_layers:
            opsd = _Ops(s0=ops0.s0, bound=dict(ops0.bound))
            self._s1_ops(tok_max, tok_total_mb, False, opsd)
            total = total + m.dense_layers * self._layer_us(s0, opsd.s1)
        return total, opsm, opsd, s0

    def decode_step_us(self, batch, ctx_sum, *, detail: bool = False):
        """Time of one decode iteration in µs.

        ``batch[..., r]``: requests on DP rank ``r``; ``ctx_sum[..., r]``: Σ context tokens of those
        requests. The last axis is reduced (lockstep: the slowest rank gates every layer). Returns an
        array of shape ``batch.shape[:-1]`` (µs), or ``(total, breakdown, bound, per_layer)`` with
        ``detail``.
        """
        lay, m, e = self.lay, self.m, self.e
        b = np.asarray(batch, dtype=float)
        ctx = np.asarray(ctx_sum, dtype=float)
        if b.ndim == 0:
            b, ctx = b[None], ctx[None]
        q = 1 + lay.mtp
        layers_us, moe_ops, dense_ops, s0 = self._stage(b, ctx, q, detail)
        # LM head (BF16, full die) on every verified token of the busiest rank
        b_max = b.max(axis=-1)
        head_t, _, _ = _op(2.0 * self.p_head * b_max * q, self.p_head * 2.0, self.peak_attn,
                           e.compute, self.hbm, e.memory, e.launch_us)
        mtp_us = 0.0
        if lay.mtp:
            # the MTP module: one decoder layer on one token per request, its 2h→h projection and head
            one, _, _, _ = self._stage(b, ctx, 1, False)
            per_layer = one / max(m.layers, 1)
            eh, _, _ = self._gemm(2 * m.hidden * m.hidden, b_max, 1.0)
            mtp_head, _, _ = _op(2.0 * self.p_head * b_max, self.p_head * 2.0, self.peak_attn,
                                 e.compute, self.hbm, e.memory, e.launch_us)
            mtp_us = lay.mtp * (per_layer + eh + mtp_head)
        overhead = e.step_overhead_ms * 1e3
        total = layers_us + head_t + mtp_us + overhead
        if not detail:
            return total
        mb = lay.microbatches
        t_moe = self._layer_us(s0, moe_ops.s1)
        t_dense = self._layer_us(s0, dense_ops.s1) if dense_ops is not None else 0.0
        bd: dict[str, Any] = {}
        for ops, n in ((moe_ops, m.moe_layers), (dense_ops, m.dense_layers)):
            if ops is None or n == 0:
                continue
            for k, v in ops.s0.items():
                bd[k] = bd.get(k, 0.0) + v * mb * n
            for k, v in ops.s1.items():
                bd[k] = bd.get(k, 0.0) + v * mb * n
        bd["overlap_hidden"] = layers_us - sum(bd.values())
        bd["lm_head"] = head_t
        if lay.mtp:
            bd["mtp_layers"] = mtp_us
        bd["sampling_scheduling"] = overhead + 0 * total
        bound = dict(moe_ops.bound)
        if dense_ops is not None:
            bound.update(dense_ops.bound)
        bound.update(lm_head="memory", mtp_layers="mixed", sampling_scheduling="overhead",
                     overlap_hidden="overlap")
        return total, bd, bound, {"moe_layer_us": t_moe, "dense_layer_us": t_dense}

    # ------------------------------------------------------------------ prefill
    def prefill_batch_us(self, new_tokens, attn_pairs, seqs, *, detail: bool = False):
        """Time (µs) for one die to prefill a batch of ``new_tokens`` tokens from ``seqs`` sequences,
        whose causal attention covers ``attn_pairs`` (query, key) pairs — Σ over sequences of
        Σ_j (cached + j). The instance's EP peers process equal batches (SP: each die its own
        sequences). Arrays broadcast."""
        lay, m, e = self.lay, self.m, self.e
        n = np.asarray(new_tokens, dtype=float)
        pairs = np.asarray(attn_pairs, dtype=float)
        s = np.asarray(seqs, dtype=float)
        mb = max(lay.microbatches, 1)
        n_mb, p_mb = n / mb, pairs / mb
        pe = e.prefill_compute
        # attention without weight absorption (prefill MHA): every projection on every token
        t_proj, c1, m1 = self._gemm(self.p_attn, n_mb, 1.0, eff=e.compute * pe)
        if m.attention == "mla":
            per_pair = 2.0 * m.heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
        else:
            per_pair = 4.0 * m.heads * m.head_dim
        kv_bytes = n_mb * self.kv_layer_bytes * 2  # write new KV, read it back in the kernel
        t_core, c2, m2 = _op(per_pair * p_mb, kv_bytes, self.peak_attn, e.attention_compute * pe,
                             self.hbm, e.attention_memory, e.launch_us)
        # SP-TP-SP: all-gather of the low-rank latents before TP attention, all-to-all after it
        if lay.tp > 1:
            lat = (m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim) if m.attention == "mla" \
                else (m.heads + 2 * m.kv_heads) * m.head_dim
            frac = (lay.tp - 1) / lay.tp
            t_tp = self.comm_us(n_mb * lat * self.wb * frac, dispatch=False) + \
                self.comm_us(n_mb * m.heads * m.v_head_dim * 2.0 * frac, dispatch=False)
        else:
            t_tp = 0.0 * n
        load = n_mb * m.top_k * lay.ep / self.routed_ranks * lay.balancedness if m.is_moe else 0 * n
        t_exp, c3, m3 = _op(2.0 * self.p_expert * load, self.slots_per_rank * self.p_expert * self.wb,
                            self.peak_gemm, e.compute * pe, self.hbm, e.memory, e.launch_us)
        shared_tok = n_mb * lay.ep / lay.shared_dies if lay.shared_dies else n_mb
        t_sh, _, _ = self._gemm(self.p_shared, shared_tok, 1.0, eff=e.compute * pe) if self.p_shared \
            else (0.0 * n, 0, 0)
        t_gate, _, _ = _op(2.0 * self.p_gate * n_mb, self.p_gate * 2.0, self.peak_attn, e.compute * pe,
                           self.hbm, e.memory, e.launch_us)
        sender = n_mb * m.top_k
        t_disp = self.comm_us(np.maximum(sender, load) * self.msg_dispatch, dispatch=True, tokens=n_mb)
        t_comb = self.comm_us(np.maximum(sender, load) * self.msg_combine, dispatch=False)
        t_dense, c4, m4 = self._gemm(self.p_dense, n_mb, 1.0, eff=e.compute * pe)
        compute_moe = t_proj + t_core + t_gate + t_exp + t_sh
        comm_moe = t_disp + t_comb + t_tp
        compute_dense = t_proj + t_core + t_dense
        layer_moe = self._combine_streams(compute_moe, comm_moe)
        layer_dense = self._combine_streams(compute_dense, t_tp) if lay.tp > 1 else mb * compute_dense
        head_t, _, _ = _op(2.0 * self.p_head * s, self.p_head * 2.0, self.peak_attn, e.compute,
                           self.hbm, e.memory, e.launch_us)
        total = m.moe_layers * layer_moe + m.dense_layers * layer_dense + head_t + e.step_overhead_ms * 1e3
        if not detail:
            return total
        L, D = m.moe_layers, m.dense_layers
        bd = {
            "attn_proj": t_proj * mb * (L + D), "attn_core": t_core * mb * (L + D),
            "tp_comm": t_tp * mb * (L + D), "gate": t_gate * mb * L, "experts": t_exp * mb * L,
            "shared_expert": t_sh * mb * L, "dispatch": t_disp * mb * L, "combine": t_comb * mb * L,
            "dense_ffn": t_dense * mb * D, "lm_head": head_t,
            "sampling_scheduling": e.step_overhead_ms * 1e3 + 0 * n,
        }
        bd["overlap_hidden"] = total - sum(bd.values())
        bound = {"attn_proj": _bound(c1, m1), "attn_core": _bound(c2, m2), "tp_comm": "communication",
                 "gate": "compute", "experts": _bound(c3, m3), "shared_expert": "compute",
                 "dispatch": "communication", "combine": "communication", "dense_ffn": _bound(c4, m4),
                 "lm_head": "memory", "sampling_scheduling": "overhead", "overlap_hidden": "overlap"}
        return total, bd, bound

    # ------------------------------------------------------------------ memory
    def hbm_gb(self, batch_per_die: float, context: float, *, phase: str = "decode",
               prefill_tokens: float = 0.0) -> dict[str, float]:
        """HBM use per die (GB) of the most loaded die type, by what fills it.

        Decode: ``batch_per_die`` requests per DP rank (= per die at TP 1) holding ``context`` tokens
        of KV each; with TP, GQA splits their KV over the TP dies by KV head while MLA's shared latent
        is held whole by every TP die. Prefill:
        ``prefill_tokens`` tokens of KV in flight. Communication buffers follow reference §B.1
        (ranks × max_tokens × message size for dispatch and combine), double-buffered.
        """
        m, lay, wb = self.m, self.lay, self.wb
        tp = lay.tp
        gb = 1e-9
        attn_dies_hold_moe = lay.attention_dies == 0
        w_attn = m.layers * self.p_attn * wb / tp
        w_dense = m.dense_layers * self.p_dense * wb / tp
        w_embed = (m.embedding_params() + m.lm_head_params()) * 2.0 / tp
        per_expert_layer = self.slots_per_rank * self.p_expert * wb
        w_routed = (m.moe_layers + (m.mtp_layers if m.is_moe else 0)) * per_expert_layer
        w_shared = (m.moe_layers + m.mtp_layers) * self.p_shared * wb
        w_mtp_attn = m.mtp_layers * (self.p_attn + 2 * m.hidden * m.hidden) * wb / tp
        if lay.shared_dies:
            w_experts = max(w_routed, w_shared)
        else:
            w_experts = w_routed + w_shared
        kv_per_token = m.kv_bytes_per_token(lay.kv_dtype) * (1 + m.mtp_layers / m.layers) / self.kv_split
        if phase == "decode":
            kv = batch_per_die * context * kv_per_token
            tokens_step = batch_per_die * (1 + lay.mtp)
        else:
            kv = prefill_tokens * kv_per_token
            tokens_step = prefill_tokens / max(lay.microbatches, 1)
        max_tokens = tokens_step * min(m.top_k, max(self.slots_per_rank, 1)) if m.is_moe else 0
        comm = 2 * lay.ep * max_tokens * (self.msg_dispatch + self.msg_combine) if m.is_moe else 0.0
        if phase == "prefill":
            # prefill buffers are sized by what one microbatch sends, not by every peer's worst case
            comm = 2 * max_tokens * (self.msg_dispatch + self.msg_combine)
        out = {
            "weights_attention": (w_attn + w_mtp_attn) * gb,
            "weights_dense_ffn": w_dense * gb,
            "weights_embedding_lm_head": w_embed * gb,
            "weights_experts": (w_experts if attn_dies_hold_moe else 0.0) * gb,
            "kv_cache": kv * gb,
            "comm_buffers": comm * gb,
            "reserve": self.hw.hbm_reserve_gb_per_die,
        }
        out["total"] = sum(out.values())
        out["capacity"] = self.hw.hbm_gb_per_die
        out["free"] = out["capacity"] - out["total"]
        return out

    def max_batch_per_die(self, context: float) -> int:
        """Largest decode batch per die whose weights + KV + buffers fit HBM (0 if none)."""
        base = self.hbm_gb(0, context)
        per_req = (self.hbm_gb(1, context)["total"] - base["total"])
        room = base["capacity"] - base["total"]
        if room <= 0 or per_req <= 0:
            return 0
        return int(room // per_req)


def _bound(tc, tm) -> str:
    return "compute" if np.all(np.asarray(tc) >= np.asarray(tm)) else "memory"


def check_layout(model: ModelSpec, lay: Layout) -> None:
    """Reject layouts that cannot exist, with the numbers (XdsError)."""
    def bad(msg, flag):
        raise XdsError(msg, file=flag)

    for name, v in (("dies", lay.dies), ("ep", lay.ep), ("dp", lay.dp), ("tp", lay.tp),
                    ("microbatches", lay.microbatches)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            bad(f"must be a positive integer (got {v})", f"--{name}")
    if lay.mtp < 0 or lay.mtp > 4:
        bad(f"MTP draft tokens must be 0..4 (got {lay.mtp})", "--mtp")
    if lay.mtp and not (0.0 <= lay.mtp_acceptance <= 1.0):
        bad(f"must be within [0, 1] (got {lay.mtp_acceptance})", "--mtp-acceptance")
    if lay.quant not in WEIGHT_BYTES:
        bad(f"unknown quantisation {lay.quant!r} (allowed: w8a8, fp8, bf16)", "--quant")
    if lay.kv_dtype not in KV_DTYPES:
        bad(f"unknown KV dtype {lay.kv_dtype!r} (allowed: {', '.join(KV_DTYPES)})", "--kv-dtype")
    if lay.balancedness < 1.0 or not math.isfinite(lay.balancedness):
        bad(f"balancedness must be >= 1 (got {lay.balancedness})", "--balancedness")
    if model.is_moe:
        routed_ranks = lay.ep - lay.shared_dies
        if routed_ranks < 1:
            bad(f"{lay.shared_dies} shared-expert dies leave no die for routed experts in EP{lay.ep}",
                "--ep")
        slots = lay.routed_slots or max(model.n_routed_experts, routed_ranks)
        if slots < model.n_routed_experts:
            bad(f"{slots} routed slots cannot hold {model.n_routed_experts} experts", "--ep")
        if slots % routed_ranks:
            bad(f"{slots} routed-expert slots do not divide evenly over {routed_ranks} EP ranks "
                f"(slots must be a multiple of the routed EP ranks)", "--ep")


def with_balancedness(lay: Layout, b: float) -> Layout:
    return replace(lay, balancedness=b)
