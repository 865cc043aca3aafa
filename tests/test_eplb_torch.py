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


def test_torch_eplb_balancedness_matches_on_tied_loads():
    # synthetic loads tie across experts; tied items may land elsewhere, their rank loads may not
    w = synthetic_loads(8, 256, hot_ratio=30, seed=3, kind="zipf")
    w = np.round(w / w.mean() * 20)                     # integer token counts: many ties
    for P, G, N, K in [(384, 32, 4, 8), (288, 32, 1, 1)]:
        phy_t, _, _ = eplb_torch.rebalance_experts(torch.from_numpy(w), P, K, N, G)
        phy_r, _, _ = ref.rebalance_experts(w, P, K, N, G)
        np.testing.assert_allclose(balancedness(phy_t.numpy(), w, G), balancedness(phy_r, w, G),
                                   rtol=1e-6)
