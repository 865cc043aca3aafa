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

from ..engine import Pause, Stall
from ..errors import XdsError
from ..spec.plan import RecoverySpec
from .instances import instance, restart_s

REGISTRY: dict[str, RecoveryPolicy] = {}

# Time costs every policy shares (fixtures/faults/SOURCES.md has the derivations):
# - retry_window_s: how long the transport retries a stalled RDMA transfer before it errors. CANN's
#   HCCL environment variables (CANN environment-variable reference, collective communication):
#   HCCL_RDMA_TIMEOUT sets the NIC's retransmission timeout 4.096 us x 2^HCCL_RDMA_TIMEOUT (integer
#   in [5, 20], default 20: 4.29 s) and HCCL_RDMA_RETRY_CNT the retransmissions (integer in [1, 7],
#   default 7): 4.096 us x 2^20 x 7 = 30.065 s. The recovery block sets them as hccl_rdma_timeout /
#   hccl_rdma_retry_cnt, or the window directly as retry_window_s.
# - store / store_gb_s: aggregate read bandwidth of the store weights are restored from. ems: the EMS
#   DRAM pool warm-starts 8 instances of the 671 GB INT8 model in ~5 s (reference §C.3, CMv3 Table
#   1), i.e. 8 x 671 / 5 GB/s; the pool is the host DRAM of the plan's nodes (§B.1), so a lost node
#   takes its share with it (xds/chaos/faults.py). obs: one instance loads from OBS at 2.5 GB/s
#   over VPC (same source), whatever nodes are lost.
# - reload_gb_s: what one die can pull from host DRAM over UB, NPU-CPU read 147 GB/s (reference §A.4,
#   CMv2 Table 1) — the per-die cap on that parallel restore.
# - warmup_s: graph warm-up with cached compilation, 6-10 s (ReviveMoE, reference §E): 10 s.
# - uce_remap_s: HBM multi-bit ECC recovered in about a minute (Huawei, fault_reference_rates.csv).
HCCL_RDMA_TIMEOUT, HCCL_RDMA_RETRY_CNT = 20, 7
STORE_GB_S = {"ems": 671.0 * 8 / 5.0, "obs": 2.5}


def retry_window_s(timeout: int = HCCL_RDMA_TIMEOUT, retry_cnt: int = HCCL_RDMA_RETRY_CNT) -> float:
    """How long HCCL retransmits a stalled RDMA transfer before it errors (s):
    ``4.096 µs × 2^HCCL_RDMA_TIMEOUT × HCCL_RDMA_RETRY_CNT``."""
    return round(4.096e-6 * 2 ** timeout * retry_cnt, 3)


SHARED: dict[str, Any] = {
    "retry_window_s": retry_window_s(), "store_gb_s": STORE_GB_S["ems"],
    "reload_gb_s": 147.0, "warmup_s": 10.0, "uce_remap_s": 60.0}


class RecoveryPolicy:
    """Base of the policies; a subclass with a ``name`` registers itself (in definition order,
    which is the order ``--policy all`` runs and reports them)."""

    name: ClassVar[str] = ""
    # detect_s, remap_s in s (on top of :data:`SHARED`)
    defaults: ClassVar[dict[str, float]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            REGISTRY[cls.name] = cls()

    def restarts(self, role: str) -> bool:
        """Whether an instance of ``role`` that loses dies restarts (else it sheds the lost ranks)."""
        raise NotImplementedError

    def remaps_uce(self) -> bool:
        """Whether an HBM UCE is remapped in place, losing the KV on the die (reference §E stage 3),
        rather than taking the die's process down."""
        return False

    def shed_stall_s(self, params: dict[str, Any]) -> float:
        """How long an instance that sheds lost ranks stops before serving again (s): detection,
        then re-initialising the communication domain without them (``remap_s``)."""
        return params["detect_s"] + params["remap_s"]

    def glitch(self, placed, affected: list[tuple[str, int]], t: float, dur: float,
               params: dict[str, Any], rec: dict[str, Any]) -> list:
        """Engine events for a network glitch of ``dur`` s at ``t`` on the ``affected`` (role, index)
        instances; sets the record's ``action`` and times. Stages 1-2: the transport retransmits, so
        the collectives in flight just hang; a hang shorter than heartbeat detection (``detect_s``)
        and the retry window is ridden out (steps stall ``dur``), a longer one makes the DP master
        miss its heartbeats (reference §E) and the instance is restarted."""
        if dur < params["detect_s"] and dur <= params["retry_window_s"]:
            rec["detected_at_s"] = t
            rec["recovered_at_s"] = t + dur
            rec["action"] = (f"transport retransmits: steps stall {dur:g} s, shorter than heartbeat "
                             f"detection ({params['detect_s']:g} s): no restart")
            return [Stall(t, role, idx, t + dur) for role, idx in affected]
        det = t + min(params["detect_s"], params["retry_window_s"])
        rec["detected_at_s"] = det
        rec["action"] = (f"escalated: a {dur:g} s hang outlasts heartbeat detection "
                         f"({params['detect_s']:g} s); affected instances restarted")
        return _restart_all(placed, affected, t, det, t + dur, params, rec)


def _restart_all(placed, affected, t: float, det: float, back: float, params, rec) -> list:
    """Restart every affected instance from ``det`` (s); none is up before the fabric is back at
    ``back`` (s). In-flight requests are re-prefilled."""
    events = []
    rec["recovered_at_s"] = rec.get("recovered_at_s") or det
    for role, idx in affected:
        end = max(det + restart_s(instance(placed, role, idx), params), back)
        events.append(Pause(t, role, idx, end, "requeue"))
        rec["recovered_at_s"] = max(rec["recovered_at_s"], end)
    return events


class Restart(RecoveryPolicy):
    """Stage 1: detect, then restart every affected instance (weights restored from the EMS pool
    plus graph warm-up); its in-flight requests are re-queued and re-prefilled on healthy spare
    dies."""

    name = "restart"
    # Heartbeat-based detection (xDeepServe multi-tier heartbeats; no interval published): 10 s.
    defaults: ClassVar[dict[str, float]] = {**SHARED, "detect_s": 10.0, "remap_s": 0.0}

    def restarts(self, role: str) -> bool:
        return True


class PdFailover(RecoveryPolicy):
    """Stage 2: prefill and decode fail over separately; decode drops the lost DP / EP ranks while
    every expert keeps a replica and pauses ``remap_s`` to re-initialise; long glitches restart."""

    name = "pd-failover"
    # Rebuilding the communication domain without the lost ranks ~30 s (Huawei process-level job
    # recovery, press figure); detection as above.
    defaults: ClassVar[dict[str, float]] = {**SHARED, "detect_s": 10.0, "remap_s": 30.0}

    def restarts(self, role: str) -> bool:
        return role == "prefill"


class FineGrained(PdFailover):
    """Stage 3: glitches roll back one iteration; lost ranks' requests are recomputed on survivors;
    experts are remapped to redundant slots without stopping (the instance stalls only for
    detection); HBM UCEs are remapped in place, losing the KV that sat on the die."""

    name = "fine-grained"
    # XCCL link probing and DP-master heartbeats detect within ~2 s; redundant-expert remap while
    # serving (ReviveMoE <10 s end to end, SGLang elastic EP 6.2-6.8 s).
    defaults: ClassVar[dict[str, float]] = {**SHARED, "detect_s": 2.0, "remap_s": 5.0}

    def shed_stall_s(self, params: dict[str, Any]) -> float:
        return params["detect_s"]

    def remaps_uce(self) -> bool:
        return True

    def glitch(self, placed, affected, t, dur, params, rec) -> list:
        """Up to the transport's retry window the hung collectives resume when the fabric is back
        and every DP group rolls back one iteration and recomputes it (reference §E stage 3);
        beyond it the collectives error out, rollback cannot cover the outage and the policy
        escalates to restarting the affected instances."""
        if dur <= params["retry_window_s"]:
            rec["detected_at_s"] = t
            rec["recovered_at_s"] = t + dur
            rec["action"] = (f"all DP groups stall {dur:g} s, then roll back one iteration and "
                             "recompute")
            return [Stall(t, role, idx, t + dur, redo=True) for role, idx in affected]
        det = t + params["retry_window_s"]
        rec["detected_at_s"] = det
        rec["action"] = (f"escalated: the {dur:g} s outage outlasts the retry window "
                         f"({params['retry_window_s']:g} s), rollback cannot cover it; affected "
                         "instances restarted")
        return _restart_all(placed, affected, t, det, t + dur, params, rec)


POLICIES = tuple(REGISTRY)
POLICY_DEFAULTS: dict[str, dict[str, float]] = {n: p.defaults for n, p in REGISTRY.items()}


def recovery_params(plan_rec: RecoverySpec, scen_rec: RecoverySpec | None, policy: str | None) -> dict[str, Any]:
    """Merge policy defaults ← plan ``recovery:`` ← scenario ``recovery:`` ← ``--policy``. The HCCL
    settings give ``retry_window_s`` (:func:`retry_window_s`) and ``store: obs`` its 2.5 GB/s,
    unless the window or ``store_gb_s`` is set as well."""
    pol = policy or (scen_rec.policy if scen_rec is not None and "policy" in scen_rec.model_fields_set
                     else plan_rec.policy)
    if pol not in POLICIES:
        raise XdsError(f"unknown policy {pol!r} (allowed: {', '.join(POLICIES)}, all)", file="--policy")
    out: dict[str, Any] = dict(POLICY_DEFAULTS[pol])
    out.update(policy=pol, restart_s=None, expert_reload_s=None)
    given: set[str] = set()
    for rec in (plan_rec, scen_rec):
        if rec is None:
            continue
        for k in rec.model_fields_set:
            if k != "policy" and getattr(rec, k) is not None:
                out[k] = getattr(rec, k)
                given.add(k)
    hccl = given & {"hccl_rdma_timeout", "hccl_rdma_retry_cnt"}
    if hccl and "retry_window_s" in given:
        raise XdsError("set either retry_window_s or hccl_rdma_timeout / hccl_rdma_retry_cnt, not "
                       "both (the window is 4.096 us x 2^timeout x retry count)",
                       where="recovery.retry_window_s")
    if hccl:
        out["retry_window_s"] = retry_window_s(out.get("hccl_rdma_timeout", HCCL_RDMA_TIMEOUT),
                                               out.get("hccl_rdma_retry_cnt", HCCL_RDMA_RETRY_CNT))
    if "store_gb_s" not in given:
        out["store_gb_s"] = STORE_GB_S[out.get("store", "ems")]
    return out


def policy_of(params: dict[str, Any]) -> RecoveryPolicy:
    """The policy object named by merged recovery ``params``."""
    return REGISTRY[params["policy"]]
