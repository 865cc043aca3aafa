"""Workloads: request arrival times and token lengths, read from traces or generated synthetically.

A :class:`Workload` is a set of NumPy arrays (one entry per request, sorted by arrival): arrival time
(s since the workload start), prompt length and output length (tokens), and optionally each
request's chain of prefix-block ids (Mooncake ``hash_ids``, 512-token blocks) in CSR form.

Modules (DESIGN.md §3.5): :mod:`.core` (the type), :mod:`.transforms` (rate_scale, truncate,
loop_to_duration), :mod:`.traces` (trace formats and ``read_trace``; CSV via :mod:`.csvtable` and
:mod:`.lines`, JSONL via :mod:`.mooncake`), :mod:`.synthetic` (arrival processes and length
distributions), :mod:`.prefix_cache` (LRU replay of block chains) and :mod:`.load` (a spec or a
plan's ``workload:`` block to a workload). The input types live in :mod:`xds.spec.workload`.
"""

from ..spec.workload import (
    FORMATS,
    MAX_INPUT_LEN,
    MAX_OUTPUT_LEN,
    MAX_REQUESTS,
    Format,
    LengthDist,
    WorkloadSpec,
)
from .core import DEFAULT_BLOCK_TOKENS, Workload
from .csvtable import Column, CsvFormat
from .generator import LENGTH_INPUT_COLUMNS, LENGTH_OUTPUT_COLUMNS, synthetic
from .lines import MAX_TRACE_BYTES
from .load import load_workload, plan_workload
from .mooncake import MOONCAKE_BUCKET_S
from .prefix_cache import PrefixCache, PrefixStats, cached_tokens, prefix_cache_stats
from .traces import CSV_FORMATS, detect_format, read_trace
from .transforms import loop_to_duration, rate_scale, truncate

__all__ = [
    "CSV_FORMATS", "DEFAULT_BLOCK_TOKENS", "FORMATS", "LENGTH_INPUT_COLUMNS",
    "LENGTH_OUTPUT_COLUMNS", "MAX_INPUT_LEN", "MAX_OUTPUT_LEN", "MAX_REQUESTS", "MAX_TRACE_BYTES",
    "MOONCAKE_BUCKET_S", "Column", "CsvFormat", "Format", "LengthDist", "PrefixCache",
    "PrefixStats", "Workload", "WorkloadSpec", "cached_tokens", "detect_format", "load_workload",
    "loop_to_duration", "plan_workload", "prefix_cache_stats", "rate_scale", "read_trace",
    "synthetic", "truncate",
]
