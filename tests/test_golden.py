"""The golden set (tests/golden/): the refactor and every later change must reproduce the recorded
``--json`` output of the README's commands, the gate checks, one chaos run per fault fixture and the
``balance()`` layouts exactly. A change that fixes a bug re-records with
``python tests/golden/record.py NAME`` in the same commit and says so in CHANGELOG under Fixed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import record  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden"


CHAOS = sorted(n for n in record.CASES if n.startswith("chaos_"))   # tests/test_golden_chaos.py


@pytest.mark.parametrize("name", sorted(set(record.CASES) - set(CHAOS)))
def test_cli_output_matches_golden(name, monkeypatch):
    check_case(name, monkeypatch)


def check_case(name: str, monkeypatch) -> None:
    """Run golden case ``name`` and compare it with its recorded output."""
    monkeypatch.chdir(record.ROOT)
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    code, doc = record.run_cli(want["argv"])
    got = {"argv": want["argv"], "exit_code": code, **record.compact(doc)}
    if "full" in want:
        assert got == want
    else:
        assert got["scalars"] == want["scalars"]
        assert got["sha256"] == want["sha256"]
        assert code == want["exit_code"]


def test_balance_layouts_match_golden():
    want = json.loads((GOLDEN / "balance.json").read_text())
    got = {record.balance_key(s): record.balance_case(s) for s in record.BALANCE_SHAPES}
    assert got == want
