"""``xds estimate`` as a function: steady-state step time and throughput of one pool (DESIGN.md §3.3).

Builds a :class:`~xds.cost.Layout` from estimate flags, prices one iteration with the cost model and
returns the contract JSON document (``phase``, ``step_time_ms``, ``tokens_per_step``, ``tpot_ms`` /
``ttft_ms``, ``output_throughput_per_chip`` / ``input_throughput_per_chip``, ``breakdown_ms``,
``hbm_used_gb_per_die``, ``max_batch_per_die``, ``fits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import XdsError
from ..experts.imbalance import expected_balancedness
from ..experts.redundancy import REDUNDANT_RULE, rule_slots
from ..experts.skew import DEFAULT_HOT, DEFAULT_KAPPA
from ..spec.cluster import MAX_DIES
from ..spec.hardware import HardwareSpec, load_hardware
from ..spec.model import ModelSpec, load_model
from ..spec.workload import MAX_INPUT_LEN
from .bands import add_intervals
from .costmodel import CostModel
from .fabric import default_cluster, fabric_for
from .layout import WEIGHT_BYTES, Fabric, Layout
from .operators import prefill_flops_per_pair

MAX_BATCH_PER_DIE = 1_000_000  # decode requests in flight per die; real ones are < 1,000
MAX_TOKENS_PER_CHIP = 1e9      # prefill token batch per chip


@dataclass
class EstimateArgs:
    """The flags of ``xds estimate`` (DESIGN.md §3.3); ``None`` means "use the default"."""

    model: str = "deepseek-r1"
    hardware: str = "ascend-910c"
    cluster: str | None = None
    phase: str = "decode"
    chips: int | None = None
    ep: int | None = None
    dp: int | None = None
    tp: int = 1
    batch_per_die: float | None = None
    batch_per_chip: float | None = None
    tokens_per_chip: float | None = None
    input_len: int = 4096
    output_len: int = 256
    mtp: int = 0
    mtp_acceptance: float = 0.7
    microbatches: int = 2
    eplb: str = "default"
    quant: str | None = None
    kv_dtype: str = "bf16"
    shared_expert_dies: int = 0
    redundant_experts: int | None = None
    balancedness: float | None = None
    hot_ratio: float | None = None        # most skewed layer's hottest / mean expert share (xds/experts/skew.py)
    concentration: float | None = None    # per-sequence Dirichlet concentration kappa


def eplb_balancedness(model: ModelSpec, routed_ranks: int, routed_slots: int, eplb: str,
                      sequences: float, pairs_per_sequence: float = 8.0, hot_ratio: float | None = None,
                      kappa: float | None = None) -> float:
    """MoE imbalance (expected max / mean routed EP-rank load of a step) for an ``--eplb`` mode and
    ``sequences`` sequences per microbatch routing ``pairs_per_sequence`` token-expert pairs each.

    ``perfect`` is 1. ``default`` is the expected maximum under the default expert statistics on the
    layout xds's balancer builds with the layout's slots (:mod:`xds.experts.imbalance`); ``none`` is
    the same with the fewest slots that fill every rank (no redundancy).
    """
    if eplb not in ("default", "none", "perfect"):
        raise XdsError(f"unknown EPLB mode {eplb!r} (allowed: perfect, default, none)", file="--eplb")
    if not model.is_moe or eplb == "perfect":
        return 1.0
    slots = routed_slots if eplb == "default" else routed_ranks * math.ceil(model.n_routed_experts / routed_ranks)
    E = model.n_routed_experts
    if hot_ratio is not None and not (1.0 <= hot_ratio < E):
        raise XdsError(f"must be in [1, {E}) (got {hot_ratio})", file="--hot-ratio")
    if kappa is not None and not (kappa > 0 and math.isfinite(kappa)):
        raise XdsError(f"must be a positive number (got {kappa})", file="--concentration")
    return expected_balancedness(E, slots, routed_ranks, round(float(sequences), 3), float(pairs_per_sequence),
                                 DEFAULT_HOT if hot_ratio is None else float(hot_ratio),
                                 DEFAULT_KAPPA if kappa is None else float(kappa))


def _routed_slots(a: EstimateArgs, e: int, routed_ranks: int) -> tuple[int, str]:
    """Routed slots and the rule that chose them: the user's ``--redundant-experts`` (0 means 0), else
    the redundancy rule (:func:`xds.experts.redundancy.rule_slots`)."""
    if a.redundant_experts is None:
        return rule_slots(e, routed_ranks), REDUNDANT_RULE
    if a.redundant_experts < 0:
        raise XdsError(f"must be >= 0 (got {a.redundant_experts})", file="--redundant-experts")
    slots = e + a.redundant_experts
    if slots % routed_ranks or slots < routed_ranks:
        raise XdsError(
            f"{e} experts + {a.redundant_experts} redundant = {slots} slots do not divide over "
            f"{routed_ranks} routed EP ranks", file="--redundant-experts")
    return slots, "--redundant-experts"


def build_layout(a: EstimateArgs, model: ModelSpec, hw: HardwareSpec) -> tuple[Layout, int]:
    """Turn estimate flags into a layout; returns ``(layout, chips)``."""
    dpc = hw.dies_per_chip
    if a.chips is not None and a.chips < 1:
        raise XdsError(f"must be a positive integer (got {a.chips})", file="--chips")
    if a.ep is not None and a.ep < 1:
        raise XdsError(f"must be a positive integer (got {a.ep})", file="--ep")
    if a.chips is None and a.ep is None:
        raise XdsError("give --chips N or --ep E (EP ranks = dies) to size the instance", file="--chips")
    dies = a.chips * dpc if a.chips is not None else a.ep
    if dies > MAX_DIES:  # far beyond any SuperPod; per-die arrays would not fit in memory
        raise XdsError(f"{dies:,} dies; at most {MAX_DIES:,} are supported",
                       file="--chips" if a.chips is not None else "--ep")
    if a.chips is None:
        if dies % dpc:
            raise XdsError(f"EP{dies} is not a whole number of {hw.name} chips ({dpc} dies each)",
                           file="--ep")
    chips = dies // dpc
    ep = a.ep if a.ep is not None else dies
    if ep > dies:
        raise XdsError(f"EP{ep} needs {ep} dies but {chips} chips have {dies}", file="--ep")
    if dies % ep:
        raise XdsError(f"EP{ep} does not divide the {dies} dies of {chips} chips", file="--ep")
    if a.tp < 1 or dies % a.tp:
        raise XdsError(f"TP{a.tp} does not divide the {dies} dies", file="--tp")
    dp = a.dp if a.dp is not None else dies // a.tp
    if dp < 1 or dp * a.tp != dies:
        raise XdsError(f"DP{dp} × TP{a.tp} = {dp * a.tp} must equal the {dies} dies", file="--dp")
    if a.shared_expert_dies < 0 or a.shared_expert_dies >= ep:
        raise XdsError(f"must be in [0, {ep - 1}] (got {a.shared_expert_dies})", file="--shared-expert-dies")
    routed_ranks = ep - a.shared_expert_dies
    e = model.n_routed_experts
    slots = _routed_slots(a, e, routed_ranks)[0] if model.is_moe else 0
    quant = a.quant or hw.default_quant
    if a.mtp < 0 or a.mtp > 4:
        raise XdsError(f"MTP draft tokens must be 0..4 (got {a.mtp})", file="--mtp")
    if not (0.0 <= a.mtp_acceptance <= 1.0) or not math.isfinite(a.mtp_acceptance):
        raise XdsError(f"must be within [0, 1] (got {a.mtp_acceptance})", file="--mtp-acceptance")
    if a.microbatches < 1 or a.microbatches > 8:
        raise XdsError(f"must be 1..8 (got {a.microbatches})", file="--microbatches")
    lay = Layout(dies=dies, ep=ep, dp=dp, tp=a.tp, shared_dies=a.shared_expert_dies,
                 routed_slots=slots, mtp=a.mtp if a.phase == "decode" else 0,
                 mtp_acceptance=a.mtp_acceptance, microbatches=a.microbatches, quant=quant,
                 kv_dtype=a.kv_dtype)
    if a.balancedness is not None:
        if not (a.balancedness >= 1.0 and math.isfinite(a.balancedness)):
            raise XdsError(f"must be >= 1 (got {a.balancedness})", file="--balancedness")
        bal = a.balancedness
    else:
        if a.phase == "decode":
            per_die = a.batch_per_die if a.batch_per_die is not None else (a.batch_per_chip or 0) / dpc
            seqs = per_die * dp / a.microbatches
            m = model.top_k * (1 + lay.mtp)          # pairs per sequence per step (MTP drafts route too)
        else:
            seqs = (a.tokens_per_chip or 16384) / dpc * dies / a.input_len / a.microbatches
            m = model.top_k * a.input_len
        bal = eplb_balancedness(model, routed_ranks, slots, a.eplb, seqs, m, a.hot_ratio, a.concentration) \
            if model.is_moe else 1.0
    return replace(lay, balancedness=bal), chips


def _redundancy(a: EstimateArgs, model: ModelSpec, lay: Layout) -> dict[str, Any]:
    """What the estimate used for redundant routed experts: the count and the rule that chose it."""
    if not model.is_moe:
        return {"redundant_experts": 0, "redundant_rule": "dense model"}
    rule = "--redundant-experts" if a.redundant_experts is not None else REDUNDANT_RULE
    return {"redundant_experts": lay.routed_slots - model.n_routed_experts, "redundant_rule": rule,
            "hot_ratio": DEFAULT_HOT if a.hot_ratio is None else a.hot_ratio,
            "concentration": DEFAULT_KAPPA if a.concentration is None else a.concentration}


def _ms(d: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(np.ravel(v)[0]) / 1e3, 4) for k, v in d.items()}


@dataclass
class Prepared:
    """An estimate's inputs resolved once (model, layout, fabric), so it can be re-priced cheaply
    with other efficiency factors (``xds calibrate``)."""

    args: EstimateArgs
    model: ModelSpec
    hw: HardwareSpec
    cluster: str
    layout: Layout
    chips: int
    fabric: Fabric
    batch_per_die: float = 0.0
    tokens_per_chip: float = 0.0


def prepare(args: EstimateArgs | None = None, **kw: Any) -> Prepared:
    """Validate estimate flags and resolve model, hardware, layout and fabric."""
    a = replace(args or EstimateArgs(), **kw)
    if a.phase not in ("decode", "prefill"):
        raise XdsError(f"unknown phase {a.phase!r} (allowed: decode, prefill)", file="--phase")
    model = load_model(a.model)
    hw = load_hardware(a.hardware) if isinstance(a.hardware, str) else a.hardware
    cluster = a.cluster or default_cluster(hw)
    for flag, v in (("--input-len", a.input_len), ("--output-len", a.output_len)):
        if v is None or not 1 <= v <= MAX_INPUT_LEN:
            raise XdsError(f"must be a number of tokens in [1, {MAX_INPUT_LEN:,}] (got {v})", file=flag)
    dpc = hw.dies_per_chip
    for flag, v in (("--chips", a.chips), ("--ep", a.ep)):   # sizing errors first: they are the cause
        if v is not None and v < 1:
            raise XdsError(f"must be a positive integer (got {v})", file=flag)
    b = t_chip = None
    if a.phase == "decode":
        if a.batch_per_die is not None and a.batch_per_chip is not None:
            raise XdsError("give --batch-per-die or --batch-per-chip, not both", file="--batch-per-die")
        b = a.batch_per_die if a.batch_per_die is not None else (
            a.batch_per_chip / dpc if a.batch_per_chip is not None else None)
        if b is None:
            raise XdsError("decode needs --batch-per-die B or --batch-per-chip B", file="--batch-per-die")
        if not (0 < b <= MAX_BATCH_PER_DIE) or not math.isfinite(b):
            raise XdsError(f"batch must be > 0 and at most {MAX_BATCH_PER_DIE:,} per die (got {b})",
                           file="--batch-per-die" if a.batch_per_die is not None else "--batch-per-chip")
        if a.tokens_per_chip is not None:
            raise XdsError("--tokens-per-chip is a prefill flag; decode uses --batch-per-die/--batch-per-chip",
                           file="--tokens-per-chip")
    else:
        if a.batch_per_die is not None or a.batch_per_chip is not None:
            raise XdsError("--batch-per-die/--batch-per-chip are decode flags; prefill uses --tokens-per-chip",
                           file="--batch-per-die")
        t_chip = a.tokens_per_chip if a.tokens_per_chip is not None else 16384
        if not (0 < t_chip <= MAX_TOKENS_PER_CHIP) or not math.isfinite(t_chip):
            raise XdsError(f"must be in (0, {MAX_TOKENS_PER_CHIP:,}] (got {t_chip})", file="--tokens-per-chip")
    lay, chips = build_layout(a, model, hw)
    p = Prepared(a, model, hw, cluster, lay, chips, fabric_for(cluster, hw, lay.ep))
    p.batch_per_die = float(b or 0.0)
    p.tokens_per_chip = float(t_chip or 0.0)
    return p


def price(p: Prepared, hw: HardwareSpec | None = None, *, full: bool = True) -> dict[str, Any]:
    """Price a prepared estimate (optionally on other hardware factors); the contract document."""
    a, model, lay, chips = p.args, p.model, p.layout, p.chips
    hw = hw or p.hw
    cm = CostModel(model, hw, lay, p.fabric)
    dpc = hw.dies_per_chip
    doc: dict[str, Any] = {"phase": a.phase, "model": model.name, "hardware": hw.name,
                           "cluster": p.cluster, "chips": chips, "dies": lay.dies,
                           "layout": {"ep": lay.ep, "dp": lay.dp, "tp": lay.tp,
                                      "shared_expert_dies": lay.shared_dies,
                                      "routed_slots": lay.routed_slots,
                                      **_redundancy(a, model, lay), "mtp": lay.mtp,
                                      "mtp_acceptance": lay.mtp_acceptance,
                                      "microbatches": lay.microbatches, "quant": lay.quant,
                                      "kv_dtype": lay.kv_dtype, "eplb": a.eplb,
                                      "balancedness": round(lay.balancedness, 4),
                                      "fabric": p.fabric.plane,
                                      "fabric_gb_s_per_die": round(p.fabric.gb_s, 3)}}
    if a.phase == "decode":
        b = p.batch_per_die
        ctx_mean = a.input_len + a.output_len / 2.0       # context uniform over [I, I+O]
        ranks = np.full(lay.dp, b, dtype=float)
        total, bd, bound, per_layer = cm.decode_step_us(ranks, ranks * ctx_mean, detail=True)
        step_ms = float(np.ravel(total)[0]) / 1e3
        tps = lay.tokens_per_step()
        doc.update({
            "batch_per_die": b, "batch_per_chip": b * dpc, "input_len": a.input_len,
            "output_len": a.output_len, "step_time_ms": round(step_ms, 4),
            "tokens_per_step": round(tps, 4), "tpot_ms": round(step_ms / tps, 4),
            "output_throughput_per_chip": round(b * lay.dp * tps / (step_ms / 1e3) / chips, 2),
            "moe_layer_us": round(float(np.ravel(per_layer["moe_layer_us"])[0]), 2),
        })
        if not full:
            return doc
        hbm = cm.hbm_gb(b, a.input_len + a.output_len)
        roof = roofline_decode(model, hw, lay, b, ctx_mean)
    else:
        t_chip = p.tokens_per_chip
        n = t_chip / dpc
        seqs = n / a.input_len
        pairs = seqs * a.input_len * (a.input_len + 1) / 2.0
        total, bd, bound = cm.prefill_batch_us(n, pairs, seqs, detail=True)
        step_ms = float(total) / 1e3
        doc.update({
            "tokens_per_chip": t_chip, "input_len": a.input_len, "step_time_ms": round(step_ms, 4),
            "tokens_per_step": t_chip, "ttft_ms": round(step_ms, 4),
            "input_throughput_per_chip": round(t_chip / (step_ms / 1e3), 2),
        })
        if not full:
            return doc
        hbm = cm.hbm_gb(0, 0, phase="prefill", prefill_tokens=n)
        roof = roofline_prefill(model, hw, lay, n, pairs, seqs)
    # 90 % error bands from xds validate's leave-one-out residuals (xds.cost.bands)
    add_intervals(doc, hw, a.phase, p.batch_per_die if a.phase == "decode" else None,
                  ("tpot_ms", "output_throughput_per_chip", "ttft_ms", "input_throughput_per_chip"))
    doc["breakdown_ms"] = _ms(bd)
    doc["bound"] = {k: bound.get(k, "overhead") for k in bd}
    doc["roofline_step_ms"] = round(roof, 4)
    doc["hbm_used_gb_per_die"] = round(hbm["total"], 3)
    doc["hbm_breakdown_gb"] = {k: round(v, 3) for k, v in hbm.items()}
    doc["max_batch_per_die"] = cm.max_batch_per_die(a.input_len + a.output_len)
    doc["fits"] = bool(hbm["free"] >= 0)
    if not doc["fits"]:
        doc["hbm_shortfall_gb"] = round(-hbm["free"], 3)
    return doc


def estimate(args: EstimateArgs | None = None, **kw: Any) -> dict[str, Any]:
    """Price one pool in steady state; returns the ``xds estimate --json`` document."""
    return price(prepare(args, **kw))


def roofline_decode(model: ModelSpec, hw: HardwareSpec, lay: Layout, b: float, ctx: float) -> float:
    """Lower bound (ms) on a decode step per die: every FLOP at peak or every byte at full HBM
    bandwidth, whichever is larger; no launches, no communication, perfect balance."""
    q = b * (1 + lay.mtp)
    flops = q * model.decode_flops_per_token(ctx) / lay.tp * lay.dp / lay.dies
    routed_w = lay.routed_slots / max(lay.ep - lay.shared_dies, 1) * model.expert_params()
    w = (model.dense_params() - model.embedding_params()) / lay.tp + model.moe_layers * routed_w
    bytes_ = w * WEIGHT_BYTES[lay.quant] + b * ctx * model.kv_bytes_per_token(lay.kv_dtype)
    return max(flops / hw.peak_flops(lay.quant), bytes_ / (hw.hbm_gb_s_per_die * 1e9)) * 1e3


def roofline_prefill(model: ModelSpec, hw: HardwareSpec, lay: Layout, n: float, pairs: float,
                     seqs: float) -> float:
    """Lower bound (ms) on prefilling ``n`` tokens on one die at peak compute."""
    matmul = 2.0 * (model.active_params() - model.embedding_params() - model.lm_head_params()) * n
    flops = matmul + prefill_flops_per_pair(model) * pairs * model.layers \
        + 2.0 * model.lm_head_params() * seqs
    return flops / hw.peak_flops(lay.quant) * 1e3
