"""xds.cli.progress: the shared progress bar of many-run commands is silent unless asked for on a
terminal, and counts done / total / failed when it draws."""

from __future__ import annotations

import io
import sys

from tests.conftest import FIXTURES, run_cli
from xds.cli.progress import many_run_progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_disabled_or_not_a_tty(monkeypatch):
    for enabled, stream in ((False, FakeTty()), (True, io.StringIO())):
        monkeypatch.setattr(sys, "stderr", stream)
        with many_run_progress(enabled, "cells") as cb:
            cb(1, 2)
            cb(2, 2, failed=1)
        assert stream.getvalue() == ""


def test_draws_done_total_and_failed_on_a_tty(monkeypatch):
    stream = FakeTty()
    monkeypatch.setattr(sys, "stderr", stream)
    with many_run_progress(True, "gate checks") as cb:
        cb(3, 4, failed=1)
    text = stream.getvalue()
    assert "gate checks" in text and "3/4" in text and "1 failed" in text


def test_gate_json_has_no_progress_on_stderr():
    res = run_cli("gate", FIXTURES / "suites" / "small.yaml", "--workers", "1", "--json")
    assert res.exit_code == 1 and res.stderr == ""
