"""Chaos: replay fault scenarios against a placed plan under a recovery policy (DESIGN.md §2.4).

A scenario (:mod:`xds.spec.scenario`) is a timeline of faults on topology elements. Each fault is
mapped, through the topology and the placement, to engine perturbations (:mod:`xds.engine` events):
ranks leaving an instance (their requests lose KV), an instance pausing (detection, restart, expert
reload), a slower step (straggler, lost bandwidth, worse expert balance), or a rolled-back iteration
(network glitch). The recovery policy (:mod:`.policies`: ``restart``, ``pd-failover``,
``fine-grained``) decides which perturbations and how long each lasts.

Modules: :mod:`.policies` (policies and their time costs), :mod:`.faults` (one handler per fault
kind), :mod:`.fabric` (fabric faults compound; per-epoch re-pricing), :mod:`.compile` (scenario →
events), :mod:`.random` (Monte Carlo timelines),
:mod:`.instances` / :mod:`.replicas` (what a lost die takes with it). Running the engine on the
compiled events and reporting lives above this layer (:mod:`xds.report.chaos`) and the pipeline (:func:`xds.pipeline.run_chaos`).

Every request ends completed or failed with a reason; none disappears (property-tested).
Times in seconds; bandwidths in GB/s.
"""

from ..spec.scenario import FAULTS, Fault, FaultEvent, Scenario, ScenarioSpec, load_scenario
from .compile import compile_events
from .faults import KINDS, FaultKind
from .policies import POLICIES, POLICY_DEFAULTS, RecoveryPolicy, recovery_params
from .random import random_scenario

__all__ = ["FAULTS", "KINDS", "POLICIES", "POLICY_DEFAULTS", "Fault", "FaultEvent", "FaultKind",
           "RecoveryPolicy", "Scenario", "ScenarioSpec", "compile_events", "load_scenario",
           "random_scenario", "recovery_params"]
