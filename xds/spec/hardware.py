"""Hardware spec: one accelerator chip (dies, HBM, peak compute, links) and its calibrated
efficiency factors. Built-ins live in ``xds/data/hardware/*.yaml``."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, PositiveFloat

from .builtins import resolve
from .yamlio import Strict, load_yaml, validate

Quant = Literal["w8a8", "fp8", "bf16"]


class PeakTflops(Strict):
    """Peak dense TFLOPS per die, per datatype (TFLOPS = 1e12 FLOP/s)."""

    bf16: PositiveFloat
    int8: PositiveFloat | None = None
    fp8: PositiveFloat | None = None


class Efficiency(Strict):
    """Efficiency factors of the cost model (dimensionless fractions of a peak, or µs).

    ``compute`` and ``memory`` scale peak FLOPS / HBM bandwidth for GEMM-like and streaming operators;
    ``attention_compute`` / ``attention_memory`` do the same for attention kernels (reference §C.4
    measured MLA at 65.4 % compute and 84.1 % memory utilisation). ``scale_up`` and ``scale_out`` are
    the achieved fractions of the link bandwidth for all-to-all traffic of the low-latency kernels
    (decode dispatch/combine, KV transfer); ``scale_up_bulk`` / ``scale_out_bulk`` the same for the
    normal (high-throughput) kernels that prefill uses (reference §G, DeepEP); ``comm_latency_us`` is the fixed start-up of one dispatch/combine, ``comm_log_peers_us``
    the extra per doubling of the peers it synchronises with, ``dispatch_quant_us`` the per-token
    quantise/pack cost of a quantised dispatch (µs per token-copy / 100, see xds/cost/operators.py).
    ``launch_us`` is the per-operator launch/sync overhead; ``step_overhead_ms`` the per-iteration
    sampling/scheduling cost outside the layers. ``microbatch_overlap`` is no longer used (the overlap
    follows from the stream mechanism, xds/cost/operators.py) and is accepted for old YAML files;
    ``attention_stream_share`` the
    fraction of the cube cores the attention stream gets in the decode stream split (reference §B.1:
    16 of 24 AIC). ``prefill_compute`` is the GEMM efficiency of prefill, which xDeepServe runs in eager
    single-op mode (reference §B.3) rather than as a captured graph.
    """

    compute: float = Field(0.75, gt=0, le=1)
    memory: float = Field(0.80, gt=0, le=1)
    attention_compute: float = Field(0.65, gt=0, le=1)
    attention_memory: float = Field(0.841, gt=0, le=1)
    scale_up: float = Field(0.5, gt=0, le=1)
    scale_out: float = Field(0.5, gt=0, le=1)
    scale_up_bulk: float = Field(0.75, gt=0, le=1)
    scale_out_bulk: float = Field(0.9, gt=0, le=1)
    comm_latency_us: float = Field(10.0, ge=0)
    comm_log_peers_us: float = Field(0.0, ge=0)
    dispatch_quant_us: float = Field(0.0, ge=0)
    launch_us: float = Field(5.0, ge=0)
    step_overhead_ms: float = Field(1.0, ge=0)
    microbatch_overlap: float = Field(0.9, ge=0, le=1)
    attention_stream_share: float = Field(0.667, gt=0, lt=1)
    prefill_compute: float = Field(0.5, gt=0, le=1)


class HardwareSpec(Strict):
    """One accelerator chip. Bandwidths in GB/s (1e9 bytes/s), capacities in GB (1e9 bytes)."""

    name: str
    vendor: str
    dies_per_chip: int = Field(ge=1, le=64, description="compute dies per package")
    hbm_gb_per_die: PositiveFloat
    hbm_gb_s_per_die: PositiveFloat
    peak_tflops_per_die: PeakTflops
    d2d_gb_s: float = Field(0.0, ge=0, description="die-to-die bandwidth per direction inside a chip")
    scale_up_gb_s_per_die: PositiveFloat = Field(description="UB / NVLink, unidirectional per die")
    scale_out_gb_s_per_die: PositiveFloat = Field(description="RDMA (RoCE / InfiniBand) per die")
    default_quant: Quant
    hbm_reserve_gb_per_die: float = Field(3.0, ge=0, description="runtime, activations, fragmentation")
    efficiency: Efficiency = Efficiency()

    def peak_flops(self, quant: str) -> float:
        """Peak dense FLOP/s per die for the GEMM datatype a quantisation scheme uses."""
        p = self.peak_tflops_per_die
        if quant == "w8a8":
            v = p.int8 or p.fp8 or p.bf16
        elif quant == "fp8":
            v = p.fp8 or p.int8 or p.bf16
        else:
            v = p.bf16
        return v * 1e12


@lru_cache(maxsize=64)
def _load(path: str) -> HardwareSpec:
    data = load_yaml(path, what="hardware spec")
    return validate(HardwareSpec, data, file=path)


def load_hardware(name_or_path: str) -> HardwareSpec:
    """Load a built-in hardware spec by name (``ascend-910c``) or from a YAML file."""
    path, _ = resolve("hardware", name_or_path, label="hardware")
    return _load(str(path))
