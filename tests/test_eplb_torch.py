"""benchmarks/eplb_torch.py (DeepSeek's torch EPLB, the speed baseline issue 4 names) computes what our
NumPy port tests/eplb_reference.py computes, so timing one against the other compares like with like.
Skipped unless torch is installed (it is not an xds dependency)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import eplb_reference as ref  # noqa: E402
import eplb_torch  # noqa: E402

from xds.experts import balancedness, synthetic_loads  # noqa: E402

SHAPES = [  # (experts, slots, ranks, nodes, groups): hierarchical and global policies
    (256, 288, 32, 4, 8), (256, 384, 32, 4, 8), (256, 320, 64, 8, 8), (256, 288, 32, 1, 1),
    (64, 96, 8, 2, 4), (128, 160, 16, 4, 8), (128, 144, 16, 3, 4),   # 4 groups on 3 nodes: global
]


@pytest.mark.parametrize("E,P,G,N,K", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_eplb_matches_the_numpy_port(E, P, G, N, K, seed):
    # continuous loads: no two experts tie, so torch's unstable sort can only swap replicas of one
    # expert, which leaves phy2log and the replica counts unchanged
    w = np.random.default_rng(seed).lognormal(0.0, 1.5, (5, E))
    phy_t, _, cnt_t = eplb_torch.rebalance_experts(torch.from_numpy(w), P, K, N, G)
    phy_r, _, cnt_r = ref.rebalance_experts(w, P, K, N, G)
    np.testing.assert_array_equal(phy_t.numpy(), phy_r)
    np.testing.assert_array_equal(cnt_t.numpy(), cnt_r)


@pytest.fixture
def stable_sort(monkeypatch):
    """torch's sort made stable, as the NumPy port's: then tied items keep their order too."""
    orig = torch.Tensor.sort

    def sort(self, dim=-1, descending=False):
        return orig(self, dim=dim, descending=descending, stable=True)

    monkeypatch.setattr(torch.Tensor, "sort", sort)


def _loads(kind: str, L: int, E: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    if kind in ("zipf", "lognormal"):
        return synthetic_loads(L, E, hot_ratio=min(30.0, E / 2), seed=seed, kind=kind)
    if kind == "poisson":                                # small integer counts: ties everywhere
        return r.poisson(2.0, (L, E)).astype(float)
    return np.full((L, E), 7.0)                          # all equal


@pytest.mark.parametrize("kind", ["zipf", "lognormal", "poisson", "equal"])
def test_with_a_stable_sort_torch_eplb_is_the_numpy_port(stable_sort, kind):
    rng = np.random.default_rng(7)
    shapes = SHAPES + [(64, 64, 8, 1, 1), (128, 192, 64, 8, 16), (256, 512, 32, 4, 8),
                       (64, 80, 16, 2, 2), (128, 128, 16, 4, 8)]
    for i, (E, P, G, N, K) in enumerate(shapes):
        w = _loads(kind, int(rng.integers(1, 6)), E, seed=i)
        got = eplb_torch.rebalance_experts(torch.from_numpy(w), P, K, N, G)
        want = ref.rebalance_experts(w, P, K, N, G)
        for g, x in zip(got, want):          # phy2log, log2phy, logcnt
            np.testing.assert_array_equal(g.numpy(), x)


def test_torch_eplb_balancedness_matches_on_tied_loads():
    # synthetic loads tie across experts; tied items may land elsewhere, their rank loads may not
    w = synthetic_loads(8, 256, hot_ratio=30, seed=3, kind="zipf")
    w = np.round(w / w.mean() * 20)                     # integer token counts: many ties
    for P, G, N, K in [(384, 32, 4, 8), (288, 32, 1, 1)]:
        phy_t, _, _ = eplb_torch.rebalance_experts(torch.from_numpy(w), P, K, N, G)
        phy_r, _, _ = ref.rebalance_experts(w, P, K, N, G)
        np.testing.assert_allclose(balancedness(phy_t.numpy(), w, G), balancedness(phy_r, w, G),
                                   rtol=1e-6)
