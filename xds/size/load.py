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

MIN_DURATION_S = 60.0       # a verification run lasts at least this (six 10 s SLO windows)
MAX_DURATION_S = 600.0      # ... and at most this, unless --duration says otherwise (cost bound)
MAX_RUN_REQUESTS = 20_000   # ... and holds at most ~this many requests (cost bound)


@dataclass(frozen=True)
class SizeWorkload:
    """The sized-for workload: ``block`` (a plan ``workload:`` block with an absolute trace path),
    ``rate_rps`` (the offered rate), ``lengths`` and ``summary`` (of the built workload)."""

    block: dict[str, Any]
    rate_rps: float
    lengths: LengthStats
    summary: dict[str, Any]
    trace: str | None
    trace_requests: int = 0         # requests in one pass of the trace (0: synthetic)
    trace_span_s: float = 0.0       # one pass of the trace at the sized-for rate, incl. the loop gap (s)
    fixed_duration: bool = False    # --duration given: every run lasts exactly that

    def scaled(self, factor: float) -> dict[str, Any]:
        """The block at ``factor`` x the rate (one pod's share of a fleet), with the duration of a
        verification run (:meth:`run_duration`). A trace is time-stretched by ``1/factor`` (its
        timestamps, so its whole length sequence and burst shape, reach the pod at its share of the
        rate), not thinned."""
        b = dict(self.block)
        if "rate_scale" in b:
            b["rate_scale"] = b["rate_scale"] * factor
        else:
            b["rate_rps"] = b["rate_rps"] * factor
        b["duration_s"] = self.run_duration(factor)
        return b

    def run_duration(self, factor: float) -> float:
        """Simulated seconds of a run at ``factor`` x the rate: ``--duration`` if given; else one
        whole pass of the trace at that rate (every request once: the full length distribution)
        -- for a synthetic load, MAX_RUN_REQUESTS / 10 requests' worth -- within [MIN_DURATION_S,
        MAX_DURATION_S] and at most MAX_RUN_REQUESTS requests' worth (bounds on cost)."""
        if self.fixed_duration:
            return float(self.block["duration_s"])
        rate = self.rate_rps * factor
        want = self.trace_span_s / factor if self.trace_requests else MAX_RUN_REQUESTS / 10 / rate
        cap = min(MAX_DURATION_S, max(MIN_DURATION_S, MAX_RUN_REQUESTS / rate))
        return float(round(min(max(want, MIN_DURATION_S), cap), 3))


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
    dur = float(duration or MIN_DURATION_S)
    once: tuple[int, float] = (0, 0.0)      # one pass of the trace: (requests, span s at rate_scale 1)
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
            once = (len(raw), _period(raw))
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
            n = len(read_trace(path, rate_rps=float(rate), seed=seed))
            once = (n, n / float(rate))
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
    scale = float(block.get("rate_scale", 1.0))
    return SizeWorkload(block, float(s["rate_rps"]), lengths, s, trace, once[0], once[1] / scale,
                        duration is not None)


def _period(w: Workload) -> float:
    """One pass of a timestamped trace (s): its span plus one mean gap (the loop's seam), so a run
    of this length holds every request exactly once."""
    n = len(w)
    return float(w.arrival_s[-1]) + (w.span_s / (n - 1) if n > 1 else 1.0)


def build(block: dict[str, Any], seed: int = 0) -> Workload:
    """The workload a block describes (errors name the flags' fields)."""
    return load_workload(validate(WorkloadSpec, block, file="workload flags"), base_dir=None, seed=seed)
