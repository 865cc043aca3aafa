"""xds experts: layout invariants, quality against DeepSeek EPLB, node locality, CLI contract."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xds.errors import XdsError
from xds.experts import balance, balancedness, synthetic_loads
from xds.experts.eplb import eplb_layout
from xds.experts.groups import assign_groups
from xds.experts.imbalance import expected_balancedness
from xds.experts.packing import argsort_desc, lpt_pack
from xds.experts.replication import greedy_replicas, round_to_ranks, waterfill

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eplb_reference as ref
from conftest import FIXTURES, assert_user_error, run_cli

LOADS = FIXTURES / "loads"


def eplb_bal(w, P, G, N=1, K=1):
    phy, _, cnt = ref.rebalance_experts(np.asarray(w, np.float64), P, K, N, G)
    return balancedness(phy, w, G)


def greedy_one_at_a_time(w, S, present):
    """Oracle for greedy replication with absent experts (EPLB's loop, recomputing every key per
    step): the next replica goes to the present expert with the highest w / count in w's dtype,
    lowest index on ties. Returns counts [R, E] and picks [R, max extra] (-1 padded)."""
    c = present.astype(np.int64)
    red = S - c.sum(1)
    picks = np.full((w.shape[0], max(int(red.max()), 0)), -1, dtype=np.int64)
    for i in range(picks.shape[1]):
        key = np.where(present, w / np.maximum(c, 1).astype(w.dtype), -np.inf)
        for r in np.flatnonzero(i < red):
            picks[r, i] = key[r].argmax()
            c[r, picks[r, i]] += 1
    return c, picks


def check_invariants(lay, w, P, G, N=1, K=1):
    L, E = w.shape
    assert lay.phy2log.shape == (L, P) and lay.phy2log.dtype == np.int64
    assert lay.replicas.shape == (L, E)
    assert (lay.replicas >= 1).all()                                  # no expert without a replica
    assert (lay.replicas.sum(1) == P).all()
    for l in range(L):                                                # counts match the layout
        assert (np.bincount(lay.phy2log[l], minlength=E) == lay.replicas[l]).all()
    assert lay.rank_load.shape == (L, G)                              # P/G slots per rank by construction
    np.testing.assert_allclose(lay.rank_load.sum(1), w.sum(1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(lay.balancedness, balancedness(lay.phy2log, w, G), rtol=1e-12)
    if N > 1 and K % N == 0:                                          # group-limited routing
        gs = E // K
        node = np.arange(P) // (P // N)
        for l in range(L):
            grp = lay.phy2log[l] // gs
            for g in np.unique(grp):
                assert len(set(node[grp == g])) == 1, f"group {g} spans nodes in layer {l}"


def skewed(kind, L, E, seed):
    rng = np.random.default_rng(seed)
    if kind == "zipf":
        return synthetic_loads(L, E, hot_ratio=min(30.0, E * 0.6), seed=seed).astype(float)
    if kind == "lognormal":
        return synthetic_loads(L, E, hot_ratio=min(20.0, E * 0.5), seed=seed, kind="lognormal").astype(float)
    w = rng.integers(0, 100, size=(L, E)).astype(float)               # hot spot: a few very hot experts
    hot = rng.integers(0, E, size=(L, 2))
    np.put_along_axis(w, hot, rng.integers(2000, 8000, size=(L, 2)).astype(float), 1)
    return w


# ---------------------------------------------------------------------------------------------------
def test_eplb_candidate_is_bit_exact_with_reference():
    w = synthetic_loads(6, 64, hot_ratio=20, seed=5)
    for P, G, N, K in [(80, 8, 1, 1), (96, 16, 4, 8), (72, 8, 2, 4), (64, 16, 1, 1), (80, 8, 4, 2)]:
        phy, _, _ = ref.rebalance_experts(w, P, K, N, G)
        assert np.array_equal(eplb_layout(w.astype(np.float32), P, K, N, G), phy)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_invariants_and_never_worse_than_eplb(data):
    G = data.draw(st.sampled_from([1, 2, 4, 8]))
    N = data.draw(st.sampled_from([n for n in (1, 2, 4) if G % n == 0]))
    K = data.draw(st.sampled_from([1, 2, 4, 8]))
    gs = data.draw(st.integers(1, 4))
    E = K * gs
    spr = data.draw(st.integers(1, 4))
    P = G * spr
    if P < E:
        P = G * (-(-E // G))
    L = data.draw(st.integers(1, 3))
    w = np.array(data.draw(st.lists(st.integers(0, 1000), min_size=L * E, max_size=L * E)),
                 dtype=float).reshape(L, E)
    lay = balance(w, P, G, nodes=N, groups=K)
    check_invariants(lay, w, P, G, N, K)
    assert (lay.balancedness <= eplb_bal(w, P, G, N, K) + 1e-9).all()


@pytest.mark.parametrize("kind", ["zipf", "lognormal", "hotspot"])
@pytest.mark.parametrize("P,G,N,K", [(80, 8, 1, 1), (72, 24, 1, 1), (96, 16, 4, 8), (80, 8, 2, 4),
                                     (64, 16, 1, 1), (96, 32, 4, 16)])
def test_quality_at_least_eplb_on_skewed_matrices(kind, P, G, N, K):
    for seed in range(3):
        w = skewed(kind, 8, 64, seed)
        lay = balance(w, P, G, nodes=N, groups=K)
        check_invariants(lay, w, P, G, N, K)
        eb = eplb_bal(w, P, G, N, K)
        assert (lay.balancedness <= eb + 1e-9).all(), (lay.balancedness, eb)
        np.testing.assert_allclose(lay.eplb_balancedness, eb, rtol=1e-12)


def test_clearly_better_with_hot_node_under_hierarchical_policy():
    # 4 nodes x 4 ranks, 8 groups of 8 experts, 128 slots; one expert is 20x hotter than the rest.
    # EPLB puts 2 groups (16 experts) and hence only 16 spare slots on every node however hot; xds
    # gives the hot node a single group so 24 of its 32 slots are replicas of the hot group.
    rng = np.random.default_rng(0)
    w = rng.integers(50, 150, size=(4, 64)).astype(float)
    w[:, 8] *= 20
    lay = balance(w, 128, 16, nodes=4, groups=8)
    check_invariants(lay, w, 128, 16, 4, 8)
    eb = eplb_bal(w, 128, 16, 4, 8)
    margin = eb.mean() / lay.balancedness.mean()
    print(f"hot-node margin: EPLB {eb.mean():.3f} vs xds {lay.balancedness.mean():.3f} ({margin:.2f}x)")
    assert margin > 1.15


def test_clearly_better_on_heavy_skew_several_slots_per_rank():
    # one expert takes most tokens; greedy gives it G+1 replicas, stacking two on one rank
    rng = np.random.default_rng(1)
    w = rng.integers(1, 10, size=(4, 64)).astype(float)
    w[:, 0] = 60 * w.sum(1) / 64 * 8
    lay = balance(w, 72, 8)
    eb = eplb_bal(w, 72, 8)
    print(f"skew margin: EPLB {eb.mean():.3f} vs xds {lay.balancedness.mean():.3f}")
    assert lay.balancedness.mean() < eb.mean() * 0.9


def test_one_slot_per_rank_is_optimalwaterfill():
    w = skewed("zipf", 5, 64, 2)
    lay = balance(w, 80, 80)
    per = w / lay.replicas
    assert np.allclose(lay.balancedness, per.max(1) / (w.sum(1) / 80))
    assert (lay.balancedness <= eplb_bal(w, 80, 80) + 1e-9).all()


def test_balance_rejects_bad_arguments():
    w = np.ones((2, 8))
    for kw, flag in [(dict(slots=6, ranks=2), "--slots"), (dict(slots=9, ranks=2), "--slots"),
                     (dict(slots=8, ranks=4, nodes=3), "--nodes"),
                     (dict(slots=8, ranks=4, groups=3), "--groups")]:
        with pytest.raises(XdsError, match=flag):
            balance(w, **kw)
    for bad in (np.array([[1.0, -1.0]]), np.array([[1.0, np.nan]]), np.ones((2, 2, 2)), np.zeros((0, 4))):
        with pytest.raises(XdsError):
            balance(bad, 4, 2)


def test_balancedness_function_and_zero_loads():
    ph = np.array([[0, 1, 2, 3]])
    assert balancedness(ph, np.array([1.0, 1, 1, 1]), 2)[0] == pytest.approx(1.0)
    assert balancedness(ph, np.array([3.0, 1, 1, 1]), 2)[0] == pytest.approx(4 / 3)
    assert balance(np.zeros((1, 4)), 6, 2).balancedness[0] == 1.0
    with pytest.raises(XdsError, match="no slot"):
        balancedness(np.array([[0, 0, 1, 1]]), np.array([1.0, 1, 1, 1]), 2)


@pytest.mark.parametrize("kind", ["zipf", "lognormal"])
def test_synthetic_loads_hit_the_hot_ratio(kind):
    w = synthetic_loads(16, 256, hot_ratio=30, seed=0, kind=kind)
    assert w.shape == (16, 256) and w.dtype == np.int64 and (w >= 0).all()
    ratio = w.max(1) / w.mean(1)
    assert np.all(np.abs(ratio - 30) < 1.5), ratio
    assert not np.array_equal(w[0], w[1])
    with pytest.raises(XdsError):
        synthetic_loads(2, 8, hot_ratio=20)


def test_redundancy_and_slots_per_rank_lower_the_imbalance():
    w = synthetic_loads(8, 256, hot_ratio=30, seed=0)
    none, red, multi = (balance(w, P, G).balancedness.mean() for P, G in [(256, 256), (320, 320), (320, 32)])
    assert none > red > 1.0 and 1.0 <= multi < red
    assert none == pytest.approx(30, rel=0.1)       # no redundancy, one expert per rank: hot/mean
    # the per-step model (xds.experts.imbalance) orders them the same way once a step routes enough
    # pairs that the long-run placement, not the per-step noise of fewer pairs per rank, decides
    none, red, multi = (expected_balancedness(256, P, G, 4096, 8.0) for P, G in [(256, 256), (320, 320), (320, 32)])
    assert none > red > 1.0 and 1.0 <= multi < red


# --------------------------------------------------------------------------------------------- CLI
def test_cli_json_keys_out_and_evaluate(tmp_path):
    out = tmp_path / "layout.json"
    res = run_cli("experts", "--loads", LOADS / "small_4x32.csv", "--slots", 40, "--ranks", 8,
                  "--nodes", 2, "--groups", 4, "--json", "--out", out,
                  "--evaluate", LOADS / "drift_4x32.csv")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    for key in ("phy2log", "replicas", "balancedness", "balancedness_out_of_sample"):
        assert key in doc
    assert "seconds" not in doc          # wall clock only behind --timing
    assert set(doc["balancedness"]) >= {"mean", "worst", "per_layer"}
    assert len(doc["phy2log"]) == 4 and all(len(r) == 40 for r in doc["phy2log"])
    assert json.loads(out.read_text()) == doc
    assert not list(tmp_path.glob(".*tmp"))
    oos = doc["balancedness_out_of_sample"]
    assert oos["mean"] >= 1.0 and len(oos["per_layer"]) == 4
    # the saved layout scores the same in-sample and out-of-sample numbers
    res2 = run_cli("experts", "--loads", LOADS / "small_4x32.npy", "--ranks", 8, "--layout", out,
                   "--evaluate", LOADS / "drift_4x32.csv", "--json")
    assert res2.exit_code == 0, res2.stderr
    doc2 = json.loads(res2.stdout)
    assert doc2["balancedness"]["per_layer"] == pytest.approx(doc["balancedness"]["per_layer"])
    assert doc2["balancedness_out_of_sample"]["mean"] == pytest.approx(oos["mean"])


def test_cli_table_output():
    res = run_cli("experts", "--loads", LOADS / "small_4x32.npy", "--slots", 48, "--ranks", 8)
    assert res.exit_code == 0, res.stderr
    assert "balancedness" in res.stdout and "EPLB" in res.stdout


@pytest.mark.parametrize("args,needle", [
    (["--loads", LOADS / "negative.csv", "--slots", 4, "--ranks", 2], "non-negative"),
    (["--loads", LOADS / "ragged.csv", "--slots", 4, "--ranks", 2], "line 2"),
    (["--loads", LOADS / "garbage.csv", "--slots", 4, "--ranks", 2], "line 2"),
    (["--loads", LOADS / "empty.csv", "--slots", 4, "--ranks", 2], "empty"),
    (["--loads", LOADS / "garbage.npy", "--slots", 4, "--ranks", 2], ".npy"),
    (["--loads", LOADS / "nan.npy", "--slots", 4, "--ranks", 2], "finite"),
    (["--loads", LOADS / "cube.npy", "--slots", 4, "--ranks", 2], "shape"),
    (["--loads", LOADS / "small_4x32.npy", "--slots", 16, "--ranks", 8], "--slots"),
    (["--loads", LOADS / "small_4x32.npy", "--slots", 36, "--ranks", 8], "--slots"),
    (["--loads", LOADS / "small_4x32.npy", "--slots", 40, "--ranks", 8, "--groups", 3], "--groups"),
    (["--loads", LOADS / "small_4x32.npy", "--slots", 40, "--ranks", 8, "--nodes", 3], "--nodes"),
    (["--loads", LOADS / "missing.npy", "--slots", 40, "--ranks", 8], "not found"),
    (["--loads", LOADS / "small_4x32.npy", "--ranks", 8, "--layout", LOADS / "negative.csv"], "not valid JSON"),
])
def test_cli_bad_input_one_line_exit_2(args, needle):
    assert_user_error(run_cli("experts", *args), needle)


# ------------------------------------------------------------------- fast EPLB building blocks
@settings(max_examples=120, deadline=None)
@given(st.data())
def test_run_packing_is_exactly_eplbs_balanced_packing(data):
    # small integer weights make many ties: the run-at-a-time packing must break them like EPLB
    G = data.draw(st.integers(1, 6))
    per = data.draw(st.integers(1, 6))
    R = data.draw(st.integers(1, 4))
    hi = data.draw(st.sampled_from([3, 50, 10**6]))
    w = np.array(data.draw(st.lists(st.integers(0, hi), min_size=R * G * per, max_size=R * G * per)),
                 dtype=np.float32).reshape(R, G * per)
    if data.draw(st.booleans()):
        w = w / np.float32(7)                                        # non-integer float32 sums
    pi, rip = ref.balanced_packing(w, G)
    got_pi, got_rip = lpt_pack(w, G)
    assert np.array_equal(got_pi, pi) and np.array_equal(got_rip, rip)


def test_replication_is_exact_for_float64_near_ties_and_float32_denormals():
    # float64 loads a float32 ulp apart, and equal loads: the order must be the loop's, in float64,
    # and the water-fill's counts too
    w = np.array([[1.0, 1 + 2.0 ** -40, 3.0, 3.0], [2.0, 2.0, 2.0 + 2.0 ** -45, 1.0]])
    for S in range(4, 12):
        assert all(np.array_equal(a, b) for a, b in zip(greedy_replicas(w, S),
                                                        greedy_one_at_a_time(w, S, np.ones(w.shape, bool))))
        assert np.array_equal(waterfill(w, S), greedy_replicas(w, S)[0])
    # denormal float32 loads round their keys to ties: EPLB's layout must still be exact
    tiny = np.array([[0, 0, 0, 1e-45], [1e-45, 3e-45, 0, 2e-45]], dtype=np.float32)
    for P, K, N, G in [(6, 1, 1, 2), (8, 2, 2, 4)]:
        assert np.array_equal(eplb_layout(tiny, P, K, N, G), ref.rebalance_experts(tiny, P, K, N, G)[0])


def test_loads_that_overflow_float32_sums_are_refused():
    with pytest.raises(XdsError, match="float32"):
        balance(np.array([1e38, 3e38, 3e38, 3e38, 1e38, 3e38, 3e38, 3e38]), 16, 4, nodes=2, groups=2)


def test_run_packing_matches_eplb_on_heavy_tailed_rows_with_cold_experts():
    # Rows finish at very different steps (a few hot items, then many tiny ones) and a third of the
    # items are exactly zero (a zero ends every run): exercises dropping finished rows.
    rng = np.random.default_rng(11)
    for G, per in [(8, 9), (8, 5), (4, 2), (3, 7)]:
        w = np.exp(rng.normal(0.0, 2.5, (40, G * per))).astype(np.float32)
        w[rng.random(w.shape) < 0.33] = 0
        w[0] = 0                                                     # an all-cold row
        pi, rip = ref.balanced_packing(w, G)
        got_pi, got_rip = lpt_pack(w, G)
        assert np.array_equal(got_pi, pi) and np.array_equal(got_rip, rip)


def test_run_packing_matches_eplb_when_items_outweigh_the_mean_pack():
    # One or two items heavier than a whole pack's share keep their packs out of the runs until the
    # others fill: such rows end with one open pack or a few (runs of one or two items), beside
    # ordinary rows that finish early.
    rng = np.random.default_rng(23)
    for G, per in [(8, 12), (8, 9), (4, 16), (16, 6)]:
        w = rng.integers(1, 1000, (120, G * per)).astype(np.float32)
        w[rng.random(w.shape) < 0.1] = 0
        heavy = rng.integers(0, G * per, (120, 2))
        big = w.sum(1) / G * rng.uniform(0.8, 3.0, 120)
        w[np.arange(60), heavy[:60, 0]] = big[:60]                   # one dominating item
        w[np.arange(60, 90)[:, None], heavy[60:90]] = big[60:90, None] / 1.5   # two
        w[90:100] *= np.float32(1 + 2 ** -20)                        # not integer-valued
        pi, rip = ref.balanced_packing(w, G)
        got_pi, got_rip = lpt_pack(w, G)
        assert np.array_equal(got_pi, pi) and np.array_equal(got_rip, rip)
    # A long row finished item by item after the others: its pack weights must round to float32 at
    # every add, as EPLB's do (values below a float32 ulp of the running sums decide ties there).
    vals = np.array([1.0, 1.0 + 2**-23, 2**-24, 3 * 2**-25, 0.5, 0.5 + 2**-24, 2**-25], np.float32)
    for G, per in [(2, 6), (3, 9), (4, 5), (3, 7)]:
        for _ in range(60):
            long = rng.choice(vals, G * per).astype(np.float32)
            long[0] = np.float32(rng.uniform(1, 4) * long.sum() / G)
            w = np.vstack([rng.integers(1, 100, (7, G * per)).astype(np.float32), long[None]])
            pi, rip = ref.balanced_packing(w, G)
            got_pi, got_rip = lpt_pack(w, G)
            assert np.array_equal(got_pi, pi) and np.array_equal(got_rip, rip)


def test_two_items_per_pack_matches_eplb_with_ties_and_zeros():
    # Two items per pack (EPLB's group packing with 8 groups on 4 nodes): equal weights must still go
    # to the lowest pack index, zeros among the first items included.
    rng = np.random.default_rng(5)
    for G in [1, 2, 3, 4, 8]:
        for w in [rng.integers(1, 4, (60, 2 * G)), rng.integers(0, 3, (60, 2 * G)),
                  1 + rng.integers(0, 3, (60, 2 * G)) * 2.0 ** -22]:
            w = w.astype(np.float32)
            pi, rip = ref.balanced_packing(w, G)
            got_pi, got_rip = lpt_pack(w, G)
            assert np.array_equal(got_pi, pi) and np.array_equal(got_rip, rip)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_vectorized_replication_is_exactly_eplbs_greedy(data):
    E = data.draw(st.integers(1, 12))
    R = data.draw(st.integers(1, 4))
    S = E + data.draw(st.integers(0, 20))
    w = np.array(data.draw(st.lists(st.integers(0, data.draw(st.sampled_from([2, 100, 10**7]))),
                                    min_size=R * E, max_size=R * E)), dtype=np.float32).reshape(R, E)
    phy, _, cnt = ref.replicate_experts(w, S)
    got_cnt, picks = greedy_replicas(w, S)
    assert np.array_equal(got_cnt, cnt)
    assert np.array_equal(picks, phy[:, E:])
    # with absent experts (node rows) it matches the loop that recomputes every key
    present = np.array(data.draw(st.lists(st.booleans(), min_size=R * E, max_size=R * E))).reshape(R, E)
    present[:, 0] = True
    S2 = int(present.sum(1).max()) + data.draw(st.integers(0, 10))
    c_loop, p_loop = greedy_one_at_a_time(w, S2, present)
    c_fast, p_fast = greedy_replicas(w, S2, present)
    assert np.array_equal(c_fast, c_loop) and np.array_equal(p_fast, p_loop)
    assert (c_fast.sum(1) == S2).all() and (c_fast[~present] == 0).all()
    # the counts-only water-fill (one sort of the candidate keys instead of a step per replica)
    # takes the same counts, in float32 and float64, with and without absent experts
    assert np.array_equal(waterfill(w, S), cnt)
    assert np.array_equal(waterfill(w, S2, present), c_loop)
    w64 = w.astype(np.float64) * data.draw(st.sampled_from([1.0, 1 / 3, 1e-300]))
    assert np.array_equal(waterfill(w64, S2, present), greedy_one_at_a_time(w64, S2, present)[0])


def _round_to_ranks_one_at_a_time(w, c, ranks, present):
    """Reference for _round_to_ranks: round stacking counts down to multiples of ``ranks``, then give
    each freed replica to the eligible expert (present, not rounded, fewer than ``ranks``) with the
    highest w / count, lowest index on ties; with none eligible, to the rounded experts the same way."""
    c = c.copy()
    over = (c > ranks) & (c % ranks != 0)
    free = np.where(over, c % ranks, 0).sum(1)
    c = np.where(over, c // ranks * ranks, c)
    for r in range(c.shape[0]):
        for _ in range(int(free[r])):
            elig = present[r] & ~over[r] & (c[r] < ranks)
            pool = elig if elig.any() else present[r] & over[r]
            key = np.where(pool, w[r] / np.maximum(c[r], 1), -np.inf)
            c[r, int(np.argmax(key))] += 1
    return c


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_rounded_counts_are_the_one_at_a_time_greedy(data):
    R = data.draw(st.integers(1, 4))
    E = data.draw(st.sampled_from([1, 3, 9, 40]))
    ranks = data.draw(st.integers(1, 8))
    w = np.array(data.draw(st.lists(st.integers(0, data.draw(st.sampled_from([3, 1000]))),
                                    min_size=R * E, max_size=R * E)), dtype=float).reshape(R, E)
    present = np.array(data.draw(st.lists(st.booleans(), min_size=R * E, max_size=R * E))).reshape(R, E)
    c = np.array(data.draw(st.lists(st.integers(1, 3 * ranks + 2), min_size=R * E, max_size=R * E)))
    c = np.where(present, c.reshape(R, E), 0)
    got = round_to_ranks(w, c, ranks, present)
    assert np.array_equal(got, _round_to_ranks_one_at_a_time(w, c, ranks, present))
    assert np.array_equal(got.sum(1), c.sum(1))          # replicas are moved, never lost


def test_eplb_fast_path_is_bit_exact_on_benchmark_shapes():
    w = synthetic_loads(4, 256, hot_ratio=30, seed=3, kind="lognormal")
    for P, G, N, K in [(288, 32, 1, 1), (320, 64, 8, 8), (288, 32, 4, 8)]:
        phy, _, _ = ref.rebalance_experts(w, P, K, N, G)
        assert np.array_equal(eplb_layout(w.astype(np.float32), P, K, N, G), phy)


def test_synthetic_loads_spec_on_the_cli():
    res = run_cli("experts", "--loads", "synthetic:16x256:30", "--slots", "288", "--ranks", "32", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["layers"] == 16 and doc["experts"] == 256
    assert doc["balancedness"]["mean"] <= doc["eplb_balancedness"]["mean"] + 1e-9
    assert_user_error(run_cli("experts", "--loads", "synthetic:abc", "--slots", "288", "--ranks", "32"),
                      "--loads", "synthetic:LAYERSxEXPERTS")
    assert_user_error(run_cli("experts", "--loads", "synthetic:4x2", "--slots", "4", "--ranks", "2"),
                      "--loads", "hot_ratio")


def test_node_local_result_is_self_consistent_and_keyed_sort_is_a_stable_argsort():
    # the node-local path sums swapped slot loads instead of re-evaluating the layout: they must agree
    w = synthetic_loads(6, 256, hot_ratio=30, seed=7, kind="lognormal").astype(float)
    for P, G, N, K in [(288, 32, 4, 8), (320, 64, 8, 8)]:
        lay = balance(w, P, G, nodes=N, groups=K)
        check_invariants(lay, w, P, G, N, K)
        ref_cnt = np.stack([np.bincount(r, minlength=256) for r in lay.phy2log])
        assert np.array_equal(lay.replicas, ref_cnt)
        assert (lay.balancedness <= lay.eplb_balancedness + 1e-12).all()
    # the packer's keyed sort is a stable descending argsort, -0.0 and ties included
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(40, 72)).astype(np.float32)
    x[x == 1] = -0.0
    x[:, :5] = np.float32(1 + 2 ** -23)
    assert np.array_equal(argsort_desc(x), np.argsort(-x, axis=1, kind="stable"))
    with pytest.raises(TypeError):
        lpt_pack(x.astype(np.float64), 8)


def _assign_groups_one_at_a_time(gw, N, cap):
    """Reference for _assign_groups: per layer, groups heaviest first (lower index on ties) each to
    the lightest node (lowest index on ties) with fewer than ``cap`` groups, but only to an empty node
    while the groups left are no more than the empty nodes."""
    out = np.empty(gw.shape, dtype=np.int64)
    for l, row in enumerate(gw):
        load, count = [0.0] * N, [0] * N
        for j, g in enumerate(sorted(range(len(row)), key=lambda g: (-row[g], g))):
            empty = [n for n in range(N) if count[n] == 0]
            pool = empty if len(row) - j <= len(empty) else [n for n in range(N) if count[n] < cap]
            n = min(pool, key=lambda n: (load[n], n))
            out[l, g] = n
            load[n] += row[g]
            count[n] += 1
    return out


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_load_driven_group_placement_is_the_one_at_a_time_rule(data):
    N = data.draw(st.sampled_from([2, 4, 8]))
    K = N * data.draw(st.integers(2, 5))
    cap = data.draw(st.integers(K // N + 1, K))
    L = data.draw(st.integers(1, 4))
    hi = data.draw(st.sampled_from([2, 50, 10**6]))
    gw = np.array(data.draw(st.lists(st.integers(0, hi), min_size=L * K, max_size=L * K)),
                  dtype=float).reshape(L, K)
    assert np.array_equal(assign_groups(gw, N, cap), _assign_groups_one_at_a_time(gw, N, cap))
    gw += 1                                      # all positive: every node opens with one group
    assert np.array_equal(assign_groups(gw, N, cap), _assign_groups_one_at_a_time(gw, N, cap))


def test_float64_denormal_loads_replicate_as_the_loop():
    # keys in the denormal range round by whole units, so the water-fill's margin vanishes there
    w = np.array([[1.5e-323, 1e-323]])
    counts = greedy_replicas(w, 4)[0]
    assert np.array_equal(counts, [[3, 1]])
    assert np.array_equal(counts, greedy_one_at_a_time(w, 4, np.ones(w.shape, bool))[0])
    assert np.array_equal(waterfill(w, 4), counts)


def test_load_driven_groups_win_where_eplb_packs_far_above_its_bound():
    # 4 nodes with room for 3 of 8 groups; EPLB's packing lands well above its own lower bound here,
    # so the load-driven placement must be tried on every layer (a bound-based filter lost ~37 %).
    w = synthetic_loads(16, 64, hot_ratio=19.49, seed=433938, kind="zipf")
    lay = balance(w, 128, 64, nodes=4, groups=8)
    assert lay.balancedness.mean() < 0.75 * lay.eplb_balancedness.mean()


def test_review_edge_cases_negative_zero_fortran_order_and_float32_groups():
    # -0.0 loads are zeros: every path reports +0.0 rank loads
    for args in [(2, 2), (4, 2), (4, 2, 2, 2)]:
        P, G, *nk = args
        lay = balance([[1.0, -0.0]], P, G, **dict(zip(("nodes", "groups"), nk)))
        assert not np.signbit(lay.rank_load).any()
    # a Fortran-ordered presence mask (counts are updated through a flat view)
    rng = np.random.default_rng(0)
    w = rng.integers(1, 100, (6, 10)).astype(np.float64)
    present = np.asfortranarray(rng.random((6, 10)) < 0.7)
    present[:, 0] = True
    loop = greedy_one_at_a_time(w, 20, np.ascontiguousarray(present))
    assert np.array_equal(greedy_replicas(w, 20, present)[0], loop[0])
    assert np.array_equal(waterfill(w, 20, present), loop[0])
    # group loads given as float32 are placed as their float64 values are (node sums in float64)
    gw = np.array([[16777216.0, 16777216.0, 2.0000002, 1.9999999, 1.0, 1.0, 2.9999995, 2.9999998]],
                  dtype=np.float32)
    assert np.array_equal(assign_groups(gw, 2, 6), _assign_groups_one_at_a_time(gw.astype(float), 2, 6))
