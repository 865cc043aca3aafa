"""--plot writes a real image atomically (skipped without the optional matplotlib extra)."""

from __future__ import annotations

import pytest

from .conftest import FIXTURES, PLANS, assert_user_error, run_cli

PLAN = PLANS / "cloudmatrix-infer-pd.yaml"


def test_simulate_and_chaos_plots(tmp_path):
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "sim.png", tmp_path / "chaos.svg"
    res = run_cli("simulate", PLAN, "--duration", "30", "--plot", png, "--json")
    assert res.exit_code == 0, res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = run_cli("chaos", PLAN, "--scenario", FIXTURES / "faults/straggler.yaml", "--duration", "60",
                  "--plot", svg, "--json")
    assert res.exit_code in (0, 1), res.stderr
    assert b"<svg" in svg.read_bytes()[:2000]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp files left


def test_plot_format_is_checked(tmp_path):
    pytest.importorskip("matplotlib")
    res = run_cli("simulate", PLAN, "--duration", "20", "--plot", tmp_path / "x.bmp")
    assert_user_error(res, "--plot", ".bmp")
    assert not (tmp_path / "x.bmp").exists()
