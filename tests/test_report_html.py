"""``--report FILE.html``: one self-contained page whose verdict and key figures are the JSON's
(parsed with the stdlib HTML parser), written atomically, checked before the run."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from xds.report.values import field

from .conftest import FIXTURES, PLANS, assert_user_error, run_cli

PD = PLANS / "cloudmatrix-infer-pd.yaml"
SMALL = ("--rate", 6, "--input-len", 1024, "--output-len", 32, "--duration", 20)


class Page(HTMLParser):
    """Collects the verdict text, the key figure cells, table ids, tags and external references."""

    def __init__(self, text: str):
        super().__init__()
        self.verdict, self.figures, self.ids, self.tags, self.refs = "", {}, set(), set(), []
        self._in_verdict = 0
        self._cell: tuple[str, str] | None = None
        self.shown: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("id") == "verdict" or (self._in_verdict and tag == "div"):
            self._in_verdict += 1
        if "data-key" in a:
            self.figures[a["data-key"]] = json.loads(a["data-value"])
            self._cell = a["data-key"]
        for k in ("src", "href"):
            if a.get(k):
                self.refs.append(a[k])

    def handle_endtag(self, tag):
        if tag == "div" and self._in_verdict:
            self._in_verdict -= 1
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._in_verdict:
            self.verdict += data
        if self._cell:
            self.shown[self._cell] = self.shown.get(self._cell, "") + data


def _check_page(page: Page, doc: dict, passed: bool) -> None:
    assert page.verdict.strip().startswith("PASS" if passed else "FAIL")
    assert page.figures, "no key figures"
    for key, value in page.figures.items():
        assert value == field(doc, key), key
    assert "script" not in page.tags                       # no JS
    assert not [r for r in page.refs if "://" in r]         # no network


def test_simulate_report_matches_json(tmp_path):
    pytest.importorskip("matplotlib")
    report = tmp_path / "run.html"
    res = run_cli("simulate", PD, *SMALL, "--json", "--report", report)
    assert res.exit_code in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    text = report.read_text()
    page = Page(text)
    _check_page(page, doc, doc["passed"])
    assert {"p99_ttft_ms", "p99_tpot_ms", "slo_attainment", "output_throughput_per_chip"} <= set(page.figures)
    assert page.shown["failed"] == f"{doc['failed']:,}"
    assert "svg" in page.tags and {"figures", "placement", "inputs"} <= page.ids
    # the inputs reproduce the run: the command line, xds version, seed, the plan's text
    assert "xds simulate" in text and "--input-len 1024" in text and "xds version" in text
    assert "deepseek-r1" in text and not list(tmp_path.glob(".*"))
    # same inputs, same bytes
    again = tmp_path / "again.html"
    run_cli("simulate", PD, *SMALL, "--json", "--report", again)
    assert again.read_bytes() == report.read_bytes()


def test_plan_report_matches_json(tmp_path):
    report = tmp_path / "plan.html"
    res = run_cli("plan", PD, "--json", "--report", report)
    doc = json.loads(res.stdout)
    page = Page(report.read_text())
    _check_page(page, doc, doc["predicted"]["meets_slo"])
    assert page.figures["predicted.decode.tpot_ms"] == doc["predicted"]["decode"]["tpot_ms"]
    assert "placement" in page.ids


def test_chaos_report_matches_json(tmp_path):
    pytest.importorskip("matplotlib")
    report = tmp_path / "chaos.html"
    res = run_cli("chaos", PD, "--scenario", FIXTURES / "faults" / "die_down.yaml", *SMALL, "--json",
                  "--report", report)
    assert res.exit_code in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    page = Page(report.read_text())
    _check_page(page, doc, doc["passed"])
    assert "faults" in page.ids and "svg" in page.tags


def test_gate_report_matches_json(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: tiny\nchecks:\n  - name: pd\n    plan: {PD}\n    workload: "
                     "{rate_rps: 6, input: {dist: fixed, value: 1024}, output: {dist: fixed, value: 32}, duration_s: 20}\n"
                     "    expect:\n      p99_tpot_ms: {max: 50}\n      failed: {max: 0}\n"
                     "  - name: too-strict\n    plan: " + str(PD) + "\n    workload: "
                     "{rate_rps: 6, input: {dist: fixed, value: 1024}, output: {dist: fixed, value: 32}, duration_s: 20}\n"
                     "    expect:\n      p99_tpot_ms: {max: 1}\n")
    report = tmp_path / "gate.html"
    res = run_cli("gate", suite, "--json", "--workers", 1, "--report", report)
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    text = report.read_text()
    page = Page(text)
    _check_page(page, doc, False)
    assert "too-strict" in page.verdict and "checks" in page.ids


def test_report_path_is_checked_before_the_run(tmp_path):
    res = run_cli("simulate", PD, *SMALL, "--report", tmp_path / "no" / "r.html")
    assert_user_error(res, "--report", "does not exist")
    res = run_cli("plan", PD, "--report", tmp_path / "r.pdf")
    assert_user_error(res, "--report", ".html")
    res = run_cli("plan", "--search", "--model", "deepseek-r1", "--report", tmp_path / "r.html")
    assert_user_error(res, "--report", "--search")


def test_random_chaos_report_matches_json(tmp_path):
    report = tmp_path / "random.html"
    res = run_cli("chaos", PD, "--random", "--rate-per-1000-chip-days", 500, "--hours", 0.005,
                  "--trials", 1, "--policy", "fine-grained", "--workers", 1, "--json", "--report", report)
    assert res.exit_code in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    page = Page(report.read_text())
    _check_page(page, doc, doc["passed"])
    assert page.figures["expected_faults_per_trial"] == doc["expected_faults_per_trial"]
    assert "policies" in page.ids
