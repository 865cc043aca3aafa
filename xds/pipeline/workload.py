"""Workload flags → the workload a plan runs: the CLI's workload options as keywords, merged into
the plan's ``workload:`` block the way the flags do, with errors naming the flag."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

import yaml

from ..errors import XdsError
from ..spec.plan import LoadedPlan, load_plan
from ..spec.workload import WorkloadSpec
from ..spec.yamlio import validate
from ..workload import Workload, load_workload, plan_workload

_DIST_EXAMPLE = "{dist: lognormal, mean: 1000, sigma: 1}"


@dataclass(frozen=True)
class WorkloadOptions:
    """The workload flags of ``xds simulate`` / ``xds chaos``; ``None`` means "not given".

    Lengths are tokens, ``rate`` req/s, ``duration`` s; ``input_dist``/``output_dist`` are YAML
    mappings like ``{dist: lognormal, mean: 1000, sigma: 1}``."""

    trace: str | None = None
    fmt: str = "auto"
    rate_scale: float | None = None
    duration: float | None = None
    requests: int | None = None
    rate: float | None = None
    arrival: str | None = None
    cv: float | None = None
    input_len: int | None = None
    output_len: int | None = None
    input_dist: str | None = None
    output_dist: str | None = None

    @classmethod
    def of(cls, options: dict[str, Any]) -> "WorkloadOptions":
        """Options from keywords; an unknown keyword is a usage error naming it."""
        known = {f.name for f in fields(cls)}
        if "format" in options:        # the flag's and the spec's name for ``fmt``
            options = {("fmt" if k == "format" else k): v for k, v in options.items()}
        for key in options:
            if key not in known:
                raise XdsError(f"unknown workload option {key!r} (allowed: {', '.join(sorted(known))})",
                               file=key)
        return cls(**options)

    @property
    def synthetic(self) -> bool:
        """True when any synthetic-workload flag is given (they replace a plan's trace)."""
        return any(v is not None for v in (self.rate, self.input_len, self.output_len,
                                           self.input_dist, self.output_dist))

    def check(self) -> None:
        """Each numeric flag is finite and > 0 (counts whole); the fixed/distribution pairs exclude
        each other."""
        for v, flag, whole in ((self.rate_scale, "--rate-scale", False),
                               (self.duration, "--duration", False), (self.requests, "--requests", True),
                               (self.rate, "--rate", False), (self.cv, "--cv", False),
                               (self.input_len, "--input-len", True),
                               (self.output_len, "--output-len", True)):
            if v is None:
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) or (whole and int(v) != v):
                raise XdsError(f"must be a {'whole number' if whole else 'finite number'} > 0 (got {v})",
                               file=flag)
        if self.input_len is not None and self.input_dist is not None:
            raise XdsError("give --input-len or --input-dist, not both", file="--input-dist")
        if self.output_len is not None and self.output_dist is not None:
            raise XdsError("give --output-len or --output-dist, not both", file="--output-dist")
        if self.trace is None and self.fmt != "auto":
            raise XdsError("--format applies to --trace", file="--format")


def _dist(text: str | dict[str, Any], flag: str) -> dict[str, Any]:
    """A length distribution flag's YAML mapping (Python callers may pass the mapping itself)."""
    if isinstance(text, dict):
        return dict(text)
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise XdsError(f"not a mapping like '{_DIST_EXAMPLE}' ({exc.__class__.__name__})",
                       file=flag) from None
    if not isinstance(d, dict):
        raise XdsError(f"expected a mapping like '{_DIST_EXAMPLE}'", file=flag)
    return d


def _block_from_options(loaded: LoadedPlan, o: WorkloadOptions) -> dict[str, Any]:
    """The workload block the flags describe, on top of the plan's own block where they keep it."""
    data: dict[str, Any] = {}
    plan_w = loaded.spec.workload
    if o.trace is None and plan_w is not None:
        data = plan_w.model_dump(exclude_unset=True)
        if o.synthetic and "trace" in data:
            data = {}          # synthetic flags replace a plan trace entirely
    if o.trace is not None:
        data = {"trace": o.trace}
        if o.fmt != "auto":
            data["format"] = o.fmt
    overrides = {"rate_scale": o.rate_scale, "duration_s": o.duration, "requests": o.requests,
                 "rate_rps": o.rate}
    if o.trace is None:
        overrides["input"] = ({"dist": "fixed", "value": int(o.input_len)} if o.input_len is not None
                              else _dist(o.input_dist, "--input-dist") if o.input_dist is not None
                              else None)
        overrides["output"] = ({"dist": "fixed", "value": int(o.output_len)} if o.output_len is not None
                               else _dist(o.output_dist, "--output-dist") if o.output_dist is not None
                               else None)
    overrides.update(arrival=o.arrival, cv=o.cv)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data


#: The flag a CLI user typed for each workload field (errors name the flag, not the field).
_FLAG_OF = {"trace": "--trace", "format": "--format", "rate_scale": "--rate-scale",
            "duration_s": "--duration", "requests": "--requests", "rate_rps": "--rate",
            "arrival": "--arrival", "cv": "--cv"}


def _flags_spec(data: dict[str, Any], o: WorkloadOptions) -> WorkloadSpec:
    """Validate the block the flags built; an error names the flag that set the bad field."""
    try:
        return validate(WorkloadSpec, data, file="workload flags")
    except XdsError as exc:
        field, _, inner = (exc.where or "").partition(".")
        flag = _FLAG_OF.get(field)
        if field in ("input", "output"):
            flag = f"--{field}-dist" if getattr(o, f"{field}_dist") is not None else f"--{field}-len"
        if flag is None:
            raise
        raise XdsError(exc.message, file=flag, where=inner or None) from None


def _as_flag_error(exc: XdsError) -> XdsError:
    """An error the workload builder located at a field the flags set (``duration_s``), renamed to
    the flags the user typed (``--duration``), fields named in the message too."""
    flag = _FLAG_OF.get(exc.where or "")
    if flag is None or exc.file not in (None, "workload flags"):
        return exc
    msg = exc.message
    for field, f in _FLAG_OF.items():
        if "_" in field:     # field names that are not also plain words
            msg = re.sub(rf"\b{field}\b", f, msg)
    return XdsError(msg, file=flag)


def build_workload(loaded: LoadedPlan, *, workload: dict[str, Any] | None = None, seed: int = 0,
                   **options: Any) -> Workload:
    """The workload a run uses: ``workload`` (a whole block, as in a gate check) if given, else the
    plan's block with the option keywords applied (see the module docstring)."""
    o = WorkloadOptions.of(options)
    if workload is not None:
        if o != WorkloadOptions():
            raise XdsError("give a workload block or workload options, not both", file="workload")
        return load_workload(validate(WorkloadSpec, workload, file="workload"), base_dir=None,
                             seed=seed)
    o.check()
    data = _block_from_options(loaded, o)
    if not data:
        raise XdsError("the plan has no workload: block; give --trace FILE or synthetic flags "
                       "(--rate R --input-len I --output-len O --requests N)", file=loaded.path)
    if o.trace is not None or o.synthetic:
        try:
            return load_workload(_flags_spec(data, o), base_dir=None, seed=seed)
        except XdsError as exc:
            raise _as_flag_error(exc) from None
    # the plan's own block, maybe rescaled or cut by flags: paths and errors stay the plan file's
    return plan_workload(loaded, seed, spec=validate(WorkloadSpec, data, file=loaded.path))


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise XdsError(f"must be >= 0 (got {seed})", file="--seed")


def _loaded(plan: str | LoadedPlan) -> LoadedPlan:
    return plan if isinstance(plan, LoadedPlan) else load_plan(plan)


def _flags_given(options: dict[str, Any]) -> list[str]:
    """The workload flags among ``options`` that were given, in the flags' fixed order (``--format``
    only when not auto): the same run from Python or the CLI says the same."""
    flags = []
    for f in fields(WorkloadOptions):
        v = options.get(f.name, options.get("format") if f.name == "fmt" else None)
        if v is None or (f.name == "fmt" and v == "auto"):
            continue
        flags.append("--format" if f.name == "fmt" else "--" + f.name.replace("_", "-"))
    return flags


def _closed_loop_requests(loaded: LoadedPlan, w: Workload, seed: int, options: dict[str, Any],
                          notes: list[str]) -> Workload:
    """Closed loop with ``--requests M`` runs M requests: arrival times are ignored, so a plan's
    ``duration_s`` must not cut the set short. Lengthen the workload (a trace loops) until it holds
    M requests, and say so in ``notes``."""
    want = options.get("requests")
    if not want or options.get("duration") is not None or len(w) >= want:
        return w
    first = len(w)
    for _ in range(8):
        if len(w) >= want:
            break
        grow = max(w.span_s, 1.0) * (want / max(len(w), 1)) * 1.25 + 1.0
        w = build_workload(loaded, seed=seed, **{**options, "duration": grow})
    notes.append(f"closed loop: the workload's duration ({first:,} requests) was lengthened to run the "
                 f"{len(w):,} requests --requests asked for (arrival times do not matter here)")
    return w


