"""``run_experts``: the ``xds experts`` JSON document (balance loads, or score a saved layout)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XdsError
from .layout import balancedness, check_layout_args, load_layout, replica_counts, stats
from .loads import check_loads, load_loads
from .policies import balance


def run_experts(loads: str | Path | np.ndarray, slots: int | None, ranks: int, *, nodes: int = 1,
                groups: int = 1, evaluate: str | Path | None = None,
                layout: str | Path | None = None, include_layout: bool = True,
                timing: bool = False) -> dict[str, Any]:
    """The ``xds experts`` JSON document: balance ``loads`` (or score a saved ``layout`` on them), and
    with ``evaluate`` also score the layout on another load matrix (out-of-sample). Deterministic for
    the same inputs: the wall time ``seconds`` (s) is included only with ``timing``."""
    w = load_loads(loads) if isinstance(loads, (str, Path)) else check_loads(loads)
    E = w.shape[1]
    if layout is not None:
        t0 = time.perf_counter()
        ph = load_layout(layout)
        if slots is not None and slots != ph.shape[1]:
            raise XdsError(f"--slots {slots} but the layout has {ph.shape[1]} slots", file="--slots")
        P = ph.shape[1]
        check_layout_args(E, P, ranks, nodes, groups)
        try:
            b = balancedness(ph, w, ranks)
        except XdsError as exc:
            raise exc.at(file=str(layout)) from None
        phb = np.broadcast_to(ph, (b.shape[0], P))
        counts = replica_counts(np.ascontiguousarray(phb), E)
        doc: dict[str, Any] = {
            "policy": "given", "layers": int(b.shape[0]), "experts": E, "slots": P, "ranks": ranks,
            "slots_per_rank": P // ranks, "nodes": nodes, "groups": groups,
            "balancedness": stats(b), "seconds": time.perf_counter() - t0,
        }
        doc["phy2log"] = phb.tolist() if include_layout else None
        doc["replicas"] = counts.tolist() if include_layout else None
    else:
        if slots is None:
            raise XdsError("--slots is required (physical expert slots in total)", file="--slots")
        lay = balance(w, slots, ranks, nodes=nodes, groups=groups)
        ph = lay.phy2log
        doc = lay.summary()
        if include_layout:
            doc["phy2log"] = lay.phy2log.tolist()
            doc["replicas"] = lay.replicas.tolist()
    if evaluate is not None:
        w2 = load_loads(evaluate, label="--evaluate")
        if w2.shape[1] != E:
            raise XdsError(f"has {w2.shape[1]} experts but --loads has {E}", file=str(evaluate))
        try:
            b2 = balancedness(ph, w2, ranks)
        except XdsError as exc:
            raise exc.at(file=str(evaluate)) from None
        doc["balancedness_out_of_sample"] = {"file": str(evaluate), **stats(b2)}
    # keep the contract's field order readable: layout arrays last
    if not timing:
        doc.pop("seconds", None)      # wall clock: the only field that differs between two runs
    order = [k for k in doc if k not in ("phy2log", "replicas", "seconds")] + ["seconds", "phy2log", "replicas"]
    return {k: doc[k] for k in order if k in doc and doc[k] is not None}
