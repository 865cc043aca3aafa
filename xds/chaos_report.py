"""Transitional alias: ``run_chaos`` / ``run_random`` now live in :mod:`xds.report.replay` (bound for
``xds/pipeline.py``). Kept only until ``xds/gate.py`` and ``xds/cli/chaos_cmd.py`` import them from
there; delete it then."""

from .report.replay import run_chaos, run_random

__all__ = ["run_chaos", "run_random"]
