"""Model accounting from a Hugging Face ``config.json``: parameters, activated parameters, KV-cache
bytes and decode FLOPs, for the families xds serves (DeepSeek-V3/R1 and Kimi K2 with MLA; Qwen3-MoE,
GLM-4.5 and MiniMax-M2 with GQA; dense Llama / Qwen2.5).

Conventions (stated in ``xds model`` output too):
* ``total_params`` is the main model: embedding + decoder layers + final norm + LM head. The MTP
  (next-token-prediction) layers are counted separately in ``mtp_params`` — DeepSeek-V3's 671.03 B
  excludes its 14 B MTP module, as DeepSeek reports it.
* ``active_params`` is what one token touches: embedding row *and* LM head included, attention and
  dense layers, shared experts, the router, and ``top_k`` routed experts per MoE layer.
* KV bytes per token are over all main-model layers. MLA caches the compressed latent plus the RoPE
  key: ``(kv_lora_rank + qk_rope_head_dim) × layers``; with ``int8`` the latent is INT8 and the RoPE
  part stays BF16 (xDeepServe's scheme). GQA caches ``2 × kv_heads × head_dim`` per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import XdsError

#: KV-cache element types xds prices (INT8/FP8 narrow the MLA latent; the RoPE part stays BF16).
KV_DTYPES = ("bf16", "int8", "fp8")


@dataclass(frozen=True)
class ModelSpec:
    """Normalised shapes of one transformer (all sizes are element counts, not bytes)."""

    name: str
    family: str                 # deepseek_v3 | qwen3_moe | glm4_moe | minimax_m2 | llama | qwen2
    hidden: int
    layers: int
    vocab: int
    heads: int
    attention: str              # "mla" | "gqa"
    kv_heads: int
    head_dim: int               # q/k head dim for GQA; qk_nope+qk_rope for MLA
    v_head_dim: int
    q_lora_rank: int            # MLA only (0 = direct q projection)
    kv_lora_rank: int           # MLA only
    qk_rope_head_dim: int       # MLA only
    qk_nope_head_dim: int       # MLA only
    qkv_bias: bool
    qk_norm: str                # "" | "per_head" (Qwen3/GLM) | "per_layer" (MiniMax-M2)
    dense_intermediate: int     # FFN width of dense layers
    moe_intermediate: int       # FFN width of one routed expert
    shared_intermediate: int    # total FFN width of the shared expert(s) in one MoE layer (0 = none)
    n_routed_experts: int
    top_k: int
    dense_layers: int           # number of dense (non-MoE) layers
    moe_layers: int
    router_bias: bool           # e_score_correction_bias per expert
    n_group: int                # expert groups for group-limited routing (1 = none)
    topk_group: int
    mtp_layers: int
    max_context: int
    tie_embeddings: bool
    source: str = field(default="", compare=False)

    # ---------------------------------------------------------------- parameter accounting
    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    def attention_params(self) -> int:
        """Parameters of one attention block, including its input RMSNorm."""
        h = self.hidden
        if self.attention == "mla":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.heads * qk
            else:
                q = h * self.heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
            kv += self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.heads * self.v_head_dim * h
            return q + kv + o + h
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        p = h * q_out + 2 * h * kv_out + q_out * h
        if self.qkv_bias:
            p += q_out + 2 * kv_out
        if self.qk_norm == "per_head":
            p += 2 * self.head_dim
        elif self.qk_norm == "per_layer":
            p += q_out + kv_out
        return p + h

    def dense_ffn_params(self) -> int:
        """Parameters of one dense FFN (gate, up, down) plus its RMSNorm."""
        return 3 * self.hidden * self.dense_intermediate + self.hidden

    def expert_params(self) -> int:
        """Parameters of one routed expert (gate, up, down projections)."""
        return 3 * self.hidden * self.moe_intermediate

    def router_params(self) -> int:
        return self.n_routed_experts * self.hidden + (self.n_routed_experts if self.router_bias else 0)

    def shared_expert_params(self) -> int:
        return 3 * self.hidden * self.shared_intermediate

    def moe_layer_params(self) -> int:
        """All parameters of one MoE FFN block (router, every routed expert, shared, RMSNorm)."""
        return (self.router_params() + self.n_routed_experts * self.expert_params()
                + self.shared_expert_params() + self.hidden)

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab * self.hidden

    def layer_params(self, moe: bool) -> int:
        return self.attention_params() + (self.moe_layer_params() if moe else self.dense_ffn_params())

    def total_params(self) -> int:
        """Main-model parameters (MTP excluded, see module docstring)."""
        return (self.embedding_params() + self.lm_head_params() + self.hidden
                + self.dense_layers * self.layer_params(False)
                + self.moe_layers * self.layer_params(True))

    def mtp_layer_params(self) -> int:
        """One MTP module: a decoder layer (MoE when the model is) + two norms + the 2h→h projection
        + the shared-head norm. Its embedding and LM head are shared with the main model."""
        h = self.hidden
        return self.layer_params(self.is_moe) + 3 * h + 2 * h * h

    def mtp_params(self) -> int:
        return self.mtp_layers * self.mtp_layer_params()

    def routed_expert_params_total(self) -> int:
        return self.moe_layers * self.n_routed_experts * self.expert_params()

    def moe_params(self) -> int:
        """Routed-expert parameters of the main model (what expert parallelism distributes)."""
        return self.routed_expert_params_total()

    def dense_params(self) -> int:
        """Everything that is not a routed expert (replicated on every attention/DP rank)."""
        return self.total_params() - self.moe_params()

    def active_params(self) -> int:
        """Parameters one token activates, embedding and LM head included."""
        routed_active = self.moe_layers * self.top_k * self.expert_params()
        return self.dense_params() + routed_active

    # ---------------------------------------------------------------- KV cache and FLOPs
    def kv_bytes_per_token(self, kv_dtype: str = "bf16") -> int:
        """KV-cache bytes per token over all main-model layers (bytes)."""
        if kv_dtype not in KV_DTYPES:
            raise XdsError(f"unknown KV dtype {kv_dtype!r} (allowed: bf16, int8, fp8)", file="--kv-dtype")
        narrow = kv_dtype in ("int8", "fp8")
        if self.attention == "mla":
            latent = self.kv_lora_rank * (1 if narrow else 2)
            rope = self.qk_rope_head_dim * 2
            per_layer = latent + rope
        else:
            per_layer = 2 * self.kv_heads * self.head_dim * (1 if narrow else 2)
        return per_layer * self.layers

    def kv_bytes_per_token_with_mtp(self, kv_dtype: str = "bf16") -> float:
        """KV bytes per token including the MTP layers' own cache (bytes): the main layers' bytes
        scaled by (layers + MTP layers) / layers."""
        return self.kv_bytes_per_token(kv_dtype) * (1 + self.mtp_layers / self.layers)

    def attention_flops_per_pair(self) -> float:
        """Score + value FLOPs of one (query token, cached key) pair over all heads of one layer.

        MLA decode runs weight-absorbed: scores over the (latent + RoPE) key and values mixed in the
        latent; GQA scores and mixes over ``head_dim``."""
        if self.attention == "mla":
            return 2.0 * self.heads * (2 * self.kv_lora_rank + self.qk_rope_head_dim)
        return 4.0 * self.heads * self.head_dim

    def attention_flops_per_token(self, context: float) -> float:
        """Score + value FLOPs of one decode token attending to ``context`` cached tokens, all layers."""
        return self.attention_flops_per_pair() * context * self.layers

    def decode_flops_per_token(self, context: float) -> float:
        """FLOPs of one decode token at ``context`` tokens of KV: 2 × activated matmul parameters
        (the embedding lookup is not a matmul; the LM head is) plus attention."""
        matmul = self.active_params() - self.embedding_params()
        return 2.0 * matmul + self.attention_flops_per_token(context)

    def summary(self, *, kv_dtype: str = "bf16", context: int = 4096) -> dict[str, Any]:
        """The ``xds model --json`` document."""
        return {
            "model": self.name,
            "family": self.family,
            "attention": self.attention,
            "layers": self.layers,
            "dense_layers": self.dense_layers,
            "moe_layers": self.moe_layers,
            "hidden_size": self.hidden,
            "routed_experts": self.n_routed_experts,
            "experts_per_token": self.top_k,
            "shared_experts_intermediate": self.shared_intermediate,
            "mtp_layers": self.mtp_layers,
            "max_context": self.max_context,
            "total_params": self.total_params(),
            "active_params": self.active_params(),
            "params_per_expert": self.expert_params() if self.is_moe else 0,
            "moe_params": self.moe_params(),
            "dense_params": self.dense_params(),
            "mtp_params": self.mtp_params(),
            "embedding_params": self.embedding_params(),
            "lm_head_params": self.lm_head_params(),
            "kv_dtype": kv_dtype,
            "kv_bytes_per_token": self.kv_bytes_per_token(kv_dtype),
            "context": context,
            "decode_flops_per_token": self.decode_flops_per_token(context),
            "convention": "total_params excludes MTP layers (mtp_params); active_params includes the "
                          "embedding and the LM head",
        }


# ------------------------------------------------------------------------ loading
