"""Flags several commands share, defined once: the workload flags of ``xds simulate`` and
``xds chaos`` (``xds.pipeline.WorkloadOptions`` is what they become) and the output flags."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import typer

from ..pipeline import WorkloadOptions

TRACE = typer.Option(None, "--trace", help="Trace file (Azure CSV, Mooncake JSONL, BurstGPT CSV, length CSV); replaces the plan's whole workload: block (its duration_s, requests, rate_scale too).")
FORMAT = typer.Option("auto", "--format", help="Trace format: auto, azure, mooncake, burstgpt, lengths.")
RATE_SCALE = typer.Option(None, "--rate-scale", help="Compress trace time by X (offered rate × X); replaces the plan's rate_scale.")
DURATION = typer.Option(None, "--duration", help="Workload length in s (traces are looped or cut); replaces the plan's duration_s.")
REQUESTS = typer.Option(None, "--requests", help="Keep the first N requests; replaces the plan's requests.")
RATE = typer.Option(None, "--rate", help="Synthetic arrival rate (req/s); also the rate of a length-only trace.")
ARRIVAL = typer.Option(None, "--arrival", help="poisson or gamma.")
CV = typer.Option(None, "--cv", help="Gamma arrivals: coefficient of variation of the gaps.")
INPUT_LEN = typer.Option(None, "--input-len", help="Fixed prompt length (tokens).")
OUTPUT_LEN = typer.Option(None, "--output-len", help="Fixed output length (tokens).")
INPUT_DIST = typer.Option(None, "--input-dist", help="Prompt length distribution, e.g. '{dist: lognormal, mean: 1000, sigma: 1}'.")
OUTPUT_DIST = typer.Option(None, "--output-dist", help="Output length distribution (same form).")
SEED = typer.Option(0, "--seed", help="Seed of synthetic workloads and random draws (same seed, same bytes).")
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")
OUT = typer.Option(None, "--out", help="Write the JSON document to this file (atomically).")
WORKERS = typer.Option(None, "--workers", help="Local worker processes for the runs (default: all cores; 1: in this process).")
RAY = typer.Option(None, "--ray", help="Run on Ray instead: auto (join a running cluster), local (start a private one) or HOST:PORT (pip install 'xds[ray]').")

_WORKLOAD_KEYS = tuple(f.name for f in fields(WorkloadOptions))


def workload_options(params: dict[str, Any]) -> dict[str, Any]:
    """The workload flags among a command's parameters, as ``xds.pipeline`` keywords."""
    return {k: params[k] for k in _WORKLOAD_KEYS}
