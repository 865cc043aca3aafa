"""The time (µs) for one die to prefill a batch, from the priced operators.

Prefill runs attention without weight absorption (MHA: every projection on every token), sequence
parallel over the instance's dies (SP-TP-SP when TP > 1). Every layer overlaps its compute with its
communication over the microbatches.
"""

from __future__ import annotations

import numpy as np

from .operators import Operators, bound_of, prefill_flops_per_pair, roofline_us


def prefill_batch_us(ops: Operators, new_tokens, attn_pairs, seqs, *, detail: bool = False):
    """Time (µs) for one die to prefill a batch of ``new_tokens`` tokens from ``seqs`` sequences,
    whose causal attention covers ``attn_pairs`` (query, key) pairs — Σ over sequences of
    Σ_j (cached + j). The instance's EP peers process equal batches (SP: each die its own
    sequences). Arrays broadcast. With ``detail``: ``(total, breakdown µs, bound)``."""
    lay, m, e = ops.lay, ops.m, ops.e
    n = np.asarray(new_tokens, dtype=float)
    pairs = np.asarray(attn_pairs, dtype=float)
    s = np.asarray(seqs, dtype=float)
    mb = max(lay.microbatches, 1)
    n_mb, p_mb = n / mb, pairs / mb
    eff = e.compute * e.prefill_compute
    t_proj, c1, m1 = ops.gemm(ops.p_attn, n_mb, 1.0, eff=eff)
    kv_bytes = n_mb * ops.kv_layer_bytes * 2  # write new KV, read it back in the kernel
    t_core, c2, m2 = roofline_us(prefill_flops_per_pair(m) * p_mb, kv_bytes, ops.peak_attn,
                                 e.attention_compute * e.prefill_compute, ops.hbm, e.attention_memory,
                                 e.launch_us)
    t_tp = _sp_tp_comm_us(ops, n, n_mb)
    load = n_mb * m.top_k * lay.ep / ops.routed_ranks * lay.balancedness if m.is_moe else 0 * n
    t_exp, c3, m3 = roofline_us(2.0 * ops.p_expert * load, ops.slots_per_rank * ops.p_expert * ops.wb,
                                ops.peak_gemm, eff, ops.hbm, e.memory, e.launch_us)
    shared_tok = n_mb * lay.ep / lay.shared_dies if lay.shared_dies else n_mb
    t_sh, _, _ = ops.gemm(ops.p_shared, shared_tok, 1.0, eff=eff) if ops.p_shared else (0.0 * n, 0, 0)
    t_gate, _, _ = ops.bf16_gemm(ops.p_gate, n_mb, eff=eff)
    copies = np.maximum(n_mb * m.top_k, load)
    # prefill runs the normal (high-throughput) all-to-all kernel (reference §G)
    t_disp = ops.comm_us(copies * ops.msg_dispatch, dispatch=True, tokens=n_mb, kernel="bulk")
    t_comb = ops.comm_us(copies * ops.msg_combine, dispatch=False, kernel="bulk")
    t_dense, c4, m4 = ops.gemm(ops.p_dense, n_mb, 1.0, eff=eff)
    compute_moe = t_proj + t_core + t_gate + t_exp + t_sh
    comm_moe = t_disp + t_comb + t_tp
    compute_dense = t_proj + t_core + t_dense
    layer_moe = ops.overlap_streams(compute_moe, comm_moe)
    layer_dense = ops.overlap_streams(compute_dense, t_tp) if lay.tp > 1 else mb * compute_dense
    fill = ops.pipeline_fill_us(compute_moe, comm_moe) if m.moe_layers else 0.0 * n
    head_us = ops.lm_head_us(s)
    total = m.moe_layers * layer_moe + m.dense_layers * layer_dense + fill + head_us \
        + e.step_overhead_ms * 1e3
    if not detail:
        return total
    L, D = m.moe_layers, m.dense_layers
    bd = {
        "attn_proj": t_proj * mb * (L + D), "attn_core": t_core * mb * (L + D),
        "tp_comm": t_tp * mb * (L + D), "gate": t_gate * mb * L, "experts": t_exp * mb * L,
        "shared_expert": t_sh * mb * L, "dispatch": t_disp * mb * L, "combine": t_comb * mb * L,
        "dense_ffn": t_dense * mb * D, "lm_head": head_us,
        "sampling_scheduling": e.step_overhead_ms * 1e3 + 0 * n,
    }
    bd["overlap_hidden"] = total - sum(bd.values())
    bound = {"attn_proj": bound_of(c1, m1), "attn_core": bound_of(c2, m2), "tp_comm": "communication",
             "gate": "compute", "experts": bound_of(c3, m3), "shared_expert": "compute",
             "dispatch": "communication", "combine": "communication", "dense_ffn": bound_of(c4, m4),
             "lm_head": "memory", "sampling_scheduling": "overhead", "overlap_hidden": "overlap"}
    return total, bd, bound


def _sp_tp_comm_us(ops: Operators, n, n_mb):
    """SP-TP-SP (µs per microbatch): all-gather of the low-rank latents before TP attention,
    all-to-all of its output after it; 0 at TP 1."""
    lay, m = ops.lay, ops.m
    if lay.tp <= 1:
        return 0.0 * n
    lat = (m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim) if m.attention == "mla" \
        else (m.heads + 2 * m.kv_heads) * m.head_dim
    frac = (lay.tp - 1) / lay.tp
    return ops.comm_us(n_mb * lat * ops.wb * frac, dispatch=False) + \
        ops.comm_us(n_mb * m.heads * m.v_head_dim * 2.0 * frac, dispatch=False)
