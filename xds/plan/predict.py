"""Predicted steady-state performance of a placed plan from the cost model, and its verdict against
the plan's SLO. Times in ms, throughput in tokens/s, rates in req/s."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..cost.bands import add_intervals
from .inputs import DEFAULT_LENGTHS


def predict(placed: Any) -> dict[str, Any]:
    """Steady-state performance per pool of ``placed`` (a :class:`~xds.plan.PlacedPlan`) from the
    cost model at the pool's caps and the workload's mean lengths, and the verdict against the SLO.

    Decode: one iteration with every DP rank at ``batch_cap_per_rank`` and context at the mean of
    [I, I + O] → ``step_time_ms``, ``tpot_ms`` (step / tokens per step), ``output_throughput_per_chip``.
    Prefill: ``ttft_full_batch_ms`` is one full batch (``token_budget_per_die`` tokens per die) and
    ``input_throughput_per_chip`` its throughput; with an offered rate (the workload's), the batch
    that accumulates during one batch time is the fixed point B = rate_per_die × T(B), and
    ``ttft_ms`` = 1.5 × T(B) (on average half of the batch in flight, then its own) + the P→D KV
    transfer; without a rate ``ttft_ms`` is the full batch. Margins are (target − predicted) / target.
    """
    I = float(placed.lengths.get("input_len", DEFAULT_LENGTHS[0]))
    O = float(placed.lengths.get("output_len", DEFAULT_LENGTHS[1]))
    rate = placed.lengths.get("rate_rps")
    doc: dict[str, Any] = {"input_len": round(I, 1), "output_len": round(O, 1),
                           "rate_rps": None if rate is None else round(rate, 3)}
    dec, tpot = _decode(placed.decode, I, O, rate)
    # 90 % error bands of the cost model (xds.cost.bands, from xds validate's leave-one-out residuals)
    add_intervals(dec, placed.hw, "decode", dec["batch_per_rank"], ("tpot_ms", "output_throughput_per_chip"))
    doc["decode"] = dec
    ttft = None
    kv_ms = I * placed.kv_bytes_per_token / (placed.kv_transfer_gb_s * 1e9) * 1e3
    if placed.prefill is not None:
        doc["prefill"], ttft = _prefill(placed.prefill, placed.hw.dies_per_chip, I, rate, kv_ms)
        add_intervals(doc["prefill"], placed.hw, "prefill", None,
                      ("ttft_full_batch_ms", "input_throughput_per_chip", "ttft_ms"))
    verdict = _verdict(placed.spec.slo, tpot, ttft, rate, dec)
    doc["slo"] = verdict
    doc["meets_slo"] = verdict["meets_slo"]
    return doc


def _decode(d: Any, I: float, O: float, rate: float | None) -> tuple[dict[str, Any], float]:
    """Decode pool ``d`` at its batch cap: the prediction document and TPOT (ms)."""
    lay, cm = d.instances[0].layout, d.instances[0].cost
    b = float(d.batch_cap_per_rank)
    ctx = I + O / 2.0
    step_ms = float(np.ravel(cm.decode_step_us(np.array([b]), np.array([b * ctx])))[0]) / 1e3
    tps = lay.tokens_per_step()
    tpot = step_ms / tps
    chips_inst = d.chips / len(d.instances)
    ranks = lay.dp * lay.ma_domains
    dec = {"batch_per_rank": b, "step_time_ms": round(step_ms, 3), "tokens_per_step": round(tps, 4),
           "tpot_ms": round(tpot, 3),
           "output_throughput_per_chip": round(b * ranks * tps / (step_ms / 1e3) / chips_inst, 1),
           "output_throughput": round(b * ranks * tps / (step_ms / 1e3) * len(d.instances), 1),
           "balancedness": round(float(lay.balancedness), 4)}
    if rate:
        # Little's law: requests in decode = rate × decode time per request
        need = rate * O * tpot / 1e3
        dec["decode_utilization"] = round(need / max(d.max_concurrent, 1), 4)
    return dec, tpot


def _prefill(p: Any, dies_per_chip: int, I: float, rate: float | None,
             kv_ms: float) -> tuple[dict[str, Any], float]:
    """Prefill pool ``p``: the prediction document and TTFT (ms; inf when the rate overloads it)."""
    pl, pc = p.instances[0].layout, p.instances[0].cost
    n = float(p.token_budget_per_die)
    # batch sizes (tokens per die) from one prompt over the instance up to the full budget
    grid = np.geomspace(max(I / pl.dies, 1.0), n, 96)
    grid[-1] = n
    seqs = grid / I
    t_us = np.asarray(pc.prefill_batch_us(grid, seqs * I * (I + 1) / 2.0, seqs), dtype=float)
    t_full = float(t_us[-1]) / 1e3
    pre = {"token_budget_per_die": int(n), "ttft_full_batch_ms": round(t_full, 2),
           "input_throughput_per_chip": round(n * dies_per_chip / (t_full / 1e3), 1),
           "kv_transfer_ms": round(kv_ms, 3), "balancedness": round(float(pl.balancedness), 4)}
    ttft = t_full + kv_ms
    if rate:
        lam = rate * I / p.dies               # prompt tokens per second per prefill die
        ok = lam * t_us / 1e6 <= grid
        pre["prefill_utilization"] = round(lam * t_full / 1e3 / n, 4)
        if ok.any():
            t_b = float(t_us[int(np.argmax(ok))]) / 1e3
            ttft = 1.5 * t_b + kv_ms
            pre["batch_tokens_per_die"] = round(float(grid[int(np.argmax(ok))]), 1)
        else:
            ttft = float("inf")
            pre["overloaded"] = True
    pre["ttft_ms"] = round(ttft, 2) if np.isfinite(ttft) else None
    return pre, ttft


def _verdict(slo: Any, tpot: float, ttft: float | None, rate: float | None,
             dec: dict[str, Any]) -> dict[str, Any]:
    """TPOT/TTFT (ms) against the SLO, margins, and ``meets_slo``; TTFT None = no prefill pool."""
    verdict: dict[str, Any] = {"tpot_ms": slo.tpot_ms, "tpot_margin": round((slo.tpot_ms - tpot) / slo.tpot_ms, 4)}
    meets = tpot <= slo.tpot_ms
    if ttft is not None:
        verdict["ttft_ms"] = slo.ttft_ms
        verdict["ttft_margin"] = round((slo.ttft_ms - ttft) / slo.ttft_ms, 4) if np.isfinite(ttft) else None
        meets = meets and bool(np.isfinite(ttft)) and ttft <= slo.ttft_ms
    else:
        verdict["ttft"] = "not predicted: prefill runs outside this plan"
    if rate and dec.get("decode_utilization", 0) > 1:
        meets = False
        verdict["decode_overloaded"] = True
    verdict["meets_slo"] = bool(meets)
    return verdict
