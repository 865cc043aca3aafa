"""Hugging Face ``config.json`` → :class:`~xds.spec.model_spec.ModelSpec`: one reader per model
family; a missing or mistyped key is a one-line error naming the key and the family."""

from __future__ import annotations

from typing import Any

from ..errors import XdsError
from .model_spec import ModelSpec

MAX_CONFIG_INT = 2**31 - 1  # largest size/count accepted from a config.json
MAX_LAYERS = 10_000


class _Cfg:
    """Typed access to a config dict: missing or mistyped keys become one-line XdsErrors."""

    def __init__(self, data: dict, file: str, family: str):
        self.d, self.file, self.family = data, file, family

    def int(self, key: str, default: Any = ..., *, minimum: int = 0, maximum: int = MAX_CONFIG_INT) -> int:
        if key not in self.d or self.d[key] is None:
            if default is ...:
                raise XdsError(f"missing key {key!r} required for a {self.family} model", file=self.file)
            return default
        v = self.d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise XdsError(f"must be an integer (got {v!r})", file=self.file, where=key)
        if v < minimum:
            raise XdsError(f"must be >= {minimum} (got {v})", file=self.file, where=key)
        if v > maximum:  # absurd sizes would overflow the accounting or loop for hours
            raise XdsError(f"must be <= {maximum:,} (got {v:.3g})", file=self.file, where=key)
        return v

    def bool(self, key: str, default: bool) -> bool:
        v = self.d.get(key, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise XdsError(f"must be true or false (got {v!r})", file=self.file, where=key)
        return v


def _family(d: dict, file: str) -> str:
    mt = str(d.get("model_type", ""))
    archs = d.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise XdsError(f"must be a list of class names (got {archs!r:.60})", file=file, where="architectures")
    arch = " ".join(archs)
    if mt in ("deepseek_v3", "kimi_k2", "deepseek_v2") or "DeepseekV3" in arch or "DeepseekV2" in arch:
        return "deepseek_v3"
    if mt == "qwen3_moe" or "Qwen3Moe" in arch:
        return "qwen3_moe"
    if mt == "glm4_moe" or "Glm4Moe" in arch:
        return "glm4_moe"
    if mt == "minimax_m2" or "MiniMaxM2" in arch:
        return "minimax_m2"
    if mt in ("llama", "qwen2", "mistral", "qwen3") or any(a in arch for a in ("Llama", "Qwen2For", "Qwen3For", "Mistral")):
        return "dense"
    if "dim" in d and "n_layers" in d and "architectures" not in d:
        raise XdsError(
            "this is DeepSeek's reference-inference config, not a Hugging Face config.json; "
            "use the model's config.json (missing key 'model_type')", file=file)
    if mt == "minimax_m1" or "MiniMaxM1" in arch or "attn_type_list" in d:
        raise XdsError(
            f"unsupported architecture {mt or arch!r}: hybrid linear ('lightning') attention is not "
            "modelled (supported: deepseek_v3, kimi_k2, qwen3_moe, glm4_moe, minimax_m2, llama, qwen2)",
            file=file, where="model_type")
    if not mt and not arch:
        raise XdsError("missing key 'model_type' (and 'architectures'): cannot tell the model family",
                       file=file)
    raise XdsError(
        f"unsupported architecture {mt or arch!r} (supported: deepseek_v3, kimi_k2, qwen3_moe, "
        "glm4_moe, minimax_m2, llama, qwen2)", file=file, where="model_type")


def parse_hf_config(d: dict, *, name: str, file: str) -> ModelSpec:
    """Normalise a Hugging Face config dict into a :class:`ModelSpec` (one reader per family)."""
    if not isinstance(d, dict):
        raise XdsError("expected a JSON object (a Hugging Face config.json)", file=file)
    fam = _family(d, file)
    c = _Cfg(d, file, fam)
    hidden = c.int("hidden_size", minimum=1)
    layers = c.int("num_hidden_layers", minimum=1, maximum=MAX_LAYERS)
    vocab = c.int("vocab_size", minimum=1)
    heads = c.int("num_attention_heads", minimum=1)
    tie = c.bool("tie_word_embeddings", False)
    max_ctx = c.int("max_position_embeddings", 0)
    common = dict(name=name, hidden=hidden, layers=layers, vocab=vocab, heads=heads,
                  tie_embeddings=tie, max_context=max_ctx, source=file)
    if fam == "deepseek_v3":
        return _deepseek_v3(c, d, layers, heads, common)
    # every other family is GQA attention with these two fields
    kv_heads = c.int("num_key_value_heads", heads, minimum=1)
    head_dim = c.int("head_dim", hidden // heads if heads else 0, minimum=1)
    gqa = dict(attention="gqa", kv_heads=kv_heads, head_dim=head_dim, v_head_dim=head_dim,
               q_lora_rank=0, kv_lora_rank=0, qk_rope_head_dim=0, qk_nope_head_dim=0, **common)
    return _GQA_FAMILIES[fam](c, d, layers, gqa)


def _deepseek_v3(c: _Cfg, d: dict, layers: int, heads: int, common: dict) -> ModelSpec:
    """DeepSeek-V3/R1 and Kimi K2: MLA attention, dense first layers, MTP."""
    nope, rope = c.int("qk_nope_head_dim", minimum=1), c.int("qk_rope_head_dim", minimum=1)
    n_routed = c.int("n_routed_experts", 0)
    first_dense = c.int("first_k_dense_replace", 0)
    freq = c.int("moe_layer_freq", 1, minimum=1)
    moe_layers = 0 if n_routed == 0 else sum(1 for i in range(first_dense, layers) if i % freq == 0)
    moe_inter = c.int("moe_intermediate_size", minimum=1) if n_routed else 0
    return ModelSpec(
        family="deepseek_v3", attention="mla", kv_heads=heads, head_dim=nope + rope,
        v_head_dim=c.int("v_head_dim", minimum=1), q_lora_rank=c.int("q_lora_rank", 0),
        kv_lora_rank=c.int("kv_lora_rank", minimum=1), qk_rope_head_dim=rope, qk_nope_head_dim=nope,
        qkv_bias=c.bool("attention_bias", False), qk_norm="",
        dense_intermediate=c.int("intermediate_size", minimum=1), moe_intermediate=moe_inter,
        shared_intermediate=c.int("n_shared_experts", 0) * moe_inter,
        n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", 0) if n_routed else 0,
        dense_layers=layers - moe_layers, moe_layers=moe_layers, router_bias=d.get("topk_method") == "noaux_tc",
        n_group=c.int("n_group", 1, minimum=1), topk_group=c.int("topk_group", 1, minimum=1),
        mtp_layers=c.int("num_nextn_predict_layers", 0), **common)


def _dense(c: _Cfg, d: dict, layers: int, gqa: dict) -> ModelSpec:
    """Llama, Qwen2/2.5, Qwen3 dense."""
    return ModelSpec(
        family=str(d.get("model_type", "dense")),
        qkv_bias=c.bool("attention_bias", d.get("model_type") == "qwen2"),
        qk_norm="per_head" if d.get("model_type") == "qwen3" else "",
        dense_intermediate=c.int("intermediate_size", minimum=1), moe_intermediate=0,
        shared_intermediate=0, n_routed_experts=0, top_k=0, dense_layers=layers, moe_layers=0,
        router_bias=False, n_group=1, topk_group=1, mtp_layers=0, **gqa)


def _qwen3_moe(c: _Cfg, d: dict, layers: int, gqa: dict) -> ModelSpec:
    """Qwen3-MoE: sparse layers every ``decoder_sparse_step`` except ``mlp_only_layers``."""
    file = c.file
    n_routed = c.int("num_experts", minimum=1)
    step = c.int("decoder_sparse_step", 1, minimum=1)
    mlp_only_raw = d.get("mlp_only_layers") or []
    if not isinstance(mlp_only_raw, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in mlp_only_raw):
        raise XdsError(f"must be a list of layer indices (got {mlp_only_raw!r:.60})", file=file,
                       where="mlp_only_layers")
    mlp_only = set(mlp_only_raw)
    moe_layers = sum(1 for i in range(layers) if i not in mlp_only and (i + 1) % step == 0)
    return ModelSpec(
        family="qwen3_moe", qkv_bias=c.bool("attention_bias", False), qk_norm="per_head",
        dense_intermediate=c.int("intermediate_size", minimum=1),
        moe_intermediate=c.int("moe_intermediate_size", minimum=1), shared_intermediate=0,
        n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", minimum=1),
        dense_layers=layers - moe_layers, moe_layers=moe_layers, router_bias=False,
        n_group=1, topk_group=1, mtp_layers=0, **gqa)


def _glm4_moe(c: _Cfg, d: dict, layers: int, gqa: dict) -> ModelSpec:
    """GLM-4.5: dense first layers, shared experts, biased router, MTP."""
    n_routed = c.int("n_routed_experts", minimum=1)
    first_dense = c.int("first_k_dense_replace", 0)
    moe_inter = c.int("moe_intermediate_size", minimum=1)
    return ModelSpec(
        family="glm4_moe", qkv_bias=c.bool("attention_bias", False),
        qk_norm="per_head" if c.bool("use_qk_norm", False) else "",
        dense_intermediate=c.int("intermediate_size", minimum=1), moe_intermediate=moe_inter,
        shared_intermediate=c.int("n_shared_experts", 0) * moe_inter,
        n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", minimum=1),
        dense_layers=first_dense, moe_layers=layers - first_dense, router_bias=True,
        n_group=c.int("n_group", 1, minimum=1), topk_group=c.int("topk_group", 1, minimum=1),
        mtp_layers=c.int("num_nextn_predict_layers", 0), **gqa)


def _minimax_m2(c: _Cfg, d: dict, layers: int, gqa: dict) -> ModelSpec:
    """MiniMax-M2: every layer is MoE; ``intermediate_size`` is the per-expert width."""
    n_routed = c.int("num_local_experts", minimum=1)
    mtp = c.int("num_mtp_modules", 0) * c.int("mtp_transformer_layers", 1) if c.bool("use_mtp", False) else 0
    return ModelSpec(
        family="minimax_m2", qkv_bias=False,
        qk_norm="per_layer" if c.bool("use_qk_norm", False) else "",
        dense_intermediate=0, moe_intermediate=c.int("intermediate_size", minimum=1),
        shared_intermediate=c.int("shared_intermediate_size", 0),
        n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", minimum=1),
        dense_layers=0, moe_layers=layers, router_bias=c.bool("use_routing_bias", False),
        n_group=1, topk_group=1, mtp_layers=mtp, **gqa)


_GQA_FAMILIES = {"dense": _dense, "qwen3_moe": _qwen3_moe, "glm4_moe": _glm4_moe, "minimax_m2": _minimax_m2}
