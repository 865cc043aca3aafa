"""The priced operators of one instance layout: a model step as a list of operations (attention
prolog, attention kernel, attention output, TP all-reduce, router gate, dispatch, routed and shared
experts, combine, dense FFN, LM head), each priced by the roofline

    ``max(FLOPs / (peak × efficiency), bytes / (HBM bandwidth × efficiency)) + launch overhead``

and communication as ``latency + bytes / (link bandwidth × efficiency)``. The efficiency factors are
the hardware spec's (``HardwareSpec.efficiency``). Every function broadcasts over NumPy arrays.

Units: µs for times, FLOP/s for peaks, bytes/s for HBM bandwidth, GB/s (= 1e3 bytes/µs) for links.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..spec.hardware import HardwareSpec
from ..spec.model import ModelSpec
from .layout import (
    WEIGHT_BYTES,
    Fabric,
    Layout,
    check_layout,
    combine_bytes_per_copy,
    dispatch_bytes_per_copy,
)


def roofline_us(flops, bytes_, peak_flops, compute_eff, hbm_bps, mem_eff, launch_us):
    """Roofline time of one operator: ``(µs, compute µs, memory µs)`` (arrays broadcast).
    ``peak_flops`` in FLOP/s, ``hbm_bps`` in bytes/s, ``launch_us`` in µs."""
    tc = flops / (peak_flops * compute_eff) * 1e6
    tm = bytes_ / (hbm_bps * mem_eff) * 1e6
    return np.maximum(tc, tm) + launch_us, tc, tm


def bound_of(tc, tm) -> str:
    """``compute`` if the compute time is at least the memory time everywhere, else ``memory``."""
    if np.ndim(tc) == 0 and np.ndim(tm) == 0:    # the common scalar case, without array overhead
        return "compute" if tc >= tm else "memory"
    return "compute" if np.all(np.asarray(tc) >= np.asarray(tm)) else "memory"


def prefill_flops_per_pair(model: ModelSpec) -> float:
    """Attention FLOPs per (query, key) pair in prefill: MLA runs without weight absorption (MHA over
    the decompressed heads), GQA scores and mixes over ``head_dim``."""
    if model.attention == "mla":
        return 2.0 * model.heads * (model.qk_nope_head_dim + model.qk_rope_head_dim + model.v_head_dim)
    return 4.0 * model.heads * model.head_dim


@dataclass
class StepOps:
    """Per-microbatch operator times (µs) of one layer kind, by stream, with the bound of each."""

    attention: dict[str, Any] = field(default_factory=dict)
    moe: dict[str, Any] = field(default_factory=dict)
    bound: dict[str, str] = field(default_factory=dict)
    moe_hbm_us: Any = 0.0     # µs the MoE stream's HBM traffic (weights) needs at full bandwidth
    layer_us: Any = 0.0       # µs of one such layer over all microbatches (set by the decode step)
    fabric_us: Any = 0.0      # µs dispatch + combine occupy the link (payload / bandwidth, no latency)


@dataclass(frozen=True)
class AttentionRoofline:
    """The decode attention stream of one layer and microbatch on one DP rank, folded into constants
    (µs): ``max(prolog_us_per_token·t, prolog_weights_us) + max(out_us_per_token·t, out_weights_us)
    + core_us_per_context·ctx + 3·launch_us + tp_us_per_token·t + tp_latency_us``.

    A projection GEMM's compute time grows with the query tokens ``t`` while its weight read is fixed;
    the attention kernel's FLOPs and KV bytes both grow with the attended context ``ctx``, so its
    roofline is linear in ``ctx``. With TP > 1 the attention output is all-reduced over the TP dies.
    """

    prolog_us_per_token: float
    prolog_weights_us: float
    out_us_per_token: float
    out_weights_us: float
    core_us_per_context: float
    core_compute_bound: bool
    launch_us: float
    tp_us_per_token: float
    tp_latency_us: float
    kv_us_per_context: float = 0.0

    def hbm_us(self, ctx):
        """µs of HBM traffic of the stream at full (efficiency-scaled) bandwidth: the projection
        weights and the KV cache. Two concurrent streams share HBM bandwidth (reference §B.1)."""
        return self.prolog_weights_us + self.out_weights_us + ctx * self.kv_us_per_context

    def terms(self, tok, ctx):
        """``(prolog, out, core, tp)`` µs without launches; ``tp`` is None when TP is 1."""
        prolog = np.maximum(tok * self.prolog_us_per_token, self.prolog_weights_us)
        out = np.maximum(tok * self.out_us_per_token, self.out_weights_us)
        core = ctx * self.core_us_per_context
        tp = tok * self.tp_us_per_token if self.tp_us_per_token else None
        return prolog, out, core, tp

    def total_us(self, tok, ctx):
        """The stream's time (µs) for ``tok`` query tokens attending ``ctx`` context tokens."""
        total, out, core, tp = self.terms(tok, ctx)
        # summed in place and in this order: the engine and the planner price millions of states
        total += out
        total += core
        total += 3.0 * self.launch_us + self.tp_latency_us
        if tp is not None:
            total += tp
        return total

    def ops(self, tok, ctx) -> tuple[dict[str, Any], dict[str, str]]:
        """The same stream per operator: ``(µs by operator, bound by operator)``."""
        prolog, out, core, tp = self.terms(tok, ctx)
        lu = self.launch_us
        times = {"attn_prolog": prolog + lu, "attn_core": core + lu, "attn_out": out + lu}
        bound = {"attn_prolog": bound_of(tok * self.prolog_us_per_token, self.prolog_weights_us),
                 "attn_core": "compute" if self.core_compute_bound else "memory",
                 "attn_out": bound_of(tok * self.out_us_per_token, self.out_weights_us)}
        if tp is not None:
            times["tp_allreduce"] = tp + self.tp_latency_us
            bound["tp_allreduce"] = "communication"
        return times, bound


class Operators:
    """The operators of one instance layout of ``model`` on ``hw``, priced per microbatch (µs).

    Holds the parameter groups (elements) of one layer, the per-die peaks and the EP fabric;
    ``fabric`` defaults to the hardware's scale-up link.
    """

    def __init__(self, model: ModelSpec, hw: HardwareSpec, layout: Layout, fabric: Fabric | None = None):
        check_layout(model, layout)
        self.m, self.hw, self.lay = model, hw, layout
        self.fabric = fabric or Fabric(hw.scale_up_gb_s_per_die, "scale_up")
        e = hw.efficiency
        self.e = e
        self.wb = WEIGHT_BYTES[layout.quant]                    # bytes per weight element
        self.peak_gemm = hw.peak_flops(layout.quant)            # FLOP/s per die
        self.peak_attn = hw.peak_flops("bf16")                  # attention kernels run in BF16
        self.hbm = hw.hbm_gb_s_per_die * 1e9                    # bytes/s per die
        self.comm_eff = e.scale_up if self.fabric.plane == "scale_up" else e.scale_out
        h = model.hidden
        self.msg_dispatch = dispatch_bytes_per_copy(h, layout.quant)
        self.msg_combine = combine_bytes_per_copy(h)
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
        self.decode_flops_per_pair = model.attention_flops_per_pair()
        self._attention_rooflines: dict[int, AttentionRoofline] = {}

    @cached_property
    def routed_ranks(self) -> int:
        """EP dies holding routed experts."""
        lay = self.lay
        return max(lay.ep - lay.shared_dies, 1)

    @cached_property
    def slots_per_rank(self) -> float:
        """Routed-expert slots per routed EP die."""
        lay, m = self.lay, self.m
        slots = lay.routed_slots or max(m.n_routed_experts, self.routed_ranks)
        return slots / self.routed_ranks

    def comm_us(self, nbytes, *, dispatch: bool, tokens=0.0, kernel: str = "low_latency", copies=None):
        """Dispatch/combine time (µs) for ``nbytes`` of token copies per die over the EP group.

        Two kernel models, as the serving stacks have two kernels (reference §G, DeepEP):

        - ``low_latency`` (decode, ~128 tokens per rank): every copy goes straight to its expert's
          rank; a start-up ``comm_latency_us`` plus ``comm_log_peers_us`` per doubling of the peers
          it exchanges tokens with, the payload at ``scale_up``/``scale_out`` of the link, and (for a
          quantised model) ``dispatch_quant_us`` per token quantised inside dispatch. ``copies``
          token copies per rank reach ``EP·(1 − (1 − 1/EP)^copies)`` distinct peers in expectation
          (uniform routing): every peer at 128 tokens × top-8 (the published tables, reference
          §C.4), a few at a few tokens — which is why the kernel takes ~20 µs at batch 4 and ~110 µs
          at batch 128 (reference §C.5, XDS Fig 6). ``copies=None`` means every peer.
        - ``bulk`` (prefill, thousands of tokens per rank): the normal/high-throughput kernel is
          bandwidth-bound; across nodes it sends a token once per destination node and forwards
          it inside the node (node-limited routing: at most ``topk_group`` nodes per token), so
          only ``topk_group / top_k`` of the copies cross the scale-out link; the payload moves at
          ``scale_up_bulk``/``scale_out_bulk`` of the link after the same start-up.
        """
        e = self.e
        if kernel == "bulk":
            return e.comm_latency_us + self.wire_us(nbytes, bulk=True)
        ep = max(self.lay.ep, 2)
        peers = ep if copies is None else np.maximum(ep * -np.expm1(copies * np.log1p(-1.0 / ep)), 2.0)
        t = e.comm_latency_us + e.comm_log_peers_us * np.log2(peers)
        t = t + self.wire_us(nbytes)
        if dispatch and self.lay.quant != "bf16":
            t = t + e.dispatch_quant_us * tokens
        return t

    def wire_us(self, nbytes, bulk: bool = False):
        """µs ``nbytes`` of token copies per die occupy the EP links (payload / bandwidth, no
        start-up). On one plane: ``nbytes / (gb_s × efficiency)``. With a share ``local_fraction``
        of the peers on the die's own node over the scale-up link (:class:`~.layout.Fabric`,
        NVLink-island clusters, reference §G) the two links run concurrently:
        ``max(remote / (gb_s × scale_out eff), local / (local_gb_s × scale_up eff))``.

        Low-latency kernel: ``remote = (1 − local_fraction) × nbytes``, ``local = local_fraction ×
        nbytes`` (every copy goes straight to its expert's rank). Bulk kernel (``bulk``): one copy
        per destination node crosses IB (:attr:`bulk_dedup`), and of the nodes a token goes to the
        share ``dies per node / EP = local_fraction`` is its own, so ``remote = (1 − local_fraction)
        × bulk_dedup × nbytes``; the receiving rail GPU forwards the copies inside its node, so
        NVLink carries ``(1 − 1 / dies per node) × nbytes`` (every copy not for the forwarding die
        itself). ``*_bulk`` efficiencies apply."""
        e, f = self.e, self.fabric
        lf = f.local_fraction
        if f.plane == "scale_up":
            eff = e.scale_up_bulk if bulk else e.scale_up
            return nbytes / (f.gb_s * eff * 1e3)
        eff_out, eff_up = (e.scale_out_bulk, e.scale_up_bulk) if bulk else (e.scale_out, e.scale_up)
        remote = nbytes * (1.0 - lf) * (self.bulk_dedup if bulk else 1.0)
        t = remote / (f.gb_s * eff_out * 1e3)
        if lf <= 0.0:
            return t
        if bulk:
            per_node = max(round(lf * self.lay.ep), 1)
            local = nbytes * (1.0 - 1.0 / per_node)
        else:
            local = nbytes * lf
        return np.maximum(t, local / (f.local_gb_s * eff_up * 1e3))

    @cached_property
    def bulk_dedup(self) -> float:
        """Share of the token copies the bulk kernel sends over the link: ``topk_group / top_k``
        across nodes (one copy per destination node, DeepSeek-V3 node-limited routing), 1 inside a
        scale-up domain."""
        m = self.m
        if self.fabric.plane == "scale_up" or not m.is_moe or m.topk_group >= m.top_k:
            return 1.0
        return max(m.topk_group, 1) / m.top_k

    def gemm(self, params, tokens, share, eff=None):
        """A GEMM over ``params`` weights (quantised) on ``tokens`` tokens with ``share`` of the cube
        cores: ``(µs, compute µs, memory µs)``."""
        eff = self.e.compute if eff is None else eff
        return roofline_us(2.0 * params * tokens, params * self.wb, self.peak_gemm * share, eff,
                           self.hbm, self.e.memory, self.e.launch_us)

    def bf16_gemm(self, params, tokens, share=1.0, eff=None):
        """A BF16 GEMM (the router gate) over ``params`` weights on ``tokens`` tokens."""
        eff = self.e.compute if eff is None else eff
        return roofline_us(2.0 * params * tokens, params * 2.0, self.peak_attn * share, eff,
                           self.hbm, self.e.memory, self.e.launch_us)

    def lm_head_us(self, requests, per_request=1):
        """The BF16 LM head (full die, µs) on ``per_request`` tokens of each of ``requests``."""
        e = self.e
        t, _, _ = roofline_us(2.0 * self.p_head * requests * per_request, self.p_head * 2.0,
                              self.peak_attn, e.compute, self.hbm, e.memory, e.launch_us)
        return t

    def stream_shares(self) -> tuple[float, float]:
        """Fractions of the cube cores for the attention and MoE streams. With two or more
        microbatches the decode graph pins the two streams to disjoint core sets (reference §B.1
        "Decode stream split": 16 of 24 AIC for attention, 8 for MoE); with one microbatch every
        operator runs on the whole die."""
        lay, e = self.lay, self.e
        if lay.microbatches > 1 and lay.attention_dies == 0:
            return e.attention_stream_share, 1.0 - e.attention_stream_share
        return 1.0, 1.0

    def overlap_streams(self, a, b, hbm=None):
        """One layer (µs) of two streams over the layout's ``m`` microbatches; ``a``, ``b`` and
        ``hbm`` are per-microbatch µs.

        One microbatch runs the streams back to back: ``a + b``. With ``m ≥ 2`` they run concurrently
        on disjoint resources — decode: disjoint AIC/AIV core sets (reference §B.1); prefill: AIC
        computes while AIV and SDMA move tokens (reference §D, CMv3 §4.3.2) — so in steady state each
        microbatch slot takes the longer stream, ``m × max(a, b)``. Concurrent memory-bound operators
        share HBM bandwidth rather than cores, so the layer takes at least ``m × hbm`` (µs of HBM
        traffic of both streams per microbatch). The pipeline fill is :meth:`pipeline_fill_us`."""
        m = self.lay.microbatches
        if m <= 1:
            return a + b
        t = m * np.maximum(a, b)
        return t if hbm is None else np.maximum(t, m * hbm)

    def pipeline_fill_us(self, a, b):
        """Once per forward with ``m ≥ 2`` microbatches: the first microbatch's first stream and the
        last one's last stream have nothing to overlap with, i.e. one shorter stream (µs)."""
        return np.minimum(a, b) if self.lay.microbatches > 1 else 0.0 * (a + b)

    def attention_roofline(self, q: int) -> AttentionRoofline:
        """The decode attention stream's roofline for ``q`` query tokens per request (cached)."""
        r = self._attention_rooflines.get(q)
        if r is None:
            r = self._attention_rooflines[q] = self._build_attention_roofline(q)
        return r

    def _build_attention_roofline(self, q: int) -> AttentionRoofline:
        share, _ = self.stream_shares()
        e, tp = self.e, self.lay.tp

        def gemm(params):
            return (2.0 * params / tp / (self.peak_gemm * share * e.compute) * 1e6,
                    params / tp * self.wb / (self.hbm * e.memory) * 1e6)

        prolog_per_token, prolog_weights = gemm(self.p_prolog)
        out_per_token, out_weights = gemm(self.p_out)
        c_flops = self.decode_flops_per_pair / tp / (self.peak_attn * share * e.attention_compute) * 1e6
        # KV bytes are read once per request, i.e. once per q query tokens
        c_bytes = self.kv_layer_bytes / q / self.kv_split / (self.hbm * e.attention_memory) * 1e6
        tp_per_token = tp_latency = 0.0
        if tp > 1:
            # ring all-reduce of the BF16 attention output: 2(tp-1)/tp of it crosses each link
            per_token = 2.0 * self.m.hidden * 2.0 * (tp - 1) / tp
            tp_per_token = per_token / (self.fabric.gb_s * self.comm_eff * 1e3)
            tp_latency = e.comm_latency_us
        return AttentionRoofline(prolog_per_token, prolog_weights, out_per_token, out_weights,
                                 max(c_flops, c_bytes), c_flops >= c_bytes, e.launch_us,
                                 tp_per_token, tp_latency, c_bytes)

    def moe_ops(self, tok_max, tok_total_mb, moe: bool, ops: StepOps) -> None:
        """MoE-stream operators (µs) of one layer and microbatch into ``ops``. ``tok_max``: query
        tokens of the busiest DP rank (it sends the most); ``tok_total_mb``: query tokens of the whole
        instance. A dense layer (``moe`` False) runs its FFN instead."""
        lay, e, m = self.lay, self.e, self.m
        _, share = self.stream_shares()
        if not moe:
            t, c, mm = self.gemm(self.p_dense / lay.tp, tok_max, share)
            ops.moe["dense_ffn"], ops.bound["dense_ffn"] = t, bound_of(c, mm)
            ops.moe_hbm_us = mm
            return
        t, c, mm = self.bf16_gemm(self.p_gate, tok_max, share)
        ops.moe["gate"], ops.bound["gate"] = t, bound_of(c, mm)
        ops.moe_hbm_us = mm
        # the most loaded routed rank: its share of all token-expert pairs, times the imbalance
        load = tok_total_mb * m.top_k / self.routed_ranks * lay.balancedness
        copies = np.maximum(tok_max * m.top_k, load)
        ops.moe["dispatch"] = self.comm_us(copies * self.msg_dispatch, dispatch=True, tokens=tok_max,
                                           copies=tok_max * m.top_k)
        ops.bound["dispatch"] = "communication"
        w_routed = self.slots_per_rank * self.p_expert
        tr, c, mm = roofline_us(2.0 * self.p_expert * load, w_routed * self.wb, self.peak_gemm * share,
                                e.compute, self.hbm, e.memory, e.launch_us)
        ops.moe_hbm_us = ops.moe_hbm_us + mm
        if self.p_shared and lay.shared_dies:
            ts, c2, m2 = self.gemm(self.p_shared, tok_total_mb / lay.shared_dies, share)
            ops.moe["experts"] = np.maximum(tr, ts)
            ops.bound["experts"] = bound_of(np.maximum(c, c2), np.maximum(mm, m2))
        elif self.p_shared:
            ts, c2, m2 = self.gemm(self.p_shared, tok_max, share)
            ops.moe_hbm_us = ops.moe_hbm_us + m2
            ops.moe["experts"], ops.moe["shared_expert"] = tr, ts
            ops.bound["experts"], ops.bound["shared_expert"] = bound_of(c, mm), bound_of(c2, m2)
        else:
            ops.moe["experts"], ops.bound["experts"] = tr, bound_of(c, mm)
        ops.moe["combine"] = self.comm_us(copies * self.msg_combine, dispatch=False, copies=tok_max * m.top_k)
        ops.fabric_us = self.wire_us(copies * (self.msg_dispatch + self.msg_combine))
        ops.bound["combine"] = "communication"
