"""HBM use per die (GB) of one instance layout, and the largest decode batch that fits."""

from __future__ import annotations

from .operators import Operators


def hbm_gb(ops: Operators, batch_per_die: float, context: float, *, phase: str = "decode",
           prefill_tokens: float = 0.0) -> dict[str, float]:
    """HBM use per die (GB) of the most loaded die type, by what fills it.

    Decode: ``batch_per_die`` requests per DP rank (= per die at TP 1) holding ``context`` tokens
    of KV each; with TP, GQA splits their KV over the TP dies by KV head while MLA's shared latent
    is held whole by every TP die. Prefill: ``prefill_tokens`` tokens of KV in flight. Communication
    buffers follow reference §B.1 (ranks × max_tokens × message size for dispatch and combine),
    double-buffered.
    """
    m, lay, wb = ops.m, ops.lay, ops.wb
    tp = lay.tp
    gb = 1e-9
    attn_dies_hold_moe = lay.attention_dies == 0
    w_attn = m.layers * ops.p_attn * wb / tp
    w_dense = m.dense_layers * ops.p_dense * wb / tp
    w_embed = (m.embedding_params() + m.lm_head_params()) * 2.0 / tp
    per_expert_layer = ops.slots_per_rank * ops.p_expert * wb
    w_routed = (m.moe_layers + (m.mtp_layers if m.is_moe else 0)) * per_expert_layer
    w_shared = (m.moe_layers + m.mtp_layers) * ops.p_shared * wb
    w_mtp_attn = m.mtp_layers * (ops.p_attn + 2 * m.hidden * m.hidden) * wb / tp
    if lay.shared_dies:
        w_experts = max(w_routed, w_shared)
    else:
        w_experts = w_routed + w_shared
    kv_per_token = m.kv_bytes_per_token_with_mtp(lay.kv_dtype) / ops.kv_split
    if phase == "decode":
        kv = batch_per_die * context * kv_per_token
        tokens_step = batch_per_die * (1 + lay.mtp)
    else:
        kv = prefill_tokens * kv_per_token
        tokens_step = prefill_tokens / max(lay.microbatches, 1)
    max_tokens = tokens_step * min(m.top_k, max(ops.slots_per_rank, 1)) if m.is_moe else 0
    comm = 2 * lay.ep * max_tokens * (ops.msg_dispatch + ops.msg_combine) if m.is_moe else 0.0
    if phase == "prefill":
        # prefill buffers are sized by what one microbatch sends, not by every peer's worst case
        comm = 2 * max_tokens * (ops.msg_dispatch + ops.msg_combine)
    out = {
        "weights_attention": (w_attn + w_mtp_attn) * gb,
        "weights_dense_ffn": w_dense * gb,
        "weights_embedding_lm_head": w_embed * gb,
        "weights_experts": (w_experts if attn_dies_hold_moe else 0.0) * gb,
        "kv_cache": kv * gb,
        "comm_buffers": comm * gb,
        "reserve": ops.hw.hbm_reserve_gb_per_die,
    }
    out["total"] = sum(out.values())
    out["capacity"] = ops.hw.hbm_gb_per_die
    out["free"] = out["capacity"] - out["total"]
    return out


def max_batch_per_die(ops: Operators, context: float) -> int:
    """Largest decode batch per die whose weights + KV + buffers fit HBM (0 if none)."""
    base = hbm_gb(ops, 0, context)
    per_req = hbm_gb(ops, 1, context)["total"] - base["total"]
    room = base["capacity"] - base["total"]
    if room <= 0 or per_req <= 0:
        return 0
    return int(room // per_req)
