"""Teachers as units, checked against brute force: the orderings a permutation test may use
(within families when there is a family term), the floor they put under a p-value, the
rank correlations (scipy's), the within-family centring, the slope interval with a family term
(its ends and p-value by inverting the test over every ordering) and ``size_effect``'s fields.
These pin what the claims table prints for claims 1, 4 and the interaction; the simulations in
test_inference*.py give the rules' error rates."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdcal import inference

DEPTH, WIDTH = "depth", "width"


def _within_orderings(sizes):
    """Every ordering of consecutive blocks of ``sizes`` positions, by itertools, as a set."""
    starts = np.cumsum((0,) + tuple(sizes))[:-1]
    blocks = [[tuple(s + i for i in p) for p in itertools.permutations(range(n))]
              for s, n in zip(starts, sizes)]
    return {sum(choice, ()) for choice in itertools.product(*blocks)}


# ---------------------------------------------------------------- orderings and their floor
@pytest.mark.parametrize("sizes", [(1,), (3,), (5,), (4, 3), (2, 2, 1)])
def test_orderings_within_families_are_every_reordering_inside_each_family(sizes):
    got = inference.orderings_within(sizes)
    assert tuple(got[0]) == tuple(range(sum(sizes)))  # identity first
    assert {tuple(r) for r in got} == _within_orderings(sizes)
    assert len(got) == math.prod(math.factorial(n) for n in sizes)  # no ordering twice


def test_past_the_exact_limit_orderings_are_a_seeded_sample_that_stays_inside_the_families():
    sizes = (9, 2)  # 9! 2! = 725,760 orderings: sampled
    got = inference.orderings_within(sizes)
    assert len(got) == inference.MONTE_CARLO + 1
    assert tuple(got[0]) == tuple(range(11))
    assert (np.sort(got[:, :9], axis=1) == np.arange(9)).all()
    assert (np.sort(got[:, 9:], axis=1) == [9, 10]).all()
    assert len({tuple(r) for r in got[1:]}) > inference.MONTE_CARLO * 0.95  # not one row repeated
    inference.orderings_within.cache_clear()
    assert (inference.orderings_within(sizes) == got).all()  # seeded: the same sample again


@pytest.mark.parametrize("k,count", [(0, 0), (1, 1), (2, 2), (5, 120), (8, 40_320),
                                     (9, inference.MONTE_CARLO + 1)])
def test_orderings_count_is_k_factorial_up_to_the_exact_limit(k, count):
    assert inference.orderings_count(k) == count


@pytest.mark.parametrize("k,floor", [(1, 1.0), (2, 1.0), (3, 1 / 3), (4, 1 / 12), (5, 1 / 60),
                                     (6, 2 / 720)])
def test_permutation_floor_is_two_over_the_orderings(k, floor):
    assert inference.permutation_floor(k) == pytest.approx(floor)


def test_permutation_floor_with_families_counts_only_reorderings_inside_them():
    strata = [WIDTH, DEPTH, DEPTH, WIDTH, DEPTH, WIDTH, DEPTH]  # 4 depth, 3 width, interleaved
    assert inference.permutation_floor(7, strata) == pytest.approx(2 / 144)
    # 3 + 2 teachers: 3! 2! = 12 orderings, so the floor is 1/6, far above 5%
    assert inference.permutation_floor(5, [DEPTH] * 3 + [WIDTH] * 2) == pytest.approx(1 / 6)
    assert math.isnan(inference.permutation_floor(0))


def test_blocks_group_each_family_in_a_stable_order():
    order, sizes = inference.strata_blocks([WIDTH, DEPTH, WIDTH, DEPTH, DEPTH])
    assert order.tolist() == [1, 3, 4, 0, 2] and sizes == (3, 2)


# ---------------------------------------------------------------- rank correlations
@pytest.mark.parametrize("y", [[0.3, 0.1, 0.4, 0.4, 0.9, 0.2], [1, 2, 3, 4, 5, 6],
                               [6, 5, 4, 3, 2, 1], [0.5, 0.5, 0.1, 0.9, 0.1, 0.3]])
def test_rank_correlation_is_scipys_with_ties(y):
    x = [16.0, 17.0, 17.0, 18.5, 19.0, 20.0]
    assert inference.rank_correlation(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert inference.rank_correlation(x, y, "kendall") == pytest.approx(stats.kendalltau(x, y)[0],
                                                                        abs=1e-12)


@pytest.mark.parametrize("x,y", [([1, 2], [1, 2]), ([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [4, 4, 4])])
def test_rank_correlation_is_undefined_below_three_teachers_or_for_a_constant(x, y):
    assert math.isnan(inference.rank_correlation(x, y))
    assert math.isnan(inference.rank_correlation(x, y, "kendall"))


def test_kendall_permutation_p_is_the_share_of_orderings_at_least_as_extreme():
    x = np.array([1.0, 2, 3, 4, 5])
    y = np.array([0.2, 0.1, 0.5, 0.4, 0.9])
    observed = stats.kendalltau(x, y)[0]
    null = [stats.kendalltau(x, y[list(p)])[0] for p in itertools.permutations(range(5))]
    expected = np.mean(np.abs(null) >= abs(observed) - 1e-12)
    assert inference.permutation_p(x, y, "kendall") == pytest.approx(expected)
    assert 0.05 < expected < 1  # neither edge: the comparison is not trivially met


# ---------------------------------------------------------------- the family term
def test_within_centres_each_family_around_its_own_mean():
    v = np.array([1.0, 2.0, 4.0, 10.0, 14.0])
    strata = [DEPTH, WIDTH, DEPTH, WIDTH, DEPTH]
    expected = v - pd.Series(v).groupby(strata).transform("mean").to_numpy()
    assert inference.within_strata(v, strata) == pytest.approx(expected)
    assert inference.within_strata(v, None) == pytest.approx(v - v.mean())


def _family_ladder(rng, slope=0.004, offset=0.03, noise=0.002):
    x = np.array([16.0, 17.1, 18.3, 19.2, 16.6, 18.0, 19.5])
    family = [DEPTH] * 4 + [WIDTH] * 3
    y = 0.8 + slope * x + offset * np.array([f == WIDTH for f in family]) + rng.normal(0, noise, 7)
    return x, y, family


def _brute_force_test(x, y, family, b):
    """One-sided shares of within-family orderings whose covariance with y - b x reaches the
    observed one (the test slope_interval inverts), by itertools over the teachers as given."""
    idx = {f: [i for i, g in enumerate(family) if g == f] for f in dict.fromkeys(family)}
    r = y - b * x
    up = down = total = 0
    observed = float(np.dot(x, r))  # covariance up to the families' constants, which cancel
    for choice in itertools.product(*(itertools.permutations(v) for v in idx.values())):
        perm = np.arange(len(x))
        for members, chosen in zip(idx.values(), choice):
            perm[members] = chosen
        cov = float(np.dot(x[perm], r))
        up += cov >= observed - 1e-12
        down += cov <= observed + 1e-12
        total += 1
    return up / total, down / total


def test_slope_with_a_family_term_is_least_squares_with_one_intercept_per_family():
    x, y, family = _family_ladder(np.random.default_rng(3))
    design = np.column_stack([x, [f == DEPTH for f in family], [f == WIDTH for f in family]])
    coef = np.linalg.lstsq(design.astype(float), y, rcond=None)[0]
    slope, *_ = inference.slope_interval(x, y, family)
    assert slope == pytest.approx(coef[0], rel=1e-10)
    # one line through both families (no family term) is another number: the offset leaks in
    assert inference.slope_interval(x, y)[0] != pytest.approx(coef[0], rel=1e-3)


def test_slope_interval_with_a_family_term_is_the_inverted_within_family_test():
    x, y, family = _family_ladder(np.random.default_rng(3))
    slope, lo, hi, p = inference.slope_interval(x, y, family)
    accepted = lambda b: min(_brute_force_test(x, y, family, b)) > inference.ALPHA / 2
    assert lo < slope < hi and np.isfinite(lo) and np.isfinite(hi)
    assert accepted(lo) and accepted(hi) and accepted(slope)
    width = hi - lo
    assert not accepted(lo - 1e-6 * width) and not accepted(hi + 1e-6 * width)
    up, down = _brute_force_test(x, y, family, 0.0)
    assert p == pytest.approx(min(1.0, 2 * min(up, down)))


@pytest.mark.parametrize("margin", [0.0005, 0.002, 0.004, 0.01])
def test_slope_tost_p_is_the_brute_force_test_at_both_margins(margin):
    """p_equiv: twice the larger of the one-sided shares, "slope <= -margin" tested with
    y + margin x, "slope >= margin" with y - margin x, over every within-family ordering."""
    x, y, family = _family_ladder(np.random.default_rng(3), slope=0.001)
    up, _ = _brute_force_test(x, y, family, -margin)
    _, down = _brute_force_test(x, y, family, margin)
    row = inference.size_effect(x, y, "positive", margin, family)
    assert row["p_equiv"] == pytest.approx(min(1.0, 2 * max(up, down)))
    inside = -margin < row["ci_low"] and row["ci_high"] < margin
    assert inside == (row["p_equiv"] <= inference.ALPHA)
    # no margin, no equivalence test
    assert math.isnan(inference.size_effect(x, y, "positive", np.nan, family)["p_equiv"])


def test_slope_interval_with_a_family_term_ignores_the_order_the_teachers_come_in():
    x, y, family = _family_ladder(np.random.default_rng(4))
    shuffle = np.random.default_rng(0).permutation(len(x))
    got = inference.slope_interval(x[shuffle], y[shuffle], [family[i] for i in shuffle])
    assert got == pytest.approx(inference.slope_interval(x, y, family))


@pytest.mark.parametrize("x,y,family", [
    ([1.0, 2.0], [0.1, 0.2], None),  # two teachers
    ([3.0, 3.0, 3.0, 3.0], [0.1, 0.2, 0.3, 0.4], None),  # one size
    ([1.0, 1.0, 2.0, 2.0], [0.1, 0.2, 0.3, 0.4], [DEPTH, DEPTH, WIDTH, WIDTH]),  # one size each
    ([1.0, 2.0, 1.0], [0.1, 0.2, 0.3], [DEPTH, DEPTH, WIDTH]),  # 3 teachers, 2 families: df 0
])
def test_slope_interval_is_undefined_where_no_slope_is_estimable(x, y, family):
    assert all(math.isnan(v) for v in inference.slope_interval(x, y, family))


def test_slope_p_value_is_one_sided_twice_and_capped_at_one():
    x = np.arange(6.0)
    flat = np.array([0.1, 0.3, 0.2, 0.2, 0.3, 0.1])  # no trend: each one-sided share above 1/2
    assert inference.slope_interval(x, flat)[3] == pytest.approx(1.0)
    rising = 0.01 * x
    assert inference.slope_interval(x, rising)[3] == pytest.approx(2 / 720)


# ---------------------------------------------------------------- size_effect, as one row
def test_size_effect_reports_the_pieces_it_is_made_of():
    x, y, family = _family_ladder(np.random.default_rng(5))
    margin = 0.002  # where the family term's lost degree of freedom costs a teacher (8, not 7)
    row = inference.size_effect(x, y, "positive", margin, family)
    slope, lo, hi, p = inference.slope_interval(x, y, family)
    mde, sigma = inference.mde_slope(x, y, family)
    xc = inference.within_strata(x, family)
    assert (row["estimate"], row["ci_low"], row["ci_high"], row["p_value"]) == (slope, lo, hi, p)
    assert row["n"] == 7 and row["unit"] == "teachers" and row["margin"] == margin
    assert row["p_floor"] == pytest.approx(2 / 144) and row["mde"] == mde
    assert row["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert row["needed"] == inference.teachers_needed(xc, sigma, margin, groups=2) == 8
    assert inference.teachers_needed(xc, sigma, margin, groups=1) == 7
    assert row["needed_observed"] == inference.teachers_needed(xc, sigma, abs(slope), groups=2)
    assert row["verdict"] == inference.decide(lo, hi, "positive", margin)
    assert row["verdict"] == "supported"  # slope 0.004 per doubling, noise 0.002: [0.0027, 0.0057]
    assert row["side"] == "supported" and row["p_equiv"] == 1.0


def test_size_effect_below_the_reachable_level_has_no_detectable_effect():
    x = np.array([16.0, 17.0, 18.0, 19.0])  # 4 teachers: 2/24 > 5%
    row = inference.size_effect(x, 0.01 * x, "positive", 0.001)
    assert row["mde"] == math.inf and row["verdict"] == "underpowered"
    assert row["p_floor"] == pytest.approx(1 / 12)
    two = inference.size_effect([16.0, 17.0], [0.8, 0.81], "positive", 0.001)
    assert math.isnan(two["p_floor"]) and two["mde"] == math.inf
