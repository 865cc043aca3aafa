"""Workloads: request arrival times and token lengths, read from traces or generated synthetically.

A :class:`Workload` is a set of NumPy arrays (one entry per request, sorted by arrival): arrival time
(s since the workload start), prompt length and output length (tokens), and optionally each
request's chain of prefix-block ids (Mooncake ``hash_ids``, 512-token blocks) in CSR form.

Sources (DESIGN.md §3.5):

* Azure LLM inference CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``), 2023 timestamps
  (``2023-11-16 18:17:03.9799600``) and 2024 timestamps (``2024-05-10 00:00:00.009930+00:00``).
* Mooncake JSONL (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``). The public
  conversation trace quantises arrivals into 3 s buckets; requests sharing one bucket are spread
  evenly inside it (request i of n in the bucket at t arrives at t + i*3/n s).
* BurstGPT CSV (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``); rows with
  0 response tokens are failed requests: they are skipped and counted in ``Workload.skipped``.
* Length-only CSV (``num_prefill_tokens,num_decode_tokens,...``, ShareGPT / arXiv summarization as
  processed by Sarathi/Vidur) with a synthetic arrival process (``rate_rps``, Poisson or Gamma).
* Synthetic: Poisson or Gamma arrivals, fixed / uniform / lognormal / empirical lengths.

Readers stream the file line by line (never more than one line of text in memory besides the
growing ``array('q')`` columns) and every bad row raises :class:`XdsError` naming the file and
``line N``. Nothing is clipped silently: prompts longer than ``MAX_INPUT_LEN`` or outputs longer than
``MAX_OUTPUT_LEN`` tokens are bad rows.

Prefix caching (:func:`prefix_cache_stats`, :func:`cached_tokens`) replays the block chains through
an LRU cache of ``capacity_blocks`` blocks; with an infinite cache the replay is fully vectorized.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from .errors import XdsError
from .spec.yamlio import Strict

MAX_TRACE_BYTES = 2 * 1024**3  # 2 GiB: larger traces are refused (loop or rate-scale a smaller one)
MAX_INPUT_LEN = 10_000_000  # tokens; longer prompts are bad rows, not clipped
MAX_OUTPUT_LEN = 1_000_000  # tokens
MAX_REQUESTS = 50_000_000  # requests in one workload (arrays of this length fit in memory)
MOONCAKE_BUCKET_S = 3.0  # quantisation step of the public Mooncake conversation trace (s)
DEFAULT_BLOCK_TOKENS = 512  # Mooncake hash_ids block size (tokens)

Format = Literal["auto", "azure", "mooncake", "burstgpt", "lengths"]
FORMATS = ("azure", "mooncake", "burstgpt", "lengths")


# --------------------------------------------------------------------------------------------
# data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests of one workload, sorted by arrival.

    ``arrival_s`` float64 seconds since the workload start (ascending); ``input_len`` and
    ``output_len`` int64 tokens (>= 1). ``block_offsets``/``block_ids`` hold each request's prefix
    block chain in CSR form (request r owns ``block_ids[block_offsets[r]:block_offsets[r+1]]``), each
    block covering ``block_tokens`` prompt tokens. ``skipped`` counts rows the reader dropped
    (BurstGPT failed requests).
    """

    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    block_offsets: np.ndarray | None = None
    block_ids: np.ndarray | None = None
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    name: str = ""
    skipped: int = 0

    def __post_init__(self) -> None:
        # Internal consistency: these are programming errors, not user errors.
        n = len(self.arrival_s)
        if len(self.input_len) != n or len(self.output_len) != n:
            raise ValueError("arrival_s, input_len and output_len must have the same length")
        if (self.block_offsets is None) != (self.block_ids is None):
            raise ValueError("block_offsets and block_ids must be given together")
        if self.block_offsets is not None:
            if len(self.block_offsets) != n + 1 or self.block_offsets[-1] != len(self.block_ids):
                raise ValueError("block_offsets must have len n+1 and end at len(block_ids)")
        if n > 1 and bool(np.any(np.diff(self.arrival_s) < 0)):
            raise ValueError("arrival_s must be sorted ascending")

    def __len__(self) -> int:
        return int(len(self.arrival_s))

    @property
    def span_s(self) -> float:
        """Time from the first to the last arrival (s)."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) else 0.0

    @property
    def has_blocks(self) -> bool:
        return self.block_ids is not None

    def summary(self) -> dict:
        """Counts, span (s), mean arrival rate (req/s = requests / span) and length statistics
        (tokens: mean, p50, p90, p99, max; NumPy's linear percentiles)."""
        n = len(self)

        def stats(a: np.ndarray) -> dict:
            if n == 0:
                return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0}
            p50, p90, p99 = np.percentile(a, [50, 90, 99])
            return {"mean": float(a.mean()), "p50": float(p50), "p90": float(p90),
                    "p99": float(p99), "max": int(a.max())}

        span = self.span_s
        out = {
            "name": self.name,
            "requests": n,
            "skipped": int(self.skipped),
            "span_s": span,
            "rate_rps": (n / span) if span > 0 else 0.0,
            "total_input_tokens": int(self.input_len.sum()),
            "total_output_tokens": int(self.output_len.sum()),
            "input": stats(self.input_len),
            "output": stats(self.output_len),
        }
        if self.block_ids is not None:
            out["blocks"] = int(len(self.block_ids))
            out["unique_blocks"] = _unique_count(self.block_ids)
            out["block_tokens"] = int(self.block_tokens)
        return out


def _csr_take(offsets: np.ndarray, ids: np.ndarray,
              idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather CSR rows ``idx`` (any order, repeats allowed) into a new CSR pair (vectorized)."""
    lengths = np.diff(offsets)[idx]
    new_off = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    total = int(new_off[-1])
    if total == 0:
        return new_off, ids[:0].copy()
    # position j of the output reads ids[start_of_its_row + (j - new_start_of_its_row)]
    shift = np.repeat(offsets[:-1][idx] - new_off[:-1], lengths)
    return new_off, ids[np.arange(total, dtype=np.int64) + shift]


def _head(w: Workload, k: int) -> Workload:
    """The first ``k`` requests (cheap slice, no gather)."""
    off = ids = None
    if w.block_ids is not None:
        off = w.block_offsets[: k + 1]
        ids = w.block_ids[: int(off[-1])]
    return Workload(w.arrival_s[:k], w.input_len[:k], w.output_len[:k], off, ids,
                    w.block_tokens, w.name, w.skipped)


def _finish(arrival: np.ndarray, inp: np.ndarray, out: np.ndarray, *, name: str, skipped: int = 0,
            offsets: np.ndarray | None = None, ids: np.ndarray | None = None,
            block_tokens: int = DEFAULT_BLOCK_TOKENS) -> Workload:
    """Shift arrivals to start at 0 and sort requests stably by arrival (ties keep file order)."""
    arrival = np.asarray(arrival, dtype=np.float64)
    inp = np.asarray(inp, dtype=np.int64)
    out = np.asarray(out, dtype=np.int64)
    if len(arrival):
        arrival = arrival - arrival.min()
    if not _is_sorted(arrival):
        order = np.argsort(arrival, kind="stable")
        arrival, inp, out = arrival[order], inp[order], out[order]
        if offsets is not None:
            offsets, ids = _csr_take(offsets, ids, order)
    return Workload(arrival, inp, out, offsets, ids, block_tokens, name, skipped)


def _is_sorted(a: np.ndarray) -> bool:
    return len(a) < 2 or not bool(np.any(a[1:] < a[:-1]))


# --------------------------------------------------------------------------------------------
# streaming line reader with located errors
# --------------------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise XdsError("trace file not found", file=str(path))
    if path.is_dir():
        raise XdsError("expected a trace file, got a folder", file=str(path))
    size = path.stat().st_size
    if size > MAX_TRACE_BYTES:
        raise XdsError(
            f"trace is {size / 1e9:.2f} GB; at most {MAX_TRACE_BYTES / 1e9:.2f} GB is accepted "
            "(use a head of it, or loop / rate-scale a smaller trace)", file=str(path))
    if size == 0:
        raise XdsError("trace file is empty", file=str(path))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text without newline)`` for non-blank lines, decoding UTF-8 per line so
    binary garbage is reported at its line."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise XdsError(f"cannot read trace: {exc.strerror}", file=str(path)) from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if b"\x00" in raw:
                raise XdsError("binary data (NUL byte); expected a text trace", file=str(path),
                               where=f"line {lineno}")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise XdsError(f"not UTF-8 text (byte {exc.start} of the line); expected a "
                               "text trace", file=str(path), where=f"line {lineno}") from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            text = text.rstrip("\r\n")
            if text.strip():
                yield lineno, text


def _split_csv(text: str, path: Path, lineno: int) -> list[str]:
    # Fast path for the common unquoted case; csv handles quoted fields (a quoted model name).
    if '"' in text:
        try:
            return next(csv.reader([text]))
        except csv.Error as exc:         # e.g. a bare carriage return inside a quoted line
            raise XdsError(f"not a valid CSV line ({exc}); expected comma-separated fields, "
                           "quoted with \" where needed", file=str(path), where=f"line {lineno}") from None
    return text.split(",")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        v = float(text)  # "12.0" is accepted; "nan"/"inf"/"12.5" are not
        if not math.isfinite(v) or not v.is_integer():
            raise ValueError(text) from None
        return int(v)


def _cell(row: list[str], col: int, name: str, path: Path, where: str) -> str:
    """The stripped text of column ``col``, or a located error for a short (truncated) row."""
    if col >= len(row):
        raise XdsError(f"missing column {name!r} (row has {len(row)} fields; truncated line?)",
                       file=str(path), where=where)
    return row[col].strip()


def _int_field(row: list[str], col: int, name: str, *, path: Path, lineno: int, lo: int,
               hi: int) -> int:
    """Parse an integer column with a located, specific error."""
    where = f"line {lineno}"
    text = _cell(row, col, name, path, where)
    try:
        v = _parse_int(text)
    except (ValueError, OverflowError):
        raise XdsError(f"{name} must be a whole number of tokens, got {text!r}", file=str(path),
                       where=where) from None
    if v < lo or v > hi:
        what = "negative" if v < 0 else ("zero" if v == 0 else "too large")
        raise XdsError(f"{name} is {what} ({v}); allowed {lo}..{hi:,} tokens", file=str(path),
                       where=where)
    return v


def _float_field(row: list[str], col: int, name: str, *, path: Path, lineno: int) -> float:
    where = f"line {lineno}"
    text = _cell(row, col, name, path, where)
    try:
        v = float(text)
    except ValueError:
        raise XdsError(f"{name} must be a number of seconds, got {text!r}", file=str(path),
                       where=where) from None
    if not math.isfinite(v) or v < 0:
        raise XdsError(f"{name} must be a finite number >= 0, got {text!r}", file=str(path),
                       where=where)
    return v


def _header(path: Path, lines: Iterator[tuple[int, str]]) -> tuple[int, list[str]]:
    try:
        lineno, text = next(lines)
    except StopIteration:
        raise XdsError("trace file is empty", file=str(path)) from None
    return lineno, [c.strip() for c in _split_csv(text, path, lineno)]


def _col(cols: list[str], name: str, path: Path, fmt: str) -> int:
    try:
        return cols.index(name)
    except ValueError:
        raise XdsError(f"{fmt} header lacks column {name!r} (header: {','.join(cols)})",
                       file=str(path), where="line 1") from None


def _no_rows(path: Path) -> XdsError:
    return XdsError("trace has a header but no requests", file=str(path))


# --------------------------------------------------------------------------------------------
# Azure LLM inference CSV
# --------------------------------------------------------------------------------------------

_TS_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?$")


def _parse_timestamp(text: str, day_cache: dict[str, int]) -> tuple[int, float]:
    """Parse an Azure timestamp into (whole seconds since the Unix epoch, fraction of a second).

    Naive timestamps (2023 format) are taken as UTC; ``+00:00``/``Z`` offsets (2024 format) are
    applied. Whole seconds and the fraction are kept apart so 100 ns digits survive float64."""
    m = _TS_RE.match(text)
    if m is None:
        raise ValueError(text)
    day_s, hh, mm, ss, frac, tz = m.groups()
    day = day_cache.get(day_s)
    if day is None:
        day = (_dt.date.fromisoformat(day_s).toordinal() - 719163) * 86400  # 719163 = 1970-01-01
        day_cache[day_s] = day
    h, mi, s = int(hh), int(mm), int(ss)
    if h > 23 or mi > 59 or s > 60:
        raise ValueError(text)
    whole = day + h * 3600 + mi * 60 + s
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        whole -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return whole, (int(frac) / 10 ** len(frac)) if frac else 0.0


def _read_azure(path: Path) -> Workload:
    lines = _lines(path)
    _, cols = _header(path, lines)
    i_ts = _col(cols, "TIMESTAMP", path, "Azure")
    i_in = _col(cols, "ContextTokens", path, "Azure")
    i_out = _col(cols, "GeneratedTokens", path, "Azure")
    need = max(i_ts, i_in, i_out) + 1
    whole, frac, inp, out = array("q"), array("d"), array("q"), array("q")
    days: dict[str, int] = {}
    for lineno, text in lines:
        row = _split_csv(text, path, lineno)
        try:
            if len(row) < need:
                raise ValueError
            a = int(row[i_in])
            b = int(row[i_out])
            if not (1 <= a <= MAX_INPUT_LEN and 1 <= b <= MAX_OUTPUT_LEN):
                raise ValueError
            w, f = _parse_timestamp(row[i_ts].strip(), days)
        except (ValueError, OverflowError):
            # slow path: say exactly what is wrong with this row
            a = _int_field(row, i_in, "ContextTokens", path=path, lineno=lineno, lo=1,
                           hi=MAX_INPUT_LEN)
            b = _int_field(row, i_out, "GeneratedTokens", path=path, lineno=lineno, lo=1,
                           hi=MAX_OUTPUT_LEN)
            if i_ts >= len(row):
                raise XdsError("missing column 'TIMESTAMP' (truncated line?)", file=str(path),
                               where=f"line {lineno}") from None
            try:
                w, f = _parse_timestamp(row[i_ts].strip(), days)
            except ValueError:
                raise XdsError(
                    f"TIMESTAMP {row[i_ts].strip()!r} is not a timestamp like "
                    "'2023-11-16 18:17:03.9799600' or '2024-05-10 00:00:00.009930+00:00'",
                    file=str(path), where=f"line {lineno}") from None
        whole.append(w)
        frac.append(f)
        inp.append(a)
        out.append(b)
    if not inp:
        raise _no_rows(path)
    wh = np.frombuffer(whole, dtype=np.int64)
    arrival = (wh - wh.min()).astype(np.float64) + np.frombuffer(frac, dtype=np.float64)
    return _finish(arrival, np.frombuffer(inp, dtype=np.int64).copy(),
                   np.frombuffer(out, dtype=np.int64).copy(), name=path.stem)


# --------------------------------------------------------------------------------------------
# BurstGPT CSV
# --------------------------------------------------------------------------------------------


def _read_burstgpt(path: Path) -> Workload:
    lines = _lines(path)
    _, cols = _header(path, lines)
    i_ts = _col(cols, "Timestamp", path, "BurstGPT")
    i_in = _col(cols, "Request tokens", path, "BurstGPT")
    i_out = _col(cols, "Response tokens", path, "BurstGPT")
    need = max(i_ts, i_in, i_out) + 1
    ts, inp, out = array("d"), array("q"), array("q")
    skipped = 0
    for lineno, text in lines:
        row = _split_csv(text, path, lineno)
        try:
            if len(row) < need:
                raise ValueError
            t = float(row[i_ts])
            a = int(row[i_in])
            b = int(row[i_out])
            if not (math.isfinite(t) and t >= 0 and 1 <= a <= MAX_INPUT_LEN
                    and 0 <= b <= MAX_OUTPUT_LEN):
                raise ValueError
        except (ValueError, OverflowError):
            t = _float_field(row, i_ts, "Timestamp", path=path, lineno=lineno)
            a = _int_field(row, i_in, "Request tokens", path=path, lineno=lineno, lo=1,
                           hi=MAX_INPUT_LEN)
            b = _int_field(row, i_out, "Response tokens", path=path, lineno=lineno, lo=0,
                           hi=MAX_OUTPUT_LEN)
        if b == 0:  # a failed request in BurstGPT: it generated nothing, so it is not replayed
            skipped += 1
            continue
        ts.append(t)
        inp.append(a)
        out.append(b)
    if not inp:
        if skipped:
            raise XdsError(f"all {skipped} requests failed (0 response tokens); nothing to replay",
                           file=str(path))
        raise _no_rows(path)
    return _finish(np.frombuffer(ts, dtype=np.float64).copy(),
                   np.frombuffer(inp, dtype=np.int64).copy(),
                   np.frombuffer(out, dtype=np.int64).copy(), name=path.stem, skipped=skipped)


# --------------------------------------------------------------------------------------------
# length-only CSV (+ synthetic arrivals)
# --------------------------------------------------------------------------------------------

LENGTH_INPUT_COLUMNS = ("num_prefill_tokens", "ContextTokens", "Request tokens", "input_length")
LENGTH_OUTPUT_COLUMNS = ("num_decode_tokens", "GeneratedTokens", "Response tokens", "output_length")


def _read_int_column(path: Path, column: str, *, lo: int, hi: int) -> np.ndarray:
    """One integer column of a CSV (streamed, validated row by row)."""
    _check_file(path)
    lines = _lines(path)
    _, cols = _header(path, lines)
    i = _col(cols, column, path, "length CSV")
    vals = array("q")
    for lineno, text in lines:
        row = _split_csv(text, path, lineno)
        try:
            v = int(row[i])
            if not lo <= v <= hi:
                raise ValueError
        except (ValueError, IndexError, OverflowError):
            v = _int_field(row, i, column, path=path, lineno=lineno, lo=lo, hi=hi)
        vals.append(v)
    if not vals:
        raise _no_rows(path)
    return np.frombuffer(vals, dtype=np.int64).copy()


def _read_lengths(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = _lines(path)
    _, cols = _header(path, lines)
    i_in = _col(cols, "num_prefill_tokens", path, "length CSV")
    i_out = _col(cols, "num_decode_tokens", path, "length CSV")
    inp, out = array("q"), array("q")
    for lineno, text in lines:
        row = _split_csv(text, path, lineno)
        try:
            a = int(row[i_in])
            b = int(row[i_out])
            if not (1 <= a <= MAX_INPUT_LEN and 1 <= b <= MAX_OUTPUT_LEN):
                raise ValueError
        except (ValueError, IndexError, OverflowError):
            a = _int_field(row, i_in, "num_prefill_tokens", path=path, lineno=lineno, lo=1,
                           hi=MAX_INPUT_LEN)
            b = _int_field(row, i_out, "num_decode_tokens", path=path, lineno=lineno, lo=1,
                           hi=MAX_OUTPUT_LEN)
        inp.append(a)
        out.append(b)
    if not inp:
        raise _no_rows(path)
    return np.frombuffer(inp, dtype=np.int64).copy(), np.frombuffer(out, dtype=np.int64).copy()


# --------------------------------------------------------------------------------------------
# Mooncake JSONL
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _json_int(d: dict, key: str, *, path: Path, lineno: int, lo: int, hi: int) -> int:
    where = f"line {lineno}"
    if key not in d:
        raise XdsError(f"missing field {key!r} (Mooncake rows need timestamp, input_length, "
                       "output_length, hash_ids)", file=str(path), where=where)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (
            isinstance(v, float) and not (math.isfinite(v) and v.is_integer())):
        raise XdsError(f"{key} must be a whole number, got {v!r}", file=str(path), where=where)
    v = int(v)
    if v < lo or v > hi:
        what = "negative" if v < 0 else ("zero" if v == 0 else "too large")
        raise XdsError(f"{key} is {what} ({v}); allowed {lo}..{hi:,}", file=str(path), where=where)
    return v


def _read_mooncake(path: Path, *, spread_buckets: bool | None = None,
                   bucket_s: float = MOONCAKE_BUCKET_S) -> Workload:
    ts, inp, out, offsets, ids = array("d"), array("q"), array("q"), array("q", [0]), array("q")
    any_blocks = False
    for lineno, text in _lines(path):
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
        t = d.get("timestamp")
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            if "timestamp" not in d:
                raise XdsError("missing field 'timestamp' (ms since trace start)", file=str(path),
                               where=where)
            raise XdsError(f"timestamp must be a number of ms, got {t!r}", file=str(path),
                           where=where)
        if not math.isfinite(t) or t < 0:
            raise XdsError(f"timestamp must be a finite number of ms >= 0, got {t!r}",
                           file=str(path), where=where)
        a = _json_int(d, "input_length", path=path, lineno=lineno, lo=1, hi=MAX_INPUT_LEN)
        b = _json_int(d, "output_length", path=path, lineno=lineno, lo=1, hi=MAX_OUTPUT_LEN)
        h = d.get("hash_ids")
        if h is not None:
            any_blocks = True
            if not isinstance(h, list):
                raise XdsError(f"hash_ids must be a list of block ids, got {type(h).__name__}",
                               file=str(path), where=where)
            try:
                ids.extend(h)  # array('q') rejects floats, bools are ints: check below
            except (TypeError, OverflowError):
                raise XdsError("hash_ids must hold whole numbers in 0..2^63-1", file=str(path),
                               where=where) from None
            if h and (min(h) < 0 or any(isinstance(x, bool) for x in h)):
                raise XdsError("hash_ids must hold whole numbers >= 0", file=str(path),
                               where=where)
        ts.append(float(t))
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
    if not _is_sorted(arrival):
        # a bucket holding more requests than its gap to the next one allows overlaps it: re-sort
        again = np.argsort(arrival, kind="stable")
        arrival, order = arrival[again], order[again]
    off = ids_a = None
    if any_blocks:
        off, ids_a = _csr_take(np.frombuffer(offsets, dtype=np.int64),
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


# --------------------------------------------------------------------------------------------
# format detection and the public reader
# --------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """Guess the trace format from its first line (and extension): one of ``FORMATS``."""
    p = Path(path)
    _check_file(p)
    for lineno, text in _lines(p):
        stripped = text.lstrip()
        if stripped.startswith("{") or p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            return "mooncake"
        cols = {c.strip() for c in _split_csv(text, p, lineno)}
        if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= cols:
            return "azure"
        if {"Timestamp", "Request tokens", "Response tokens"} <= cols:
            return "burstgpt"
        if {"num_prefill_tokens", "num_decode_tokens"} <= cols:
            return "lengths"
        raise XdsError(
            f"unrecognised trace header {text[:80]!r}; expected Azure (TIMESTAMP,ContextTokens,"
            "GeneratedTokens), BurstGPT (Timestamp,Model,Request tokens,Response tokens,...), a "
            "length CSV (num_prefill_tokens,num_decode_tokens,...) or Mooncake JSONL",
            file=str(p), where="line 1")
    raise XdsError("trace file is empty", file=str(p))


def read_trace(path: str | Path, fmt: str = "auto", *, rate_rps: float | None = None,
               arrival: str = "poisson", cv: float = 1.0, seed: int = 0,
               spread_buckets: bool | None = None) -> Workload:
    """Read a trace file into a :class:`Workload` (arrivals shifted to start at 0 s, sorted stably).

    ``fmt`` is ``auto`` (from header / extension) or one of ``FORMATS``. Length-only CSVs have no
    timestamps: ``rate_rps`` (req/s, required), ``arrival`` and ``cv`` give them a synthetic arrival
    process seeded by ``seed``. ``spread_buckets`` forces (True) or disables (False) the Mooncake
    3 s bucket spreading; by default it is applied when the timestamps sit on a 3 s grid.
    """
    p = Path(path)
    if fmt not in ("auto",) + FORMATS:
        raise XdsError(f"unknown trace format {fmt!r}; allowed: auto, {', '.join(FORMATS)}",
                       file=str(p))
    _check_file(p)
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt == "lengths":
        if rate_rps is None:
            raise XdsError("a length-only trace has no timestamps: give rate_rps (req/s) for the "
                           "arrival process", file=str(p))
        inp, out = _read_lengths(p)
        arr = _arrival_times(np.random.Generator(np.random.PCG64(seed)), len(inp), None,
                             rate_rps, arrival, cv)
        return Workload(arr, inp, out, name=p.stem)
    if rate_rps is not None:
        raise XdsError(f"rate_rps applies to synthetic workloads and length-only traces, not to a "
                       f"timestamped {fmt} trace; use rate_scale instead", file=str(p))
    if fmt == "azure":
        return _read_azure(p)
    if fmt == "burstgpt":
        return _read_burstgpt(p)
    return _read_mooncake(p, spread_buckets=spread_buckets)


# --------------------------------------------------------------------------------------------
# synthetic workloads
# --------------------------------------------------------------------------------------------


class LengthDist(Strict):
    """A token-length distribution.

    * ``fixed``: every request has ``value`` tokens.
    * ``uniform``: integers uniform in [``low``, ``high``] (inclusive).
    * ``lognormal``: ``mean`` is the mean length in tokens, ``sigma`` the standard deviation of the
      underlying normal; samples are rounded to whole tokens (at least 1). Optional ``low``/``high``
      clip explicitly (without them, a sample beyond the length limits is an error).
    * ``empirical``: resample a column of a CSV ``file`` (``column`` defaults to the input or output
      column of a length CSV / Azure / BurstGPT / Mooncake-style header).
    """

    dist: Literal["fixed", "uniform", "lognormal", "empirical"]
    value: int | None = Field(default=None, ge=1, le=MAX_INPUT_LEN)
    low: int | None = Field(default=None, ge=1, le=MAX_INPUT_LEN)
    high: int | None = Field(default=None, ge=1, le=MAX_INPUT_LEN)
    mean: float | None = Field(default=None, gt=0, le=MAX_INPUT_LEN)
    sigma: float | None = Field(default=None, gt=0, le=10)
    file: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "LengthDist":
        allowed = {
            "fixed": ({"value"}, set()),
            "uniform": ({"low", "high"}, set()),
            "lognormal": ({"mean", "sigma"}, {"low", "high"}),
            "empirical": ({"file"}, {"column"}),
        }[self.dist]
        required, optional = allowed
        given = {k for k in ("value", "low", "high", "mean", "sigma", "file", "column")
                 if getattr(self, k) is not None}
        missing = required - given
        if missing:
            raise ValueError(f"dist {self.dist} needs {', '.join(sorted(missing))}")
        extra = given - required - optional
        if extra:
            raise ValueError(f"dist {self.dist} does not use {', '.join(sorted(extra))} "
                             f"(it takes {', '.join(sorted(required | optional))})")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


def _as_dist(d: LengthDist | dict | int, label: str) -> LengthDist:
    if isinstance(d, LengthDist):
        return d
    if isinstance(d, bool):
        raise XdsError(f"{label} must be a length distribution", where=label)
    if isinstance(d, (int, np.integer)):
        return LengthDist(dist="fixed", value=int(d))
    if isinstance(d, dict):
        from .spec.yamlio import validate
        return validate(LengthDist, d, file="synthetic()", where_prefix=label)
    raise XdsError(f"{label} must be a length distribution mapping like "
                   "{dist: lognormal, mean: 1000, sigma: 1}", where=label)


def _arrival_times(rng: np.random.Generator, n: int | None, duration_s: float | None,
                   rate_rps: float, arrival: str, cv: float) -> np.ndarray:
    """Arrival times (s) of a renewal process with mean gap 1/rate_rps: exponential gaps
    (Poisson) or Gamma gaps with shape 1/cv^2 (CV of the gaps = cv). The first request arrives
    after one gap. With ``duration_s`` only arrivals < duration_s are kept."""
    for name, v in (("rate_rps", rate_rps), ("cv", cv)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise XdsError(f"{name} must be a finite number > 0 (got {v!r})", where=name)
    if arrival not in ("poisson", "gamma"):
        raise XdsError(f"unknown arrival process {arrival!r}; allowed: poisson, gamma",
                       where="arrival")
    if arrival == "poisson" and cv != 1.0:
        raise XdsError(f"a Poisson process has cv 1 (got {cv}); use arrival: gamma for other "
                       "burstiness", where="cv")
    mean_gap = 1.0 / rate_rps

    def gaps(k: int) -> np.ndarray:
        if arrival == "poisson":
            return rng.exponential(mean_gap, size=k)
        shape = 1.0 / (cv * cv)
        return rng.gamma(shape, mean_gap / shape, size=k)

    if n is not None:
        t = np.cumsum(gaps(n))
        if duration_s is not None:
            t = t[t < duration_s]
        return t
    assert duration_s is not None
    expected = rate_rps * duration_s
    if expected > 50_000_000:
        raise XdsError(f"rate_rps x duration_s asks for ~{expected:,.0f} requests; at most "
                       "50,000,000 are supported", where="duration_s")
    # draw a little more than expected; top up in chunks in the rare case it is not enough
    chunk = int(expected + 8 * math.sqrt(expected + 1) * max(cv, 1.0) + 64)
    parts = [np.cumsum(gaps(chunk))]
    while parts[-1][-1] < duration_s:
        parts.append(parts[-1][-1] + np.cumsum(gaps(chunk)))
    t = np.concatenate(parts)
    return t[t < duration_s]


def _sample_lengths(rng: np.random.Generator, d: LengthDist, n: int, *, label: str, hi: int,
                    base_dir: Path | None, rows: dict) -> np.ndarray:
    if d.dist == "fixed":
        if d.value > hi:
            raise XdsError(f"value {d.value:,} exceeds the limit of {hi:,} tokens", where=label)
        return np.full(n, d.value, dtype=np.int64)
    if d.dist == "uniform":
        if d.high > hi:
            raise XdsError(f"high {d.high:,} exceeds the limit of {hi:,} tokens", where=label)
        return rng.integers(d.low, d.high, size=n, endpoint=True, dtype=np.int64)
    if d.dist == "lognormal":
        mu = math.log(d.mean) - 0.5 * d.sigma**2  # so that E[X] = mean
        x = np.rint(rng.lognormal(mu, d.sigma, size=n))
        if d.low is not None or d.high is not None:
            x = np.clip(x, d.low or 1, d.high or hi)  # explicit, user-requested clipping
        x = np.maximum(x, 1)  # a request has at least one token
        if n and x.max() > hi:
            raise XdsError(f"lognormal(mean={d.mean}, sigma={d.sigma}) drew {x.max():,.0f} tokens, "
                           f"above the limit of {hi:,}; set high to cap it", where=label)
        return x.astype(np.int64)
    # empirical
    path = _resolve(d.file, base_dir, what="length file")
    column = d.column
    if column is None:
        column = _default_length_column(path, output=(label.endswith("output")))
    pool = _read_int_column(path, column, lo=1, hi=hi)
    # Reuse the same row draws for input and output from one file so their correlation survives.
    key = (str(path.resolve()), len(pool))
    idx = rows.get(key)
    if idx is None:
        idx = rng.integers(0, len(pool), size=n)
        rows[key] = idx
    return pool[idx]


def _default_length_column(path: Path, *, output: bool) -> str:
    _check_file(path)
    lines = _lines(path)
    _, cols = _header(path, lines)
    options = LENGTH_OUTPUT_COLUMNS if output else LENGTH_INPUT_COLUMNS
    for c in options:
        if c in cols:
            return c
    raise XdsError(f"no {'output' if output else 'input'} length column found (looked for "
                   f"{', '.join(options)}); set column", file=str(path), where="line 1")


def synthetic(*, rate_rps: float, input: LengthDist | dict | int, output: LengthDist | dict | int,
              requests: int | None = None, duration_s: float | None = None,
              arrival: str = "poisson", cv: float = 1.0, seed: int = 0,
              base_dir: Path | None = None, name: str = "synthetic") -> Workload:
    """Generate a synthetic workload (vectorized, deterministic for a seed).

    Arrivals: renewal process at ``rate_rps`` req/s, ``poisson`` (exponential gaps) or ``gamma``
    (gap CV = ``cv``, shape 1/cv^2). Size: ``requests`` (count), ``duration_s`` (s; arrivals in
    [0, duration_s)), or both (count, then truncated at the duration). Lengths: ``input`` / ``output``
    are :class:`LengthDist` (or a mapping, or an int for a fixed length). The random stream is
    ``numpy.random.Generator(PCG64(seed))``: arrivals first, then input, then output lengths.
    """
    if requests is None and duration_s is None:
        raise XdsError("a synthetic workload needs requests or duration_s", where="requests")
    if requests is not None and (isinstance(requests, bool) or int(requests) != requests
                                 or not 1 <= requests <= MAX_REQUESTS):
        raise XdsError(f"requests must be a whole number in [1, {MAX_REQUESTS:,}] (got {requests!r})",
                       where="requests")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise XdsError(f"duration_s must be a finite number > 0 (got {duration_s!r})",
                       where="duration_s")
    din, dout = _as_dist(input, "input"), _as_dist(output, "output")
    rng = np.random.Generator(np.random.PCG64(seed))
    t = _arrival_times(rng, None if requests is None else int(requests), duration_s, rate_rps,
                       arrival, cv)
    n = len(t)
    rows: dict = {}
    inp = _sample_lengths(rng, din, n, label="input", hi=MAX_INPUT_LEN, base_dir=base_dir,
                          rows=rows)
    out = _sample_lengths(rng, dout, n, label="output", hi=MAX_OUTPUT_LEN, base_dir=base_dir,
                          rows=rows)
    return Workload(t, inp, out, name=name)


# --------------------------------------------------------------------------------------------
# transformations
# --------------------------------------------------------------------------------------------


def rate_scale(w: Workload, x: float) -> Workload:
    """Compress time by ``x``: arrivals / x, so the offered rate is multiplied by x (x > 0)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
        raise XdsError(f"rate_scale must be a finite number > 0 (got {x!r})", where="rate_scale")
    return Workload(w.arrival_s / float(x), w.input_len, w.output_len, w.block_offsets,
                    w.block_ids, w.block_tokens, w.name, w.skipped)


def truncate(w: Workload, *, requests: int | None = None,
             duration_s: float | None = None) -> Workload:
    """Keep the first ``requests`` requests and/or those arriving before ``duration_s`` (s)."""
    k = len(w)
    if duration_s is not None:
        k = min(k, int(np.searchsorted(w.arrival_s, duration_s, side="left")))
    if requests is not None:
        k = min(k, int(requests))
    return w if k == len(w) else _head(w, k)


def loop_to_duration(w: Workload, duration_s: float) -> Workload:
    """Repeat the trace to fill ``duration_s`` seconds, truncated at ``duration_s``.

    Repetition k is shifted by k * (span + mean inter-arrival gap), so the seam between two loops
    looks like an ordinary gap. Prefix block ids are kept as they are: a looped trace replays the
    same conversations, so a later loop hitting blocks of an earlier one is real reuse (a prefix
    cache large enough to hold a whole loop will see a higher hit rate on looped traces).
    """
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or \
            not math.isfinite(duration_s) or duration_s <= 0:
        raise XdsError(f"duration_s must be a finite number > 0 (got {duration_s!r})",
                       where="duration_s")
    n = len(w)
    if n == 0:
        raise XdsError("cannot loop an empty workload", where="duration_s")
    if n < 2 or w.span_s <= 0:
        raise XdsError("cannot loop a workload whose requests all arrive at once (span 0 s)",
                       where="duration_s")
    start = float(w.arrival_s[0])
    span = w.span_s
    period = span + span / (n - 1)
    if start + span >= duration_s:
        return truncate(w, duration_s=duration_s)
    needed = ((duration_s - start) / period + 1.0) * n
    if needed > 200_000_000:
        raise XdsError(f"looping to {duration_s:g} s needs ~{needed:.3g} requests; at most "
                       "200,000,000 are supported", where="duration_s")
    reps = int(math.ceil((duration_s - start) / period)) + 1
    arrival = (w.arrival_s[None, :] + (np.arange(reps, dtype=np.float64) * period)[:, None]).ravel()
    k = int(np.searchsorted(arrival, duration_s, side="left"))
    arrival = arrival[:k]
    full, rest = divmod(k, n)
    off = ids = None
    if w.block_ids is not None:
        lengths = np.diff(w.block_offsets)
        all_len = np.concatenate([np.tile(lengths, full), lengths[:rest]])
        off = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(all_len, out=off[1:])
        ids = np.concatenate([np.tile(w.block_ids, full), w.block_ids[: w.block_offsets[rest]]])

    def rep(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.tile(a, full), a[:rest]])

    return Workload(arrival, rep(w.input_len), rep(w.output_len), off, ids, w.block_tokens,
                    w.name, w.skipped)


# --------------------------------------------------------------------------------------------
# prefix cache
# --------------------------------------------------------------------------------------------


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


def _dense_ids(ids: np.ndarray) -> np.ndarray:
    """Block ids as small non-negative ints usable as array indices. Mooncake ids are already
    dense (0..unique-1); sparse ids (e.g. raw 64-bit hashes) are remapped with a sort."""
    if len(ids) == 0 or int(ids.max()) < 8 * len(ids) + (1 << 20):
        return ids
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def _unique_count(ids: np.ndarray) -> int:
    dense = _dense_ids(ids)
    return int(np.count_nonzero(np.bincount(dense))) if len(dense) else 0


def _prefix_hits_infinite(off: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Leading hits per request with an infinite cache, vectorized: a block hits iff its first
    occurrence is in an earlier request."""
    n = len(off) - 1
    lengths = np.diff(off)
    req = np.repeat(np.arange(n, dtype=np.int64), lengths)
    dense = _dense_ids(ids)
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
    """Leading hits per request through an LRU of ``capacity`` blocks (OrderedDict replay; the
    hot loop is kept free of attribute lookups)."""
    cache = PrefixCache(capacity)
    lru = cache._lru
    move = lru.move_to_end
    pop = lru.popitem
    ids_l = ids.tolist()
    off_l = off.tolist()
    out = array("q", bytes(8 * (len(off_l) - 1)))
    for r in range(len(off_l) - 1):
        chain = ids_l[off_l[r]:off_l[r + 1]]
        h = 0
        for b in chain:
            if b in lru:
                h += 1
            else:
                break
        out[r] = h
        for b in reversed(chain):
            if b in lru:
                move(b)
            else:
                lru[b] = None
        while len(lru) > capacity:
            pop(last=False)
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
    unique = _unique_count(ids)
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


# --------------------------------------------------------------------------------------------
# spec (plan YAML / gate suite `workload:`)
# --------------------------------------------------------------------------------------------


class WorkloadSpec(Strict):
    """``workload:`` in a plan or a gate check: a trace file or a synthetic generator.

    Trace: ``trace`` (path, relative to the spec's folder first, then the current directory),
    ``format``, ``rate_scale`` (time compression factor), ``duration_s`` (loop or truncate to this
    many seconds), ``requests`` (keep the first N). A length-only trace also needs ``rate_rps``
    (and optionally ``arrival``/``cv``). Synthetic (no ``trace``): ``rate_rps``, ``arrival``,
    ``cv``, ``input``, ``output`` and ``requests`` and/or ``duration_s``.
    """

    trace: str | None = None
    format: Format = "auto"
    rate_scale: float = Field(default=1.0, gt=0)
    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, gt=0, le=MAX_REQUESTS)
    arrival: Literal["poisson", "gamma"] = "poisson"
    rate_rps: float | None = Field(default=None, gt=0)
    cv: float = Field(default=1.0, gt=0)
    input: LengthDist | None = None
    output: LengthDist | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "WorkloadSpec":
        if self.arrival == "poisson" and self.cv != 1.0:
            raise ValueError(f"cv {self.cv} needs arrival: gamma (a Poisson process has cv 1)")
        if self.trace is None:
            missing = [k for k in ("rate_rps", "input", "output") if getattr(self, k) is None]
            if missing:
                raise ValueError("a synthetic workload (no trace) needs " + ", ".join(missing))
            if self.requests is None and self.duration_s is None:
                raise ValueError("a synthetic workload needs requests or duration_s")
            if "format" in self.model_fields_set:
                raise ValueError("format applies to a trace file; give trace too")
            if "rate_scale" in self.model_fields_set and self.rate_scale != 1.0:
                raise ValueError("rate_scale applies to traces; set rate_rps for synthetic load")
        else:
            if self.input is not None or self.output is not None:
                raise ValueError("input/output length distributions are for synthetic "
                                 "workloads; a trace brings its own lengths")
            if self.format in ("azure", "mooncake", "burstgpt"):
                extra = [k for k in ("rate_rps", "arrival", "cv") if k in self.model_fields_set]
                if extra:
                    raise ValueError(f"{', '.join(extra)} apply to synthetic workloads and "
                                     f"length-only traces, not a {self.format} trace; use "
                                     "rate_scale")
            if self.format == "lengths" and self.rate_rps is None:
                raise ValueError("a length-only trace needs rate_rps (req/s) for its arrivals")
        return self


def _resolve(path: str, base_dir: Path | None, *, what: str) -> Path:
    """A relative path resolves from ``base_dir`` first, then the current directory."""
    p = Path(path).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = ([base_dir / p] if base_dir is not None else []) + [Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return c
    looked = " and ".join(str(c) for c in candidates)
    raise XdsError(f"{what} not found (looked in {looked})", file=path)


def load_workload(spec: WorkloadSpec, *, base_dir: Path | None = None, seed: int = 0) -> Workload:
    """Build the workload a spec describes.

    Trace: read -> ``rate_scale`` -> ``duration_s`` (loop the trace when it is shorter, truncate
    when longer) -> ``requests`` (first N). Synthetic: :func:`synthetic` with ``seed``.
    """
    if spec.trace is None:
        return synthetic(rate_rps=spec.rate_rps, input=spec.input, output=spec.output,
                         requests=spec.requests, duration_s=spec.duration_s,
                         arrival=spec.arrival, cv=spec.cv, seed=seed, base_dir=base_dir)
    path = _resolve(spec.trace, base_dir, what="trace file")
    fmt = detect_format(path) if spec.format == "auto" else spec.format
    if fmt != "lengths":
        extra = [k for k in ("rate_rps", "arrival", "cv") if k in spec.model_fields_set]
        if extra:
            raise XdsError(f"{', '.join(extra)} apply to synthetic workloads and length-only "
                           f"traces, not a {fmt} trace; use rate_scale", file=str(path),
                           where="workload")
    w = read_trace(path, fmt, rate_rps=spec.rate_rps if fmt == "lengths" else None,
                   arrival=spec.arrival, cv=spec.cv, seed=seed)
    if spec.rate_scale != 1.0:
        w = rate_scale(w, spec.rate_scale)
    if spec.duration_s is not None:
        w = loop_to_duration(w, spec.duration_s) if len(w) > 1 and w.span_s > 0 else \
            truncate(w, duration_s=spec.duration_s)
    if spec.requests is not None:
        w = truncate(w, requests=spec.requests)
    if len(w) == 0:
        raise XdsError("the workload is empty after applying duration_s / requests",
                       file=str(path), where="workload")
    return w
