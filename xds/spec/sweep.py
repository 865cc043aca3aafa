"""Sweep spec for ``xds sweep``: a base plan (and workload), axes by dotted path, the run kind, the
collected result fields and the objectives of the "best cell" summary.

Sweep YAML::

    name: pd-batch-rate
    base:
      plan: ../plans/cloudmatrix-infer-pd.yaml
      workload: {rate_rps: 40, input: {dist: fixed, value: 4096}, output: {dist: fixed, value: 256},
                 duration_s: 30}
    axes:
      pools.decode.batch_per_die: [32, 48, 64]
      workload.rate_rps: [20, 40]
      seed: [0, 1]
    run: simulate                  # simulate | chaos | estimate
    collect: [p99_tpot_ms, output_throughput_per_chip]
    objectives: {output_throughput_per_chip: max}

Axis paths: ``pools.<role>.<field>`` (pools addressed by role), any other plan field
(``slo.tpot_ms``, ``prefix_cache.capacity_gb``), ``workload.<field>``, ``scenario`` (a file or
null), ``policy`` and ``seed``. The paths and values are checked against the plan by
:mod:`xds.sweep` before anything runs; this module checks the shape.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import XdsError
from .suite import RESULT_FIELDS
from .workload import WorkloadSpec
from .yamlio import Strict

Run = Literal["simulate", "chaos", "estimate"]
Goal = Literal["min", "max"]

#: Fields of the chaos document that a simulate run does not have.
_CHAOS_ONLY = ("requests_total", "recomputed.requests", "recomputed.tokens")

#: Collectable fields per run kind (dotted paths into the run's result document).
FIELDS: dict[str, tuple[str, ...]] = {
    "simulate": tuple(f for f in RESULT_FIELDS if f not in _CHAOS_ONLY) + ("passed",),
    "chaos": RESULT_FIELDS + ("passed",),
    "estimate": (
        "fits", "chips", "dies", "meets_slo", "input_len", "output_len", "rate_rps",
        "decode.batch_per_rank", "decode.step_time_ms", "decode.tokens_per_step", "decode.tpot_ms",
        "decode.output_throughput_per_chip", "decode.output_throughput", "decode.balancedness",
        "decode.decode_utilization",
        "prefill.token_budget_per_die", "prefill.ttft_full_batch_ms",
        "prefill.input_throughput_per_chip", "prefill.kv_transfer_ms", "prefill.balancedness",
        "prefill.prefill_utilization", "prefill.batch_tokens_per_die", "prefill.ttft_ms",
        "slo.tpot_ms", "slo.tpot_margin", "slo.ttft_ms", "slo.ttft_margin", "slo.meets_slo",
    ),
}

#: What is collected when ``collect:`` is left out, and the default objectives.
DEFAULT_COLLECT: dict[str, tuple[str, ...]] = {
    "simulate": ("p99_tpot_ms", "p99_ttft_ms", "output_throughput_per_chip", "slo_attainment"),
    "chaos": ("failed", "recomputed.requests", "slo_attainment", "p99_tpot_ms"),
    "estimate": ("decode.tpot_ms", "prefill.ttft_ms", "decode.output_throughput_per_chip",
                 "meets_slo"),
}
DEFAULT_OBJECTIVES: dict[str, dict[str, str]] = {
    "simulate": {"output_throughput_per_chip": "max", "p99_tpot_ms": "min", "slo_attainment": "max"},
    "chaos": {"failed": "min", "slo_attainment": "max"},
    "estimate": {"decode.output_throughput_per_chip": "max", "decode.tpot_ms": "min",
                 "prefill.ttft_ms": "min"},
}

#: Axis names that are not plan fields.
SPECIAL_AXES = ("scenario", "policy", "seed")

MAX_CELLS = 100_000


def _unknown(key: str, allowed: tuple[str, ...], what: str) -> str:
    hint = difflib.get_close_matches(key, allowed, n=1)
    return (f"unknown {what} {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))


class BaseSpec(Strict):
    """The starting point of every cell: a plan, optionally a workload block replacing the plan's,
    a scenario and policy (chaos) and a seed; axes override these."""

    plan: str
    workload: WorkloadSpec | None = None
    scenario: str | None = None
    policy: Literal["restart", "pd-failover", "fine-grained"] | None = None
    seed: int = Field(0, ge=0)


class SweepSpec(Strict):
    name: str = ""
    base: BaseSpec
    axes: dict[str, list[Any]] = Field(min_length=1)
    run: Run = "simulate"
    collect: list[str] | None = Field(None, min_length=1)
    objectives: dict[str, Goal] | None = None

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        n = 1
        for key, values in v.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values (give a list of at least one)")
            n *= len(values)
        if n > MAX_CELLS:
            raise ValueError(f"the axes make {n:,} cells; at most {MAX_CELLS:,} are accepted")
        return v

    @property
    def fields(self) -> list[str]:
        """The collected fields (``collect:`` or the run kind's defaults)."""
        return list(self.collect) if self.collect is not None else list(DEFAULT_COLLECT[self.run])

    @property
    def goals(self) -> dict[str, str]:
        """The objectives (given, or the run kind's defaults among the collected fields)."""
        if self.objectives is not None:
            return dict(self.objectives)
        return {k: g for k, g in DEFAULT_OBJECTIVES[self.run].items() if k in self.fields}


def check_fields(spec: SweepSpec, file: str) -> None:
    """``collect`` names fields the run kind produces, objectives name collected fields, and
    scenario / policy appear only in chaos sweeps; errors name the entry."""
    allowed = FIELDS[spec.run]
    seen: set[str] = set()
    for i, key in enumerate(spec.collect or ()):
        if key not in allowed:
            raise XdsError(f"{_unknown(key, allowed, f'{spec.run} result field')} "
                           f"(allowed: {', '.join(allowed)})", file=file, where=f"collect[{i}]")
        if key in seen:
            raise XdsError(f"{key!r} is listed twice", file=file, where=f"collect[{i}]")
        seen.add(key)
    for key in spec.objectives or {}:
        if key not in spec.fields:
            raise XdsError(f"{_unknown(key, tuple(spec.fields), 'collected field')} (an objective "
                           f"must be one of: {', '.join(spec.fields)})", file=file,
                           where=f"objectives.{key}")
    if spec.run != "chaos":
        for key in ("scenario", "policy"):
            if key in spec.axes or getattr(spec.base, key) is not None:
                raise XdsError(f"{key} applies to run: chaos (this sweep runs {spec.run})", file=file,
                               where=f"axes.{key}" if key in spec.axes else f"base.{key}")
