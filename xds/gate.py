"""CI capacity gates: ``xds gate SUITE`` runs checks (simulate, or chaos with a scenario) and judges
thresholds on result fields; writes a JUnit XML report (DESIGN.md §3.5).

Suite YAML::

    checks:
      - name: pd-meets-slo-on-azure-conv
        plan: ../plans/cloudmatrix-infer-pd.yaml
        workload: {trace: ../fixtures/traces/azure_llm_2023_conv.csv, duration_s: 600}
        expect: {p99_tpot_ms: {max: 50}, failed: {max: 0}, slo_attainment: {min: 0.99}}
      - name: pd-survives-die-loss
        plan: ../plans/cloudmatrix-infer-pd.yaml
        scenario: ../fixtures/faults/die_down.yaml
        policy: fine-grained
        expect: {failed: {max: 0}}

Relative paths resolve from the suite file's folder first, then the current directory. Fields may be
dotted (``slo.windows_violated``, ``recomputed.requests``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .errors import XdsError
from .parallel import Executor
from .pipeline import chaos_plan, simulate_plan
from .report.values import field
from .spec.fileio import check_output_path, resolve_relative, write_text_atomic
from .spec.plan import load_plan
from .spec.scenario import load_scenario
from .spec.suite import RESULT_FIELDS, CheckSpec, SuiteSpec, Threshold  # noqa: F401  (re-exported)
from .spec.yamlio import load_yaml, validate


@dataclass
class CheckResult:
    name: str
    passed: bool
    seconds: float
    measured: dict[str, float | None]
    violations: list[str]
    thresholds: dict[str, dict[str, float | None]]
    error: str | None = None


def load_suite(path: str | Path) -> tuple[SuiteSpec, list[dict[str, Any]]]:
    """Validate a suite and everything it names (plans, scenarios, traces) before running anything."""
    file = str(path)
    suite = validate(SuiteSpec, load_yaml(path, what="suite"), file=file)
    base = Path(path).resolve().parent
    jobs = []
    for i, c in enumerate(suite.checks):
        w = f"checks[{i}]"
        plan = resolve_relative(base, c.plan, "plan", file, f"{w}.plan")
        load_plan(plan)
        scen = resolve_relative(base, c.scenario, "scenario", file, f"{w}.scenario") if c.scenario else None
        if scen:
            load_scenario(scen)
        wl = None
        if c.workload is not None:
            wl = c.workload.model_dump(exclude_unset=True)
            if "trace" in wl:
                wl["trace"] = resolve_relative(base, wl["trace"], "trace", file, f"{w}.workload.trace")
            for side in ("input", "output"):
                d = wl.get(side)
                if isinstance(d, dict) and d.get("file"):
                    d["file"] = resolve_relative(base, d["file"], "length", file, f"{w}.workload.{side}.file")
        jobs.append({"name": c.name, "plan": plan, "scenario": scen, "policy": c.policy,
                     "workload": wl, "seed": c.seed,
                     "expect": {k: v.model_dump() for k, v in c.expect.items()}})
    return suite, jobs


def _field(doc: dict[str, Any], key: str) -> float | None:
    """A numeric dotted field of a result document (a bool counts as 0/1), or None."""
    cur = field(doc, key)
    if isinstance(cur, bool):
        return float(cur)
    return cur if isinstance(cur, (int, float)) else None


def run_check(job: dict[str, Any]) -> CheckResult:
    """Run one check (in a worker process): simulate or chaos, then judge the thresholds."""
    t0 = time.perf_counter()
    try:
        loaded = load_plan(job["plan"])
        if job["workload"] is None and loaded.spec.workload is None:
            raise XdsError("the check has no workload and the plan has no workload: block", file=job["plan"])
        if job["scenario"]:
            doc = chaos_plan(loaded, scenario=job["scenario"], policy=job["policy"],
                             workload=job["workload"], seed=job["seed"])
        else:
            doc, _ = simulate_plan(loaded, workload=job["workload"], seed=job["seed"], timeline=False)
    except XdsError as exc:
        return CheckResult(job["name"], False, time.perf_counter() - t0, {}, [], job["expect"], error=str(exc))
    except Exception as exc:  # a bug in one check must not abort the other checks of the suite
        return CheckResult(job["name"], False, time.perf_counter() - t0, {}, [], job["expect"],
                           error=f"internal error: {type(exc).__name__}: {exc}")
    measured, violations = {}, []
    for key, th in job["expect"].items():
        v = _field(doc, key)
        measured[key] = v
        if v is None or (isinstance(v, float) and math.isnan(v)):
            violations.append(f"{key}: no value measured (threshold {th})")
            continue
        if th["max"] is not None and v > th["max"]:
            violations.append(f"{key} = {v:g} > max {th['max']:g}")
        if th["min"] is not None and v < th["min"]:
            violations.append(f"{key} = {v:g} < min {th['min']:g}")
    return CheckResult(job["name"], not violations, time.perf_counter() - t0, measured, violations, job["expect"])


def run_gate(suite_path: str, *, junit: str | None = None, workers: int | None = None,
             ray: str | None = None, progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """``xds gate`` as a function: the result document (and the JUnit file). Checks run on the
    executor (``workers`` local processes, default all cores, or a Ray cluster);
    ``progress(done, total, failed=)`` is called as checks finish."""
    check_output_path(junit, "--junit")
    executor = Executor(workers=workers, ray=ray)
    suite, jobs = load_suite(suite_path)
    t0 = time.perf_counter()
    outcomes, failed = [], 0
    for o in executor.map(run_check, jobs, batch=1):
        outcomes.append(o)
        failed += o.error is not None or not o.value.passed
        if progress is not None:
            progress(len(outcomes), len(jobs), failed=failed)
    outcomes.sort(key=lambda o: o.index)
    results = [o.value if o.error is None else
               CheckResult(jobs[o.index]["name"], False, 0.0, {}, [], jobs[o.index]["expect"],
                           error=o.error) for o in outcomes]
    doc = {
        "suite": suite.name or Path(suite_path).stem,
        "checks": [{"name": r.name, "passed": r.passed, "seconds": round(r.seconds, 3),
                    "measured": r.measured, "thresholds": r.thresholds, "violations": r.violations,
                    "error": r.error} for r in results],
        "passed": all(r.passed for r in results),
        "failed_checks": [r.name for r in results if not r.passed],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if junit:
        write_text_atomic(junit, junit_xml(doc))
    return doc


def junit_xml(doc: dict[str, Any]) -> str:
    """JUnit XML: one testcase per check, a <failure> listing violated thresholds and measured values."""
    fails = sum(1 for c in doc["checks"] if not c["passed"] and not c["error"])
    errs = sum(1 for c in doc["checks"] if c["error"])
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites name="xds gate" tests="{len(doc["checks"])}" failures="{fails}" errors="{errs}">',
             f'  <testsuite name={quoteattr(doc["suite"])} tests="{len(doc["checks"])}" failures="{fails}" '
             f'errors="{errs}" time="{doc["seconds"]:.3f}">']
    for c in doc["checks"]:
        lines.append(f'    <testcase classname={quoteattr("xds.gate." + doc["suite"])} name={quoteattr(c["name"])} '
                     f'time="{c["seconds"]:.3f}">')
        measured = ", ".join(f"{k}={v}" for k, v in c["measured"].items())
        if c["error"]:
            lines.append(f'      <error message={quoteattr(c["error"])}/>')
        elif not c["passed"]:
            msg = "; ".join(c["violations"])
            lines.append(f'      <failure message={quoteattr(msg)}>{escape(msg + chr(10) + "measured: " + measured)}</failure>')
        lines.append(f'      <system-out>{escape("measured: " + measured)}</system-out>')
        lines.append('    </testcase>')
    lines += ['  </testsuite>', '</testsuites>', '']
    return "\n".join(lines)
