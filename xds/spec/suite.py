"""Suite spec for ``xds gate``: checks with thresholds on result fields (DESIGN.md §3.5)."""

from __future__ import annotations

import difflib

from pydantic import Field, field_validator, model_validator

from .plan import Policy
from .workload import WorkloadSpec
from .yamlio import Strict

# Numeric result fields a check may constrain (simulate document; chaos adds the last group).
RESULT_FIELDS = (
    "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
    "output_throughput", "total_token_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms",
    "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms", "duration", "chips", "dies",
    "output_throughput_per_chip", "input_throughput_per_chip", "slo_attainment",
    "slo.windows_total", "slo.windows_violated", "slo.attainment", "prefix_cache_hit_rate",
    "requests", "recomputed_requests", "recomputed_tokens",
    "requests_total", "recomputed.requests", "recomputed.tokens",
)


class Threshold(Strict):
    """``{max: x}``, ``{min: x}`` or both."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one(self) -> "Threshold":
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class CheckSpec(Strict):
    """One check: a plan, optionally a workload and a fault scenario (+ policy), and thresholds."""

    name: str = Field(min_length=1)
    plan: str
    workload: WorkloadSpec | None = None
    scenario: str | None = None
    policy: Policy | None = None
    seed: int = Field(0, ge=0)
    expect: dict[str, Threshold] = Field(min_length=1)

    @field_validator("expect")
    @classmethod
    def _fields(cls, v: dict[str, Threshold]) -> dict[str, Threshold]:
        for key in v:
            if key not in RESULT_FIELDS:
                hint = difflib.get_close_matches(key, RESULT_FIELDS, n=1)
                raise ValueError(f"unknown result field {key!r}"
                                 + (f"; did you mean {hint[0]!r}?" if hint else "")
                                 + " (any numeric field of the simulate/chaos JSON)")
        return v

    @model_validator(mode="after")
    def _policy(self) -> "CheckSpec":
        if self.policy is not None and self.scenario is None:
            raise ValueError("policy applies to checks with a scenario")
        return self


#: Top-level keys of a plan (DESIGN.md §3.1) that a suite never has: seeing them means a plan was
#: given where a suite was expected (``xds gate plans/x.yaml``).
PLAN_KEYS = ("pools", "model", "hardware", "cluster", "slo", "recovery")


class SuiteSpec(Strict):
    name: str = ""
    checks: list[CheckSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _not_a_plan(cls, data):
        if isinstance(data, dict) and "checks" not in data:
            found = [k for k in PLAN_KEYS if k in data]
            if found:
                raise ValueError(
                    f"this is a plan (it has {', '.join(k + ':' for k in found[:3])}), not a suite; xds gate "
                    "takes a suite of checks (checks: [{name, plan, thresholds}]), see gates/ci.yaml; "
                    "to evaluate one plan use xds simulate or xds plan")
        return data

    @model_validator(mode="after")
    def _unique(self) -> "SuiteSpec":
        names = [c.name for c in self.checks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"check names must be unique (repeated: {', '.join(sorted(dup))})")
        return self
