"""``xds size``: how many chips, nodes and pods a load needs under an SLO and a fault class.

Method: (1) price every layout with the cost model at the workload's length distribution
(:func:`xds.plan.search.best_layouts`) and size the pools analytically (:mod:`xds.plan.balance`);
(2) lay the deployment over pods (:mod:`.compose`: one pod, or identical pods behind a router);
(3) verify by simulating one representative pod on its share of the trace with the executor and
bisect the instance counts to the smallest deployment whose SLO attainment meets the target
(:mod:`.verify`); (4) verify the ``--survive`` headroom by replaying the worst single fault of the
class (:mod:`.headroom`). When the fleet has several pods, one pod is simulated and the totals are
that pod times ``pods`` (the pods are identical and each serves ``1/pods`` of the rate).

Units: ms, req/s, tokens/s, USD.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import XdsError
from ..parallel import Executor
from ..plan.balance import pool_counts
from ..plan.search import best_layouts, size_query
from ..plan.write import decode_pool, prefill_pool
from ..spec.fileio import check_output_path
from .compose import Shape, compose, pod_capacity
from .headroom import headroom
from .load import size_workload
from .output import document, write_size_plan
from .pods import PodSearch
from .verify import Verifier

SURVIVE = ("none", "die", "node", "pod")
POLICIES = ("restart", "pd-failover", "fine-grained")


def _check(survive: str, policy: str, tpot_ms: float, ttft_ms: float, percentile: float, window_s: float,
           attainment: float, chip_hour_cost: float | None) -> None:
    if survive not in SURVIVE:
        raise XdsError(f"unknown failure domain {survive!r} (allowed: {', '.join(SURVIVE)})", file="--survive")
    if policy not in POLICIES:
        raise XdsError(f"unknown policy {policy!r} (allowed: {', '.join(POLICIES)})", file="--policy")
    for v, flag in ((tpot_ms, "--tpot-ms"), (ttft_ms, "--ttft-ms"), (window_s, "--window-s")):
        if not (math.isfinite(v) and v > 0):
            raise XdsError(f"must be a finite number > 0 (got {v})", file=flag)
    if not 0 < percentile <= 100:
        raise XdsError(f"must be in (0, 100] (got {percentile})", file="--percentile")
    if not 0 < attainment <= 1:
        raise XdsError(f"must be in (0, 1] (got {attainment})", file="--attainment")
    if chip_hour_cost is not None and not (math.isfinite(chip_hour_cost) and chip_hour_cost > 0):
        raise XdsError(f"must be a finite number > 0 (got {chip_hour_cost})", file="--chip-hour-cost")


def _plan(model: str, hw: str, cluster: str, lay: dict, slo: dict, block: dict, policy: str) -> dict:
    """The one-pod plan mapping (instance counts filled in later)."""
    return {"name": "xds-size", "source": "xds size", "model": model, "hardware": hw, "cluster": cluster,
            "pools": [decode_pool(lay["decode"], model), prefill_pool(lay["prefill"], model, 1)],
            "balancing": {"loads": "synthetic"}, "slo": slo, "workload": block,
            "recovery": {"policy": policy}}


def size(*, model: str, hardware: str | None = None, cluster: str | None = None, tpot_ms: float = 50.0,
         ttft_ms: float = 2000.0, percentile: float = 99.0, window_s: float = 10.0,
         attainment: float = 0.99, survive: str = "none", policy: str = "fine-grained",
         chip_hour_cost: float | None = None, out: str | None = None, workers: int | None = None,
         ray: str | None = None, seed: int = 0, progress: Callable[[str], None] | None = None,
         timing: bool = False, **workload: Any) -> dict[str, Any]:
    """Size a deployment; returns the ``xds size --json`` document (``passed`` False when no
    deployment meets the SLO; ``timing`` adds the wall-clock ``seconds``). ``workload`` takes ``trace``, ``rate``, ``rate_scale``,
    ``input_len``, ``output_len``, ``duration``, ``arrival``, ``cv``."""
    t0 = time.perf_counter()
    _check(survive, policy, tpot_ms, ttft_ms, percentile, window_s, attainment, chip_hour_cost)
    check_output_path(out, "--out")
    ex = Executor(workers=workers, ray=ray)
    sw = size_workload(percentile=percentile, seed=seed, **workload)
    q = size_query(model=model, hardware=hardware, cluster=cluster, lengths=sw.lengths, tpot_ms=tpot_ms,
                   ttft_ms=ttft_ms)
    lay = best_layouts(q)
    slo = {"ttft_ms": ttft_ms, "tpot_ms": tpot_ms, "percentile": percentile, "window_s": window_s,
           "attainment": attainment}
    ctx = {"model": q.model.name, "hardware": q.hw.name, "cluster": q.topo.name, "slo": slo,
           "survive": survive, "policy": policy, "workload": sw.summary, "lengths": sw.lengths.to_json(),
           "rate_rps": sw.rate_rps}
    if lay is None:
        return {**ctx, "passed": False, "reason": "no layout meets the TPOT/TTFT targets on this cluster",
                **_secs(t0, timing)}
    topo = q.topo
    shape = Shape(lay["decode"]["layout"].dies // topo.dies_per_node, lay["prefill"]["nodes"], topo.n_nodes)
    dec_rps, pre_rps = lay["decode_rps"], lay["prefill"]["rate_rps"]
    pods, n_p, n_d = compose(sw.rate_rps, shape, dec_rps, pre_rps)
    analytic = {"pods": pods, "prefill": n_p, "decode": n_d, "decode_rps_per_instance": round(dec_rps, 3),
                "prefill_rps_per_instance": round(pre_rps, 3)}
    plan_ref = q.model_ref if "/" not in q.model_ref else str(Path(q.model_ref).resolve())
    hw_name, cl_name = hardware or q.hw.name, cluster or q.topo.name
    if Path(cl_name).is_file():
        cl_name = str(Path(cl_name).resolve())      # the plan (and --out's file) must find it anywhere
    ps = PodSearch(lambda k: _plan(plan_ref, hw_name, cl_name, lay, slo, sw.scaled(1.0 / k), policy),
                   sw.rate_rps, ex, seed, progress)
    pods, ver, found, split = _sized(ps, shape, pods, n_p, n_d, dec_rps, pre_rps, seed, progress)
    if found is None:
        return {**ctx, "passed": False, "analytic": analytic, "candidates": _table(ver, pods, ps),
                "reason": "no instance counts meet the SLO in the simulation",
                **_secs(t0, timing)}
    plan = ver.plan
    n_p, n_d = found
    head = None
    if survive in ("die", "node"):
        dur = float(plan["workload"]["duration_s"])
        head = headroom(plan, n_p, n_d, survive, dur / 3.0, seed, ex, shape, progress)
    doc = document(ctx, lay, analytic, ver, plan, pods, n_p, n_d, head, survive, chip_hour_cost, q.hw)
    if topo.n_pods > 1 and doc["pods"] > topo.n_pods:      # the cluster file names the fleet on hand
        doc["passed"] = False
        doc["reason"] = f"needs {doc['pods']} pods; cluster {topo.name} has {topo.n_pods}"
    doc["candidates_table"] = _table(ver, pods, ps)
    doc["simulations"] += len(doc["candidates_table"]) - len(ver.results)
    doc["pod_count"] = (ps.verification(pods, split, shape) if split is not None else
                        {"method": "the deployment fits one pod and was verified there", "minimal": True})
    if out:
        hp = head["instances"] if head else {"prefill": n_p, "decode": n_d}
        doc["plan_file"] = write_size_plan(out, plan, hp["prefill"], hp["decode"], pods, sw.trace, doc)
    doc.update(_secs(t0, timing))
    return doc


def _secs(t0: float, timing: bool) -> dict[str, float]:
    """Wall-clock seconds, only when asked (``--json`` stays deterministic)."""
    return {"seconds": round(time.perf_counter() - t0, 3)} if timing else {}


def _bisect(ver: Verifier, n_p: int, n_d: int) -> tuple[int, int] | None:
    """The smallest (prefill, decode) counts meeting the SLO near the analytic (n_p, n_d): a
    passing upper bound, then decode minimised at that prefill, then prefill at that decode, and a
    last check that one decode instance fewer fails at the final prefill count."""
    up = ver.upper(n_p, n_d)
    if up is None:
        return None
    hp, hd = up
    d = ver.minimise(hd, lambda n: (hp, n))
    p = ver.minimise(hp, lambda n: (n, d))
    if d > 1:
        ver.run([(p, d - 1)])
        if ver.results[(p, d - 1)]["passed"]:        # fewer prefill freed decode: minimise again
            d = ver.minimise(d - 1, lambda n: (p, n))
    return p, d


def _sized(ps: PodSearch, shape: Shape, pods: int, n_p: int, n_d: int, dec_rps: float, pre_rps: float,
           seed: int, progress: Callable[[str], None] | None
           ) -> tuple[int, Verifier, tuple[int, int] | None, tuple[int, int] | None]:
    """(pods, verifier of one pod at rate/pods, its minimal (prefill, decode) counts or None, the
    full-pod split the pod count was verified with or None for one pod). One pod when the analytic
    counts fit and a pod's bisection meets the SLO; else the pod count is searched by simulation
    (:class:`.pods.PodSearch`) and the counts bisected at that many pods."""
    if pods == 1:
        ver = Verifier(ps.plan_of(1), ps.ex, seed, shape.fits, progress)
        found = _bisect(ver, n_p, n_d)
        if found is not None:
            return 1, ver, found, None
        pods = 2
    _, fp, fd = pod_capacity(shape, dec_rps, pre_rps)
    res = ps.fleet(pods, shape, (fp, fd)) if fp >= 1 and fd >= 1 else None
    if res is None:
        return pods, Verifier(ps.plan_of(pods), ps.ex, seed, shape.fits, progress), None, None
    pods, split = res
    ver = Verifier(ps.plan_of(pods), ps.ex, seed, shape.fits, progress)
    ver.results[split] = ps.results[(pods, *split)]        # the same run: no need to repeat it
    a_p, a_d = pool_counts(ps.rate / pods, dec_rps, pre_rps)
    if not shape.fits(a_p, a_d):
        a_p, a_d = split
    return pods, ver, _bisect(ver, a_p, a_d), split


def _table(ver: Verifier, pods: int, ps: PodSearch | None = None) -> list[dict[str, Any]]:
    """Every simulated deployment (per pod), by pod count then size: the full pods of the pod-count
    search, then the counts bisected at the answer's pod count."""
    rows = [r for r in (ps.table() if ps else [])
            if not (r["pods"] == pods and (r["prefill"], r["decode"]) in ver.results)]
    rows += [{"pods": pods, "prefill": k[0], "decode": k[1], **v} for k, v in ver.results.items()]
    return sorted(rows, key=lambda r: (r["pods"], r["prefill"], r["decode"]))
