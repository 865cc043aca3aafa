"""Expert-parallel load balancing: choose redundant experts and place slots on EP ranks.

Input is a per-layer load matrix (token counts routed to each logical expert, [layers, experts]);
output is a layout ``phy2log`` [layers, P]: physical slot ``p`` holds logical expert ``phy2log[l, p]``
and lives on rank ``p // (P / G)``. An expert with ``c`` replicas has its load split evenly over them
(that is how xDeepServe's gather-based map spreads tokens, reference §F). The quality measure is
*balancedness* = max rank load / mean rank load (>= 1, 1 is perfect) per layer: every rank waits for
the slowest at each dispatch/combine, so the MoE stage runs at the max.

The anchor is DeepSeek's open-source EPLB (greedy replication + balanced packing, a hierarchical
node-local policy and a global one). xds keeps EPLB's layout as one candidate (computed bit-exactly,
but with the packing vectorized over layers), adds its own candidates, improves every candidate with a
local search that only ever lowers a layer's max rank load, and keeps the best per layer, so the result
is never worse than EPLB's. Where EPLB is weak xds does better:

- hierarchical policy: EPLB packs the same number of groups on every node, so every node gets the same
  number of spare slots however hot it is. xds packs groups by load with a per-node capacity instead,
  so a node holding a hot group holds fewer groups and uses its (fixed) P/N slots for more replicas;
- heavy skew with several slots per rank: greedy replication can give a hot expert G+1 replicas on G
  ranks, stacking two on one rank; xds also tries replica counts rounded to whole multiples of the
  rank count and lets the packing/local search pick;
- after packing, pairwise swaps between the most-loaded rank and every other rank (vectorized over
  layers) close the gap LPT leaves.

Node locality (group-limited routing): with ``nodes > 1`` and ``groups % nodes == 0`` every expert
group and all of its replicas stay on one node (slots p of node n: ``n * P/N <= p < (n+1) * P/N``).
Otherwise the global policy is used (as EPLB does). Units: loads are token counts; times in seconds.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import XdsError

MAX_LOADS_BYTES = 256 * 1024 * 1024
#: Local-search iteration cap (each iteration moves one swap per still-improving row).
MAX_SWAP_ITERS = 256


# --------------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------------
@dataclass
class ExpertLayout:
    """A placement of expert replicas on EP ranks for every layer.

    ``phy2log`` int64 [L, P] logical expert of each physical slot (slot p on rank p // (P/G));
    ``replicas`` int64 [L, E] replica count per expert (>= 1); ``rank_load`` float64 [L, G] tokens per
    rank with each expert's load split evenly over its replicas; ``balancedness`` float64 [L] max / mean
    rank load. ``eplb_balancedness`` [L] is DeepSeek EPLB's value on the same input (None when the
    layout was not computed by :func:`balance`); ``seconds`` the wall time of :func:`balance` (s).
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
            "balancedness": _stats(self.balancedness),
            "max_replicas": int(self.replicas.max()),
            "seconds": round(float(self.seconds), 6),
        }
        if self.eplb_balancedness is not None:
            doc["eplb_balancedness"] = {k: v for k, v in _stats(self.eplb_balancedness).items()
                                        if k != "per_layer"}
        return doc


def _stats(b: np.ndarray) -> dict[str, Any]:
    b = np.asarray(b, dtype=np.float64)
    return {"mean": float(b.mean()), "worst": float(b.max()), "per_layer": [float(x) for x in b]}


# --------------------------------------------------------------------------------------------------
# Input validation and loading
# --------------------------------------------------------------------------------------------------
def _check_loads(loads: Any, *, file: str | None = "--loads") -> np.ndarray:
    """Validate a load matrix and return it as float64 [L, E]."""
    arr = np.asarray(loads)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise XdsError(f"loads must be numeric token counts, got dtype {arr.dtype}", file=file)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise XdsError(f"loads must have shape [layers, experts] or [experts], got {list(arr.shape)}",
                       file=file)
    if arr.size == 0:
        raise XdsError(f"loads are empty (shape {list(arr.shape)}); need at least one layer and expert",
                       file=file)
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        l, e = np.argwhere(bad)[0]
        raise XdsError(f"load is {arr[l, e]} (must be a finite non-negative token count)",
                       file=file, where=f"layer {l} expert {e}")
    neg = arr < 0
    if neg.any():
        l, e = np.argwhere(neg)[0]
        raise XdsError(f"load is {arr[l, e]:g} (must be a non-negative token count)",
                       file=file, where=f"layer {l} expert {e}")
    return arr


def _check_layout_args(experts: int, slots: int, ranks: int, nodes: int, groups: int) -> None:
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


def load_loads(path: str | Path, *, label: str = "--loads") -> np.ndarray:
    """Read a load matrix from ``.npy`` or ``.csv`` (one layer per line, comma-separated token counts;
    an optional non-numeric header line and ``#`` comments are skipped). Returns float64 [L, E]."""
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise XdsError(f"{label} file not found", file=name)
    if p.is_dir():
        raise XdsError(f"{label} must be a .npy or .csv file, got a folder", file=name)
    size = p.stat().st_size
    if size == 0:
        raise XdsError("file is empty; expected a [layers, experts] array of token counts", file=name)
    if size > MAX_LOADS_BYTES:
        raise XdsError(f"file is {size / 1e6:.0f} MB; at most {MAX_LOADS_BYTES / 1e6:.0f} MB accepted",
                       file=name)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise XdsError(f"not a valid .npy array ({' '.join(str(exc).split())[:120]})", file=name) from None
        if not isinstance(arr, np.ndarray):
            raise XdsError("expected a single .npy array, not an archive", file=name)
        return _check_loads(arr, file=name)
    if suffix in (".csv", ".txt"):
        return _check_loads(_read_csv(p), file=name)
    raise XdsError(f"unsupported file type {suffix or '(none)'!r}; use .npy or .csv", file=name)


def _read_csv(p: Path) -> np.ndarray:
    name = str(p)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise XdsError(f"not UTF-8 text (byte {exc.start}); expected CSV token counts", file=name) from None
    if "\x00" in text:
        raise XdsError("binary data (NUL byte); expected CSV token counts", file=name)
    rows: list[list[float]] = []
    width = None
    for lineno, rec in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in rec]
        if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
            continue
        try:
            vals = [float(c) for c in cells]
        except ValueError:
            if not rows and width is None and lineno == _first_content_line(text):
                width = len(cells)  # header line: its width fixes the row width
                continue
            bad = next(c for c in cells if not _is_float(c))
            raise XdsError(f"{bad[:40]!r} is not a number (expected comma-separated token counts)",
                           file=name, where=f"line {lineno}") from None
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise XdsError(f"row has {len(vals)} values, expected {width} (one value per expert)",
                           file=name, where=f"line {lineno}")
        rows.append(vals)
    if not rows:
        raise XdsError("no data rows; expected comma-separated token counts, one layer per line", file=name)
    return np.array(rows, dtype=np.float64)


def _first_content_line(text: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            return i
    return 0


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


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
# Evaluation
# --------------------------------------------------------------------------------------------------
def _replica_counts(phy2log: np.ndarray, experts: int) -> np.ndarray:
    L = phy2log.shape[0]
    flat = (phy2log + (np.arange(L, dtype=np.int64) * experts)[:, None]).ravel()
    return np.bincount(flat, minlength=L * experts).reshape(L, experts)


def _rank_load(phy2log: np.ndarray, loads: np.ndarray, counts: np.ndarray, ranks: int) -> np.ndarray:
    per_slot = np.take_along_axis(loads / np.maximum(counts, 1), phy2log, axis=1)
    return per_slot.reshape(phy2log.shape[0], ranks, -1).sum(-1)


def _balancedness_from_rank_load(rank_load: np.ndarray) -> np.ndarray:
    mean = rank_load.mean(axis=1)
    mx = rank_load.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, mx / np.where(mean > 0, mean, 1.0), 1.0)


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
    w = _check_loads(loads, file="loads")
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
    counts = _replica_counts(ph, E)
    lost = (counts == 0) & (w > 0)
    if lost.any():
        l, e = np.argwhere(lost)[0]
        raise XdsError(f"expert {e} has load {w[l, e]:g} but no slot in the layout", where=f"layer {l}")
    return _balancedness_from_rank_load(_rank_load(ph, w, counts, ranks))


# --------------------------------------------------------------------------------------------------
# EPLB baseline candidate (bit-exact with DeepSeek's algorithm; packing vectorized over rows)
# --------------------------------------------------------------------------------------------------
def _lpt_pack(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced packing (EPLB's): items in descending weight order, each to the lightest pack that is
    not full (lowest index on ties), ``n / num_packs`` items per pack. One Python step per item,
    vectorized over rows. Returns ``pack_index`` and ``rank_in_pack`` int64 [R, n]."""
    R, n = weight.shape
    per = n // num_packs
    if per == 1:
        return (np.broadcast_to(np.arange(n, dtype=np.int64), (R, n)).copy(),
                np.zeros((R, n), dtype=np.int64))
    order = np.argsort(-weight, axis=-1, kind="stable")
    rows = np.arange(R)
    pack_w = np.zeros((R, num_packs), dtype=weight.dtype)
    pack_n = np.zeros((R, num_packs), dtype=np.int64)
    pack_index = np.empty((R, n), dtype=np.int64)
    rank_in_pack = np.empty((R, n), dtype=np.int64)
    full_w = np.asarray(np.inf, dtype=weight.dtype)
    # The first num_packs items go to packs 0..num_packs-1 in order whenever they have positive weight
    # (an empty pack is lighter than any used one); do them in one shot.
    k0 = num_packs if bool((np.take_along_axis(weight, order[:, :num_packs], 1) > 0).all()) else 0
    if k0:
        first = order[:, :k0]
        np.put_along_axis(pack_index, first, np.broadcast_to(np.arange(k0), (R, k0)), 1)
        np.put_along_axis(rank_in_pack, first, 0, 1)
        pack_w[:] = np.take_along_axis(weight, first, 1)
        pack_n[:] = 1
    # Flat views: per step one argmin over [R, packs] and three scalar-per-row updates.
    key = np.where(pack_n < per, pack_w, full_w).ravel()
    pw = pack_w.ravel()
    pn = pack_n.ravel()
    base = rows * num_packs
    sorted_w = np.take_along_axis(weight, order, 1)
    chosen = np.empty((R, n), dtype=np.int64)
    if k0:
        chosen[:, :k0] = np.arange(k0)
    kv = key.reshape(R, num_packs)
    for j in range(k0, n):
        p = kv.argmin(axis=1)
        f = base + p
        chosen[:, j] = p
        rank_in_pack[rows, order[:, j]] = pn[f]
        pw[f] += sorted_w[:, j]
        pn[f] += 1
        key[f] = np.where(pn[f] < per, pw[f], full_w)
    np.put_along_axis(pack_index, order, chosen, 1)
    return pack_index, rank_in_pack


def _eplb_replicate(weight: np.ndarray, num_phy: int) -> tuple[np.ndarray, np.ndarray]:
    """EPLB's greedy replication (float32), returns ``phy2log`` [R, num_phy] and ``logcnt`` [R, E]."""
    n, num_log = weight.shape
    phy2log = np.tile(np.arange(num_phy, dtype=np.int64), (n, 1))
    logcnt = np.ones((n, num_log), dtype=np.int64)
    ar = np.arange(n)
    for i in range(num_log, num_phy):
        idx = np.argmax(weight / logcnt.astype(np.float32), axis=-1)
        phy2log[:, i] = idx
        logcnt[ar, idx] += 1
    return phy2log, logcnt


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1], dtype=np.int64), perm.shape), 1)
    return inv


def _eplb_layout(w32: np.ndarray, P: int, K: int, N: int, G: int) -> np.ndarray:
    """DeepSeek EPLB's ``phy2log`` [L, P] (hierarchical when K % N == 0, else global); identical to
    ``rebalance_experts`` of the reference implementation, with the packing vectorized."""
    if K % N:
        K, N = 1, 1
    L, E = w32.shape
    gs = E // K
    gpn = K // N
    spg = P // G
    tokens_per_group = w32.reshape(L, K, gs).sum(-1)
    gpi, grp = _lpt_pack(tokens_per_group, N)
    log2mlog = (((gpi * gpn + grp) * gs)[..., None] + np.arange(gs, dtype=np.int64)).reshape(L, -1)
    mlog2log = _inverse(log2mlog)
    tokens_per_mlog = np.take_along_axis(w32, mlog2log, -1).reshape(-1, E // N)
    phy2mlog, mlogcnt = _eplb_replicate(tokens_per_mlog, P // N)
    tokens_per_phy = np.take_along_axis(tokens_per_mlog / mlogcnt.astype(np.float32), phy2mlog, -1)
    pi, rip = _lpt_pack(tokens_per_phy, G // N)
    pphy2phy = _inverse(pi * spg + rip)
    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, -1)
    pphy2mlog = (pphy2mlog.reshape(L, N, -1)
                 + np.arange(0, E, E // N, dtype=np.int64).reshape(1, -1, 1)).reshape(L, -1)
    return np.take_along_axis(mlog2log, pphy2mlog, -1)


# --------------------------------------------------------------------------------------------------
# xds candidates
# --------------------------------------------------------------------------------------------------
def _waterfill(w: np.ndarray, S: int, present: np.ndarray | None = None) -> np.ndarray:
    """Replica counts minimising the max per-replica load w/c with sum(c) == S, c >= 1 for present
    experts and 0 for absent ones (the same result as greedy replication, found by a threshold search
    instead of S - E sequential steps). ``w`` float64 [R, E]. Returns int64 [R, E]."""
    R, E = w.shape
    if present is None:
        present = np.ones((R, E), dtype=bool)
    wp = np.where(present, w, 0.0)
    npres = present.sum(1)
    # Water level tau: experts above it get floor(w/tau) replicas, those below get one.
    tau = wp.sum(1) / S
    hot = present & (wp >= tau[:, None])
    for _ in range(E + 1):
        n_cold = npres - hot.sum(1)
        w_hot = np.where(hot, wp, 0.0).sum(1)
        tau = w_hot / np.maximum(S - n_cold, 1)
        new_hot = present & (wp >= tau[:, None]) & (wp > 0)
        if np.array_equal(new_hot, hot):
            break
        hot = new_hot
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(hot, np.floor(wp / np.where(tau > 0, tau, 1.0)[:, None]), 1.0)
    c = np.where(present, np.maximum(c, 1), 0).astype(np.int64)
    c = _fix_total(w, c, S, present)
    # Exchange fix-up: the picked replica values {w/k, k < c} must all be >= every unpicked next value
    # w/c (that is what greedy produces). Move one replica from the smallest picked value to the
    # largest unpicked one until that holds; a few steps at most in practice.
    rows = np.arange(R)
    for _ in range(S + 1):
        cr, wr, pr = c[rows], w[rows], present[rows]
        nxt = np.where(pr, wr / np.maximum(cr, 1), -np.inf)
        last = np.where(pr & (cr > 1), wr / np.maximum(cr - 1, 1), np.inf)
        i = np.argmax(nxt, axis=1)
        j = np.argmin(last, axis=1)
        ar = np.arange(rows.size)
        bad = nxt[ar, i] > last[ar, j] * (1 + 1e-12)
        if not bad.any():
            break
        rows, i, j = rows[bad], i[bad], j[bad]
        c[rows, i] += 1
        c[rows, j] -= 1
    return c


def _fix_total(w: np.ndarray, c: np.ndarray, S: int, present: np.ndarray) -> np.ndarray:
    """Make every row sum to S: add the leftover replicas to the experts with the highest per-replica
    load (greedy order), or remove surplus from the lowest w/(c-1) (only after float round-off)."""
    left = S - c.sum(1)
    if (left > 0).any():
        key = np.where(present, w / np.maximum(c, 1), -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")
        pos = np.empty_like(order)
        np.put_along_axis(pos, order, np.broadcast_to(np.arange(c.shape[1]), c.shape), 1)
        add = np.zeros_like(c)
        # leftover < number of present experts in exact arithmetic; loop covers round-off cases
        while (left > 0).any():
            step = (pos < np.minimum(left, present.sum(1))[:, None]) & present
            add += step
            left = left - step.sum(1)
        c = c + add
    while (left < 0).any():
        rows = np.nonzero(left < 0)[0]
        key = np.where((c[rows] > 1) & present[rows], w[rows] / np.maximum(c[rows] - 1, 1), np.inf)
        e = np.argmin(key, axis=1)
        c[rows, e] -= 1
        left[rows] += 1
    return c


def _round_to_ranks(w: np.ndarray, c: np.ndarray, ranks: int, present: np.ndarray) -> np.ndarray:
    """Variant counts: an expert with more replicas than ranks but not a whole multiple of them
    necessarily stacks an extra replica on some rank; round it down to a multiple of ``ranks`` and
    give the freed replicas (greedily, by per-replica load) to experts with fewer than ``ranks``."""
    c = c.copy()
    over = (c > ranks) & (c % ranks != 0)
    if not over.any():
        return c
    rounded = np.where(over, (c // ranks) * ranks, c)
    free = (c - rounded).sum(1)
    c = rounded
    R = c.shape[0]
    ar = np.arange(R)
    while (free > 0).any():
        rows = ar[free > 0]
        cr, wr = c[rows], w[rows]
        elig = present[rows] & ~over[rows] & (cr < ranks)
        key = np.where(elig, wr / np.maximum(cr, 1), -np.inf)
        # nobody eligible: give the replica back to the most loaded rounded expert
        back = np.where(present[rows] & over[rows], wr / np.maximum(cr, 1), -np.inf)
        use = np.where(np.isfinite(key).any(1)[:, None], key, back)
        e = np.argmax(use, axis=1)
        c[rows, e] += 1
        free[rows] -= 1
    return c


def _items_from_counts(c: np.ndarray) -> np.ndarray:
    """Expand counts [R, E] (rows summing to the same S) into item expert indices [R, S]."""
    R, E = c.shape
    S = int(c[0].sum())
    ids = np.repeat(np.tile(np.arange(E, dtype=np.int64), R), c.ravel())
    return ids.reshape(R, S)


def _place(pack_index: np.ndarray, rank_in_pack: np.ndarray, items: np.ndarray, spg: int) -> np.ndarray:
    """Item ids [R, n] packed by ``pack_index``/``rank_in_pack`` -> slot-ordered ids [R, n]."""
    out = np.empty_like(items)
    np.put_along_axis(out, pack_index * spg + rank_in_pack, items, 1)
    return out


def _swap_search(load: np.ndarray, ids: np.ndarray, max_iter: int = MAX_SWAP_ITERS,
                 partners: int = 4) -> None:
    """Pairwise-swap local search, in place. ``load``/``ids`` [R, G, s] (item load and item id per slot
    of each rank). Per row, swap one item of the most-loaded rank with one item of one of the
    ``partners`` least-loaded ranks when that lowers the larger of the two loads (best such swap).
    This never raises the row's max rank load and strictly lowers the sorted load vector, so it
    terminates. Vectorized over rows; only rows that improved stay active."""
    R, G, s = load.shape
    if G < 2:
        return
    k = min(partners, G - 1)
    active = np.arange(R)
    rank_sum = load.sum(-1)
    for _ in range(max_iter):
        if active.size == 0:
            break
        A = active.size
        a_idx = np.arange(A)
        lr = rank_sum[active]                                   # [A, G]
        m = np.argmax(lr, axis=1)
        lm = lr[a_idx, m]
        part = np.argpartition(lr, k - 1, axis=1)[:, :k] if k < G else np.argsort(lr, 1)[:, :k]
        lp = np.take_along_axis(lr, part, 1)                    # [A, k]
        la = load[active, m]                                    # [A, s]  items on the max rank
        lb = load[active[:, None], part]                        # [A, k, s]
        d = la[:, None, :, None] - lb[:, :, None, :]            # [A, k, s_a, s_b] load moved off
        gap = (lm[:, None] - lp)[:, :, None, None]
        new = np.maximum(lm[:, None, None, None] - d, lp[:, :, None, None] + d)
        score = np.where((d > 0) & (d < gap), new, np.inf).reshape(A, -1)
        best = np.argmin(score, axis=1)
        improved = score[a_idx, best] < lm * (1 - 1e-12)
        if not improved.any():
            break
        sel = np.nonzero(improved)[0]
        rows = active[sel]
        b = best[sel]
        r = part[sel, b // (s * s)]
        ia = (b // s) % s
        ib = b % s
        mr = m[sel]
        va, vb = load[rows, mr, ia].copy(), load[rows, r, ib].copy()
        xa, xb = ids[rows, mr, ia].copy(), ids[rows, r, ib].copy()
        load[rows, mr, ia], load[rows, r, ib] = vb, va
        ids[rows, mr, ia], ids[rows, r, ib] = xb, xa
        rank_sum[rows, mr] += vb - va
        rank_sum[rows, r] += va - vb
        active = rows


def _assign_groups(gw: np.ndarray, N: int, cap: int) -> np.ndarray:
    """Groups to nodes by load, *not* with an equal count per node: each group (heaviest first) goes
    to the lightest node with room (at most ``cap`` groups), keeping one group for every still-empty
    node. A node holding a hot group thus takes fewer groups and keeps more of its fixed P/N slots for
    replicas. ``gw`` [L, K] group loads. Returns node of each group, int64 [L, K]."""
    L, K = gw.shape
    order = np.argsort(-gw, axis=1, kind="stable")
    rows = np.arange(L)
    node_w = np.zeros((L, N))
    node_n = np.zeros((L, N), dtype=np.int64)
    node_of = np.empty((L, K), dtype=np.int64)
    for j in range(K):
        g = order[:, j]
        empty = node_n == 0
        must = (K - j) <= empty.sum(1)
        allowed = (node_n < cap) & (~must[:, None] | empty)
        p = np.argmin(np.where(allowed, node_w, np.inf), axis=1)
        node_of[rows, g] = p
        node_w[rows, p] += gw[rows, g]
        node_n[rows, p] += 1
    return node_of


def _node_rows(w: np.ndarray, node_of: np.ndarray, N: int, gs: int, cap: int):
    """Per-node expert lists: returns (ids [L*N, cap*gs] global expert ids, padded with 0; present
    mask; loads)."""
    L, K = node_of.shape
    # sort groups by node (stable) and lay each node's groups out in its row
    order = np.argsort(node_of, axis=1, kind="stable")                  # groups grouped by node
    node_sorted = np.take_along_axis(node_of, order, 1)
    cnt = np.zeros((L, N), dtype=np.int64)
    np.add.at(cnt, (np.repeat(np.arange(L), K), node_of.ravel()), 1)
    start = np.cumsum(cnt, axis=1) - cnt
    pos_in_node = np.arange(K)[None, :] - np.take_along_axis(start, node_sorted, 1)
    gid = np.full((L, N, cap), -1, dtype=np.int64)
    gid[np.repeat(np.arange(L), K), node_sorted.ravel(), pos_in_node.ravel()] = order.ravel()
    present_g = gid >= 0
    ids = (np.where(present_g, gid, 0)[..., None] * gs + np.arange(gs)).reshape(L * N, cap * gs)
    present = np.repeat(present_g, gs, axis=2).reshape(L * N, cap * gs)
    wl = np.take_along_axis(np.repeat(w, N, axis=0), ids, 1)
    return ids, present, np.where(present, wl, 0.0)


def _pack_candidates(w_rows: np.ndarray, count_sets: list[np.ndarray], G_row: int,
                     present: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each count matrix [R, E] (rows sum to S), pack replicas (load split evenly) on G_row ranks
    with LPT (all candidates in one vectorized loop). Returns per candidate (local ids [R, S] in slot
    order, per-slot load [R, S])."""
    R, E = w_rows.shape
    items = [_items_from_counts(c) for c in count_sets]
    loads = [np.take_along_axis(w_rows / np.maximum(c, 1), it, 1) for c, it in zip(count_sets, items)]
    S = items[0].shape[1]
    spg = S // G_row
    pi, rip = _lpt_pack(np.concatenate(loads).astype(np.float32), G_row)
    out = []
    for k, (it, ld) in enumerate(zip(items, loads)):
        sl = slice(k * R, (k + 1) * R)
        out.append((_place(pi[sl], rip[sl], it, spg), _place(pi[sl], rip[sl], ld, spg)))
    return out


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def balance(loads: Any, slots: int, ranks: int, *, nodes: int = 1, groups: int = 1) -> ExpertLayout:
    """Choose replica counts and place ``slots`` physical expert slots on ``ranks`` EP ranks, per layer.

    ``loads`` [L, E] (or [E]) non-negative token counts. Slot p lives on rank p // (slots/ranks).
    With ``nodes > 1`` and ``groups % nodes == 0`` the node-local (group-limited routing) policy is
    used: each of the ``groups`` contiguous expert groups and all its replicas stay on one node; else
    the global policy. The result's balancedness is never worse than DeepSeek EPLB's on the same input.
    """
    t0 = time.perf_counter()
    w = _check_loads(loads)
    L, E = w.shape
    P, G, N, K = slots, ranks, nodes, groups
    _check_layout_args(E, P, G, N, K)
    hier = N > 1 and K % N == 0
    policy = "hierarchical" if hier else "global"
    spg = P // G
    w32 = w.astype(np.float32)

    cands: list[np.ndarray] = []       # layouts [L, P]
    eplb = None
    if not hier:
        if spg == 1:
            # One slot per rank: the max per-replica load is the objective and water-filling attains
            # its optimum exactly, so EPLB (greedy, same optimum) cannot be better; no packing needed.
            c = _waterfill(w, P)
            cands.append(_items_from_counts(c))
        else:
            eplb = _eplb_layout(w32, P, K, N, G)
            c_greedy = _replica_counts(eplb, E)
            c_round = _round_to_ranks(w, c_greedy, G, np.ones_like(c_greedy, dtype=bool))
            cands.append(eplb)
            if not np.array_equal(c_round, c_greedy):
                for ids, _ in _pack_candidates(w, [c_round], G):
                    cands.append(ids)
    else:
        gs = E // K
        S_node = P // N
        G_node = G // N
        eplb = _eplb_layout(w32, P, K, N, G)
        cands.append(eplb)
        cap = S_node // gs
        gw = w.reshape(L, K, gs).sum(-1)
        # EPLB's equal-count group placement (refilled by our replication) and our load-driven one
        eplb_node = np.empty((L, K), dtype=np.int64)
        np.put_along_axis(eplb_node, eplb // gs,
                          np.broadcast_to(np.arange(P, dtype=np.int64) // S_node, (L, P)), 1)
        node_sets = [_assign_groups(gw, N, cap), eplb_node]
        for node_of in node_sets:
            ids, present, wn = _node_rows(w, node_of, N, gs, cap)
            c = _waterfill(wn, S_node, present)
            sets = [c]
            if spg > 1:
                cr = _round_to_ranks(wn, c, G_node, present)
                if not np.array_equal(cr, c):
                    sets.append(cr)
            for loc, _ in _pack_candidates(wn, sets, G_node, present):
                cands.append(np.take_along_axis(ids, loc, 1).reshape(L, P))

    # Local search on every candidate (rows = layer x node; swaps never cross a node boundary).
    stack = np.stack(cands)                                   # [C, L, P]
    if stack.shape[0] > 2 and spg > 1:
        # Local search is the expensive part: run it on the EPLB candidate and on the best of ours.
        pre = _balancedness_from_rank_load(
            _rank_load(stack[1:].reshape(-1, P), np.tile(w, (stack.shape[0] - 1, 1)),
                       _replica_counts(stack[1:].reshape(-1, P), E), G)).reshape(-1, L)
        pick = np.argmin(pre, axis=0) + 1
        stack = np.stack([stack[0], stack[pick, np.arange(L)]])
    C = stack.shape[0]
    flat = stack.reshape(C * L, P)
    wt = np.tile(w, (C, 1))
    cnt = _replica_counts(flat, E)
    if spg > 1:
        rows_n = N if hier else 1
        item_load = np.take_along_axis(wt / np.maximum(cnt, 1), flat, 1)
        ld = item_load.reshape(C * L * rows_n, G // rows_n, spg)
        ids = flat.reshape(C * L * rows_n, G // rows_n, spg).copy()
        _swap_search(ld, ids)
        flat = ids.reshape(C * L, P)
    rl = _rank_load(flat, wt, cnt, G)
    bal = _balancedness_from_rank_load(rl).reshape(C, L)
    best = np.argmin(bal, axis=0)                             # first (EPLB-based) wins ties
    lay = flat.reshape(C, L, P)[best, np.arange(L)]
    counts = cnt.reshape(C, L, E)[best, np.arange(L)]
    rank_load = rl.reshape(C, L, G)[best, np.arange(L)]
    eplb_bal = None
    if eplb is not None:
        eplb_bal = _balancedness_from_rank_load(_rank_load(eplb, w, _replica_counts(eplb, E), G))
    seconds = time.perf_counter() - t0
    return ExpertLayout(phy2log=lay.astype(np.int64), replicas=counts.astype(np.int64),
                        rank_load=rank_load, balancedness=bal[best, np.arange(L)], ranks=G, nodes=N,
                        groups=K, policy=policy, seconds=seconds, eplb_balancedness=eplb_bal)


def _zipf_ratio(a: np.ndarray, E: int) -> np.ndarray:
    k = np.arange(1, E + 1, dtype=np.float64)
    return E / (k[None, :] ** -np.atleast_1d(a)[:, None]).sum(1)


def synthetic_loads(layers: int, experts: int, *, hot_ratio: float = 30.0, seed: int = 0,
                    kind: str = "zipf", tokens: int = 1 << 20) -> np.ndarray:
    """Realistic per-layer expert loads (token counts, int64 [layers, experts]) when no measured
    statistics exist. The skew parameter is calibrated so the hottest expert of each layer sees about
    ``hot_ratio`` x the mean load (reference §F: ~30x for a DeepSeek-R1 layer on ShareGPT).

    ``kind="zipf"``: load ∝ rank^-a with the ranking shuffled per layer; ``"lognormal"``: load ∝
    exp(sigma z), z standard normal per layer, sigma calibrated per layer. ``tokens`` routed
    token-expert assignments per layer are drawn multinomially from those shares.
    """
    if kind not in ("zipf", "lognormal"):
        raise XdsError(f"unknown kind {kind!r}; use 'zipf' or 'lognormal'", where="kind")
    if layers < 1 or experts < 1:
        raise XdsError("layers and experts must be >= 1", where="synthetic_loads")
    if not (1.0 <= hot_ratio < experts) and not (experts == 1 and hot_ratio == 1.0):
        raise XdsError(f"hot_ratio {hot_ratio} must be in [1, experts={experts})", where="hot_ratio")
    if tokens < 1:
        raise XdsError("tokens must be >= 1", where="tokens")
    rng = np.random.default_rng(seed)
    if kind == "zipf":
        lo, hi = 0.0, 64.0
        for _ in range(80):  # ratio(a) is increasing in a: from 1 (a=0) to E (a->inf)
            mid = 0.5 * (lo + hi)
            if _zipf_ratio(np.array(mid), experts)[0] < hot_ratio:
                lo = mid
            else:
                hi = mid
        share = np.arange(1, experts + 1, dtype=np.float64) ** -lo
        share /= share.sum()
        perm = np.argsort(rng.random((layers, experts)), axis=1)
        p = share[perm]
    else:
        z = rng.standard_normal((layers, experts))
        dz = z - z.max(1, keepdims=True)
        lo, hi = np.zeros(layers), np.full(layers, 64.0)
        for _ in range(80):  # max/mean of exp(sigma z) is increasing in sigma
            mid = 0.5 * (lo + hi)
            ratio = 1.0 / np.exp(mid[:, None] * dz).mean(1)
            up = ratio < hot_ratio
            lo = np.where(up, mid, lo)
            hi = np.where(up, hi, mid)
        p = np.exp(lo[:, None] * dz)
        p /= p.sum(1, keepdims=True)
    return rng.multinomial(int(tokens), p).astype(np.int64)


@functools.lru_cache(maxsize=256)
def _expected_cached(experts: int, slots: int, ranks: int, hot_ratio: float, layers: int, seed: int) -> float:
    w = synthetic_loads(layers, experts, hot_ratio=hot_ratio, seed=seed)
    return float(balance(w, slots, ranks).balancedness.mean())


def expected_balancedness(experts: int, slots: int, ranks: int, *, hot_ratio: float = 30.0,
                          layers: int = 8, seed: int = 0) -> float:
    """Mean balancedness xds achieves on synthetic realistic (Zipf, hottest expert ``hot_ratio`` x
    mean) loads for this layout; with ``slots == experts`` it is the imbalance without redundancy.
    Cached per argument tuple."""
    return _expected_cached(int(experts), int(slots), int(ranks), float(hot_ratio), int(layers), int(seed))


def run_experts(loads: str | Path | np.ndarray, slots: int | None, ranks: int, *, nodes: int = 1,
                groups: int = 1, evaluate: str | Path | None = None,
                layout: str | Path | None = None, include_layout: bool = True) -> dict[str, Any]:
    """The ``xds experts`` JSON document: balance ``loads`` (or score a saved ``layout`` on them), and
    with ``evaluate`` also score the layout on another load matrix (out-of-sample)."""
    w = load_loads(loads) if isinstance(loads, (str, Path)) else _check_loads(loads)
    L, E = w.shape
    if layout is not None:
        t0 = time.perf_counter()
        ph = load_layout(layout)
        if slots is not None and slots != ph.shape[1]:
            raise XdsError(f"--slots {slots} but the layout has {ph.shape[1]} slots", file="--slots")
        P = ph.shape[1]
        _check_layout_args(E, P, ranks, nodes, groups)
        try:
            b = balancedness(ph, w, ranks)
        except XdsError as exc:
            raise exc.at(file=str(layout)) from None
        phb = np.broadcast_to(ph, (b.shape[0], P))
        counts = _replica_counts(np.ascontiguousarray(phb), E)
        doc: dict[str, Any] = {
            "policy": "given", "layers": int(b.shape[0]), "experts": E, "slots": P, "ranks": ranks,
            "slots_per_rank": P // ranks, "nodes": nodes, "groups": groups,
            "balancedness": _stats(b), "seconds": time.perf_counter() - t0,
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
        doc["balancedness_out_of_sample"] = {"file": str(evaluate), **_stats(b2)}
    # keep the contract's field order readable: layout arrays last
    order = [k for k in doc if k not in ("phy2log", "replicas", "seconds")] + ["seconds", "phy2log", "replicas"]
    return {k: doc[k] for k in order if k in doc and doc[k] is not None}
