"""Expert-parallel load balancing: choose redundant experts and place slots on EP ranks.

Input is a per-layer load matrix (token counts routed to each logical expert, [layers, experts]);
output is a layout ``phy2log`` [layers, P]: physical slot ``p`` holds logical expert ``phy2log[l, p]``
and lives on rank ``p // (P / G)``. An expert with ``c`` replicas has its load split evenly over them
(that is how xDeepServe's gather-based map spreads tokens, reference §F). The quality measure is
*balancedness* = max rank load / mean rank load (>= 1, 1 is perfect) per layer: every rank waits for
the slowest at each dispatch/combine, so the MoE stage runs at the max.

The anchor is DeepSeek's open-source EPLB (greedy replication + balanced packing, a hierarchical
node-local policy and a global one). xds keeps EPLB's layout as one candidate, computed bit-exactly but
without EPLB's Python loops: greedy replication in closed form (the picked replicas are the largest
``w / k`` keys, one sort for all layers) and balanced packing a run of items at a time for all layers
at once. It adds its own candidates, improves them with a local search that only ever lowers a layer's
max rank load, and keeps the best per layer, so the result is never worse than EPLB's. Where EPLB is
weak xds does better:

- hierarchical policy: EPLB packs the same number of groups on every node, so every node gets the same
  number of spare slots however hot it is. xds packs groups by load with a per-node capacity instead,
  so a node holding a hot group holds fewer groups and uses its (fixed) P/N slots for more replicas;
- heavy skew with several slots per rank: greedy replication can give a hot expert G+1 replicas on G
  ranks, stacking two on one rank; xds also tries replica counts rounded to whole multiples of the
  rank count and lets the packing/local search pick;
- after packing, pairwise swaps between the most-loaded ranks and the least-loaded ones (several
  disjoint pairs per step, only in the node holding the layer's max, vectorized over layers) close
  the gap LPT leaves.

Node locality (group-limited routing): with ``nodes > 1`` and ``groups % nodes == 0`` every expert
group and all of its replicas stay on one node (slots p of node n: ``n * P/N <= p < (n+1) * P/N``).
Otherwise the global policy is used (as EPLB does). Units: loads are token counts; times in seconds.
"""

from __future__ import annotations

import csv
import functools
import heapq
import io
import json
import time
from array import array                # float32 rounding of Python floats in _lpt_tail
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import XdsError

MAX_LOADS_BYTES = 256 * 1024 * 1024
#: Largest token total per layer: float32 sums of loads (as EPLB packs them) must stay finite.
MAX_LAYER_LOAD = 1e38
#: Index of an int64's high 32-bit half in its int32/float32 view (the packer's weight lives there).
_HIGH_HALF = 1 if np.little_endian else 0
#: Local-search iteration cap (each iteration moves one swap per still-improving row).
MAX_SWAP_ITERS = 256
#: Node-local policy: a node row gets rounded replica counts only when its lower bound is within
#: this fraction of its layer's (rows far below the layer's max cannot decide it).
ROUND_ROW_SLACK = 0.05


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
    if arr.min() >= 0 and arr.max() < np.inf:       # (NaN fails the first test)
        arr += 0.0                                  # -0.0 -> +0.0: loads print and sum as zeros
        return arr
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


def _check_float32_sums(w: np.ndarray, file: str | None = "--loads") -> None:
    """The balancer sums loads in float32, as EPLB does: refuse layers whose total would overflow."""
    total = w.sum(1)
    if (total > MAX_LAYER_LOAD).any():
        l = int(np.argmax(total > MAX_LAYER_LOAD))
        raise XdsError(f"loads sum to {total[l]:.3g} tokens; at most {MAX_LAYER_LOAD:g} per layer is "
                       f"supported (the balancer sums in float32, as EPLB does)",
                       file=file, where=f"layer {l}")


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


SYNTHETIC_SPEC = "synthetic:LAYERSxEXPERTS[:HOT_RATIO[:SEED]]"


def _synthetic_spec(text: str, label: str) -> np.ndarray:
    """``synthetic:58x256:30:1`` → :func:`synthetic_loads` (58 layers, 256 experts, hottest 30×, seed 1)."""
    parts = text.split(":")[1:]
    try:
        layers, experts = (int(x) for x in parts[0].lower().split("x"))
        hot = float(parts[1]) if len(parts) > 1 and parts[1] else 30.0
        seed = int(parts[2]) if len(parts) > 2 else 0
        if len(parts) > 3:
            raise ValueError
    except (ValueError, IndexError):
        raise XdsError(f"cannot read {text!r}; expected {SYNTHETIC_SPEC}, e.g. synthetic:58x256:30",
                       file=label) from None
    if not (1 <= layers <= 1000 and 2 <= experts <= 100_000):
        raise XdsError(f"{text!r}: layers must be 1..1000 and experts 2..100000", file=label)
    try:
        return synthetic_loads(layers, experts, hot_ratio=hot, seed=seed).astype(np.float64)
    except XdsError as exc:
        raise XdsError(f"{text!r}: {exc.message}", file=label) from None


def load_loads(path: str | Path, *, label: str = "--loads") -> np.ndarray:
    """Read a load matrix from ``.npy`` or ``.csv`` (one layer per line, comma-separated token counts;
    an optional non-numeric header line and ``#`` comments are skipped), or generate a realistic one
    with ``synthetic:LAYERSxEXPERTS[:HOT_RATIO[:SEED]]``. Returns float64 [L, E]."""
    if isinstance(path, str) and path.startswith("synthetic:"):
        return _synthetic_spec(path, label)
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
    for lineno, rec in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
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
    mean = rank_load.sum(axis=1) / rank_load.shape[1]          # == rank_load.mean(axis=1)
    pos = mean > 0
    if pos.all():                                              # (the usual case: no masking)
        return rank_load.max(axis=1) / mean
    return np.where(pos, rank_load.max(axis=1) / np.where(pos, mean, 1.0), 1.0)


def _slot_major_sums(lT: np.ndarray) -> np.ndarray:
    """Per-rank sums of a slot-major array [s, ranks], bit-identical to ``lT.T.sum(axis=1)`` (what
    :func:`balancedness` computes per rank): NumPy's pairwise order (8 running sums for 8 <= s <=
    128, sequential below), done as a few whole-row adds instead of a transposed copy."""
    s = lT.shape[0]
    if s > 128:
        return np.ascontiguousarray(lT.T).sum(axis=1)
    if s < 8:
        res = lT[0].copy()
        for i in range(1, s):
            res += lT[i]
        return res
    stop = s - s % 8
    r = lT[:8] + lT[8:16] if stop > 8 else lT[:8]            # (a view is not written to)
    for i in range(16, stop, 8):
        r += lT[i:i + 8]
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for i in range(stop, s):
        res += lT[i]
    return res


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
# Fast primitives shared by the EPLB baseline and xds's candidates
# --------------------------------------------------------------------------------------------------
def _argsort_desc(weight: np.ndarray) -> np.ndarray:
    """``np.argsort(-weight, axis=1, kind="stable")`` for non-negative rows: descending weight, lower
    position first on ties. For float32 it sorts one int64 key per item (the weight's bit pattern,
    which orders like the value for non-negative floats, above the position), about 10x faster than a
    stable argsort. Returns int64 [R, n]."""
    R, n = weight.shape
    if weight.dtype != np.float32 or n >= (1 << 31):
        return np.argsort(-weight, axis=1, kind="stable")
    bits = (weight + np.float32(0.0)).view(np.int32).astype(np.int64)   # + 0 turns -0.0 into +0.0
    key = ((np.int64(0x7FFFFFFF) - bits) << 32) | np.arange(n, dtype=np.int64)
    key.sort(axis=1)
    return key & np.int64(0xFFFFFFFF)


def _lpt_pack(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced packing, exactly EPLB's: items in descending weight order (stable), each to the
    lightest pack that is not full (lowest index on ties), ``n / num_packs`` items per pack, pack
    weights accumulated in item order in ``weight``'s dtype.

    Instead of one Python step per item, each step places a whole *run* of items per row at once: with
    the open packs sorted by (weight, index), the next items go to the 1st, 2nd, ... lightest pack for
    as long as no pack that took an item earlier in the run has become lighter than the next one
    (checked with a prefix minimum; ties end the run, so tie-breaking stays exact). A run is never
    empty, so this is the same sequence of decisions as the item loop, in far fewer steps (9-13
    instead of 72-288 on the benchmark's layers), all rows (layers) at a time. Returns
    ``pack_index`` and ``rank_in_pack`` int64 [R, n]."""
    R, n = weight.shape
    G = num_packs
    per = n // G
    if per == 1:
        return (np.broadcast_to(np.arange(n, dtype=np.int64), (R, n)).copy(),
                np.zeros((R, n), dtype=np.int64))
    if per == 2:
        order = _argsort_desc(weight)
        head = np.take_along_axis(weight, order[:, :G], 1)
        if (head[:, -1] > 0).all():
            return _lpt_pack_two(order, head)
    # the keyed packer's per-pack state is the weight's bits over ``pack << count bits | count`` in
    # 32 bits, and its first sort keys an item's position in 32 bits
    if (weight.dtype == np.float32 and n < 2**31
            and max(int(G - 1).bit_length(), 1) + int(per).bit_length() <= 32):
        return _lpt_pack_keyed(weight, G)
    order = _argsort_desc(weight)
    width = n + G                                            # padded: a run may look past the end
    sw = np.zeros((R, width), dtype=weight.dtype)
    sw[:, :n] = np.take_along_axis(weight, order, 1)
    sw = sw.ravel()
    # Flat state and flat fancy indices: cheaper than take_along_axis / 2-D indexing per step.
    W = np.zeros(R * G, dtype=weight.dtype)
    cnt = np.zeros(R * G, dtype=np.int64)
    chosen = np.empty(R * width, dtype=np.int64)             # in sorted-item order
    rip = np.empty(R * width, dtype=np.int64)
    ptr = np.zeros(R, dtype=np.int64)                         # next unplaced item per row
    inf = np.asarray(np.inf, dtype=weight.dtype)
    zero = np.asarray(0, dtype=weight.dtype)
    ar = np.arange(G, dtype=np.int64)
    a = np.arange(R, dtype=np.int64)
    while a.size:
        fb = (a * G)[:, None]
        key = W[fb + ar]
        key[cnt[fb + ar] >= per] = inf
        pi = np.argsort(key, axis=1, kind="stable")          # open packs by (weight, index)
        fi = fb + pi
        Wp = W[fi]
        cp = cnt[fi]
        Ws = np.take_along_axis(key, pi, 1)
        cols = ptr[a][:, None] + ar
        pos = (a * width)[:, None] + cols
        x = sw[pos]
        # weight of the i-th pack after taking item i; a pack that fills up stops competing
        upd = np.where(cp + 1 >= per, inf, Wp + x)
        M = np.minimum.accumulate(upd, axis=1)
        ok = np.empty(Ws.shape, dtype=bool)
        ok[:, 0] = True
        np.less(Ws[:, 1:], M[:, :-1], out=ok[:, 1:])
        ok &= cols < n
        valid = np.logical_and.accumulate(ok, axis=1)
        W[fi] = Wp + np.where(valid, x, zero)
        cnt[fi] = cp + valid
        # items past the run are written too and overwritten when they are placed later
        chosen[pos] = pi
        rip[pos] = cp
        ptr[a] += valid.sum(1)
        a = a[ptr[a] < n]
    chosen = chosen.reshape(R, width)
    rip = rip.reshape(R, width)
    pack_index = np.empty((R, n), dtype=np.int64)
    rank_in_pack = np.empty((R, n), dtype=np.int64)
    np.put_along_axis(pack_index, order, chosen[:, :n], 1)
    np.put_along_axis(rank_in_pack, order, rip[:, :n], 1)
    return pack_index, rank_in_pack


def _lpt_pack_two(order: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_lpt_pack` with two items per pack, in closed form. ``order`` [R, 2G] is the items in
    packing order, ``head`` [R, G] the weights of the first G, all positive. Those G open packs 0..G-1
    (every pack is empty, so the lowest index wins). A pack that takes a second item is full, so the
    open packs' weights no longer change: the last G items go to the packs in ascending (weight,
    index) order, a stable sort of ``head``."""
    R, G = head.shape
    chosen = np.empty((R, 2 * G), dtype=np.int64)
    chosen[:, :G] = np.arange(G, dtype=np.int64)
    chosen[:, G:] = np.argsort(head, axis=1, kind="stable")
    flat = (order + (np.arange(R, dtype=np.int64) * (2 * G))[:, None]).ravel()
    pack_index = np.empty(R * 2 * G, dtype=np.int64)
    pack_index[flat] = chosen.ravel()
    rank_in_pack = np.empty(R * 2 * G, dtype=np.int64)
    rank_in_pack[flat] = np.tile(np.repeat(np.array([0, 1], dtype=np.int64), G), R)
    return pack_index.reshape(R, 2 * G), rank_in_pack.reshape(R, 2 * G)


def _lpt_pack_keyed(weight: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_lpt_pack` for float32 weights, same decisions in fewer and cheaper NumPy calls per run.

    Each pack's whole state is one int64 key ``weight bits << 32 | pack index << cb | item count`` (a
    non-negative float32's bit pattern orders like its value; a full pack's weight is +inf), so one
    sort per run yields the open packs in (weight, index) order together with their weights and
    counts, with no gathers and no scatters of pack state. The weight is the key's high 32-bit half,
    so it is read and written in place through a float32 view (no shifts, casts or key rebuild), and
    the count is bumped by adding to the key.

    The state is pack-major, ``keys[i, r]`` is row r's i-th pack, so every per-run array is [G, rows]
    with long contiguous lines: the prefix minimum that ends a run is log2(G) shifted minimums of
    whole lines (no masks to keep rows apart; ``np.minimum.accumulate`` is several times slower) and
    the run length is a sum over axis 0.

    The rows that run long are those with an item heavier than the mean pack: its pack stays out of
    the runs until the others fill, so they end with one open pack (all remaining items go to it:
    done in closed form after the loop) or a few (runs of one or two items: finished by
    :func:`_lpt_tail` in Python, where an item costs far less than a NumPy step)."""
    R, n = weight.shape
    per = n // G
    cb = int(per).bit_length()                               # count bits, pack index above them
    hi = _HIGH_HALF
    # Items in packing order, as :func:`_argsort_desc` sorts them (descending weight, lower position
    # first on ties), but inline to also read the sorted weights off the keys: ``(+inf bits - weight
    # bits) << 32 | position``. Those are the bit patterns of non-negative, non-NaN float64s, which
    # order like the integers, and NumPy sorts float64 rows ~20% faster than int64 ones.
    # (arithmetic in place: no temporaries of this size)
    inf_bits = 0x7F800000
    key = (weight + np.float32(0.0)).view(np.int32).astype(np.int64)   # + 0 turns -0.0 into +0.0
    np.subtract(inf_bits, key, out=key)
    key <<= 32
    key |= np.arange(n, dtype=np.int64)
    key.view(np.float64).sort(axis=1)
    width = n + G                                            # padded: a run may look past the end
    rowoff = np.arange(R, dtype=np.int64) * width
    halves = key.view(np.int32).reshape(R, n, 2)
    dest = np.add(halves[:, :, 1 - hi], (np.arange(R, dtype=np.int64) * n)[:, None],
                  dtype=np.int64).ravel()                    # flat item of each rank
    sw = np.zeros((R, width), dtype=np.float32)              # weights in packing order, per row
    np.subtract(np.int32(inf_bits), halves[:, :, hi], out=sw.view(np.int32)[:, :n])
    sw = sw.ravel()
    chosen = np.zeros(R * width, dtype=np.uint32)            # pack | count, in sorted-item order
    arc = np.arange(G, dtype=np.int64)[:, None]
    cmask = np.int64((1 << cb) - 1)
    inf = np.float32(np.inf)
    keys = np.repeat(arc << cb, R, axis=1)                   # weight 0, pack i, 0 items
    base = rowoff.copy()                                     # flat position of each row's next item
    # Zero-weight items (sorted last) are placed in closed form after the loop: the loop places the
    # positive ones only (a zero ends every run, so a row with many would take a step per item).
    left = np.full(R, n, dtype=np.int64)
    zrows = np.flatnonzero(sw.reshape(R, width)[:, n - 1] <= 0)   # rows with any zero (sorted last)
    if zrows.size:
        left[zrows] = (sw.reshape(R, width)[zrows, :n] > 0).sum(1)
    head = sw.reshape(R, width)[:, :G]
    if (head[:, G - 1] > 0).all():
        # First run in closed form: all packs are empty (equal, by index), so items 0..G-1 go to
        # packs 0..G-1 when they are positive (the loop would find the same run).
        keys = (head.T.view(np.int32).astype(np.int64, order="C") << 32) | (arc << cb) | 1
        chosen.reshape(R, width)[:, :G] = arc.T << cb
        base += G
        left -= G
    if G == 1:
        left[:] = 0                                          # one pack: the final fill places all
    # Hillis-Steele prefix minimum over the G lines: upd and two ping-pong buffers whose first
    # ``pad`` lines stay +inf, so a shift by k reads +inf above line k instead of needing a fix-up.
    shifts = []
    k = 1
    while k < G - 1:
        shifts.append(k)
        k *= 2
    pad = shifts[-1] if shifts else 0
    # Rows finish at different steps (a row of many small items takes the most): finished rows are
    # dropped from the state once a quarter of them are done, so the last steps work on few rows.
    rows = np.arange(R)
    keys_all, base_all = keys, base
    bufs_all = [np.full((pad + G, R), inf, dtype=np.float32) for _ in range(3)]
    ok_all = np.ones((G, R), dtype=bool)                     # line 0 stays True: a run is never empty
    while left.size:
        A = left.size
        bufs = [b[:, :A] for b in bufs_all]
        ok = ok_all[:, :A]
        keys.sort(axis=0)                                    # open packs by (weight, index)
        Ws = keys.view(np.float32)[:, hi::2]                 # [G, A] views into the keys
        low = keys.astype(np.uint32)                         # pack index | item count (low half)
        if G > 1:
            # A row with one open pack left gives all its remaining items to it (the final fill
            # does that), rather than one item per run: rows with an item heavier than the mean
            # pack would otherwise take a step per item at the end.
            np.copyto(left, 0, where=Ws[1] == inf)
        idx = base + arc                                     # flat positions of the next G items
        upd = bufs[0][pad:]
        np.add(sw[idx], Ws, out=upd)                         # the i-th pack after taking item i
        np.copyto(upd, inf, where=(low & cmask) >= per - 1)  # a pack that fills stops competing
        src = 0                                              # bufs[0] keeps upd
        for k in shifts:
            dst = 2 if src == 1 else 1
            np.minimum(bufs[src][pad:], bufs[src][pad - k:pad + G - k], out=bufs[dst][pad:])
            src = dst
        M = bufs[src][pad:]
        # the run goes on to pack i+1 while it is lighter than every pack updated before it; that
        # holds for a prefix of the packs (Ws rises, M falls), so the run length is a count
        np.less(Ws[1:], M[:-1], out=ok[1:])
        run = ok.sum(0)
        if left.min() >= G:
            valid = ok                                       # a run is a True prefix of ok
        else:
            np.minimum(run, left, out=run)
            valid = arc < run
        # items past the run are written too and overwritten when they are placed later
        chosen[idx] = low
        np.copyto(Ws, upd, where=valid)
        keys += valid
        base += run
        left -= run
        nd = A - np.count_nonzero(left)
        if nd and 4 * nd >= A:
            done = left == 0
            keys_all[:, rows[done]], base_all[rows[done]] = keys[:, done], base[done]
            keep = ~done
            rows, keys, base, left = rows[keep], keys.compress(keep, axis=1), base[keep], left[keep]
            # Rows that run long often end with one or two open packs (an item heavier than the
            # mean pack keeps its pack out of the runs), so runs of one or two items, each a NumPy
            # step of ~60-100 us even on few rows. A heap in Python places an item in ~2 us: switch
            # once the items left are few against two guesses of the NumPy steps still to go, one
            # item a step for the longest row and each row's items over its last run (measured
            # on the benchmark's layers; the second bounds the loss when runs stay long).
            items = left.sum()                               # 0 once every row is done
            if (items and items <= _LPT_TAIL_PER_ITEM * left.max()
                    and items <= _LPT_TAIL_PER_RUN * max(1.0, (left / run[keep]).max())):
                _lpt_tail(keys, base, left, rowoff[rows] + n, sw, chosen, per, cb)
                keys_all[:, rows], base_all[rows] = keys, base + left
                break
    key = np.ascontiguousarray(keys_all.T)
    base = base_all
    zeros = rowoff + n - base                                # items left per row (zeros or one pack)
    if zeros.any():
        # Adding 0 leaves a pack's weight unchanged, so the zeros fill the open packs in (weight,
        # index) order, each up to its capacity: exactly what one-at-a-time placement does. So do
        # the items of a row with one open pack left, whatever their weights.
        key.sort(axis=1)
        cnt = key & cmask
        capk = per - cnt                                     # 0 for full packs (sorted last)
        takek = np.clip(zeros[:, None] - (np.cumsum(capk, axis=1) - capk), 0, capk).ravel()
        tot = int(takek.sum())
        run_start = np.cumsum(takek) - takek
        offs = np.arange(tot, dtype=np.int64) - np.repeat(run_start, takek)
        vals = np.repeat((key & np.int64(0xFFFFFFFF)).ravel(), takek) + offs   # pack | count + k
        zstart = np.cumsum(zeros) - zeros
        pos = np.repeat(base, zeros) + (np.arange(tot, dtype=np.int64) - np.repeat(zstart, zeros))
        chosen[pos] = vals
    # Scatter back to item order with flat indices (put_along_axis is several times slower here),
    # in one 32-bit scatter and then split (a scatter that also converts dtypes is much slower).
    item = np.empty(R * n, dtype=np.uint32)
    item[dest] = chosen.reshape(R, width)[:, :n].ravel()
    item = item.astype(np.int64).reshape(R, n)
    return item >> cb, item & cmask


#: :func:`_lpt_pack_keyed` finishes the rows still running in Python once the items they have left
#: are at most these many times the NumPy steps they would still take, guessed as one item a step
#: for the longest row and as each row's items over its last run (see there).
_LPT_TAIL_PER_ITEM = 12
_LPT_TAIL_PER_RUN = 32


def _lpt_tail(keys: np.ndarray, base: np.ndarray, left: np.ndarray, end: np.ndarray, sw: np.ndarray,
              chosen: np.ndarray, per: int, cb: int) -> None:
    """Finish rows of :func:`_lpt_pack_keyed` with a heap per row: each of a row's ``left`` next
    items (from ``base`` in ``sw``) to the open pack of least (weight, index), as the run loop and
    EPLB do. Writes ``chosen``; for the rows whose zero-weight items (up to ``end``) are still to be
    placed, leaves the final pack keys in ``keys`` [G, rows] (in place), which that placement reads.

    Weights stay float32-exact in Python floats: a float32 sum computed in double and rounded once
    to float32 is the float32 sum (double has more than 2 * 24 + 2 bits), and the rounding is a
    store into a float32 ``array``. Full packs stay in the heap with weight +inf, which no open pack
    reaches, as in the keys."""
    hi = _HIGH_HALF
    weights = keys.view(np.float32)[:, hi::2].T.tolist()     # per row: weight of each pack
    lows = keys.view(np.uint32)[:, 1 - hi::2].T.tolist()     # per row: pack << cb | count
    cmask = (1 << cb) - 1
    inf = float("inf")
    f32 = array("f", [0.0])
    heapreplace = heapq.heapreplace
    pos, vals, heaps, zero_rows = [], [], [], []
    for i, (w_row, l_row, start, m, e) in enumerate(zip(weights, lows, base.tolist(), left.tolist(),
                                                         end.tolist())):
        # (weight, pack << cb | count) orders like (weight, pack): the pack index is unique
        heap = list(zip(w_row, l_row))
        heapq.heapify(heap)
        for x in sw[start:start + m].tolist():
            w, lo = heap[0]
            vals.append(lo)
            lo += 1
            if lo & cmask < per:
                f32[0] = w + x
                heapreplace(heap, (f32[0], lo))
            else:
                heapreplace(heap, (inf, lo))
        pos.extend(range(start, start + m))
        if start + m < e:
            heaps.append(heap)
            zero_rows.append(i)
    chosen[pos] = vals
    if heaps:
        # the final keys: weight bits in the high half, pack | count in the low half
        state = np.array(heaps)                               # [rows, G, 2] float64, exact
        keys[:, zero_rows] = ((state[:, :, 0].astype(np.float32).view(np.int32).astype(np.int64) << 32)
                           | state[:, :, 1].astype(np.int64)).T


def _greedy_loop(w: np.ndarray, S: int, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy replication one replica at a time (EPLB's loop, vectorized over rows): the next replica
    goes to the present expert with the highest per-replica load ``w / count`` in ``w``'s dtype, lowest
    index on ties. Fallback of :func:`_greedy_replicas`. Returns counts [R, E] and picks [R, max extra]
    (-1 padded)."""
    R, E = w.shape
    c = present.astype(np.int64)
    red = S - c.sum(1)
    picks = np.full((R, max(int(red.max()), 0)), -1, dtype=np.int64)
    ar = np.arange(R)
    for i in range(picks.shape[1]):
        live = i < red
        key = np.where(present, w / np.maximum(c, 1).astype(w.dtype), -np.inf)
        idx = key.argmax(axis=1)
        picks[live, i] = idx[live]
        c[ar[live], idx[live]] += 1
    return c, picks


class _Pairs(NamedTuple):
    """Candidate (expert, k) pairs of greedy replication (see :func:`_greedy_candidates`)."""
    red: np.ndarray     #: [R] redundant slots per row
    good: np.ndarray    #: [R] bool, rows whose pairs are complete (the others take the loop)
    hot: np.ndarray     #: [H] flat index (row * E + expert) of each expert with pairs, ascending
    pid: np.ndarray     #: [T] the hot expert (index into ``hot``) of each pair
    key: np.ndarray     #: [T] the pair's key w / k, in w's dtype
    row: np.ndarray     #: [T] the pair's row


def _start_counts(present: np.ndarray | None, R: int, E: int) -> np.ndarray:
    """One replica per present expert, int64 [R, E], C-ordered (counts are updated through
    ``.ravel()``, which must be a view)."""
    return np.ones((R, E), dtype=np.int64) if present is None else present.astype(np.int64, order="C")


def _loop_rows(w: np.ndarray, S: int, present: np.ndarray | None, rows: np.ndarray):
    """:func:`_greedy_loop` on the rows (bool mask) the closed forms leave to it."""
    mask = np.ones((int(rows.sum()), w.shape[1]), dtype=bool) if present is None else present[rows]
    return _greedy_loop(w[rows], S, mask)


def _greedy_candidates(w: np.ndarray, S: int, present: np.ndarray | None):
    """The (expert, k) pairs greedy replication can pick, shared by :func:`_greedy_replicas` and
    :func:`_waterfill`.

    Each present expert starts with one replica; its k-th extra replica is taken at key ``w / k`` (in
    ``w``'s dtype, as EPLB divides). Keys of one expert strictly decrease and the picked maximum never
    increases, so greedy takes exactly the ``S - n_present`` largest (key desc, expert asc) pairs. The
    last picked key is >= a level (the largest of three lower bounds, see below), so only pairs with
    ``k <= w / level`` of experts above the level can be picked: a few more than the redundant slots
    per row. ``present`` None means every expert. Returns :class:`_Pairs`, grouped by row in
    (expert, k) order. Rows not ``good`` (all-zero loads, or loads near the denormal range, where
    the rounding margin cannot be represented) have no pairs and must take :func:`_greedy_loop`."""
    R, E = w.shape
    w64 = np.asarray(w, dtype=np.float64)
    everyone = present is None
    if everyone:
        red = np.full(R, S - E, dtype=np.int64)
        wp = w64
    else:
        red = S - present.sum(1)
        wp = w64 * present                       # loads are finite: cheaper than np.where here
    tot = wp.sum(1)
    # Two lower bounds on the last picked key: the water level total / S, and the red-th largest
    # first-extra key w_e / 1 (the red largest keys include at least that one). The second is far
    # tighter when there are few redundant slots per row, so few candidates are generated. Where
    # rows differ in red, the largest red's bound holds for all (it is the smaller load), so one
    # partition serves every row.
    level = tot / S
    r0 = int(red.max()) if R else 0
    # A third, tighter one: for any set H of experts, sum over H of floor(w / t) exceeds sum over H
    # of (w / t - 1), which is red at t = sum_H w / (red + |H|); so at least red keys are >= t and
    # the last pick is too. With H the experts at or above the first two bounds it brings the
    # candidates down to about red + |H| / 2. Those experts are among the r0 largest, so H is taken
    # from the partition's top r0 (any H is valid; this one misses at most loads equal to the bound).
    if 0 < r0 <= E:
        # (float32 loads partition as float32: same order, same value, half the bytes)
        wpart = w if everyone else (w * present if w.dtype == np.float32 else wp)
        top = np.partition(wpart, E - r0, axis=1)[:, E - r0:]
        level = np.maximum(level, top[:, 0])
        top = top.astype(np.float64)
    else:
        top = wp
    hot = top >= level[:, None]                  # absent experts are 0 in wp
    level = np.maximum(level, (top * hot).sum(1) / np.maximum(red + hot.sum(1), 1))
    level *= 1 - 1e-6                            # margin covers float32 rounding of the keys
    # Keys near the denormal range lose relative precision, and the margin above cannot be
    # represented there (float32 below ~2e-31, float64 below ~2e-292): such rows take the loop.
    dt_min = (np.finfo(np.float32).tiny * 2.0 ** 24 if w.dtype == np.float32
              else np.finfo(np.float64).tiny * 2.0 ** 53)
    good = level > dt_min
    safe = np.where(good, level, 1.0)[:, None]
    hot = wp >= safe                                      # safe > 0: absent experts never pass
    hot = (hot if good.all() else hot & good[:, None]).ravel().nonzero()[0]
    hrow = hot // E
    # k-th extra replica's key is w / k: only k <= w / level can reach the last pick
    kc = np.minimum(np.floor(w64.ravel()[hot] / safe.ravel()[hrow]), red[hrow]).astype(np.int64)
    total = int(kc.sum())
    pid = np.repeat(np.arange(hot.size, dtype=np.int64), kc)
    k = np.arange(1, total + 1, dtype=np.int64) - (np.cumsum(kc) - kc)[pid]
    key = w.ravel()[hot[pid]] / k.astype(w.dtype)           # in w's dtype, as the loop divides
    return _Pairs(red, good, hot, pid, key, hrow[pid])


def _greedy_replicas(w: np.ndarray, S: int, present: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy replication (EPLB's ``replicate_experts``: S - E times, one more replica for the expert
    with the highest per-replica load, lowest index on ties) in closed form instead of S - E steps:
    the candidate pairs of :func:`_greedy_candidates` in one int64 sort for all rows (float32; other
    dtypes sort their own keys), the first ``red`` of each row picked. Returns counts int64 [R, E] (0
    for absent experts) and picks int64 [R, max extra] (-1 padded) in greedy order; bit-identical to
    the loop."""
    R, E = w.shape
    red, good, hot, pid, key, row = _greedy_candidates(w, S, present)
    r0 = int(red.max()) if R else 0
    total = pid.size
    counts = _start_counts(present, R, E)
    picks = np.full((R, max(r0, 0)), -1, dtype=np.int64)
    # a pair's hot expert counted within its row (ascending with the expert, < E)
    per_hot = np.bincount(hot // E, minlength=R)
    hstart = np.cumsum(per_hot) - per_hot
    eb = max(int(per_hot.max(initial=1) - 1).bit_length(), 1)
    rb = max(int(R - 1).bit_length(), 1)
    if total and rb + 31 + eb <= 63:
        # one int64 per pair: row, then key descending (float32 bit pattern), then its hot expert
        # within the row (so ties break by expert, as greedy does)
        comp = ((row << (31 + eb)) | ((np.int64(0x7FFFFFFF) - key.astype(np.float32).view(np.int32)
                                       .astype(np.int64)) << eb) | (pid - hstart[row]))
        if w.dtype == np.float32:
            comp.sort()
        else:
            # Rounding to float32 is monotonic, so keys with different float32 values are in their
            # exact order; only equal float32 keys (equal loads, or closer than a float32 ulp) need
            # a look in w's precision. Rows where that order is wrong take the loop.
            o = np.argsort(comp)
            comp = comp[o]
            tied = (comp[1:] >> eb) == (comp[:-1] >> eb)           # same row and float32 key
            if tied.any():
                ks, ee = key[o], comp & np.int64((1 << eb) - 1)
                wrong = tied & ((ks[1:] > ks[:-1]) | ((ks[1:] == ks[:-1]) & (ee[1:] < ee[:-1])))
                good[(comp[1:] >> (31 + eb))[wrong]] = False
        rs = comp >> (31 + eb)
        ps = (comp & np.int64((1 << eb) - 1)) + hstart[rs]
        per_row = np.bincount(rs, minlength=R)
        pos = np.arange(total, dtype=np.int64) - (np.cumsum(per_row) - per_row)[rs]
        take = pos < red[rs]
        rt, pt = rs[take], ps[take]
        counts.ravel()[hot] += np.bincount(pt, minlength=hot.size)
        picks.ravel()[rt * picks.shape[1] + pos[take]] = hot[pt] - rt * E
        good &= per_row >= red
    else:
        good &= red <= 0
    bad = ~good & (red > 0)
    if bad.any():
        c2, p2 = _loop_rows(w, S, present, bad)
        counts[bad] = c2
        picks[bad, :p2.shape[1]] = p2
    return counts, picks


# --------------------------------------------------------------------------------------------------
# EPLB baseline (bit-exact with DeepSeek's algorithm, vectorized over layers)
# --------------------------------------------------------------------------------------------------
class _EplbPrep(NamedTuple):
    """EPLB up to its last packing (see :func:`_eplb_prepare`)."""
    mlog2log: np.ndarray    #: [L, E] global expert at each node-major position
    pflat: np.ndarray       #: [L*N, P/N] each physical item's node-major expert, flat (see there)
    items: np.ndarray       #: [L*N, P/N] float32 per-replica load of each physical item
    packs: int              #: ranks per node (G / N): the packs of the last packing
    counts: np.ndarray      #: [L*N, E/N] replica count of each node-major expert
    mg: np.ndarray          #: [L*K] global group row (layer * K + group) at each node-major position


def _eplb_prepare(w32: np.ndarray, P: int, K: int, N: int, G: int) -> _EplbPrep:
    """EPLB up to its last packing: group packing onto nodes and greedy replication per node.
    ``pflat`` holds each physical item's node-major expert as a flat index into the [L*N, E/N] node
    rows (the node's experts in order, then the redundant picks), which is also its flat index into
    ``mlog2log``; with ``mg``, node rows of any [L, E] array are one row gather of its [L*K, E/K]
    view. Built with flat indices; the values are EPLB's exactly."""
    if K % N:
        K, N = 1, 1
    L, E = w32.shape
    gs = E // K
    gpn = K // N
    En = E // N
    R = L * N
    gpi, grp = _lpt_pack(w32.reshape(L, K, gs).sum(-1), N)
    lk = (np.arange(L, dtype=np.int64) * K)[:, None]
    mg = np.empty(L * K, dtype=np.int64)
    mg[(gpi * gpn + grp + lk).ravel()] = np.arange(L * K, dtype=np.int64)
    # group rows are gs contiguous loads: one row gather instead of one per expert
    mlog2log = np.arange(E, dtype=np.int64).reshape(K, gs).take((mg.reshape(L, K) - lk).ravel(), 0)
    tokens_per_mlog = w32.reshape(L * K, gs).take(mg, 0).reshape(R, En)
    mlogcnt, picks = _greedy_replicas(tokens_per_mlog, P // N)
    rows = (np.arange(R, dtype=np.int64) * En)[:, None]
    pflat = np.empty((R, P // N), dtype=np.int64)
    pflat[:, :En] = rows + np.arange(En, dtype=np.int64)
    np.add(picks, rows, out=pflat[:, En:])
    per_rep = tokens_per_mlog / mlogcnt.astype(np.float32)
    return _EplbPrep(mlog2log.reshape(L, E), pflat, per_rep.ravel().take(pflat), G // N, mlogcnt, mg)


def _eplb_finish(prep: _EplbPrep, pi: np.ndarray, rip: np.ndarray, P: int, G: int) -> np.ndarray:
    """EPLB's ``phy2log`` [L, P] from :func:`_eplb_prepare`'s output and the packing of its replicas."""
    mlog2log, pflat = prep.mlog2log, prep.pflat
    L = mlog2log.shape[0]
    # each item to its slot in its node's row (pack * slots per pack + rank in pack); pflat already
    # indexes mlog2log with the node's offset
    slot = np.empty_like(pflat)
    np.put_along_axis(slot, pi * (P // G) + rip, pflat, 1)
    return mlog2log.ravel().take(slot).reshape(L, P)


def _eplb_layout(w32: np.ndarray, P: int, K: int, N: int, G: int) -> np.ndarray:
    """DeepSeek EPLB's ``phy2log`` [L, P] (hierarchical when K % N == 0, else global); identical to
    ``rebalance_experts`` of the reference implementation, computed without its per-layer/per-item
    Python loops (closed-form replication, run-at-a-time packing)."""
    prep = _eplb_prepare(w32, P, K, N, G)
    pi, rip = _lpt_pack(prep.items, prep.packs)
    return _eplb_finish(prep, pi, rip, P, G)


# --------------------------------------------------------------------------------------------------
# xds candidates
# --------------------------------------------------------------------------------------------------
def _waterfill(w: np.ndarray, S: int, present: np.ndarray | None = None) -> np.ndarray:
    """Replica counts minimising the max per-replica load w/c with sum(c) == S, c >= 1 for present
    experts and 0 for absent ones: greedy replication is optimal for that (water-filling). These are
    exactly :func:`_greedy_replicas`'s counts, without the pick order, so instead of sorting the
    candidate pairs it finds each row's ``red``-th largest key with one partition and takes the keys
    above it plus, of the keys equal to it, the lowest experts. ``w`` float [R, E]. Returns int64
    [R, E]."""
    R, E = w.shape
    red, good, hot, pid, key, row = _greedy_candidates(w, S, present)
    counts = _start_counts(present, R, E)
    per_row = np.bincount(row, minlength=R)
    good &= per_row >= red
    if pid.size:
        # Row r's red-th largest key is its (per_row - red)-th smallest (0-based). Each row is
        # shifted right by D - that excess (D its largest value) behind -inf entries, so it sits at
        # column D of every row: one partition for all rows. (Rows not good, with no pairs or
        # fewer than red, get no shift; the loop below redoes them.)
        excess = np.where(good, per_row - red, 0)
        D = int(excess.max())
        width = D + int(per_row.max())
        start = np.cumsum(per_row) - per_row
        mat = np.full((R, width), np.inf, dtype=key.dtype)
        mat[np.arange(width) < (D - excess)[:, None]] = -np.inf
        col = np.arange(pid.size, dtype=np.int64) - start[row] + (D - excess)[row]
        mat[row, col] = key
        tau = np.partition(mat, D, axis=1)[:, D][row]
        take = key > tau
        eq = (key == tau).nonzero()[0]
        if eq.size:
            # of the keys equal to the threshold (few), greedy takes the lowest experts (pairs are
            # in expert order within a row), as many as the keys above it leave room for
            need = red - np.bincount(row, weights=take, minlength=R).astype(np.int64)
            er = row[eq]
            first = np.empty(eq.size, dtype=bool)
            first[0] = True
            np.not_equal(er[1:], er[:-1], out=first[1:])
            rank = np.arange(eq.size) - np.maximum.accumulate(np.where(first, np.arange(eq.size), 0))
            take[eq[rank < need[er]]] = True
        # picked pairs per hot expert (rows not good are redone by the loop below)
        counts.ravel()[hot] += np.bincount(pid[take], minlength=hot.size)
    bad = ~good & (red > 0)
    if bad.any():
        counts[bad] = _loop_rows(w, S, present, bad)[0]
    return counts


def _round_to_ranks(w: np.ndarray, c: np.ndarray, ranks: int, present: np.ndarray) -> np.ndarray:
    """Variant counts: an expert with more replicas than ranks but not a whole multiple of them
    necessarily stacks an extra replica on some rank; round it down to a multiple of ``ranks`` and
    give the freed replicas (greedily, by per-replica load) to experts with fewer than ``ranks``."""
    over = (c > ranks) & (c % ranks != 0)
    rows = over.any(1).nonzero()[0]
    c = c.copy()
    if not rows.size:
        return c
    W, C, ov, pres = w[rows], c[rows], over[rows], present[rows]
    freed = C % ranks * ov
    F = freed.sum(1)
    C -= freed
    # Eligible experts (present, not rounded) take replicas up to ``ranks`` each; only when all of a
    # row's are full do the rest go back to the rounded experts (the greedy gives to the latter only
    # when nobody is eligible, and eligibility never comes back).
    lim = np.maximum(ranks - C, 0) * (pres & ~ov)
    room = lim.sum(1)
    C += _top_pairs(W, C, lim, np.minimum(F, room))
    rest = F - room
    if (rest > 0).any():
        C += _top_pairs(W, C, (pres & ov) * np.maximum(rest, 0)[:, None], np.maximum(rest, 0))
    c[rows] = C
    return c


def _top_pairs(W: np.ndarray, C: np.ndarray, lim: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Replicas [n, E] that ``F[r]`` greedy steps add to row r, where each step gives one replica to
    the expert with the highest per-replica load ``W / max(count, 1)`` (lowest index on ties) among
    those that have taken fewer than ``lim`` so far (``F`` at most ``lim``'s row sums).

    Expert e's j-th replica is taken at key ``W_e / max(C_e + j, 1)``, non-increasing in j, so the
    steps take the ``F`` first (expert, j) pairs in (key desc, expert asc) order, found with one sort
    instead of ``F`` steps. Only the experts whose first key is among a row's ``max(F)`` highest can
    take one, each at most ``max(F)`` times: the pairs are a small [n, max(F), max(F)] block."""
    n, E = W.shape
    Fm = int(F.max())
    if Fm <= 0:
        return np.zeros((n, E), dtype=np.int64)
    first = np.where(lim > 0, W / np.maximum(C, 1), -np.inf)
    # candidates as flat indices, in expert order within a row (so the stable sort of the pairs
    # breaks equal keys by expert, then by j)
    top = np.argsort(-first, axis=1, kind="stable")[:, :Fm]
    top.sort(axis=1)
    Fe = top.shape[1]
    top += (np.arange(n, dtype=np.int64) * E)[:, None]
    J = min(Fm, int(lim.max()))
    j = np.arange(J, dtype=np.int64)
    k = C.take(top)[:, :, None] + j
    # W / k in float64 with k an int64 count, as the one-at-a-time greedy divides
    key = np.where(j < lim.take(top)[:, :, None], W.take(top)[:, :, None] / np.maximum(k, 1), -np.inf)
    pick = np.argsort(-key.reshape(n, Fe * J), axis=1, kind="stable")[:, :Fm]
    pick //= J
    pick += (np.arange(n, dtype=np.int64) * Fe)[:, None]
    return np.bincount(top.take(pick)[np.arange(Fm) < F[:, None]], minlength=n * E).reshape(n, E)


def _items_from_counts(c: np.ndarray) -> np.ndarray:
    """Expand counts [R, E] (rows summing to the same S) into item expert indices [R, S]."""
    return _flat_items(c) - (np.arange(c.shape[0], dtype=np.int64) * c.shape[1])[:, None]


def _flat_items(c: np.ndarray) -> np.ndarray:
    """Counts [R, E] (rows summing to the same S) expanded into each item's flat index into
    ``c.ravel()``, [R, S]: the expert id plus its row's offset, ready to gather per-expert values."""
    return np.repeat(np.arange(c.size, dtype=np.int64), c.ravel()).reshape(c.shape[0], -1)


def _place(pack_index: np.ndarray, rank_in_pack: np.ndarray, items: np.ndarray, spg: int) -> np.ndarray:
    """Item ids [R, n] packed by ``pack_index``/``rank_in_pack`` -> slot-ordered ids [R, n]."""
    out = np.empty_like(items)
    np.put_along_axis(out, pack_index * spg + rank_in_pack, items, 1)
    return out


def _swap_search(lT: np.ndarray, idT: np.ndarray, G: int, nodes: int = 1,
                 max_iter: int = MAX_SWAP_ITERS, pairs: int = 4, rank_sum: np.ndarray | None = None
                 ) -> None:
    """Pairwise-swap local search, in place, on slot-major arrays: ``lT``/``idT`` [s, R*G] hold the
    item load / item id in slot k of global rank g (rank g = row * G + rank in row); rows are
    ``R / nodes`` layers x ``nodes`` (the node rows of a layer are consecutive, swaps stay inside a
    row). Slot-major so the candidate pairs' items gather into [s, pairs] blocks and the s x s
    difference table has the pairs as its long inner axis.

    Only the layer's maximum matters, so per step only the row holding the layer's max rank load
    works: the most-loaded rank tries its best swap with each of the ``pairs`` least-loaded ranks, and
    at the same time the 2nd..``pairs``-th most-loaded ranks each try the matching least-loaded one
    (disjoint rank pairs, so all the swaps apply at once). A swap is taken only when it lowers the
    larger load of its pair, so no step raises a layer's max; a layer stops when its max rank finds
    no improving swap. Vectorized over rows. ``rank_sum`` [R*G] (default ``lT.sum(0)``) is the
    starting load per rank; the caller may pass it summed in another order."""
    s, RG = lT.shape
    R = RG // G
    if G < 2 or s < 1:
        return
    lTf = lT.reshape(-1)
    idf = idT.reshape(-1)
    if not (np.shares_memory(lTf, lT) and np.shares_memory(idf, idT)):
        raise ValueError("_swap_search needs C-contiguous arrays (it works in place)")
    T = min(pairs, G // 2)
    L = R // nodes
    # pair list: (0, j) for the max rank with every low rank, then (i, i) for the next high ranks
    hs = np.array([0] * T + list(range(1, T)), dtype=np.int64)
    ls = np.array(list(range(T)) + list(range(1, T)), dtype=np.int64)
    hcols = G - 1 - hs
    npair = hs.size
    rank_sum = (lT.sum(0) if rank_sum is None else np.array(rank_sum, dtype=np.float64)).reshape(R, G)
    rsf = rank_sum.reshape(-1)
    per_layer = rank_sum.reshape(L, nodes * G)              # view: updates show through
    ss = s * s
    pc = np.concatenate([hcols, ls])          # columns of the ascending rank order: hi ranks, lo ranks
    layers = np.arange(L)
    dev_buf = np.empty(L * npair * ss)       # reused: a fresh one is page-faulted in on every step
    use_buf = np.empty(L * npair, dtype=bool)
    off_a = np.arange(ss, dtype=np.int64) // s * RG   # table entry (a, b) -> slot offsets of a and b
    off_b = np.arange(ss, dtype=np.int64) % s * RG
    top_p = np.arange(T)[:, None]
    # Most steps work on small arrays, so the fixed cost of each NumPy call matters as much as the
    # s x s table: below, row gathers use .take (arr[idx] on a 2-D array is ~3x slower), 1-D fancy
    # indexing stays 1-D (hl[0][m], not hl[0, m]) and no Python-level wrappers (np.take,
    # np.flatnonzero) run in the loop.
    for _ in range(max_iter):
        if layers.size == 0:
            break
        # the row (node) holding each still-improving layer's max rank load
        active = (layers if nodes == 1
                  else layers * nodes + per_layer.take(layers, 0).argmax(axis=1) // G)
        A = active.size
        M = A * npair
        hl = rank_sum.take(active, 0).argsort(axis=1).T.take(pc, 0)   # [2 * npair, A], rank in row
        hl += active * G                                                # global rank ids
        hl = hl.reshape(2, M)                    # hi / lo rank of each pair, pair-major (p * A + a)
        lh, ll = rsf[hl]
        la = lT.take(hl[0], axis=1)                  # [s, M] each: contiguous, so lb += half is too
        lb = lT.take(hl[1], axis=1)
        lb += 0.5 * (lh - ll)
        # new pair max after swapping a (from hi) and b (from lo) is mid + |a - b - half|
        dev = dev_buf[:ss * M].reshape(s, s, M)
        np.subtract(la[:, None, :], lb[None, :, :], out=dev)
        np.abs(dev, out=dev)
        dev = dev.reshape(ss, M)
        new = (0.5 * (lh + ll) + np.minimum.reduce(dev, axis=0)).reshape(npair, A)
        good = new < (lh * (1 - 1e-12)).reshape(npair, A)
        # the max rank takes its best partner; a high rank whose partner it took sits this step out.
        # The max rank's pairs share one threshold (same hi load), so the smallest new is good iff
        # any is: the argmin needs no masking of the pairs that are not good (new has no NaN: the
        # loads are checked finite).
        j = new[:T].argmin(axis=0)
        use = use_buf[:M].reshape(npair, A)
        np.logical_and(top_p == j, good[:T], out=use[:T])     # pair j of the max rank, if good
        # pair T-1+i is (hi i, lo i): good and lo i not taken by the max rank (i.e. use[i] False)
        np.greater(good[T:], use[1:T], out=use[T:])
        layers = layers[np.logical_or.reduce(use[:T], axis=0)]  # the others cannot lower their max
        m = use_buf[:M].nonzero()[0]                          # np.flatnonzero(use)
        b = dev[:, m].argmin(axis=0)                          # best (a, b) of the pairs that swap
        rh = hl[0][m]
        rl = hl[1][m]
        ta, tb = off_a[b] + rh, off_b[b] + rl                 # flat slots of the swapped items
        va, vb = lTf[ta], lTf[tb]
        lTf[ta], lTf[tb] = vb, va
        xa, xb = idf[ta], idf[tb]
        idf[ta], idf[tb] = xb, xa
        d = vb - va
        rsf[rh] += d
        rsf[rl] -= d


def _assign_groups(gw: np.ndarray, N: int, cap: int) -> np.ndarray:
    """Groups to nodes by load, *not* with an equal count per node: each group (heaviest first) goes
    to the lightest node with room (at most ``cap`` groups), keeping one group for every still-empty
    node. A node holding a hot group thus takes fewer groups and keeps more of its fixed P/N slots for
    replicas. ``gw`` [L, K] group loads. Returns node of each group, int64 [L, K]."""
    L, K = gw.shape
    order = np.argsort(-gw, axis=1, kind="stable")
    rows = np.arange(L)
    node_of = np.empty((L, K), dtype=np.int64)
    sorted_w = np.take_along_axis(gw, order, 1)
    if N < K and (sorted_w[:, N - 1] > 0).all():
        # The N heaviest groups (all positive) open the N nodes in turn: an empty node is the
        # lightest, lowest index first. From then on no node is empty, so each group goes to the
        # lightest node with room; a full node's weight is +inf.
        node_of[rows[:, None], order[:, :N]] = np.arange(N)
        node_w = sorted_w[:, :N].astype(np.float64)     # sums in float64, as the general path
        node_n = np.ones((L, N), dtype=np.int64)
        for j in range(N, K):
            fi = rows * N + node_w.argmin(axis=1)
            node_of[rows, order[:, j]] = fi - rows * N
            node_w.ravel()[fi] += sorted_w[:, j]
            node_n.ravel()[fi] += 1
            node_w.ravel()[fi[node_n.ravel()[fi] >= cap]] = np.inf
        return node_of
    node_w = np.zeros((L, N))
    node_n = np.zeros((L, N), dtype=np.int64)
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
    """Per-node expert lists: returns (ids [L*N, cap*gs] global expert ids, padded with 0..gs-1;
    present mask; loads, 0 where absent)."""
    L, K = node_of.shape
    # each group's place in its node's row: groups of a node in index order
    onehot = node_of[:, :, None] == np.arange(N)
    pos = (np.cumsum(onehot, axis=1) - 1)[onehot]                       # [L*K], (layer, group) order
    slot = ((np.arange(L, dtype=np.int64)[:, None] * N + node_of) * cap).ravel() + pos
    # Global group row (layer * K + group) in each slot, an all-zero row past the end in the empty
    # ones: the loads are one gather of gs-long rows instead of one per expert.
    grow = np.full(L * N * cap, L * K, dtype=np.int64)
    grow[slot] = np.arange(L * K, dtype=np.int64)
    wl = np.concatenate([w.reshape(L * K, gs), np.zeros((1, gs))]).take(grow, 0)
    ids = np.arange(K * gs, dtype=np.int64).reshape(K, gs).take(grow % K, 0)
    present = np.repeat(grow < L * K, gs)
    return ids.reshape(L * N, cap * gs), present.reshape(L * N, cap * gs), wl.reshape(L * N, cap * gs)


def _balance_hier(w: np.ndarray, P: int, G: int, N: int, K: int):
    """Node-local policy of :func:`balance` (``N > 1``, ``K % N == 0``). Returns (phy2log [L, P],
    replicas [L, E], rank_load [L, G], balancedness [L], EPLB's balancedness [L]).

    EPLB's layout is computed exactly (it is the candidate to beat and is reported). xds's own count
    sets, per layer the one with the lowest lower bound: a load-driven group placement when a node
    has room for more groups than EPLB gives it and there are more groups than nodes (water-filled
    counts, always tried), and counts rounded to whole multiples of the node's ranks on the node
    rows that stack replicas and can hold the layer's max (only for layers where that can still
    lower the bound). Only the node rows that differ from EPLB's are packed again, in the same LPT
    call as EPLB's replicas; a layer takes them when its max with them beats EPLB's (by more than
    rounding). The local search then only ever lowers a layer's max, and a guard hands back EPLB's
    layout for any layer
    whose balancedness still came out above EPLB's (by rounding of the mean), so the result is
    never worse than EPLB's."""
    L, E = w.shape
    spg = P // G
    gs = E // K
    gpn = K // N                       # groups per node under EPLB (equal count)
    S = P // N                         # slots per node
    Gn = G // N                        # ranks per node
    En = E // N                        # experts per node under EPLB
    cap = S // gs                      # groups a node has room for
    R = L * N
    # --- EPLB, bit-exact: groups to nodes (equal count), greedy replicas per node; its items per
    # node row (the node's experts in order, then the redundant picks) are packed below. An item
    # is carried as its flat index into the node rows' [R, En] tables (pflat).
    mlog2log, pflat, item32, _, cnt, mg = _eplb_prepare(w.astype(np.float32), P, K, N, G)
    wn = w.reshape(L * K, gs).take(mg, 0).reshape(R, En)   # float64 loads of each node row
    t64 = wn / cnt                                         # ... per replica
    # Every packed item is carried by a payload: its index into the concatenated tables of ids and
    # float64 per-replica loads below (EPLB's node rows first, then our sets' rows). Within a node
    # row the payload is one-to-one with the expert, so it stands in for the id in the search.
    id_tabs, val_tabs = [mlog2log.ravel()], [t64.ravel()]
    # --- xds's count sets: 0 load-driven groups, water-filled; 1 the same rounded; 2 EPLB's counts
    # rounded. Per layer, the set with the lowest lower bound (the first wins ties) is packed even
    # when that bound only ties EPLB's: both often sit at the hot node's mean while EPLB's packing
    # lands well above it.
    best_lb = np.full(L, np.inf)
    best_k = np.full(L, -1)

    def offer(layers, lb, k):              # layers [n] (ascending), lb [n] their bounds under set k
        b = lb < best_lb[layers]
        best_lb[layers[b]] = lb[b]
        best_k[layers[b]] = k

    # Lower bound of a node row's max rank load: a rank carries at least the row's mean, and an
    # expert with c replicas on Gn ranks puts ceil(c / Gn) of them on one. Counts are at most S, so
    # the integer parts are table lookups (int64 division is slow).
    c_all = np.arange(S + 1, dtype=np.int64)              # every possible replica count
    ceil_tab = ((c_all + (Gn - 1)) // Gn).astype(np.float64)   # (exact: small integers)
    stack_tab = (c_all > Gn) & (c_all % Gn != 0)          # two replicas land on one rank

    def row_bounds(per_rep, c, mean):      # per_rep = wn / max(c, 1); one per row
        return np.maximum(mean, (per_rep * ceil_tab.take(c)).max(1))

    def to_round(c, rlb):
        # Of some layers' node rows (counts c [n*N, X], bounds rlb [n, N]), those that stack
        # replicas and can hold the layer's max (own bound within ROUND_ROW_SLACK of the layer's
        # highest): only those are worth rounding. -> [n, N]
        near = rlb >= (1 - ROUND_ROW_SLACK) * rlb.max(1, keepdims=True)
        return stack_tab.take(c).any(1).reshape(-1, N) & near

    def rows_of(layers):                   # node rows of the layers, in order
        return (layers[:, None] * N + np.arange(N, dtype=np.int64)).ravel()

    def round_rows(below, wn_k, c_k, pres_k, mean_k, rlb):
        # Of the layers ``below``, whose node rows have bounds rlb [n, N] under counts c_k, round
        # the rows worth it (see to_round). -> None when there are none, else (rounded rows,
        # their counts, their per-replica loads, the layers with a rounded row, their new bounds)
        m = to_round(c_k.take(rows_of(below), 0), rlb)
        hit = m.any(1)
        if not hit.any():
            return None
        rows = rows_of(below)[m.ravel()]
        wr = wn_k.take(rows, 0)
        c = _round_to_ranks(wr, c_k.take(rows, 0), Gn,
                            np.ones(wr.shape, dtype=bool) if pres_k is None else pres_k.take(rows, 0))
        u = wr / np.maximum(c, 1)
        rlb[m] = row_bounds(u, c, mean_k[rows])
        return rows, c, u, below[hit], rlb.max(1)[hit]

    # Rounding keeps every node row's total, so a rounded set's bound is at least its highest
    # node-row mean: only the layers where that is below the best bound so far can pick it (often
    # a few: the rounding work is done on their rows only).
    a_rows = None
    if cap > gpn and K > N:
        # A node has room for more groups than EPLB gives it: place groups by load. (With as many
        # groups as nodes every node still holds exactly one, as in EPLB: nothing to gain.)
        # (Offered on every layer: a lower bound says little about whether it wins once packed,
        # because EPLB's packing can land far above its own bound.)
        ids_a, pres_a, wn_a = _node_rows(w, _assign_groups(w.reshape(L, K, gs).sum(-1), N, cap), N, gs,
                                         cap)
        # float32 keys: these counts are xds's own candidate, not EPLB's, so the fast sort will do
        c_a = _waterfill(wn_a.astype(np.float32), S, pres_a)
        u_a = wn_a / np.maximum(c_a, 1)
        mean_a = wn_a.sum(1) / Gn
        rlb_a = row_bounds(u_a, c_a, mean_a).reshape(L, N)
        offer(np.arange(L), rlb_a.max(1), 0)
        below = ((mean_a.reshape(L, N).max(1) < best_lb).nonzero()[0] if spg > 1
                 else np.zeros(0, dtype=np.int64))
        got = round_rows(below, wn_a, c_a, pres_a, mean_a, rlb_a[below]) if below.size else None
        if got is not None:
            a_rows, c_ar, u_ar, hit_layers, lb = got
            offer(hit_layers, lb, 1)
    e_rows = None
    if spg > 1:
        # node rows where EPLB stacks two replicas of a hot expert on one rank
        mean_e = wn.sum(1) / Gn
        below = (mean_e.reshape(L, N).max(1) < best_lb).nonzero()[0]
        if below.size:
            r = rows_of(below)
            rlb = row_bounds(t64.take(r, 0), cnt.take(r, 0), mean_e[r]).reshape(-1, N)
            got = round_rows(below, wn, cnt, None, mean_e, rlb)
            if got is not None:
                e_rows, c_er, u_er, hit_layers, lb = got
                offer(hit_layers, lb, 2)
    # Only the layers where one of our sets can beat EPLB are packed a second time, and of those
    # only the node rows that differ from EPLB's: all of a layer's rows for the load-driven sets,
    # the rounded rows for EPLB's. Their items (counts expanded in expert order) are payloads too.
    alt_rows, alt_pay = [], []

    def add_set(rows, ids_k, u_k, at_rows, c_rows):
        # Node rows ``rows`` [n] packed with counts c_rows [n, X]: row i's experts and per-replica
        # loads are row at_rows[i] of the tables ids_k / u_k [m, X], which go after those so far;
        # each item's payload is its (row, expert) entry there (the offset goes on the short
        # per-row arange, not on the expanded items).
        at, X = sum(t.size for t in id_tabs), ids_k.shape[1]
        alt_rows.append(rows)
        alt_pay.append(np.repeat((at_rows[:, None] * X + np.arange(at, at + X, dtype=np.int64)).ravel(),
                                 c_rows.ravel()))
        id_tabs.append(ids_k.ravel())
        val_tabs.append(u_k.ravel())

    by_a = np.repeat((best_k == 0) | (best_k == 1), N)
    if by_a.any():
        c_x, u_x = c_a, u_a
        if a_rows is not None:
            r1 = best_k[a_rows // N] == 1
            if r1.any():
                c_x, u_x = c_a.copy(), u_a.copy()
                c_x[a_rows[r1]], u_x[a_rows[r1]] = c_ar[r1], u_ar[r1]
        rows = by_a.nonzero()[0]
        add_set(rows, ids_a, u_x, rows, c_x.take(rows, 0))
    if e_rows is not None:
        i2 = (best_k[e_rows // N] == 2).nonzero()[0]
        if i2.size:
            add_set(e_rows[i2], mlog2log.reshape(R, En).take(e_rows, 0), u_er, i2, c_er.take(i2, 0))
    ids = np.concatenate(id_tabs) if len(id_tabs) > 1 else id_tabs[0]
    vals = np.concatenate(val_tabs) if len(val_tabs) > 1 else val_tabs[0]
    Ra = 0
    if alt_rows:
        alt_rows = np.concatenate(alt_rows)
        alt_pay = np.concatenate(alt_pay) if len(alt_pay) > 1 else alt_pay[0]
        Ra = alt_rows.size
        items = np.empty((R + Ra, S), dtype=np.float32)
        items[:R] = item32
        items[R:] = vals.take(alt_pay).reshape(Ra, S)
        item32 = items
    # One packing call for EPLB's replicas and ours: the run-at-a-time loop is shared.
    pi, rip = _lpt_pack(item32, Gn)
    # Slot-major arrays ([spg, ranks], see _swap_search): packed rank g holds its items in slots
    # rank_in_pack; EPLB's ranks first, then ours (a side part until they win).
    RG = R * Gn
    width = (R + Ra) * Gn

    def slot_index(pi, rip, width):
        # flat slot-major position of each packed item: slot rank_in_pack of rank row * Gn + pack
        # (in place: no full-size temporaries)
        d = rip * width
        d += pi
        d += (np.arange(pi.shape[0], dtype=np.int64) * Gn)[:, None]
        return d

    dest = slot_index(pi, rip, width)
    slots = np.empty(spg * width, dtype=np.int64)
    slots[dest[:R].ravel()] = pflat.ravel()
    if Ra:
        slots[dest[R:].ravel()] = alt_pay
    slots = slots.reshape(spg, width)
    load = vals.take(slots)
    # rank loads summed per rank in slot order, exactly as balancedness() sums a layout
    rank_e = _slot_major_sums(load[:, :RG]).reshape(L, G)
    eplb_bal = _balancedness_from_rank_load(rank_e)
    if Ra:
        # a layer takes our rows when its max with them (and EPLB's other rows) beats EPLB's max
        cand = rank_e.reshape(R, Gn).max(1)
        cand[alt_rows] = load[:, RG:].sum(0).reshape(Ra, Gn).max(1)
        take = (cand.reshape(L, N).max(1) < rank_e.max(1) * (1 - 1e-12))[alt_rows // N]
        cols = np.arange(RG, dtype=np.int64)          # the column each final rank is read from
        if take.any():
            ar_g = np.arange(Gn, dtype=np.int64)
            cols[(alt_rows[take][:, None] * Gn + ar_g).ravel()] = RG + (take.nonzero()[0][:, None] * Gn
                                                                      + ar_g).ravel()
        load, slots = load.take(cols, 1), slots.take(cols, 1)
    if spg > 1:
        _swap_search(load, slots, Gn, nodes=N)   # rows = layer x node; only the max node's row moves
    rank_load = _slot_major_sums(load).reshape(L, G)
    bal = _balancedness_from_rank_load(rank_load)
    # The search only takes swaps that lower a pair's max; a layer whose max did not move can still
    # differ from EPLB's in the last bit of the mean: such a layer gets EPLB's layout back, so the
    # result is never worse, exactly.
    worse = bal > eplb_bal
    if worse.any():
        eplb = np.empty(R * S, dtype=np.int64)
        eplb[slot_index(pi[:R], rip[:R], RG).ravel()] = pflat.ravel()
        eplb = eplb.reshape(spg, RG)
        back = np.repeat(worse, G).nonzero()[0]          # the ranks of those layers
        slots[:, back] = eplb[:, back]
        load[:, back] = vals.take(eplb[:, back])
        rank_load = _slot_major_sums(load).reshape(L, G)
        bal = _balancedness_from_rank_load(rank_load)
    lay = ids.take(slots.T).reshape(L, P)
    return lay, _replica_counts(lay, E), rank_load, bal, eplb_bal


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
    _check_float32_sums(w)
    L, E = w.shape
    P, G, N, K = slots, ranks, nodes, groups
    _check_layout_args(E, P, G, N, K)
    hier = N > 1 and K % N == 0
    policy = "hierarchical" if hier else "global"
    spg = P // G
    if hier:
        lay, counts, rank_load, bal, eplb_bal = _balance_hier(w, P, G, N, K)
        return ExpertLayout(phy2log=lay, replicas=counts, rank_load=rank_load, balancedness=bal,
                            ranks=G, nodes=N, groups=K, policy=policy,
                            seconds=time.perf_counter() - t0, eplb_balancedness=eplb_bal)

    if spg == 1:
        # One slot per rank: the max per-replica load is the objective and water-filling attains
        # its optimum exactly, so EPLB (greedy, same optimum) cannot be better; nothing to pack or
        # search, and each rank's load is its one replica's.
        counts = _waterfill(w, P)
        flat = _flat_items(counts)
        rank_load = (w / counts).ravel()[flat]
        return ExpertLayout(phy2log=flat - (np.arange(L, dtype=np.int64) * E)[:, None],
                            replicas=counts, rank_load=rank_load,
                            balancedness=_balancedness_from_rank_load(rank_load), ranks=G, nodes=N,
                            groups=K, policy=policy, seconds=time.perf_counter() - t0)

    # Global policy, several slots per rank: EPLB's layout, and EPLB's counts rounded to whole
    # multiples of the ranks where greedy stacks two replicas of a hot expert on one rank.
    prep = _eplb_prepare(w.astype(np.float32), P, K, N, G)
    c_round = _round_to_ranks(w, prep.counts, G, np.ones((L, E), dtype=bool))   # mlog == log here
    rounded = not np.array_equal(c_round, prep.counts)
    item_w = prep.items
    if rounded:
        items = _items_from_counts(c_round)
        item_w = np.concatenate([item_w, np.take_along_axis((w / c_round).astype(np.float32), items, 1)])
    # One packing call for EPLB's replicas and ours: the run-at-a-time loop is shared.
    pi, rip = _lpt_pack(item_w, prep.packs)
    eplb = _eplb_finish(prep, pi[:L], rip[:L], P, G)
    stack = np.stack([eplb, _place(pi[L:], rip[L:], items, spg)] if rounded else [eplb])   # [C, L, P]
    # Local search over each candidate's ranks, then the better one per layer.
    C = stack.shape[0]
    flat = stack.reshape(C * L, P)
    wt = np.tile(w, (C, 1))
    cnt = _replica_counts(flat, E)
    item_load = np.take_along_axis(wt / cnt, flat, 1)
    eplb_bal = _balancedness_from_rank_load(item_load[:L].reshape(L, G, spg).sum(-1))
    lT = np.ascontiguousarray(item_load.reshape(C * L * G, spg).T)
    idT = np.ascontiguousarray(flat.reshape(C * L * G, spg).T)
    # rank sums in row-major order, as the layouts are evaluated (ties break the same way)
    _swap_search(lT, idT, G, nodes=1, rank_sum=item_load.reshape(-1, spg).sum(1))
    flat = np.ascontiguousarray(idT.T).reshape(C * L, P)
    rl = _rank_load(flat, wt, cnt, G)
    bal = _balancedness_from_rank_load(rl).reshape(C, L)
    best = np.argmin(bal, axis=0)                             # first (EPLB-based) wins ties
    return ExpertLayout(phy2log=flat.reshape(C, L, P)[best, np.arange(L)],
                        replicas=cnt.reshape(C, L, E)[best, np.arange(L)],
                        rank_load=rl.reshape(C, L, G)[best, np.arange(L)],
                        balancedness=bal[best, np.arange(L)], ranks=G, nodes=N, groups=K, policy=policy,
                        seconds=time.perf_counter() - t0, eplb_balancedness=eplb_bal)


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
