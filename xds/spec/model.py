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

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import XdsError
from . import resolve
from .yamlio import load_json


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
        if kv_dtype not in ("bf16", "int8", "fp8"):
            raise XdsError(f"unknown KV dtype {kv_dtype!r} (allowed: bf16, int8, fp8)", file="--kv-dtype")
        narrow = kv_dtype in ("int8", "fp8")
        if self.attention == "mla":
            latent = self.kv_lora_rank * (1 if narrow else 2)
            rope = self.qk_rope_head_dim * 2
            per_layer = latent + rope
        else:
            per_layer = 2 * self.kv_heads * self.head_dim * (1 if narrow else 2)
        return per_layer * self.layers

    def attention_flops_per_token(self, context: float) -> float:
        """Score + value FLOPs of one decode token attending to ``context`` cached tokens, all layers.

        MLA decode runs weight-absorbed: scores over the (latent + RoPE) key and values over the latent.
        """
        if self.attention == "mla":
            per_layer = 2 * self.heads * context * (self.kv_lora_rank + self.qk_rope_head_dim)
            per_layer += 2 * self.heads * context * self.kv_lora_rank
        else:
            per_layer = 2 * self.heads * context * self.head_dim * 2
        return per_layer * self.layers

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
    """Normalise a Hugging Face config dict into a :class:`ModelSpec`."""
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
    kv_heads = c.int("num_key_value_heads", heads, minimum=1)
    head_dim = c.int("head_dim", hidden // heads if heads else 0, minimum=1)
    if fam == "dense":
        return ModelSpec(
            family=str(d.get("model_type", "dense")), attention="gqa", kv_heads=kv_heads, head_dim=head_dim,
            v_head_dim=head_dim, q_lora_rank=0, kv_lora_rank=0, qk_rope_head_dim=0, qk_nope_head_dim=0,
            qkv_bias=c.bool("attention_bias", d.get("model_type") == "qwen2"),
            qk_norm="per_head" if d.get("model_type") == "qwen3" else "",
            dense_intermediate=c.int("intermediate_size", minimum=1), moe_intermediate=0,
            shared_intermediate=0, n_routed_experts=0, top_k=0, dense_layers=layers, moe_layers=0,
            router_bias=False, n_group=1, topk_group=1, mtp_layers=0, **common)
    if fam == "qwen3_moe":
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
            family="qwen3_moe", attention="gqa", kv_heads=kv_heads, head_dim=head_dim, v_head_dim=head_dim,
            q_lora_rank=0, kv_lora_rank=0, qk_rope_head_dim=0, qk_nope_head_dim=0,
            qkv_bias=c.bool("attention_bias", False), qk_norm="per_head",
            dense_intermediate=c.int("intermediate_size", minimum=1),
            moe_intermediate=c.int("moe_intermediate_size", minimum=1), shared_intermediate=0,
            n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", minimum=1),
            dense_layers=layers - moe_layers, moe_layers=moe_layers, router_bias=False,
            n_group=1, topk_group=1, mtp_layers=0, **common)
    if fam == "glm4_moe":
        n_routed = c.int("n_routed_experts", minimum=1)
        first_dense = c.int("first_k_dense_replace", 0)
        moe_inter = c.int("moe_intermediate_size", minimum=1)
        return ModelSpec(
            family="glm4_moe", attention="gqa", kv_heads=kv_heads, head_dim=head_dim, v_head_dim=head_dim,
            q_lora_rank=0, kv_lora_rank=0, qk_rope_head_dim=0, qk_nope_head_dim=0,
            qkv_bias=c.bool("attention_bias", False),
            qk_norm="per_head" if c.bool("use_qk_norm", False) else "",
            dense_intermediate=c.int("intermediate_size", minimum=1), moe_intermediate=moe_inter,
            shared_intermediate=c.int("n_shared_experts", 0) * moe_inter,
            n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", minimum=1),
            dense_layers=first_dense, moe_layers=layers - first_dense, router_bias=True,
            n_group=c.int("n_group", 1, minimum=1), topk_group=c.int("topk_group", 1, minimum=1),
            mtp_layers=c.int("num_nextn_predict_layers", 0), **common)
    # minimax_m2: every layer is MoE; `intermediate_size` is the per-expert width
    n_routed = c.int("num_local_experts", minimum=1)
    mtp = c.int("num_mtp_modules", 0) * c.int("mtp_transformer_layers", 1) if c.bool("use_mtp", False) else 0
    return ModelSpec(
        family="minimax_m2", attention="gqa", kv_heads=kv_heads, head_dim=head_dim, v_head_dim=head_dim,
        q_lora_rank=0, kv_lora_rank=0, qk_rope_head_dim=0, qk_nope_head_dim=0, qkv_bias=False,
        qk_norm="per_layer" if c.bool("use_qk_norm", False) else "",
        dense_intermediate=0, moe_intermediate=c.int("intermediate_size", minimum=1),
        shared_intermediate=c.int("shared_intermediate_size", 0),
        n_routed_experts=n_routed, top_k=c.int("num_experts_per_tok", minimum=1),
        dense_layers=0, moe_layers=layers, router_bias=c.bool("use_routing_bias", False),
        n_group=1, topk_group=1, mtp_layers=mtp, **common)


@lru_cache(maxsize=64)
def _load(path: str, name: str) -> ModelSpec:
    data = load_json(path, what="model config")
    return parse_hf_config(data, name=name, file=path)


def load_model(name_or_path: str, *, flag: str | None = None) -> ModelSpec:
    """Load a built-in model (``deepseek-r1``) or any Hugging Face ``config.json`` path."""
    path, builtin = resolve("models", name_or_path, label="model", flag=flag)
    if not builtin and Path(path).is_dir():
        path = Path(path) / "config.json"
    name = name_or_path if builtin else Path(path).parent.name or Path(path).stem
    return _load(str(path), name)


def model_summary(model: str, *, kv_dtype: str = "bf16", context: int = 4096) -> dict[str, Any]:
    """``xds model`` as a function: the JSON document for ``model``."""
    if context < 0:
        raise XdsError(f"must be >= 0 (got {context})", file="--context")
    return load_model(model, flag="MODEL").summary(kv_dtype=kv_dtype, context=context)


def as_dict(spec: ModelSpec) -> dict[str, Any]:
    return asdict(spec)
