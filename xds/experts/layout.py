"""An expert layout and its quality measure.

A layout is ``phy2log`` int64 [layers, P]: physical slot ``p`` holds logical expert ``phy2log[l, p]``
and lives on rank ``p // (P / G)``. An expert with ``c`` replicas has its load split evenly over them
(that is how xDeepServe's gather-based map spreads tokens, reference §F). The quality measure is
*balancedness* = max rank load / mean rank load (>= 1, 1 is perfect) per layer: every rank waits for
the slowest at each dispatch/combine, so the MoE stage runs at the max."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XdsError
from .loads import check_loads


@dataclass
class ExpertLayout:
    """A placement of expert replicas on EP ranks for every layer.

    ``phy2log`` int64 [L, P] logical expert of each physical slot (slot p on rank p // (P/G));
    ``replicas`` int64 [L, E] replica count per expert (>= 1); ``rank_load`` float64 [L, G] tokens per
    rank with each expert's load split evenly over its replicas; ``balancedness`` float64 [L] max / mean
    rank load. ``eplb_balancedness`` [L] is DeepSeek EPLB's value on the same input (None when the
    layout was not computed by :func:`balance`, and at one slot per rank under the global policy:
    there nothing is packed and xds's water-fill reaches the optimum EPLB's greedy reaches);
    ``seconds`` the wall time of :func:`balance` (s).
    """

    phy2log: np.ndarray
    replicas: np.ndarray
    rank_load: np.ndarray
    balancedness: np.ndarray
    ranks: int
    nodes: int = 1
    groups: int = 1
    policy: str = "global"
    seconds: float = 0.0
    eplb_balancedness: np.ndarray | None = field(default=None, repr=False)

    @property
    def layers(self) -> int:
        return int(self.phy2log.shape[0])

    @property
    def slots(self) -> int:
        return int(self.phy2log.shape[1])

    @property
    def experts(self) -> int:
        return int(self.replicas.shape[1])

    def summary(self) -> dict[str, Any]:
        """Short JSON-safe summary (no per-slot data)."""
        doc: dict[str, Any] = {
            "policy": self.policy,
            "layers": self.layers,
            "experts": self.experts,
            "slots": self.slots,
            "ranks": self.ranks,
            "slots_per_rank": self.slots // self.ranks,
            "nodes": self.nodes,
            "groups": self.groups,
            "balancedness": stats(self.balancedness),
            "max_replicas": int(self.replicas.max()),
            "seconds": round(float(self.seconds), 6),
        }
        if self.eplb_balancedness is not None:
            doc["eplb_balancedness"] = {k: v for k, v in stats(self.eplb_balancedness).items()
                                        if k != "per_layer"}
        return doc


def stats(b: np.ndarray) -> dict[str, Any]:
    """Mean, worst and per-layer values of a per-layer balancedness array (JSON-safe)."""
    b = np.asarray(b, dtype=np.float64)
    return {"mean": float(b.mean()), "worst": float(b.max()), "per_layer": [float(x) for x in b]}


def check_layout_args(experts: int, slots: int, ranks: int, nodes: int, groups: int) -> None:
    """Refuse layout arguments no layout can satisfy (each error names the CLI flag to change)."""
    for flag, v in (("--slots", slots), ("--ranks", ranks), ("--nodes", nodes), ("--groups", groups)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise XdsError(f"must be a positive integer, got {v!r}", file=flag)
    if slots < experts:
        raise XdsError(f"{slots} slots cannot hold {experts} experts; need slots >= experts", file="--slots")
    if slots % ranks:
        raise XdsError(f"{slots} slots do not divide evenly over {ranks} ranks; slots must be a "
                       f"multiple of --ranks", file="--slots")
    if ranks % nodes:
        raise XdsError(f"{nodes} nodes do not divide {ranks} ranks; --nodes must divide --ranks",
                       file="--nodes")
    if experts % groups:
        raise XdsError(f"{groups} groups do not divide {experts} experts; --groups must divide the "
                       f"number of experts", file="--groups")


def replica_counts(phy2log: np.ndarray, experts: int) -> np.ndarray:
    """Replicas of each expert in a layout, int64 [L, experts]."""
    L = phy2log.shape[0]
    flat = (phy2log + (np.arange(L, dtype=np.int64) * experts)[:, None]).ravel()
    return np.bincount(flat, minlength=L * experts).reshape(L, experts)


def rank_load_of(phy2log: np.ndarray, loads: np.ndarray, counts: np.ndarray, ranks: int) -> np.ndarray:
    """Tokens per rank [L, ranks], each expert's load split evenly over its ``counts`` replicas and
    each rank's slots summed in slot order (the order every balancedness figure uses)."""
    per_slot = np.take_along_axis(loads / np.maximum(counts, 1), phy2log, axis=1)
    return per_slot.reshape(phy2log.shape[0], ranks, -1).sum(-1)


def balancedness_from_rank_load(rank_load: np.ndarray) -> np.ndarray:
    """Max / mean of each layer's rank loads [L, ranks]; 1.0 for a layer without load."""
    mean = rank_load.sum(axis=1) / rank_load.shape[1]          # == rank_load.mean(axis=1)
    pos = mean > 0
    if pos.all():                                              # (the usual case: no masking)
        return rank_load.max(axis=1) / mean
    return np.where(pos, rank_load.max(axis=1) / np.where(pos, mean, 1.0), 1.0)


def balancedness(phy2log: Any, loads: Any, ranks: int) -> np.ndarray:
    """Balancedness per layer (max rank load / mean rank load, >= 1) of any layout on any loads.

    ``phy2log`` int [L, P] (or [P]); ``loads`` [L, E] (or [E]); a single layer of either side is
    broadcast over the other's layers. Each expert's load is split evenly over its replicas.
    """
    ph = np.asarray(phy2log)
    if ph.ndim == 1:
        ph = ph[None, :]
    if ph.ndim != 2 or ph.dtype.kind not in "iu" or ph.size == 0:
        raise XdsError("phy2log must be a non-empty integer array [layers, slots]", where="phy2log")
    ph = ph.astype(np.int64)
    w = check_loads(loads, file="loads")
    L = max(ph.shape[0], w.shape[0])
    if ph.shape[0] != w.shape[0]:
        if ph.shape[0] == 1:
            ph = np.broadcast_to(ph, (L, ph.shape[1]))
        elif w.shape[0] == 1:
            w = np.broadcast_to(w, (L, w.shape[1]))
        else:
            raise XdsError(f"layout has {ph.shape[0]} layers but loads have {w.shape[0]}; they must "
                           f"match (or one of them have a single layer)", file="loads")
    E = w.shape[1]
    P = ph.shape[1]
    if isinstance(ranks, bool) or not isinstance(ranks, (int, np.integer)) or ranks < 1 or P % ranks:
        raise XdsError(f"{P} slots do not divide evenly over {ranks} ranks", file="--ranks")
    if ph.min() < 0 or ph.max() >= E:
        l, p = np.argwhere((ph < 0) | (ph >= E))[0]
        raise XdsError(f"slot holds expert {ph[l, p]}, but loads have {E} experts (ids 0..{E - 1})",
                       where=f"phy2log layer {l} slot {p}")
    counts = replica_counts(ph, E)
    lost = (counts == 0) & (w > 0)
    if lost.any():
        l, e = np.argwhere(lost)[0]
        raise XdsError(f"expert {e} has load {w[l, e]:g} but no slot in the layout", where=f"layer {l}")
    return balancedness_from_rank_load(rank_load_of(ph, w, counts, ranks))



def load_layout(path: str | Path, *, label: str = "--layout") -> np.ndarray:
    """Read a saved layout: the JSON written by ``xds experts --out`` (key ``phy2log``) or an int
    ``.npy`` [layers, slots]. Returns int64 [L, P]."""
    p = Path(path)
    name = str(p)
    if not p.is_file():
        raise XdsError(f"{label} file not found", file=name)
    if p.stat().st_size == 0:
        raise XdsError("file is empty; expected a layout (JSON with 'phy2log', or .npy)", file=name)
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise XdsError("not a valid .npy array", file=name) from None
    else:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else None
            raise XdsError("not valid JSON; expected the output of 'xds experts --json --out'",
                           file=name, where=where) from None
        if not isinstance(doc, dict) or "phy2log" not in doc:
            raise XdsError("missing key 'phy2log' (list per layer of slot -> logical expert ids)", file=name)
        try:
            arr = np.array(doc["phy2log"])
        except ValueError:
            raise XdsError("phy2log rows have different lengths", file=name, where="phy2log") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise XdsError(f"phy2log must be a non-empty integer array [layers, slots], got "
                       f"shape {list(arr.shape)} dtype {arr.dtype}", file=name, where="phy2log")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------------------------------
