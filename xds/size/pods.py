"""The pod count of a fleet, verified by simulation (``xds size`` over several pods).

The fleet is ``pods`` identical pods behind a router, each serving ``rate / pods``. The analytic
pod count (:func:`.compose.compose`) is only a first guess: the representative pod, *full* (every
node used, prefill and decode split as the analytic capacities balance best,
:func:`.compose.pod_capacity`), is simulated at ``rate / pods`` and the smallest ``pods`` at which it
meets the SLO is found by galloping down from a passing count and bisecting. Minimal within the
step: the full pod at ``rate / (pods - 1)`` misses the SLO, and so do the neighbouring full splits
(one decode instance more or fewer, prefill filling the rest); when a neighbour passes there, the
search restarts with that split. It assumes attainment does not rise with the rate a pod carries.

Units: req/s, nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..parallel import Executor
from .compose import Shape
from .verify import sim_cell, with_counts

GROW = 1.1               # a failing pod count grows by this factor (at least one pod)
MAX_ROUNDS = 12          # growth rounds before giving up (the full pod never meets the SLO)
MAX_SPLIT_RESTARTS = 2   # restarts with a neighbouring split that passed at pods - 1


def full_splits(shape: Shape, n_d: int) -> list[tuple[int, int]]:
    """The full pods (prefill, decode) with ``n_d`` and ``n_d ± 1`` decode instances, prefill
    filling the nodes left; the ones that hold at least one instance of each pool."""
    out = []
    for d in (n_d, n_d - 1, n_d + 1):
        if d >= 1:
            p = (shape.pod_nodes - d * shape.decode_nodes) // shape.prefill_nodes
            if p >= 1:
                out.append((p, d))
    return out


class PodSearch:
    """Simulates one full pod composition at ``rate / pods`` for several ``pods`` (the plan mapping
    of each pod count from ``plan_of(pods)``), remembering every result."""

    def __init__(self, plan_of: Callable[[int], dict[str, Any]], rate_rps: float, executor: Executor,
                 seed: int, progress: Callable[[str], None] | None = None):
        self.plan_of, self.rate, self.ex, self.seed, self.progress = plan_of, rate_rps, executor, seed, progress
        self.results: dict[tuple[int, int, int], dict[str, Any]] = {}    # (pods, prefill, decode)

    def run(self, keys: list[tuple[int, int, int]]) -> None:
        """Simulate the (pods, prefill, decode) points not yet simulated, in parallel."""
        todo = [k for k in dict.fromkeys(keys) if k not in self.results and k[0] >= 1]
        cells = [(with_counts(self.plan_of(k[0]), k[1], k[2]), self.seed) for k in todo]
        for out in self.ex.map(sim_cell, cells):
            self.results[todo[out.index]] = (out.value if out.error is None
                                             else {"passed": False, "error": out.error})
        if self.progress and todo:
            self.progress("pod count: " + ", ".join(
                f"{k[0]} pods of {k[1]}P+{k[2]}D {'ok' if self.results[k]['passed'] else 'miss'}" for k in todo))

    def ok(self, pods: int, split: tuple[int, int]) -> bool:
        key = (pods, *split)
        self.run([key])
        return bool(self.results[key]["passed"])

    def smallest(self, pods0: int, split: tuple[int, int]) -> int | None:
        """The fewest pods (>= 1) at which ``split`` meets the SLO, from a first guess ``pods0``;
        None when even ``pods0 x GROW^MAX_ROUNDS`` pods do not."""
        hi = pods0
        for _ in range(MAX_ROUNDS):
            if self.ok(hi, split):
                break
            hi = max(hi + 1, math.ceil(hi * GROW))
        else:
            return None
        lo, step = 0, 1
        width = max(1, getattr(self.ex, "workers", None) or 2)
        while lo == 0 and hi > 1:                       # gallop down: hi-s, hi-2s, ... together
            cands = [hi - step * (1 << j) for j in range(width) if hi - step * (1 << j) >= 1]
            if not cands:
                break
            self.run([(c, *split) for c in cands])
            for c in cands:                             # descending
                if self.results[(c, *split)]["passed"]:
                    hi = c
                else:
                    lo = c
                    break
            step *= 1 << width
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.ok(mid, split):
                hi = mid
            else:
                lo = mid
        return hi

    def fleet(self, pods0: int, shape: Shape, split: tuple[int, int]) -> tuple[int, tuple[int, int]] | None:
        """(pods, split): the fewest pods of a full pod at which it meets the SLO, with the check
        that no neighbouring full split passes at one pod fewer (else the search restarts on it)."""
        for _ in range(MAX_SPLIT_RESTARTS + 1):
            pods = self.smallest(pods0, split)
            if pods is None:
                return None
            if pods == 1:
                return pods, split
            others = [s for s in full_splits(shape, split[1]) if s != split]
            self.run([(pods - 1, *s) for s in others])
            better = [s for s in others if self.results[(pods - 1, *s)]["passed"]]
            if not better:
                return pods, split
            split, pods0 = better[0], pods - 1
        return pods, split

    def verification(self, pods: int, split: tuple[int, int], shape: Shape) -> dict[str, Any]:
        """The ``pod_count`` block of the document: what was simulated at ``pods`` and ``pods - 1``."""
        def row(k: tuple[int, int, int]) -> dict[str, Any]:
            r = self.results.get(k) or {}
            return {"pods": k[0], "prefill": k[1], "decode": k[2], "rate_rps_per_pod": round(self.rate / k[0], 3),
                    **{f: r.get(f) for f in ("passed", "slo_attainment", "p99_ttft_ms", "p99_tpot_ms", "error")}}
        fewer = [row((pods - 1, *s)) for s in full_splits(shape, split[1]) if (pods - 1, *s) in self.results]
        return {"method": "a full pod simulated at rate/pods; the fewest pods that meet the SLO (gallop + "
                          "bisection), checked at pods - 1 for the split and its neighbours",
                "full_pod": {"prefill": split[0], "decode": split[1]},
                "at_pods": row((pods, *split)), "at_pods_minus_one": fewer,
                "minimal": pods == 1 or (bool(fewer) and not any(r["passed"] for r in fewer))}

    def table(self) -> list[dict[str, Any]]:
        """Every full-pod simulation, by pod count."""
        return [{"pods": k[0], "prefill": k[1], "decode": k[2], "scope": "full pod",
                 "rate_rps_per_pod": round(self.rate / k[0], 3), **v}
                for k, v in sorted(self.results.items())]
