"""Streaming text input for trace readers: file checks, one line at a time (UTF-8 decoded per line
so binary garbage is reported at its line), CSV splitting and located field errors.

Every error is an :class:`XdsError` naming the file and ``line N``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterator

from ..errors import XdsError

MAX_TRACE_BYTES = 2 * 1024**3  # 2 GiB: larger traces are refused (loop or rate-scale a smaller one)


def check_file(path: Path) -> None:
    """Refuse a missing, folder, empty or over-``MAX_TRACE_BYTES`` trace file."""
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


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
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


def split_csv(text: str, path: Path, lineno: int) -> list[str]:
    """The fields of one CSV line."""
    # Fast path for the common unquoted case; csv handles quoted fields (a quoted model name).
    if '"' in text:
        try:
            return next(csv.reader([text]))
        except csv.Error as exc:         # e.g. a bare carriage return inside a quoted line
            raise XdsError(f"not a valid CSV line ({exc}); expected comma-separated fields, "
                           "quoted with \" where needed", file=str(path), where=f"line {lineno}") from None
    return text.split(",")


def header(path: Path, rows: Iterator[tuple[int, str]]) -> list[str]:
    """The stripped column names of the first line of ``rows``."""
    try:
        lineno, text = next(rows)
    except StopIteration:
        raise XdsError("trace file is empty", file=str(path)) from None
    return [c.strip() for c in split_csv(text, path, lineno)]


def column_index(cols: list[str], name: str, path: Path, fmt: str) -> int:
    """Position of column ``name`` in a ``fmt`` header, or a located error."""
    try:
        return cols.index(name)
    except ValueError:
        raise XdsError(f"{fmt} header lacks column {name!r} (header: {','.join(cols)})",
                       file=str(path), where="line 1") from None


def no_rows(path: Path) -> XdsError:
    return XdsError("trace has a header but no requests", file=str(path))


def parse_int(text: str) -> int:
    """A whole number; ``"12.0"`` is accepted, ``"nan"``/``"inf"``/``"12.5"`` raise ValueError."""
    try:
        return int(text)
    except ValueError:
        v = float(text)
        if not math.isfinite(v) or not v.is_integer():
            raise ValueError(text) from None
        return int(v)


def range_error(name: str, v: int, lo: int, hi: int, *, unit: str, path: Path,
                where: str) -> XdsError | None:
    """The located error for a whole number ``v`` outside ``lo..hi`` (None when inside)."""
    if lo <= v <= hi:
        return None
    what = "negative" if v < 0 else ("zero" if v == 0 else "too large")
    return XdsError(f"{name} is {what} ({v}); allowed {lo}..{hi:,}{unit}", file=str(path),
                    where=where)


def cell(row: list[str], col: int, name: str, path: Path, where: str) -> str:
    """The stripped text of column ``col``, or a located error for a short (truncated) row."""
    if col >= len(row):
        raise XdsError(f"missing column {name!r} (row has {len(row)} fields; truncated line?)",
                       file=str(path), where=where)
    return row[col].strip()


def int_field(row: list[str], col: int, name: str, *, path: Path, lineno: int, lo: int,
              hi: int) -> int:
    """Parse a token-count column (``lo..hi`` tokens) with a located, specific error."""
    where = f"line {lineno}"
    text = cell(row, col, name, path, where)
    try:
        v = parse_int(text)
    except (ValueError, OverflowError):
        raise XdsError(f"{name} must be a whole number of tokens, got {text!r}", file=str(path),
                       where=where) from None
    err = range_error(name, v, lo, hi, unit=" tokens", path=path, where=where)
    if err is not None:
        raise err
    return v


def float_field(row: list[str], col: int, name: str, *, path: Path, lineno: int) -> float:
    """Parse a time column (s, finite, >= 0) with a located, specific error."""
    where = f"line {lineno}"
    text = cell(row, col, name, path, where)
    try:
        v = float(text)
    except ValueError:
        raise XdsError(f"{name} must be a number of seconds, got {text!r}", file=str(path),
                       where=where) from None
    if not math.isfinite(v) or v < 0:
        raise XdsError(f"{name} must be a finite number >= 0, got {text!r}", file=str(path),
                       where=where)
    return v


def resolve(path: str, base_dir: Path | None, *, what: str) -> Path:
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
