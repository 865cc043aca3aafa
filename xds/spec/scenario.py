"""Fault scenarios as validated input: a timeline of faults on topology elements plus an optional
``recovery:`` override of the plan's policy and time costs (DESIGN.md §2.4).

Validation here is per event and needs no plan (times ≥ 0, factors per fault kind, glitch length);
whether each ``target`` exists and suits its fault is checked against a placed plan when the scenario
is compiled (:func:`xds.chaos.compile_events`). Times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, model_validator

from .plan import RecoverySpec
from .yamlio import Strict, load_yaml, validate

FAULTS = ("die_down", "chip_down", "node_down", "hbm_uce", "link_down", "link_degraded",
          "switch_down", "straggler", "network_glitch")
Fault = Literal[FAULTS]

#: The faults that take a ``factor``: (is this factor allowed, what to say when not).
FACTOR_RULES = {
    "straggler": (lambda f: f > 1, "straggler needs factor > 1 (how many times slower the die runs)"),
    "link_degraded": (lambda f: 0 < f < 1,
                      "link_degraded needs 0 < factor < 1 (fraction of bandwidth left)"),
}


class FaultEvent(Strict):
    """One fault: ``fault`` on ``target`` at ``at_s``; ``duration_s`` for transient faults (None:
    permanent until recovered); ``factor``: slowdown for ``straggler`` (> 1), remaining bandwidth
    fraction for ``link_degraded`` (0 < f < 1)."""

    at_s: float = Field(ge=0)
    fault: Fault
    target: str
    duration_s: PositiveFloat | None = Field(None, le=30 * 86400)
    factor: PositiveFloat | None = Field(None, le=1000)

    @model_validator(mode="after")
    def _factor(self) -> FaultEvent:
        rule = FACTOR_RULES.get(self.fault)
        if rule is not None and (self.factor is None or not rule[0](self.factor)):
            raise ValueError(rule[1])
        if rule is None and self.factor is not None:
            raise ValueError(f"factor applies to {' and '.join(FACTOR_RULES)}, not {self.fault}")
        if self.fault == "network_glitch" and self.duration_s is not None and self.duration_s > 60:
            raise ValueError("a network glitch lasts seconds (duration_s <= 60); use link_down for outages")
        return self


class ScenarioSpec(Strict):
    """A fault scenario: ``events`` (time-ordered or not) and an optional ``recovery`` override."""

    name: str = ""
    description: str = ""
    source: str = ""
    events: list[FaultEvent] = Field(min_length=1)
    recovery: RecoverySpec | None = None


@dataclass
class Scenario:
    """A validated scenario and the file it came from (``path`` labels errors and reports)."""

    spec: ScenarioSpec
    path: str


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario YAML (targets are checked against a plan by
    :func:`xds.chaos.compile_events`)."""
    data = load_yaml(path, what="scenario")
    spec = validate(ScenarioSpec, data, file=str(path))
    return Scenario(spec, str(path))
