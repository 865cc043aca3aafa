"""Fault headroom for ``xds size --survive die|node|pod``: N−1 at that failure domain.

``die`` / ``node``: the sized pod replays the worst single fault of the class — the fault is
injected into the first instance of each pool (instances of a pool are identical, so one target per
pool covers the class) a third of the way into the run, under the plan's recovery policy; the worse
of the two is the verdict. While it misses the SLO, the pool it hit gains an instance and both
faults are replayed again. ``pod``: one more pod than the load needs — each pod was verified at
``rate / pods``, exactly what each survivor carries when one of ``pods + 1`` is lost (no
further simulation).
"""

from __future__ import annotations

from typing import Any, Callable

from ..parallel import Executor
from ..plan import place
from .compose import Shape
from .verify import fault_cell, loaded, sim_cell, with_counts

FAULT_OF = {"die": "die_down", "node": "node_down"}
MAX_ADDS = 6


def _targets(plan: dict[str, Any], survive: str) -> list[tuple[str, str, bool]]:
    """(pool role, element name, whole instance?) of the fault of class ``survive`` on each pool's
    first instance; ``whole`` when the element holds every die of that instance."""
    placed = place(loaded(plan))
    topo = placed.topology
    out = []
    for pool in (placed.prefill, placed.decode):
        if pool is None:
            continue
        dies = pool.instances[0].dies
        die = int(dies[0])
        el = f"die:{die}" if survive == "die" else f"node:{int(topo.die_node[die])}"
        out.append((pool.role, el, bool(set(map(int, dies)) <= set(map(int, topo.dies_in(el))))))
    return out


def replay_faults(plan: dict[str, Any], n_p: int, n_d: int, survive: str, at_s: float, seed: int,
                  executor: Executor) -> list[dict[str, Any]]:
    """Replay the class's fault on each pool of the (n_p, n_d) deployment; one result per pool.
    A fault that takes a whole instance (a one-node instance losing its node) is replayed as the
    deployment without that instance for the whole run (N−1, no recovery: conservative)."""
    p = with_counts(plan, n_p, n_d)
    tg = _targets(p, survive)
    cells, fns = [], []
    for role, t, whole in tg:
        if whole:
            fewer = (n_p - 1, n_d) if role == "prefill" else (n_p, n_d - 1)
            cells.append((with_counts(plan, *fewer), seed) if min(fewer) >= 1 else None)
            fns.append("n-1")
        else:
            cells.append((p, FAULT_OF[survive], t, at_s, seed))
            fns.append("replay")
    res: list[dict[str, Any]] = [{"passed": False, "error": "the pool's only instance is lost"}
                                 if c is None else {} for c in cells]
    for kind, fn in (("replay", fault_cell), ("n-1", sim_cell)):
        idx = [i for i, f in enumerate(fns) if f == kind and cells[i] is not None]
        for out in executor.map(fn, [cells[i] for i in idx]):
            res[idx[out.index]] = out.value if out.error is None else {"passed": False, "error": out.error}
    for (role, t, whole), r in zip(tg, res):
        if whole:       # N-1 for the whole run: no recovery transient, every window judged
            r.update(attainment_after_recovery=r.get("slo_attainment"), transient_windows_violated=0)
        r.update(pool=role, fault=FAULT_OF[survive], target=t,
                 method="instance lost for the whole run" if whole else f"replayed at {at_s:g} s")
    return res


def headroom(plan: dict[str, Any], n_p: int, n_d: int, survive: str, at_s: float, seed: int,
             executor: Executor, shape: Shape,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Counts that survive the worst single ``survive`` fault: ``{instances: {prefill, decode},
    added: {...}, replays: [...], worst, passed}`` (``passed`` False when the pod cannot hold
    enough instances within ``MAX_ADDS`` additions)."""
    p0, d0 = n_p, n_d
    replays: list[dict[str, Any]] = []
    last: tuple[str, float] | None = None
    for _ in range(MAX_ADDS + 1):
        res = replay_faults(plan, n_p, n_d, survive, at_s, seed, executor)
        for r in res:
            replays.append({**r, "instances": {"prefill": n_p, "decode": n_d}})
        worst = min(res, key=lambda r: (r.get("passed", False),
                                        r.get("attainment_after_recovery", r.get("slo_attainment")) or 0.0))
        if progress:
            progress(f"{survive} fault on {n_p}P+{n_d}D: worst {worst.get('target')} "
                     f"attainment after recovery {worst.get('attainment_after_recovery', worst.get('slo_attainment'))}")
        if worst.get("passed"):
            return {"passed": True, "instances": {"prefill": n_p, "decode": n_d},
                    "added": {"prefill": n_p - p0, "decode": n_d - d0}, "worst": worst, "replays": replays}
        score = worst.get("attainment_after_recovery", worst.get("slo_attainment")) or 0.0
        # add to the pool the fault hit; when that did not help last time, to the other pool (a
        # recovery that recomputes requests loads prefill even when the fault hit decode)
        role = worst["pool"]
        if last is not None and score <= last[1]:
            role = "decode" if last[0] == "prefill" else "prefill"
        last = (role, score)
        np_, nd_ = (n_p + 1, n_d) if role == "prefill" else (n_p, n_d + 1)
        if not shape.fits(np_, nd_):
            break
        n_p, n_d = np_, nd_
    return {"passed": False, "instances": {"prefill": n_p, "decode": n_d},
            "added": {"prefill": n_p - p0, "decode": n_d - d0}, "worst": worst, "replays": replays}
