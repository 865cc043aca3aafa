"""The workload ``xds size`` sizes for: a trace (optionally rescaled to a target rate) or synthetic
flags, as a plan ``workload:`` block, the built workload and its length statistics.

Units: req/s, tokens, seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import XdsError
from ..plan.balance import LengthStats
from ..spec.workload import WorkloadSpec
from ..spec.yamlio import validate
from ..workload import Workload, load_workload, read_trace

DEFAULT_DURATION_S = 60.0   # simulated seconds per verification run (override: --duration)


@dataclass(frozen=True)
class SizeWorkload:
    """The sized-for workload: ``block`` (a plan ``workload:`` block with an absolute trace path),
    ``rate_rps`` (the offered rate), ``lengths`` and ``summary`` (of the built workload)."""

    block: dict[str, Any]
    rate_rps: float
    lengths: LengthStats
    summary: dict[str, Any]
    trace: str | None

    def scaled(self, factor: float) -> dict[str, Any]:
        """The block at ``factor`` x the rate (one pod's share of a fleet: the router thins the
        trace, keeping its length distribution and burst shape)."""
        b = dict(self.block)
        if "rate_scale" in b:
            b["rate_scale"] = b["rate_scale"] * factor
        else:
            b["rate_rps"] = b["rate_rps"] * factor
        return b


def _positive(v: float | None, flag: str) -> None:
    if v is not None and not (math.isfinite(v) and v > 0):
        raise XdsError(f"must be a finite number > 0 (got {v})", file=flag)


def size_workload(*, trace: str | None = None, rate: float | None = None, rate_scale: float | None = None,
                  input_len: int | None = None, output_len: int | None = None, duration: float | None = None,
                  arrival: str | None = None, cv: float | None = None, percentile: float = 99.0,
                  seed: int = 0) -> SizeWorkload:
    """Resolve the workload flags. With ``trace``: ``rate`` (req/s) rescales it to that mean rate,
    ``rate_scale`` multiplies its own; a length-only trace needs ``rate``. Without: ``rate`` with
    fixed ``input_len`` / ``output_len`` tokens (Poisson, or gamma with ``cv``)."""
    for v, flag in ((rate, "--rate"), (rate_scale, "--rate-scale"), (duration, "--duration"), (cv, "--cv")):
        _positive(v, flag)
    for v, flag in ((input_len, "--input-len"), (output_len, "--output-len")):
        if v is not None and not v > 0:
            raise XdsError(f"must be a whole number > 0 (got {v})", file=flag)
    dur = float(duration or DEFAULT_DURATION_S)
    if trace is not None:
        if input_len is not None or output_len is not None:
            raise XdsError("--input-len/--output-len apply without --trace (the trace has its lengths)",
                           file="--input-len" if input_len is not None else "--output-len")
        if rate is not None and rate_scale is not None:
            raise XdsError("give --rate or --rate-scale, not both", file="--rate-scale")
        path = str(Path(trace).resolve())
        if not Path(path).is_file():
            raise XdsError("trace file not found", file=trace)
        try:
            raw = read_trace(path)
            natural = raw.summary()["rate_rps"]
        except XdsError as exc:
            if "length-only" not in exc.message:
                raise
            natural = None
        block: dict[str, Any] = {"trace": path, "duration_s": dur}
        if natural is None:
            if rate is None:
                raise XdsError("a length-only trace has no timestamps: give --rate R (req/s)", file="--rate")
            block.update(rate_rps=float(rate), **({"arrival": arrival} if arrival else {}),
                         **({"cv": cv} if cv else {}))
        else:
            block["rate_scale"] = float(rate / natural if rate is not None else rate_scale or 1.0)
    else:
        if rate is None or input_len is None or output_len is None:
            raise XdsError("give --trace FILE, or --rate R --input-len I --output-len O", file="--trace")
        if rate_scale is not None:
            raise XdsError("--rate-scale applies to --trace", file="--rate-scale")
        block = {"rate_rps": float(rate), "arrival": arrival or "poisson", "duration_s": dur,
                 "input": {"dist": "fixed", "value": int(input_len)},
                 "output": {"dist": "fixed", "value": int(output_len)}, **({"cv": cv} if cv else {})}
    w = build(block, seed)
    s = w.summary()
    if s["requests"] < 2:
        raise XdsError(f"the workload has {s['requests']} request(s) in {dur:g} s; give a longer --duration "
                       "or a higher rate", file="--duration")
    lengths = LengthStats.of(w.input_len, w.output_len, percentile=percentile, rate_rps=s["rate_rps"])
    return SizeWorkload(block, float(s["rate_rps"]), lengths, s, trace)


def build(block: dict[str, Any], seed: int = 0) -> Workload:
    """The workload a block describes (errors name the flags' fields)."""
    return load_workload(validate(WorkloadSpec, block, file="workload flags"), base_dir=None, seed=seed)
