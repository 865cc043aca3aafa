"""The golden set's chaos runs (one per fault fixture, each under every policy), in a file of their
own so that ``pytest -n auto --dist loadfile`` can run them beside the rest of the golden set."""

from __future__ import annotations

import pytest

from .test_golden import CHAOS, check_case


@pytest.mark.parametrize("name", CHAOS)
def test_chaos_output_matches_golden(name, monkeypatch):
    check_case(name, monkeypatch)
