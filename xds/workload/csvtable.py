"""Table-driven CSV trace reading: a :class:`CsvFormat` maps header names to request columns
(arrival time, prompt tokens, output tokens) and one streaming reader validates every format.

Each row takes a fast path (builtin ``int``/``float`` and a range test); only a row that fails it is
parsed again column by column, in the format's column order, to say exactly what is wrong with it
(file, ``line N``, column, value)."""

from __future__ import annotations

import datetime as _dt
import math
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from ..errors import XdsError
from ..spec.workload import MAX_INPUT_LEN
from .lines import (
    check_file,
    column_index,
    float_field,
    header,
    int_field,
    no_rows,
    read_lines,
    split_csv,
)

Kind = Literal["tokens", "seconds", "timestamp"]


@dataclass(frozen=True)
class Column:
    """One CSV column: its ``header`` name, the request attribute it fills (``role``: arrival,
    input, output or value) and its ``kind``: ``tokens`` (a whole number in ``lo..hi`` tokens),
    ``seconds`` (a time in s, finite and >= 0) or ``timestamp`` (an Azure date-time)."""

    header: str
    role: str
    kind: Kind = "tokens"
    lo: int = 1
    hi: int = MAX_INPUT_LEN


@dataclass(frozen=True)
class CsvFormat:
    """A CSV trace format: ``name`` (``FORMATS`` key), ``label`` (in error messages), its
    ``columns`` in the order a bad row is checked, and ``skip_zero``: the role whose 0 marks a
    failed request (skipped and counted in ``Workload.skipped``)."""

    name: str
    label: str
    columns: tuple[Column, ...]
    skip_zero: str | None = None

    @property
    def headers(self) -> frozenset[str]:
        return frozenset(c.header for c in self.columns)


_TS_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?$")


def parse_timestamp(text: str, day_cache: dict[str, int]) -> tuple[int, float]:
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


class _Timestamps:
    """Column store of timestamps: whole seconds and fractions apart (see parse_timestamp)."""

    def __init__(self) -> None:
        self.whole, self.frac = array("q"), array("d")

    def append(self, v: tuple[int, float]) -> None:
        self.whole.append(v[0])
        self.frac.append(v[1])

    def seconds(self) -> np.ndarray:
        """Seconds since the earliest timestamp (float64)."""
        wh = np.frombuffer(self.whole, dtype=np.int64)
        return (wh - wh.min()).astype(np.float64) + np.frombuffer(self.frac, dtype=np.float64)


Fast = Callable[[str], Any]
Slow = Callable[[list[str], int, int], Any]


def _tokens(c: Column, path: Path) -> tuple[Fast, Slow, Any]:
    lo, hi = c.lo, c.hi

    def fast(text: str) -> int:
        v = int(text)
        if not lo <= v <= hi:
            raise ValueError
        return v

    def slow(row: list[str], i: int, lineno: int) -> int:
        return int_field(row, i, c.header, path=path, lineno=lineno, lo=lo, hi=hi)

    return fast, slow, array("q")


def _seconds(c: Column, path: Path) -> tuple[Fast, Slow, Any]:
    def fast(text: str) -> float:
        v = float(text)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError
        return v

    def slow(row: list[str], i: int, lineno: int) -> float:
        return float_field(row, i, c.header, path=path, lineno=lineno)

    return fast, slow, array("d")


def _timestamp(c: Column, path: Path) -> tuple[Fast, Slow, Any]:
    days: dict[str, int] = {}

    def fast(text: str) -> tuple[int, float]:
        return parse_timestamp(text.strip(), days)

    def slow(row: list[str], i: int, lineno: int) -> tuple[int, float]:
        if i >= len(row):
            raise XdsError(f"missing column {c.header!r} (truncated line?)", file=str(path),
                           where=f"line {lineno}")
        try:
            return parse_timestamp(row[i].strip(), days)
        except ValueError:
            raise XdsError(
                f"{c.header} {row[i].strip()!r} is not a timestamp like "
                "'2023-11-16 18:17:03.9799600' or '2024-05-10 00:00:00.009930+00:00'",
                file=str(path), where=f"line {lineno}") from None

    return fast, slow, _Timestamps()


_KINDS = {"tokens": _tokens, "seconds": _seconds, "timestamp": _timestamp}


def _as_array(store: Any) -> np.ndarray:
    if isinstance(store, _Timestamps):
        return store.seconds()
    return np.frombuffer(store, dtype=np.int64 if store.typecode == "q" else np.float64).copy()


_PARSED: dict[tuple, tuple[dict[str, np.ndarray], int]] = {}
_PARSED_MAX = 4      # traces kept parsed per process (a chaos --policy all run reads its trace per run)


def read_columns(path: Path, fmt: CsvFormat) -> tuple[dict[str, np.ndarray], int]:
    """Stream a CSV trace of format ``fmt``: ``({role: column array}, skipped rows)``.

    Token columns are int64, a ``seconds`` column float64 as in the file, a ``timestamp`` column
    float64 seconds since its earliest row. Rows are kept in file order. The last few files parsed
    are kept (keyed by path, size and modification time) and returned as fresh copies."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, fmt)
    if key not in _PARSED:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = _parse_columns(path, fmt)
    cols, skipped = _PARSED[key]
    return {r: a.copy() for r, a in cols.items()}, skipped


def _parse_columns(path: Path, fmt: CsvFormat) -> tuple[dict[str, np.ndarray], int]:
    rows = read_lines(path)
    cols = header(path, rows)
    # The time column is looked up first, so a header lacking several columns names it.
    lookup = sorted(fmt.columns, key=lambda c: c.kind == "tokens")
    where = {c.header: column_index(cols, c.header, path, fmt.label) for c in lookup}
    idx = [where[c.header] for c in fmt.columns]
    parsers = [_KINDS[c.kind](c, path) for c in fmt.columns]
    fast = [(p[0], i) for p, i in zip(parsers, idx)]
    slow = [(p[1], i) for p, i in zip(parsers, idx)]
    stores = [p[2] for p in parsers]
    puts = [s.append for s in stores]
    roles = [c.role for c in fmt.columns]
    skip = roles.index(fmt.skip_zero) if fmt.skip_zero is not None else None
    need = max(idx) + 1
    kept = skipped = 0
    for lineno, text in rows:
        row = split_csv(text, path, lineno)
        try:
            if len(row) < need:
                raise ValueError
            vals = [parse(row[i]) for parse, i in fast]
        except (ValueError, OverflowError):
            # slow path: say exactly what is wrong with this row
            vals = [check(row, i, lineno) for check, i in slow]
        if skip is not None and vals[skip] == 0:
            skipped += 1
            continue
        for put, v in zip(puts, vals):
            put(v)
        kept += 1
    if not kept:
        if skipped:
            failed = fmt.columns[skip].header.lower()
            raise XdsError(f"all {skipped} requests failed (0 {failed}); nothing to replay",
                           file=str(path))
        raise no_rows(path)
    return {r: _as_array(s) for r, s in zip(roles, stores)}, skipped


def read_int_column(path: Path, column: str, *, lo: int, hi: int) -> np.ndarray:
    """One integer column (``lo..hi``) of a CSV file (streamed, validated row by row)."""
    check_file(path)
    fmt = CsvFormat("column", "length CSV", (Column(column, "value", "tokens", lo, hi),))
    return read_columns(path, fmt)[0]["value"]


def header_of(path: Path) -> list[str]:
    """The column names of a CSV file."""
    check_file(path)
    return header(path, read_lines(path))
