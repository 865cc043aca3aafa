"""``xds plan`` as a Python function (the CLI renders what it returns)."""

from __future__ import annotations

from typing import Any

from ..errors import XdsError
from ..spec.fileio import check_output_path
from ..spec.plan import load_plan
from .placement import place
from .search import run_search


def plan_command(path: str | None, search: bool = False, **kw: Any) -> dict[str, Any]:
    """``xds plan`` as a function. Without ``search``: load, place and predict ``path``; returns
    the JSON document (``predicted.meets_slo`` decides the exit code). With ``search``: see
    :func:`xds.plan.search.run_search` (``kw`` are its arguments; ``path`` optionally supplies model,
    hardware, cluster, SLO and lengths)."""
    if search:
        check_output_path(kw.get("out"), "--out")     # before the search, not after it
        return run_search(plan=path, **kw)
    if path is None:
        raise XdsError("give a plan file (or --search with --model/--hardware ...)", file="PLAN")
    return place(load_plan(path)).to_json()
