"""Physical bounds of every efficiency factor ``xds calibrate`` may fit, each from a measurement.

A fitted factor must stay inside what the hardware was measured to reach: an end-to-end fit that
wants ``memory`` above the bandwidth the memory-bound MLA kernel reached in isolation is absorbing an
error of the model, not measuring the chip. Bounds are ``(low, high, source)``; the source says which
measurement sets the binding side (reference = shared/reference/cloudmatrix384.md).
"""

from __future__ import annotations

from ..spec.hardware import HardwareSpec

Bound = tuple[float, float, str]

# Shared by every chip: only one side is measured, or the bound is a definition.
_COMMON: dict[str, Bound] = {
    "prefill_compute": (0.3, 1.0, "a factor on top of `compute`: eager single-op prefill (reference §B.3) "
                        "cannot beat the graph-mode GEMM efficiency"),
    "comm_log_peers_us": (0.0, 50.0, "non-negative; no per-peer measurement is published"),
    "dispatch_quant_us": (0.0, 2.0, "non-negative; the quantise step is fused into dispatch "
                          "(reference §B.1), a few ns per token at most"),
    "launch_us": (0.0, 50.0, "non-negative graph-mode launch per operator"),
    "step_overhead_ms": (0.0, 7.0, "≤ the ~7 ms of the ~84 ms batch-96 step that MTP layer, sampling and "
                         "scheduling take together (reference §C.2)"),
    "scale_out": (0.1, 1.0, "a fraction of the link: ≤ 1"),
    "scale_out_bulk": (0.1, 1.0, "a fraction of the link: ≤ 1 (DeepEP's normal kernels report 43-58 GB/s "
                       "over a ~50 GB/s NIC, reference §G: the link is saturated)"),
}

_HUAWEI: dict[str, Bound] = {
    "compute": (0.3, 0.827, "≤ best measured INT8 GEMM utilisation per 910C die, 82.7 % "
                "(reference §C.4, CMv3 Table 9)"),
    "memory": (0.3, 0.841, "≤ measured HBM bandwidth utilisation of memory-bound MLA, 84.1 % "
               "(reference §C.4, CMv3 §5.5.2)"),
    "attention_compute": (0.2, 0.654, "≤ measured compute-bound MLA utilisation, 65.4 % (reference §C.4)"),
    "attention_memory": (0.3, 0.841, "≤ measured memory-bound MLA, 84.1 % (reference §C.4)"),
    "scale_up": (0.1, 0.837, "≤ measured UB NPU-NPU read bandwidth 164 of 196 GB/s per die "
                 "(reference §A.4, CMv2 Table 1)"),
    "scale_up_bulk": (0.1, 0.837, "≤ measured UB NPU-NPU read bandwidth 164 of 196 GB/s per die "
                      "(reference §A.4, CMv2 Table 1)"),
    "comm_latency_us": (1.2, 116.0, "≥ measured UB one-way latency 1.2 µs (reference §A.4); ≤ the "
                        "fastest measured dispatch, 116 µs (reference §C.4)"),
}

_NVIDIA: dict[str, Bound] = {
    "compute": (0.3, 0.827, "no Hopper GEMM utilisation in the reference: the measured 910C INT8 GEMM "
                "bound, 82.7 % (reference §C.4), is used"),
    "memory": (0.3, 0.896, "≤ measured HBM bandwidth utilisation of memory-bound FlashMLA on H800, "
               "89.6 % (reference §C.4)"),
    "attention_compute": (0.2, 0.667, "≤ measured compute-bound FlashMLA on H800, 66.7 % (reference §C.4)"),
    "attention_memory": (0.3, 0.896, "≤ measured memory-bound FlashMLA on H800, 89.6 % (reference §C.4)"),
    "scale_up": (0.1, 0.79, "≤ DeepEP's measured NVLink bandwidth, 158 of 200 GB/s (reference §G)"),
    "scale_up_bulk": (0.1, 0.79, "≤ DeepEP's measured NVLink bandwidth, 158 of 200 GB/s (reference §G)"),
    "comm_latency_us": (0.0, 77.0, "non-negative; ≤ the fastest measured low-latency dispatch, 77 µs "
                        "(reference §G)"),
}


def bounds_for(hw: HardwareSpec) -> dict[str, Bound]:
    """``{factor: (low, high, source)}`` for ``hw`` (by vendor)."""
    own = _HUAWEI if hw.vendor == "huawei" else _NVIDIA
    return {**_COMMON, **own}
