"""xds gate: pass/fail/exit codes, JUnit XML, parallel workers, bad suites."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from xds.gate import run_gate

from .conftest import FIXTURES, ROOT, assert_user_error, run_cli

SMALL = FIXTURES / "suites/small.yaml"


def test_gate_reports_pass_and_fail_with_junit(tmp_path):
    junit = tmp_path / "report.xml"
    res = run_cli("gate", SMALL, "--junit", junit, "--json", "--workers", "2")
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    by = {c["name"]: c for c in doc["checks"]}
    assert by["pd-passes"]["passed"] and by["pd-die-loss"]["passed"]
    bad = by["pd-impossible-throughput"]
    assert not bad["passed"] and any("output_throughput_per_chip" in v for v in bad["violations"])
    assert doc["failed_checks"] == ["pd-impossible-throughput"]
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 3
    failures = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["pd-impossible-throughput"]
    msg = failures[0].find("failure").get("message")
    assert "min 100000" in msg and "output_throughput_per_chip =" in msg


def test_gate_all_pass_exit_zero_and_human_table(tmp_path):
    suite = tmp_path / "ok.yaml"
    suite.write_text(SMALL.read_text().split("  - name: pd-impossible-throughput")[0]
                     .replace("../../plans", str(ROOT / "plans")))
    res = run_cli("gate", suite, "--workers", "1")
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert "PASS" in res.stdout and "margin" in res.stdout


def test_workers_do_not_change_results():
    a = run_gate(str(SMALL), workers=1)
    b = run_gate(str(SMALL), workers=2)
    strip = lambda d: [(c["name"], c["passed"], c["measured"]) for c in d["checks"]]  # noqa: E731
    assert strip(a) == strip(b)


def test_ci_suite_is_valid():
    from xds.gate import load_suite

    suite, jobs = load_suite(ROOT / "gates/ci.yaml")
    assert any(j["scenario"] for j in jobs) and any(not j["scenario"] for j in jobs)


@pytest.mark.parametrize("body,needle", [
    ("checks: []\n", "checks"),
    ("checks:\n  - {name: a, plan: nope.yaml, expect: {failed: {max: 0}}}\n", "plan file 'nope.yaml' not found"),
    ("checks:\n  - {name: a, plan: PLAN, expect: {p99_tpt_ms: {max: 0}}}\n", "did you mean 'p99_tpot_ms'"),
    ("checks:\n  - {name: a, plan: PLAN, expect: {failed: {}}}\n", "min, max"),
    ("checks:\n  - {name: a, plan: PLAN, expect: {failed: {min: 5, max: 1}}}\n", "above max"),
    ("checks:\n  - {name: a, plan: PLAN, policy: restart, expect: {failed: {max: 0}}}\n", "policy applies"),
    ("checks:\n  - {name: a, plan: PLAN, expect: {failed: {max: 0}}}\n  - {name: a, plan: PLAN, expect: {failed: {max: 0}}}\n", "unique"),
    ("checks:\n  - {name: a, plan: PLAN, expekt: {failed: {max: 0}}}\n", "did you mean 'expect'"),
    ("checks:\n  - {name: a, plan: PLAN, scenario: missing.yaml, expect: {failed: {max: 0}}}\n", "scenario file"),
    ("checks:\n  - {name: a, plan: PLAN, expect: {failed: {max: .nan}}}\n", "failed"),
    ("checks: [\n", "line"),
])
def test_bad_suites(tmp_path, body, needle):
    p = tmp_path / "suite.yaml"
    p.write_text(body.replace("PLAN", str(ROOT / "plans/cloudmatrix-infer-pd.yaml")))
    res = run_cli("gate", p)
    assert_user_error(res, needle, str(p))


def test_bad_workers(tmp_path):
    assert_user_error(run_cli("gate", SMALL, "--workers", "0"), "--workers")
