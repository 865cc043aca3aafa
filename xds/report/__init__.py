"""Report: metrics, SLO windows, the result JSON document, per-request CSV and plots of a
simulation, and chaos results as documents.

Modules: :mod:`.metrics` (per-request TTFT / TPOT / E2EL, percentiles), :mod:`.slo` (SLO windows),
:mod:`.tables` (per-window timeline, per-request CSV), :mod:`.document` (``build_report``),
:mod:`.plots` (optional matplotlib), :mod:`.verdict` (a verdict in words), :mod:`.html` and
:mod:`.html_pages` (the ``--report`` page), and :mod:`.chaos` (chaos documents; the
runs themselves are :func:`xds.pipeline.run_chaos` / :func:`xds.pipeline.run_random`).
"""

from .chaos import chaos_report, policies_report, random_report, trial_outcome, trials_stats
from .document import build_report
from .metrics import group_percentile, request_metrics
from .plots import write_plot, write_timeline_plot
from .slo import slo_windows
from .tables import CSV_COLUMNS, requests_csv, timeline_rows

__all__ = ["CSV_COLUMNS", "build_report", "chaos_report", "group_percentile", "policies_report",
           "random_report", "request_metrics", "requests_csv",
           "slo_windows", "timeline_rows", "trial_outcome", "trials_stats", "write_plot",
           "write_timeline_plot"]
