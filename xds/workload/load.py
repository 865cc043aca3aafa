"""Building the workload a :class:`~xds.spec.workload.WorkloadSpec` describes: read a trace (then
rate-scale, loop or truncate it) or generate a synthetic one; :func:`plan_workload` does it for a
plan's own ``workload:`` block."""

from __future__ import annotations

from pathlib import Path

from ..errors import XdsError
from ..spec.plan import LoadedPlan
from ..spec.workload import WorkloadSpec
from .core import Workload
from .generator import synthetic
from .lines import resolve
from .traces import detect_format, read_trace
from .transforms import loop_to_duration, rate_scale, truncate


def load_workload(spec: WorkloadSpec, *, base_dir: Path | None = None, seed: int = 0) -> Workload:
    """Build the workload a spec describes.

    Trace: read -> ``rate_scale`` -> ``duration_s`` (loop the trace when it is shorter, truncate
    when longer) -> ``requests`` (first N). Synthetic: :func:`synthetic` with ``seed``.
    """
    if spec.trace is None:
        return synthetic(rate_rps=spec.rate_rps, input=spec.input, output=spec.output,
                         requests=spec.requests, duration_s=spec.duration_s,
                         arrival=spec.arrival, cv=spec.cv, seed=seed, base_dir=base_dir)
    path = resolve(spec.trace, base_dir, what="trace file")
    fmt = detect_format(path) if spec.format == "auto" else spec.format
    if fmt != "lengths":
        # the spec could not check this before the format was detected from the file
        extra = spec.arrival_fields()
        if extra:
            raise XdsError(f"{', '.join(extra)} apply to synthetic workloads and length-only "
                           f"traces, not a {fmt} trace; use rate_scale", file=str(path),
                           where="workload")
    w = read_trace(path, fmt, rate_rps=spec.rate_rps if fmt == "lengths" else None,
                   arrival=spec.arrival, cv=spec.cv, seed=seed)
    if spec.rate_scale != 1.0:
        w = rate_scale(w, spec.rate_scale)
    if spec.duration_s is not None:
        w = loop_to_duration(w, spec.duration_s) if len(w) > 1 and w.span_s > 0 else \
            truncate(w, duration_s=spec.duration_s)
    if spec.requests is not None:
        w = truncate(w, requests=spec.requests)
    if len(w) == 0:
        raise XdsError("the workload is empty after applying duration_s / requests",
                       file=str(path), where="workload")
    return w


def plan_workload(loaded: LoadedPlan, seed: int = 0, *, spec: WorkloadSpec | None = None) -> Workload:
    """The plan's own ``workload:`` block (or ``spec``, a block derived from it) as a
    :class:`Workload`, read relative to the plan's folder; a trace path that does not resolve is
    reported against the plan file (``workload.trace``), since that is what the user edits (e.g.
    after copying a plan to another folder)."""
    spec = spec or loaded.spec.workload
    if spec is None:
        raise XdsError("the plan has no workload: block; give --trace FILE or synthetic flags",
                       file=loaded.path, where="workload")
    try:
        return load_workload(spec, base_dir=loaded.base_dir, seed=seed)
    except XdsError as exc:
        raise loaded.workload_error(exc, spec.trace) from None
