"""Workload spec: the ``workload:`` block of a plan or a gate check (a trace file or a synthetic
generator) and the token-length distributions of a synthetic workload, with the limits every
workload source shares.

Only validation lives here; :func:`xds.workload.load_workload` builds the requests a spec describes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .yamlio import Strict

MAX_INPUT_LEN = 10_000_000  # tokens; longer prompts are bad rows, not clipped
MAX_OUTPUT_LEN = 1_000_000  # tokens
MAX_REQUESTS = 50_000_000  # requests in one workload (arrays of this length fit in memory)

Format = Literal["auto", "azure", "mooncake", "burstgpt", "lengths"]
FORMATS = ("azure", "mooncake", "burstgpt", "lengths")


class LengthDist(Strict):
    """A token-length distribution.

    * ``fixed``: every request has ``value`` tokens.
    * ``uniform``: integers uniform in [``low``, ``high``] (inclusive).
    * ``lognormal``: ``mean`` is the mean length in tokens, ``sigma`` the standard deviation of the
      underlying normal; samples are rounded to whole tokens (at least 1). Optional ``low``/``high``
      clip explicitly (without them, a sample beyond the length limits is an error).
    * ``empirical``: resample a column of a CSV ``file`` (``column`` defaults to the input or output
      column of a length CSV / Azure / BurstGPT / Mooncake-style header).
    """

    dist: Literal["fixed", "uniform", "lognormal", "empirical"]
    value: int | None = Field(default=None, ge=1, le=MAX_INPUT_LEN)
    low: int | None = Field(default=None, ge=1, le=MAX_INPUT_LEN)
    high: int | None = Field(default=None, ge=1, le=MAX_INPUT_LEN)
    mean: float | None = Field(default=None, gt=0, le=MAX_INPUT_LEN)
    sigma: float | None = Field(default=None, gt=0, le=10)
    file: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "LengthDist":
        allowed = {
            "fixed": ({"value"}, set()),
            "uniform": ({"low", "high"}, set()),
            "lognormal": ({"mean", "sigma"}, {"low", "high"}),
            "empirical": ({"file"}, {"column"}),
        }[self.dist]
        required, optional = allowed
        given = {k for k in ("value", "low", "high", "mean", "sigma", "file", "column")
                 if getattr(self, k) is not None}
        missing = required - given
        if missing:
            raise ValueError(f"dist {self.dist} needs {', '.join(sorted(missing))}")
        extra = given - required - optional
        if extra:
            raise ValueError(f"dist {self.dist} does not use {', '.join(sorted(extra))} "
                             f"(it takes {', '.join(sorted(required | optional))})")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class WorkloadSpec(Strict):
    """``workload:`` in a plan or a gate check: a trace file or a synthetic generator.

    Trace: ``trace`` (path, relative to the spec's folder first, then the current directory),
    ``format``, ``rate_scale`` (time compression factor), ``duration_s`` (loop or truncate to this
    many seconds), ``requests`` (keep the first N). A length-only trace also needs ``rate_rps``
    (and optionally ``arrival``/``cv``). Synthetic (no ``trace``): ``rate_rps``, ``arrival``,
    ``cv``, ``input``, ``output`` and ``requests`` and/or ``duration_s``.
    """

    trace: str | None = None
    format: Format = "auto"
    rate_scale: float = Field(default=1.0, gt=0)
    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, gt=0, le=MAX_REQUESTS)
    arrival: Literal["poisson", "gamma"] = "poisson"
    rate_rps: float | None = Field(default=None, gt=0)
    cv: float = Field(default=1.0, gt=0)
    input: LengthDist | None = None
    output: LengthDist | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "WorkloadSpec":
        if self.arrival == "poisson" and self.cv != 1.0:
            raise ValueError(f"cv {self.cv} needs arrival: gamma (a Poisson process has cv 1)")
        if self.trace is None:
            missing = [k for k in ("rate_rps", "input", "output") if getattr(self, k) is None]
            if missing:
                raise ValueError("a synthetic workload (no trace) needs " + ", ".join(missing))
            if self.requests is None and self.duration_s is None:
                raise ValueError("a synthetic workload needs requests or duration_s")
            if "format" in self.model_fields_set:
                raise ValueError("format applies to a trace file; give trace too")
            if "rate_scale" in self.model_fields_set and self.rate_scale != 1.0:
                raise ValueError("rate_scale applies to traces; set rate_rps for synthetic load")
        else:
            if self.input is not None or self.output is not None:
                raise ValueError("input/output length distributions are for synthetic "
                                 "workloads; a trace brings its own lengths")
            if self.format in ("azure", "mooncake", "burstgpt"):
                extra = self.arrival_fields()
                if extra:
                    raise ValueError(f"{', '.join(extra)} apply to synthetic workloads and "
                                     f"length-only traces, not a {self.format} trace; use "
                                     "rate_scale")
            if self.format == "lengths" and self.rate_rps is None:
                raise ValueError("a length-only trace needs rate_rps (req/s) for its arrivals")
        return self

    def arrival_fields(self) -> list[str]:
        """The arrival-process fields given explicitly (``rate_rps``, ``arrival``, ``cv``): they
        only apply to synthetic workloads and length-only traces."""
        return [k for k in ("rate_rps", "arrival", "cv") if k in self.model_fields_set]
