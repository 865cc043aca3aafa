"""Mooncake JSONL traces: one JSON object per line with arrival ``timestamp`` (ms), token lengths
and the prompt's prefix-block chain (``hash_ids``, 512-token blocks).

The public conversation trace quantises arrivals into 3 s buckets; requests sharing one bucket are
spread evenly inside it (request i of n in the bucket at t arrives at t + i*3/n s)."""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

import numpy as np

from ..errors import XdsError
from ..spec.workload import MAX_INPUT_LEN, MAX_OUTPUT_LEN
from .core import DEFAULT_BLOCK_TOKENS, Workload, csr_take, is_sorted
from .lines import range_error, read_lines

MOONCAKE_BUCKET_S = 3.0  # quantisation step of the public Mooncake conversation trace (s)

# The field of each request attribute in a Mooncake row.
FIELDS = {"arrival": "timestamp", "input": "input_length", "output": "output_length",
          "blocks": "hash_ids"}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _json_int(d: dict, key: str, *, path: Path, lineno: int, lo: int, hi: int) -> int:
    where = f"line {lineno}"
    if key not in d:
        raise XdsError(f"missing field {key!r} (Mooncake rows need {', '.join(FIELDS.values())})",
                       file=str(path), where=where)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (
            isinstance(v, float) and not (math.isfinite(v) and v.is_integer())):
        raise XdsError(f"{key} must be a whole number, got {v!r}", file=str(path), where=where)
    v = int(v)
    err = range_error(key, v, lo, hi, unit="", path=path, where=where)
    if err is not None:
        raise err
    return v


def _row(text: str, path: Path, lineno: int) -> dict:
    """One JSONL line as a dict."""
    where = f"line {lineno}"
    try:
        d = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise XdsError(f"invalid JSON ({msg}; truncated line?)", file=str(path),
                       where=where) from None
    if not isinstance(d, dict):
        raise XdsError(f"expected a JSON object per line, got {type(d).__name__}",
                       file=str(path), where=where)
    return d


def _timestamp_ms(d: dict, path: Path, lineno: int) -> float:
    key, where = FIELDS["arrival"], f"line {lineno}"
    t = d.get(key)
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        if key not in d:
            raise XdsError(f"missing field {key!r} (ms since trace start)", file=str(path),
                           where=where)
        raise XdsError(f"{key} must be a number of ms, got {t!r}", file=str(path), where=where)
    if not math.isfinite(t) or t < 0:
        raise XdsError(f"{key} must be a finite number of ms >= 0, got {t!r}",
                       file=str(path), where=where)
    return float(t)


def _extend_blocks(ids: array, h: object, path: Path, lineno: int) -> None:
    """Append one row's block chain to ``ids`` (validated: whole numbers in 0..2^63-1)."""
    key, where = FIELDS["blocks"], f"line {lineno}"
    if not isinstance(h, list):
        raise XdsError(f"{key} must be a list of block ids, got {type(h).__name__}",
                       file=str(path), where=where)
    try:
        ids.extend(h)  # array('q') rejects floats, bools are ints: check below
    except (TypeError, OverflowError):
        raise XdsError(f"{key} must hold whole numbers in 0..2^63-1", file=str(path),
                       where=where) from None
    if h and (min(h) < 0 or any(isinstance(x, bool) for x in h)):
        raise XdsError(f"{key} must hold whole numbers >= 0", file=str(path), where=where)


def read_mooncake(path: Path, *, spread_buckets: bool | None = None,
                  bucket_s: float = MOONCAKE_BUCKET_S) -> Workload:
    """Read a Mooncake JSONL trace (see the module doc); ``spread_buckets`` None = auto-detect."""
    ts, inp, out, offsets, ids = array("d"), array("q"), array("q"), array("q", [0]), array("q")
    any_blocks = False
    for lineno, text in read_lines(path):
        d = _row(text, path, lineno)
        t = _timestamp_ms(d, path, lineno)
        a = _json_int(d, FIELDS["input"], path=path, lineno=lineno, lo=1, hi=MAX_INPUT_LEN)
        b = _json_int(d, FIELDS["output"], path=path, lineno=lineno, lo=1, hi=MAX_OUTPUT_LEN)
        h = d.get(FIELDS["blocks"])
        if h is not None:
            any_blocks = True
            _extend_blocks(ids, h, path, lineno)
        ts.append(t)
        inp.append(a)
        out.append(b)
        offsets.append(len(ids))
    if not inp:
        raise XdsError("trace file is empty", file=str(path))
    t_ms = np.frombuffer(ts, dtype=np.float64).copy()
    t_ms -= t_ms.min()
    order = np.argsort(t_ms, kind="stable")
    t_ms = t_ms[order]
    if spread_buckets is None:
        spread_buckets = _looks_quantised(t_ms, bucket_s * 1000.0)
    arrival = _spread(t_ms, bucket_s) if spread_buckets else t_ms / 1000.0
    if not is_sorted(arrival):
        # a bucket holding more requests than its gap to the next one allows overlaps it: re-sort
        again = np.argsort(arrival, kind="stable")
        arrival, order = arrival[again], order[again]
    off = ids_a = None
    if any_blocks:
        off, ids_a = csr_take(np.frombuffer(offsets, dtype=np.int64),
                              np.frombuffer(ids, dtype=np.int64).copy(), order)
    return Workload(arrival, np.frombuffer(inp, dtype=np.int64)[order],
                    np.frombuffer(out, dtype=np.int64)[order], off, ids_a, DEFAULT_BLOCK_TOKENS,
                    path.stem, 0)


def _looks_quantised(t_ms: np.ndarray, bucket_ms: float) -> bool:
    """True when arrivals sit on a ``bucket_ms`` grid: >= 90 % of the gaps between distinct
    timestamps are within 1 % of the bucket and buckets hold > 1.5 requests on average. (The public
    conversation trace has gaps of 2997-3003 ms; the Poisson synthetic trace has a handful of equal
    timestamps that must not be spread.)"""
    distinct = np.unique(t_ms)
    if len(distinct) < 2 or len(t_ms) / len(distinct) <= 1.5:
        return False
    gaps = np.diff(distinct)
    return bool(np.mean(np.abs(gaps - bucket_ms) <= 0.01 * bucket_ms) >= 0.9)


def _spread(t_ms_sorted: np.ndarray, bucket_s: float) -> np.ndarray:
    """Request i of the n sharing timestamp t arrives at t + i * bucket_s / n (s)."""
    _, start, counts = np.unique(t_ms_sorted, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(start)), counts)
    i = np.arange(len(t_ms_sorted)) - start[group]
    return t_ms_sorted / 1000.0 + i * (bucket_s / counts[group])
