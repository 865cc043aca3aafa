"""Recovery policies (xDeepServe's three stages) as objects with one interface, and the merge of
their time costs with the plan's and the scenario's ``recovery:`` blocks.

A policy answers the questions fault handling asks: does losing dies restart the instance or does
it shed the lost ranks (:meth:`RecoveryPolicy.restarts`), how long a shedding instance stalls
(:meth:`RecoveryPolicy.shed_stall_s`), and what a network glitch does (:meth:`RecoveryPolicy.glitch`).
Adding a policy is adding one subclass with a ``name`` (and the name to ``spec.plan.Policy``).
Times in seconds; bandwidths in GB/s.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..engine import Pause, Rollback
from ..errors import XdsError
from ..spec.plan import RecoverySpec
from .instances import instance, restart_s

REGISTRY: dict[str, RecoveryPolicy] = {}


class RecoveryPolicy:
    """Base of the policies; a subclass with a ``name`` registers itself (in definition order,
    which is the order ``--policy all`` runs and reports them)."""

    name: ClassVar[str] = ""
    # detect_s, warmup_s, remap_s, uce_remap_s in s; reload_gb_s in GB/s per die
    defaults: ClassVar[dict[str, float]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            REGISTRY[cls.name] = cls()

    def restarts(self, role: str) -> bool:
        """Whether an instance of ``role`` that loses dies restarts (else it sheds the lost ranks)."""
        raise NotImplementedError

    def shed_stall_s(self, params: dict[str, Any]) -> float:
        """How long an instance that sheds lost ranks stops before serving again (s): detection,
        then re-initialising the communication domain without them (``remap_s``)."""
        return params["detect_s"] + params["remap_s"]

    def glitch(self, placed, affected: list[tuple[str, int]], t: float, det: float,
               params: dict[str, Any], rec: dict[str, Any]) -> list:
        """Engine events for a network glitch at ``t`` (detected at ``det``) on the ``affected``
        (role, index) instances; sets the record's ``action`` and recovery times. By default the
        collective in flight times out and each affected instance restarts."""
        events = []
        for role, idx in affected:
            end = det + restart_s(instance(placed, role, idx), params)
            events.append(Pause(t, role, idx, end, "requeue"))
            rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
        rec["action"] = "collective timed out; affected instances restarted"
        return events


class Restart(RecoveryPolicy):
    """Stage 1: detect, then restart every affected instance (model reload plus graph warm-up);
    its in-flight requests are re-queued and re-prefilled on healthy spare dies."""

    name = "restart"
    # Heartbeat-based detection (xDeepServe multi-tier heartbeats; no interval published): 10 s.
    # Restart = warm-up 10 s (ReviveMoE: 6-10 s with cached graph compilation) + the die's weights at
    # 0.5 GB/s, i.e. ~80 s for a DeepSeek-R1 decode die — ReviveMoE measured a full restart at ~83 s.
    defaults: ClassVar[dict[str, float]] = {
        "detect_s": 10.0, "warmup_s": 10.0, "reload_gb_s": 0.5, "remap_s": 0.0, "uce_remap_s": 60.0}

    def restarts(self, role: str) -> bool:
        return True


class PdFailover(RecoveryPolicy):
    """Stage 2: prefill and decode fail over separately; decode drops the lost DP / EP ranks while
    every expert keeps a replica and pauses ``remap_s`` to re-initialise; glitches still restart."""

    name = "pd-failover"
    # Rebuilding the communication domain without the lost ranks ~30 s (Huawei process-level job
    # recovery, press figure); detection as above.
    defaults: ClassVar[dict[str, float]] = {
        "detect_s": 10.0, "warmup_s": 10.0, "reload_gb_s": 0.5, "remap_s": 30.0, "uce_remap_s": 60.0}

    def restarts(self, role: str) -> bool:
        return role == "prefill"


class FineGrained(PdFailover):
    """Stage 3: glitches roll back one iteration; lost ranks' requests are recomputed on survivors;
    experts are remapped to redundant slots without stopping (the instance stalls only for
    detection); HBM UCEs are remapped in place (``uce_remap_s``)."""

    name = "fine-grained"
    # XCCL link probing and DP-master heartbeats detect within ~2 s; redundant-expert remap while
    # serving (ReviveMoE <10 s end to end, SGLang elastic EP 6.2-6.8 s); HBM multi-bit ECC recovered
    # in ~1 min (Huawei).
    defaults: ClassVar[dict[str, float]] = {
        "detect_s": 2.0, "warmup_s": 10.0, "reload_gb_s": 0.5, "remap_s": 5.0, "uce_remap_s": 60.0}

    def shed_stall_s(self, params: dict[str, Any]) -> float:
        return params["detect_s"]

    def glitch(self, placed, affected, t, det, params, rec) -> list:
        rec["action"] = "all DP groups roll back one iteration and recompute"
        rec["detected_at_s"] = t
        rec["recovered_at_s"] = t
        return [Rollback(t, role, idx) for role, idx in affected]


POLICIES = tuple(REGISTRY)
POLICY_DEFAULTS: dict[str, dict[str, float]] = {n: p.defaults for n, p in REGISTRY.items()}


def recovery_params(plan_rec: RecoverySpec, scen_rec: RecoverySpec | None, policy: str | None) -> dict[str, Any]:
    """Merge policy defaults ← plan ``recovery:`` ← scenario ``recovery:`` ← ``--policy``."""
    pol = policy or (scen_rec.policy if scen_rec is not None and "policy" in scen_rec.model_fields_set
                     else plan_rec.policy)
    if pol not in POLICIES:
        raise XdsError(f"unknown policy {pol!r} (allowed: {', '.join(POLICIES)}, all)", file="--policy")
    out: dict[str, Any] = dict(POLICY_DEFAULTS[pol])
    out.update(policy=pol, restart_s=None, expert_reload_s=None)
    for rec in (plan_rec, scen_rec):
        if rec is None:
            continue
        for k in rec.model_fields_set:
            if k != "policy" and getattr(rec, k) is not None:
                out[k] = getattr(rec, k)
    return out


def policy_of(params: dict[str, Any]) -> RecoveryPolicy:
    """The policy object named by merged recovery ``params``."""
    return REGISTRY[params["policy"]]
