"""Where a run's workload came from: the plan's ``workload:`` block, the workload flags, or both, and
which plan fields a flag replaced. ``xds simulate`` / ``xds chaos`` report it (``workload_source``)
so that a run whose length or rate differs from the plan's says why.

The rules it describes are :func:`xds.pipeline.build_workload`'s: ``--trace`` replaces the plan's
whole block (its ``duration_s``, ``requests``, ``rate_scale`` too); a synthetic flag (``--rate``,
``--input-len`` …) replaces a plan *trace* block whole; otherwise each flag replaces one field of
the plan's block (``--duration`` → ``duration_s``, ``--rate-scale`` → ``rate_scale`` …).
"""

from __future__ import annotations

from typing import Any

#: Flag → the workload field it sets.
FIELD_OF_FLAG = {"--trace": "trace", "--format": "format", "--rate-scale": "rate_scale",
                 "--duration": "duration_s", "--requests": "requests", "--rate": "rate_rps",
                 "--arrival": "arrival", "--cv": "cv", "--input-len": "input", "--input-dist": "input",
                 "--output-len": "output", "--output-dist": "output"}


def describe_source(plan_block: dict[str, Any] | None, flags: list[str], *,
                    check_block: bool = False) -> dict[str, Any]:
    """``{"from", "flags", "plan_fields_overridden", "plan_fields_not_used"}``: ``plan_block`` is the
    plan's ``workload:`` block as written (``None`` when it has none), ``flags`` the workload flags
    given, ``check_block`` a gate check's own block (which replaces the plan's)."""
    plan_block = plan_block or {}
    if check_block:
        return {"from": "check", "flags": [], "plan_fields_overridden": [],
                "plan_fields_not_used": sorted(plan_block)}
    synthetic = any(f in flags for f in ("--rate", "--input-len", "--input-dist", "--output-len",
                                         "--output-dist"))
    replaced = "--trace" in flags or (synthetic and "trace" in plan_block)
    set_by_flags = {FIELD_OF_FLAG[f] for f in flags}
    if replaced or not plan_block:
        return {"from": "flags" if flags else "plan", "flags": flags,
                "plan_fields_overridden": sorted(k for k in plan_block if k in set_by_flags),
                "plan_fields_not_used": sorted(k for k in plan_block if k not in set_by_flags)}
    return {"from": "plan+flags" if flags else "plan", "flags": flags,
            "plan_fields_overridden": sorted(k for k in plan_block if k in set_by_flags),
            "plan_fields_not_used": []}


def source_line(src: dict[str, Any]) -> str:
    """One human line for a table: where the workload came from and what the flags replaced."""
    if src["from"] == "check":
        return "the gate check's workload: block (the plan's is not used)"
    if src["from"] == "plan":
        return "the plan's workload: block"
    text = ("the plan's workload: block with " if src["from"] == "plan+flags" else "") + \
        " ".join(src["flags"])
    if src["plan_fields_overridden"]:
        text += f" (replacing the plan's {', '.join(src['plan_fields_overridden'])})"
    if src["plan_fields_not_used"]:
        text += f"; the plan's {', '.join(src['plan_fields_not_used'])} not used"
    return text
