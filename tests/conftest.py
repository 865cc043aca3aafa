"""Shared test helpers: run the CLI in-process and split stdout / stderr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xds.cli import app

# pytest-xdist workers run with COLUMNS=80 / LINES=24 set; the CLI sizes tables from COLUMNS, so drop
# them to give every worker the same (pipe) width as a plain `pytest` run
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SMALL_POD = str(FIXTURES / "clusters" / "cloudmatrix16n.yaml")   # 16 nodes: searches in seconds
PLANS = ROOT / "plans"


class Result:
    def __init__(self, r):
        self.exit_code = r.exit_code
        self.stdout = r.stdout
        try:
            self.stderr = r.stderr
        except (ValueError, AttributeError):
            self.stderr = ""
        self.exception = r.exception


def run_cli(*args: str, env: dict | None = None) -> Result:
    """Invoke ``xds ARGS`` in-process; returns exit code, stdout and stderr separately."""
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always separates the streams
        runner = CliRunner()
    r = runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=True)
    return Result(r)


def assert_user_error(res: Result, *needles: str) -> None:
    """Exit 2, exactly one stderr line starting 'xds: error:', no traceback, containing needles."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("xds: error: "), lines[0]
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def cli():
    return run_cli
