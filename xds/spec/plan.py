"""Plan spec: a deployment of one model on one cluster — pools, instances, parallel layouts, batch
caps, MTP, expert balancing, SLO, default workload and recovery policy (DESIGN.md §3.5).

A plan alone is enough for ``xds plan``, ``xds simulate`` and ``xds chaos``. Relative paths inside a
plan (trace files, load matrices) resolve from the plan file's folder first, then the current
directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from ..errors import XdsError
from .model_spec import KV_DTYPES
from .workload import WorkloadSpec
from .yamlio import Strict, load_yaml, validate

Role = Literal["prefill", "decode"]
Policy = Literal["restart", "pd-failover", "fine-grained"]


class LayoutSpec(Strict):
    """Parallel layout of one instance: attention DP × TP over its dies, MoE over ``ep`` dies."""

    dp: PositiveInt
    tp: PositiveInt = 1
    ep: PositiveInt


class MtpSpec(Strict):
    """Multi-token prediction: ``draft_tokens`` speculative tokens accepted with probability
    ``acceptance`` each (reference §B.1: 1 draft at 70 %)."""

    draft_tokens: int = Field(1, ge=0, le=4)
    acceptance: float = Field(0.7, ge=0, le=1)


class ExpertsSpec(Strict):
    """Expert slots of one instance: ``redundant`` routed copies beyond the logical experts, and
    ``shared_dies`` EP dies that hold only shared-expert copies (CloudMatrix-Infer decode: 32)."""

    redundant: int | None = Field(None, ge=0, description="None: the redundancy rule "
                                  "(xds/experts/redundancy.py)")
    shared_dies: int = Field(0, ge=0)


class MaSpec(Strict):
    """MoE-attention disaggregation inside a decode instance (xDeepServe §5.2): attention on
    ``attention_dies`` dies in ``domains`` DP domains, MoE on ``moe_dies`` dies."""

    attention_dies: PositiveInt
    domains: PositiveInt = 1
    moe_dies: PositiveInt


class PoolSpec(Strict):
    """One pool: ``instances`` identical instances of ``chips`` chips each."""

    role: Role
    instances: PositiveInt = 1
    chips: PositiveInt
    layout: LayoutSpec
    microbatches: int = Field(2, ge=1, le=8)
    batch_per_die: PositiveFloat | None = Field(
        None, description="decode: max requests in flight per DP rank (a rank spans TP dies); "
                          "written batch_per_rank in a plan, batch_per_die is its older name")
    token_budget_per_die: PositiveInt | None = Field(
        None, description="prefill: max tokens in one batch per die (chunked prefill)")
    mtp: MtpSpec | None = None
    experts: ExpertsSpec = ExpertsSpec()
    ma: MaSpec | None = None
    long_prompt_threshold: PositiveInt | None = Field(
        None, description="prefill: prompts at least this long go to dedicated instances "
                          "(xDeepServe keeps long and short requests apart)")
    long_instances: int = Field(0, ge=0, description="prefill instances reserved for long prompts")
    pod: int | None = Field(None, ge=0, description="fleet clusters (pods: N): the pod (0-based) every "
                            "instance of the pool lives on; default 0")
    pods: list[int] | None = Field(None, min_length=1, description="fleet clusters: the pod of each "
                                   "instance, one entry per instance (0-based)")

    @model_validator(mode="before")
    @classmethod
    def _batch_per_rank(cls, data):
        """``batch_per_rank`` is the name of the decode cap (requests per DP rank, whatever its TP);
        ``batch_per_die`` is its older name, read the same way."""
        if isinstance(data, dict) and "batch_per_rank" in data:
            if "batch_per_die" in data:
                raise ValueError("give batch_per_rank or its older name batch_per_die, not both")
            data = {("batch_per_die" if k == "batch_per_rank" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _role_fields(self) -> "PoolSpec":
        if self.role == "prefill":
            if self.batch_per_die is not None:
                raise ValueError("batch_per_rank (batch_per_die) is a decode setting; prefill uses token_budget_per_die")
            if self.mtp is not None:
                raise ValueError("mtp is a decode setting")
            if self.ma is not None:
                raise ValueError("ma (MoE-attention disaggregation) is a decode setting")
        else:
            if self.token_budget_per_die is not None:
                raise ValueError("token_budget_per_die is a prefill setting; decode uses batch_per_rank")
            if self.batch_per_die is None:
                raise ValueError("decode pools need batch_per_rank (max requests in flight per DP rank)")
            if self.long_prompt_threshold is not None or self.long_instances:
                raise ValueError("long_prompt_threshold / long_instances are prefill settings")
        if self.pod is not None and self.pods is not None:
            raise ValueError("give pod (every instance on one pod) or pods (one per instance), not both")
        if self.pods is not None:
            if len(self.pods) != self.instances:
                raise ValueError(f"pods lists {len(self.pods)} pod(s) for {self.instances} instance(s); "
                                 "give one pod per instance")
            if min(self.pods) < 0:
                raise ValueError(f"pods: pod indices are >= 0 (got {min(self.pods)})")
        if self.long_instances and self.long_prompt_threshold is None:
            raise ValueError("long_instances needs long_prompt_threshold")
        if self.long_instances >= self.instances and self.long_instances:
            raise ValueError(f"long_instances ({self.long_instances}) must leave at least one of the "
                             f"{self.instances} instances for short prompts")
        return self


class BalancingSpec(Strict):
    """Expert load balancing: where load statistics come from and how often slots are rebalanced."""

    loads: str = Field("synthetic", description="'synthetic' or a .npy/.csv [layers, experts] file")
    hot_ratio: float = Field(6.0, ge=1, description="synthetic: long-run hottest expert / mean load of "
                             "the most skewed layer (see xds/experts/skew.py)")
    concentration: float | None = Field(None, gt=0, description="per-sequence Dirichlet concentration "
                                        "kappa (None: the default, xds/experts/skew.py)")
    rebalance_period_s: PositiveFloat = 60.0


class SloSpec(Strict):
    """Service-level objective: targets at ``percentile`` over windows of ``window_s`` seconds; a
    window meets the SLO when both targets hold; ``attainment`` is the fraction of windows that must."""

    ttft_ms: PositiveFloat = 2000.0
    tpot_ms: PositiveFloat = 50.0
    percentile: float = Field(99.0, gt=0, le=100)
    window_s: PositiveFloat = 10.0
    attainment: float = Field(0.99, gt=0, le=1)


class RecoverySpec(Strict):
    """Recovery policy and its time costs (seconds; GB/s). Defaults and sources in
    ``xds/chaos/policies.py``; a scenario's ``recovery:`` block may override any of them."""

    policy: Policy = "fine-grained"
    detect_s: float | None = Field(None, ge=0)
    restart_s: float | None = Field(None, ge=0)
    reload_gb_s: float | None = Field(None, gt=0)
    warmup_s: float | None = Field(None, ge=0)
    remap_s: float | None = Field(None, ge=0)
    expert_reload_s: float | None = Field(None, ge=0)
    uce_remap_s: float | None = Field(None, ge=0)
    retry_window_s: float | None = Field(None, ge=0)
    # CANN HCCL: retry window = 4.096 us x 2^hccl_rdma_timeout x hccl_rdma_retry_cnt (ranges of the
    # HCCL_RDMA_TIMEOUT / HCCL_RDMA_RETRY_CNT environment variables; defaults 20 and 7)
    hccl_rdma_timeout: int | None = Field(None, ge=5, le=20)
    hccl_rdma_retry_cnt: int | None = Field(None, ge=1, le=7)
    store: Literal["ems", "obs"] | None = None   # where weights are restored from (reference §C.3)
    store_gb_s: float | None = Field(None, gt=0)


class KvTransferSpec(Strict):
    """P→D KV transfer: over the RDMA plane (default, CloudMatrix-Infer §4.3.3) or UB."""

    plane: Literal["rdma", "ub"] = "rdma"


class PrefixCacheSpec(Strict):
    """DRAM-pool prefix cache (CloudMatrix-Infer EMS): capacity in GB of KV; 0 disables it."""

    capacity_gb: float = Field(0.0, ge=0)


class PlanSpec(Strict):
    """A deployment plan (see module docstring)."""

    name: str
    description: str = ""
    source: str = ""
    model: str
    hardware: str
    cluster: str = "cloudmatrix384"
    nodes: PositiveInt | None = Field(None, description="size the cluster (default: the cluster's own)")
    quant: Literal["w8a8", "fp8", "bf16"] | None = None
    kv_dtype: Literal[KV_DTYPES] = "bf16"
    pools: list[PoolSpec] = Field(min_length=1)
    balancing: BalancingSpec = BalancingSpec()
    slo: SloSpec = SloSpec()
    workload: WorkloadSpec | None = None
    recovery: RecoverySpec = RecoverySpec()
    kv_transfer: KvTransferSpec = KvTransferSpec()
    prefix_cache: PrefixCacheSpec = PrefixCacheSpec()

    @model_validator(mode="after")
    def _pools(self) -> "PlanSpec":
        roles = [p.role for p in self.pools]
        if roles.count("decode") != 1:
            raise ValueError(f"a plan needs exactly one decode pool (got {roles.count('decode')})")
        if roles.count("prefill") > 1:
            raise ValueError("at most one prefill pool (use instances: N for more instances)")
        return self

    def pods_named(self) -> set[int]:
        """The pods (0-based) the plan's pools name (``{0}`` when none does)."""
        return {k for p in self.pools for k in (p.pods if p.pods is not None else [p.pod or 0])}

    def pool(self, role: str) -> PoolSpec | None:
        for p in self.pools:
            if p.role == role:
                return p
        return None


class LoadedPlan:
    """A validated plan with the file it came from (for resolving relative paths)."""

    def __init__(self, spec: PlanSpec, path: str):
        self.spec = spec
        self.path = path
        self.base_dir = Path(path).resolve().parent

    def workload_error(self, exc: XdsError, trace: str | None) -> XdsError:
        """Re-locate a "trace not found" error from the plan's workload block onto the plan file."""
        if trace is None or "not found" not in exc.message:
            return exc
        return XdsError(f"trace file {trace!r} not found (relative paths resolve from the plan's "
                        f"folder {self.base_dir}, then the current directory)",
                        file=self.path, where="workload.trace")

    def resolve_path(self, rel: str) -> Path:
        """Resolve a path from the plan's folder first, then the current directory."""
        p = Path(rel)
        if p.is_absolute():
            return p
        cand = self.base_dir / p
        return cand if cand.exists() else p


@lru_cache(maxsize=32)
def _load(path: str, mtime: float) -> PlanSpec:
    data = load_yaml(path, what="plan")
    return validate(PlanSpec, data, file=path)


def load_plan(path: str | Path) -> LoadedPlan:
    """Load and validate a plan YAML file."""
    p = Path(path)
    if not p.exists():
        raise XdsError("plan file not found", file=str(path))
    if p.is_dir():
        raise XdsError("expected a plan YAML file, got a folder", file=str(path))
    return LoadedPlan(_load(str(p), p.stat().st_mtime), str(path))
