"""Prefix caching over Mooncake ``hash_ids``: replay each request's chain of prefix blocks through
an LRU cache of ``capacity_blocks`` blocks and count the leading blocks already cached. With an
infinite cache (or one holding every distinct block) the replay is fully vectorized."""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import XdsError
from .core import Workload, dense_ids, unique_count


class PrefixCache:
    """LRU cache of prefix blocks (block ids), ``capacity_blocks`` blocks (None = infinite).

    :meth:`access` is one request: it counts the leading blocks of the chain already cached (the
    reusable prefix; a block is only reusable if every block before it is), then inserts / touches
    all blocks of the chain. Blocks are touched tail first, so the shared head of a chain is the
    most recently used and the tail is evicted first (as vLLM's block manager frees them).
    """

    def __init__(self, capacity_blocks: int | None):
        if capacity_blocks is not None and (isinstance(capacity_blocks, bool)
                                            or int(capacity_blocks) != capacity_blocks
                                            or capacity_blocks < 0):
            raise XdsError(f"capacity_blocks must be a whole number >= 0 or None (got "
                           f"{capacity_blocks!r})", where="capacity_blocks")
        self.capacity = None if capacity_blocks is None else int(capacity_blocks)
        self._lru: OrderedDict[int, None] = OrderedDict()
        self.hit_blocks = 0
        self.total_blocks = 0

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, block: int) -> bool:
        return block in self._lru

    def access(self, chain: Sequence[int]) -> int:
        """Process one request's block chain; return the number of leading cached blocks."""
        lru = self._lru
        hits = 0
        for b in chain:
            if b in lru:
                hits += 1
            else:
                break
        self._touch(chain)
        self.hit_blocks += hits
        self.total_blocks += len(chain)
        return hits

    def _touch(self, chain: Sequence[int]) -> None:
        lru = self._lru
        move = lru.move_to_end
        for b in reversed(chain):
            if b in lru:
                move(b)
            else:
                lru[b] = None
        if self.capacity is not None:
            pop = lru.popitem
            while len(lru) > self.capacity:
                pop(last=False)

    @property
    def hit_rate(self) -> float:
        return self.hit_blocks / self.total_blocks if self.total_blocks else 0.0


@dataclass(frozen=True, eq=False)
class PrefixStats:
    """Result of replaying a workload through a prefix cache.

    ``hit_blocks`` per request (leading cached blocks), ``cached_tokens`` per request (tokens,
    ``min(input_len - 1, hit_blocks * block_tokens)`` so at least one token is computed),
    ``hit_rate`` = hit blocks / total blocks."""

    hit_blocks: np.ndarray
    cached_tokens: np.ndarray
    total_blocks: int
    unique_blocks: int
    hit_rate: float


def _prefix_hits_infinite(off: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Leading hits per request with an infinite cache, vectorized: a block hits iff its first
    occurrence is in an earlier request."""
    n = len(off) - 1
    lengths = np.diff(off)
    req = np.repeat(np.arange(n, dtype=np.int64), lengths)
    dense = dense_ids(ids)
    first = np.full(int(dense.max()) + 1 if len(dense) else 0, n, dtype=np.int64)
    np.minimum.at(first, dense, req)  # request of each block's first occurrence
    hit = first[dense] < req
    pos = np.arange(len(ids), dtype=np.int64) - np.repeat(off[:-1], lengths)
    # index (within its row) of the first miss; rows without a miss get their length
    miss_pos = np.where(hit, np.iinfo(np.int64).max, pos)
    first_miss = lengths.copy()
    nonempty = lengths > 0
    if nonempty.any():
        red = np.minimum.reduceat(miss_pos, off[:-1][nonempty])
        first_miss[nonempty] = np.minimum(red, lengths[nonempty])
    return first_miss


def _prefix_hits_lru(off: np.ndarray, ids: np.ndarray, capacity: int) -> np.ndarray:
    """Leading hits per request through an LRU of ``capacity`` blocks (replayed request by request
    through :class:`PrefixCache`)."""
    access = PrefixCache(capacity).access
    ids_l = ids.tolist()
    off_l = off.tolist()
    out = array("q", bytes(8 * (len(off_l) - 1)))
    for r in range(len(off_l) - 1):
        out[r] = access(ids_l[off_l[r]:off_l[r + 1]])
    return np.frombuffer(out, dtype=np.int64).copy()


def prefix_cache_stats(w: Workload, capacity_blocks: int | None = None) -> PrefixStats:
    """Replay ``w``'s block chains (arrival order) through an LRU prefix cache of
    ``capacity_blocks`` blocks (None = infinite). The hit rate can never exceed the trace's own
    reuse (the infinite-cache rate)."""
    if w.block_ids is None:
        raise XdsError(f"workload {w.name or '(unnamed)'} has no prefix block ids (hash_ids); "
                       "prefix caching needs a Mooncake-style trace", where="prefix cache")
    PrefixCache(capacity_blocks)  # validates capacity
    off, ids = w.block_offsets, w.block_ids
    unique = unique_count(ids)
    if capacity_blocks is None or capacity_blocks >= unique:
        hits = _prefix_hits_infinite(off, ids)  # nothing is ever evicted
    else:
        hits = _prefix_hits_lru(off, ids, int(capacity_blocks))
    tokens = np.minimum(w.input_len - 1, hits * w.block_tokens).astype(np.int64)
    total = int(len(ids))
    return PrefixStats(hits, tokens, total, unique, float(hits.sum()) / total if total else 0.0)


def cached_tokens(w: Workload, capacity_blocks: int | None = None) -> np.ndarray:
    """Tokens of each request's prompt served from the prefix cache (int64, arrival order)."""
    return prefix_cache_stats(w, capacity_blocks).cached_tokens
