"""The verdict rules' small helpers at their edges, each against an independent computation
(scipy, numpy least squares, a hand count): the p-values, power figures and margins that the
claims table prints beside every verdict, and Holm's cap. The simulations of test_inference*
show the rules' error rates; these pin the numbers exactly, fast."""
import math

import numpy as np
import pytest
from scipy import stats

from kdcal import inference, multiplicity


def _power_factor(df: int) -> float:
    """t_(1 - alpha/2) + t_power at ``df``, written out here (the module caches its own)."""
    return stats.t.ppf(1 - inference.ALPHA / 2, df) + stats.t.ppf(inference.POWER, df)


def test_holm_caps_adjusted_p_values_at_one():
    assert multiplicity.holm([0.6, 0.7, 0.9]).tolist() == [1.0, 1.0, 1.0]
    # the cap is applied before the running maximum: 0.3 x 3 = 0.9 stays below it
    assert multiplicity.holm([0.3, 0.6]).tolist() == pytest.approx([0.6, 0.6])


def test_holm_with_ties_gives_tied_p_values_the_same_adjustment():
    assert multiplicity.holm([0.02, 0.02, 0.5]).tolist() == pytest.approx([0.06, 0.06, 0.5])


def test_t_p_value_is_the_one_sample_t_test():
    values = np.array([0.3, -0.1, 0.5, 0.2])
    mean, std = values.mean(), values.std(ddof=1)
    expected = stats.ttest_1samp(values, 0.0).pvalue
    assert inference.t_p_value(mean, std, len(values)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n", [0, 1])
def test_t_p_value_is_undefined_below_two_units(n):
    assert math.isnan(inference.t_p_value(0.1, 0.5, n))


@pytest.mark.parametrize("mean,expected", [(1.0, 0.0), (-0.2, 0.0), (0.0, 1.0)])
def test_t_p_value_without_scatter(mean, expected):
    """Every seed gives the same value: any non-zero mean is certain, zero is no evidence."""
    assert inference.t_p_value(mean, 0.0, 3) == expected


def test_mde_mean_is_the_t_power_formula_from_two_units_on():
    assert inference.mde_mean(1.0, 2) == pytest.approx(_power_factor(1) / math.sqrt(2), rel=1e-12)
    assert inference.mde_mean(0.4, 5) == pytest.approx(_power_factor(4) * 0.4 / math.sqrt(5),
                                                       rel=1e-12)


@pytest.mark.parametrize("std,n", [(1.0, 0), (1.0, 1), (np.nan, 5)])
def test_mde_mean_is_undefined_without_a_scatter_estimate(std, n):
    assert math.isnan(inference.mde_mean(std, n))


def _needed_by_hand(std: float, margin: float, limit: int) -> float:
    for n in range(2, limit + 1):
        if _power_factor(n - 1) * std / math.sqrt(n) <= margin:
            return float(n)
    return math.inf


def test_units_needed_mean_is_the_first_n_whose_mde_reaches_the_margin():
    needed = inference.units_needed_mean(1.0, 0.5)
    assert needed == _needed_by_hand(1.0, 0.5, 1000)
    assert inference.mde_mean(1.0, int(needed)) <= 0.5 < inference.mde_mean(1.0, int(needed) - 1)


def test_units_needed_mean_counts_up_to_its_limit_and_no_further():
    n = int(inference.units_needed_mean(1.0, 0.5))
    assert inference.units_needed_mean(1.0, 0.5, limit=n) == n
    assert inference.units_needed_mean(1.0, 0.5, limit=n - 1) == math.inf
    # the default limit is 1,000 seeds
    just_past = _power_factor(1000) / math.sqrt(1001)
    assert inference.units_needed_mean(1.0, just_past) == math.inf
    assert inference.units_needed_mean(1.0, just_past, limit=1001) == 1001


def test_seed_effect_floor_exists_from_two_seeds():
    assert inference.seed_effect([0.1, 0.2], "positive", 0.5)["p_floor"] == 0.0
    assert math.isnan(inference.seed_effect([0.1], "positive", 0.5)["p_floor"])


def test_t_interval_of_nothing_counts_no_units_and_drops_missing_values():
    mean, std, low, high, n = inference.t_interval([])
    assert n == 0 and all(math.isnan(v) for v in (mean, std, low, high))
    assert inference.t_interval([0.1, None, 0.3])[4] == 2  # a null from a JSON table is missing


def test_slope_margin_is_the_span_margin_over_the_ladders_width():
    assert inference.slope_margin(0.01, [0.0, 0.5]) == pytest.approx(0.02)
    assert inference.slope_margin(0.01, [16.0, 17.0, 19.0]) == pytest.approx(0.01 / 3)
    assert math.isnan(inference.slope_margin(0.01, []))
    assert math.isnan(inference.slope_margin(0.01, [17.0, 17.0]))


def test_teachers_for_level_is_the_fewest_whose_two_orderings_reach_alpha():
    assert inference.teachers_for_level() == 5  # 2/4! = 0.083, 2/5! = 0.017
    assert inference.teachers_for_level(1.0) == 2  # 2/2! = 1 reaches 1
    assert inference.teachers_for_level(2 / math.factorial(5)) == 5  # the edge counts


def test_mde_slope_with_a_family_term_is_ols_with_one_intercept_per_family():
    x = np.array([16.0, 17.0, 18.0, 19.5, 16.5, 18.0, 19.0])
    y = np.array([0.80, 0.81, 0.83, 0.82, 0.78, 0.80, 0.815])
    family = ["depth"] * 4 + ["width"] * 3
    design = np.column_stack([x, [f == "depth" for f in family], [f == "width" for f in family]])
    _, rss, *_ = np.linalg.lstsq(design.astype(float), y, rcond=None)
    df = len(x) - 3
    sigma = math.sqrt(float(rss[0]) / df)
    xc = x - np.array([x[:4].mean()] * 4 + [x[4:].mean()] * 3)
    mde, got_sigma = inference.mde_slope(x, y, family)
    assert got_sigma == pytest.approx(sigma, rel=1e-10)
    assert mde == pytest.approx(_power_factor(df) * sigma / math.sqrt(xc @ xc), rel=1e-10)
    # one family: a single intercept, one more residual degree of freedom
    _, rss1, *_ = np.linalg.lstsq(np.column_stack([x, np.ones_like(x)]), y, rcond=None)
    sigma1 = math.sqrt(float(rss1[0]) / (len(x) - 2))
    mde1, got1 = inference.mde_slope(x, y)
    assert got1 == pytest.approx(sigma1, rel=1e-10)
    xc1 = x - x.mean()
    assert mde1 == pytest.approx(_power_factor(len(x) - 2) * sigma1 / math.sqrt(xc1 @ xc1),
                                 rel=1e-10)


def test_units_needed_mean_uses_the_degrees_of_freedom_of_n_seeds():
    assert inference.units_needed_mean(1.0, inference.mde_mean(1.0, 3)) == 3.0


@pytest.mark.parametrize("std,margin", [(np.nan, 0.5), (1.0, np.nan)])
def test_units_needed_mean_is_undefined_without_a_scatter_or_a_margin(std, margin):
    assert math.isnan(inference.units_needed_mean(std, margin))


def _teachers_by_hand(x, sigma, margin, limit=200, groups=1):
    spread = float(np.mean(np.asarray(x, float) ** 2))
    # the fewest teachers that can reach 5%: 5 in one family, 7 over two, 8 over three (spread
    # evenly, orderings only within families: 5! = 120, 4!3! = 144, 3!3!2! = 72 >= 40)
    for k in range({1: 5, 2: 7, 3: 8}[groups], limit + 1):
        df = k - groups - 1
        if df >= 1 and _power_factor(df) * sigma / math.sqrt(spread * k) <= margin:
            return float(k)
    return math.inf


def _margin_at(k, x, sigma, groups=1):
    """The margin that k teachers spread like ``x`` detect exactly."""
    return _power_factor(k - groups - 1) * sigma / math.sqrt(float(np.mean(np.square(x))) * k)


def test_teachers_needed_is_the_first_ladder_whose_ols_power_reaches_the_margin():
    x = np.array([-1.5, -0.5, 0.5, 1.5])  # centred log2 sizes
    for k, groups in ((9, 1), (12, 2), (6, 1)):
        margin = _margin_at(k, x, 0.01, groups)
        assert inference.teachers_needed(x, 0.01, margin, groups=groups) == k
        assert _teachers_by_hand(x, 0.01, margin, groups=groups) == k
    # the default is one family: its margin at 9 teachers is not reached by 9 in two families
    assert inference.teachers_needed(x, 0.01, _margin_at(9, x, 0.01)) == 9
    assert inference.teachers_needed(x, 0.01, _margin_at(9, x, 0.01), groups=2) > 9
    # three families: 5 teachers (df 1) would reach the margin by OLS power, but 2 + 2 + 1 allow 4
    # orderings; the first ladder whose orderings reach 5% has 8 (3 + 3 + 2: 72 orderings)
    assert inference.teachers_needed(x, 0.01, _margin_at(5, x, 0.01, 3), groups=3) == 8


def test_teachers_needed_counts_up_to_200_teachers_by_default():
    x = np.array([-1.0, 1.0])
    at_201 = _margin_at(201, x, 0.01)
    assert inference.teachers_needed(x, 0.01, at_201) == math.inf
    assert inference.teachers_needed(x, 0.01, at_201, limit=201) == 201
    assert inference.teachers_needed(x, 0.01, _margin_at(200, x, 0.01)) == 200


@pytest.mark.parametrize("x,sigma,margin", [([-1.0, 0.0, 1.0], np.nan, 0.01),
                                            ([-1.0, 0.0, 1.0], 0.01, np.nan),
                                            ([0.0], 0.01, 0.01)])
def test_teachers_needed_is_undefined_without_a_scatter_a_margin_or_two_teachers(x, sigma, margin):
    assert math.isnan(inference.teachers_needed(x, sigma, margin))


def test_teachers_needed_from_two_teachers_on():
    assert np.isfinite(inference.teachers_needed([-0.5, 0.5], 0.01, 0.05))
