"""Trace files: one column map per format and the public reader.

* Azure LLM inference CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``), 2023 timestamps
  (``2023-11-16 18:17:03.9799600``) and 2024 timestamps (``2024-05-10 00:00:00.009930+00:00``).
* BurstGPT CSV (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``); rows with
  0 response tokens are failed requests: they are skipped and counted in ``Workload.skipped``.
* Length-only CSV (``num_prefill_tokens,num_decode_tokens,...``, ShareGPT / arXiv summarization as
  processed by Sarathi/Vidur) with a synthetic arrival process (``rate_rps``, Poisson or Gamma).
* Mooncake JSONL (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``): see
  :mod:`xds.workload.mooncake`.

Readers stream the file line by line (never more than one line of text in memory besides the
growing ``array('q')`` columns) and every bad row raises :class:`XdsError` naming the file and
``line N``. Nothing is clipped silently: prompts longer than ``MAX_INPUT_LEN`` or outputs longer than
``MAX_OUTPUT_LEN`` tokens are bad rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import XdsError
from ..spec.workload import FORMATS, MAX_INPUT_LEN, MAX_OUTPUT_LEN
from .core import Workload, finish
from .csvtable import Column, CsvFormat, read_columns
from .generator import arrival_times
from .lines import check_file, read_lines, split_csv
from .mooncake import read_mooncake

# Column maps of the CSV formats, in detection order (a header holding every column of a format
# is that format). Columns are listed in the order a bad row is checked.
CSV_FORMATS = (
    CsvFormat("azure", "Azure", (
        Column("ContextTokens", "input", "tokens", 1, MAX_INPUT_LEN),
        Column("GeneratedTokens", "output", "tokens", 1, MAX_OUTPUT_LEN),
        Column("TIMESTAMP", "arrival", "timestamp"))),
    CsvFormat("burstgpt", "BurstGPT", (
        Column("Timestamp", "arrival", "seconds"),
        Column("Request tokens", "input", "tokens", 1, MAX_INPUT_LEN),
        Column("Response tokens", "output", "tokens", 0, MAX_OUTPUT_LEN)),
        skip_zero="output"),
    CsvFormat("lengths", "length CSV", (
        Column("num_prefill_tokens", "input", "tokens", 1, MAX_INPUT_LEN),
        Column("num_decode_tokens", "output", "tokens", 1, MAX_OUTPUT_LEN))),
)
_BY_NAME = {f.name: f for f in CSV_FORMATS}


def detect_format(path: str | Path) -> str:
    """Guess the trace format from its first line (and extension): one of ``FORMATS``."""
    p = Path(path)
    check_file(p)
    for lineno, text in read_lines(p):
        stripped = text.lstrip()
        if stripped.startswith("{") or p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            return "mooncake"
        cols = {c.strip() for c in split_csv(text, p, lineno)}
        for fmt in CSV_FORMATS:
            if fmt.headers <= cols:
                return fmt.name
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
    check_file(p)
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt == "lengths":
        if rate_rps is None:
            raise XdsError("a length-only trace has no timestamps: give rate_rps (req/s; --rate on the command line) for the "
                           "arrival process", file=str(p))
        cols, _ = read_columns(p, _BY_NAME[fmt])
        arr = arrival_times(np.random.Generator(np.random.PCG64(seed)), len(cols["input"]), None,
                            rate_rps, arrival, cv)
        return Workload(arr, cols["input"], cols["output"], name=p.stem)
    if rate_rps is not None:
        raise XdsError(f"rate_rps applies to synthetic workloads and length-only traces, not to a "
                       f"timestamped {fmt} trace; use rate_scale instead", file=str(p))
    if fmt == "mooncake":
        return read_mooncake(p, spread_buckets=spread_buckets)
    cols, skipped = read_columns(p, _BY_NAME[fmt])
    return finish(cols["arrival"], cols["input"], cols["output"], name=p.stem, skipped=skipped)
