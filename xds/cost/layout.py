"""What the cost model prices: the parallel layout of one serving instance, the fabric its EP
all-to-all runs on, the bytes of one dispatched / combined token copy, and the layout checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import XdsError
from ..spec.model import ModelSpec
from ..spec.model_spec import KV_DTYPES

WEIGHT_BYTES = {"w8a8": 1.0, "fp8": 1.0, "bf16": 2.0}   # bytes per weight element by quantisation


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
    """Bytes of one token copy returned by combine: BF16 expert outputs (reference §B.1: 14 KB per
    token for DeepSeek)."""
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
    """The links the EP all-to-all of one die runs on.

    ``gb_s``: per-die bandwidth (GB/s, unidirectional) of ``plane``, whose efficiency applies:
    ``scale_up`` (UB / NVLink) or ``scale_out`` (RDMA / IB). On an NVLink-island cluster an EP group
    wider than a node reaches its same-node peers over NVLink and only the others over IB (the
    DeepEP low-latency kernels send to same-node peers over NVLink, reference §G: their reported
    "RDMA" 98/127 GB/s at EP8 exceeds the 50 GB/s NIC). ``local_fraction`` is that share of the EP
    peers (the die itself included: dies on its node / EP size, dimensionless, 0 when the whole
    group is on ``plane``), reached at ``local_gb_s`` (GB/s per die, the scale-up link); the
    remaining ``1 − local_fraction`` of the bytes crosses ``plane`` at ``gb_s``.
    """

    gb_s: float
    plane: str = "scale_up"     # "scale_up" (UB / NVLink) or "scale_out" (RDMA / IB)
    local_fraction: float = 0.0  # share of the EP peers on the die's own node, over the scale-up link
    local_gb_s: float = 0.0      # GB/s per die of that scale-up link (used when local_fraction > 0)


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
