"""The two tests of a claim (against 0, against +-margin) and Holm over both, under simulation.

For seeds (t over seeds) and for teachers (permutations over teachers, with and without a family
term) the verdict rule's error rates are measured where they are largest:

- no effect (and a margin too large to matter): supported, contradicted or negligible (the
  interval excludes 0) in at most 5% of studies;
- the effect exactly at the margin: equivalent in at most 2.5% (the TOST's size; each one-sided
  test at 2.5%, matching the 95% interval);
- a clear effect with enough data is found (supported); a true tiny effect inside the margin,
  with many seeds (or teachers whose means hardly vary), is called negligible;

and Holm over the mixed family keeps the family-wise error (any true null rejected after
adjustment) at or below 5%, where representing each other claim by the p-value of its verdict
alone would not. Tolerances are binomial: a true rate r measured over n studies is allowed
r + 3 sqrt(r (1 - r) / n) (exceeded with probability about 0.1% were the rule exactly at r); the
generators are seeded, so each run measures the same numbers. A few seconds in all.
"""
import math

import numpy as np
import pytest
from scipy import stats

from conftest import shaffer_by_hand

from kdcal import inference, multiplicity

SHOWN = ("supported", "contradicted", "negligible")  # the zero null rejected


def slack(rate: float, n: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


def seed_verdicts(rng, effect, sd, seeds, margin, sims, direction="positive"):
    """The verdicts of ``sims`` seed-unit claims, each from ``seeds`` values per study."""
    values = rng.normal(effect, sd, (sims, seeds))
    return [inference.seed_effect(v, direction, margin)["verdict"] for v in values]


LADDER = np.log2([78e3, 175e3, 272e3, 467e3, 661e3, 855e3])  # 6 depth teachers: 720 orderings
FAMILIES = (np.log2([78e3, 175e3, 272e3, 467e3, 300e3, 1.2e6, 1.5e6]),
            ["depth"] * 4 + ["width"] * 3)  # 4! 3! = 144 orderings, a family term


def teacher_verdicts(rng, slope, sd, margin, sims, strata=False, direction="positive"):
    """The verdicts of ``sims`` size claims: teacher means ``slope`` x + a family offset + noise."""
    x, fam = FAMILIES if strata else (LADDER, None)
    offset = np.where(np.asarray(fam) == "width", -0.02, 0.0) if strata else 0.0
    out = []
    for _ in range(sims):
        y = offset + slope * x + rng.normal(0, sd, len(x))
        out.append(inference.size_effect(x, y, direction, margin, fam)["verdict"])
    return out


def rate(verdicts, which) -> float:
    return float(np.mean([v in which for v in verdicts]))


# ---------------------------------------------------------------- seeds as units
def test_seeds_no_effect_declares_an_effect_in_at_most_5_percent():
    sims = 4000
    verdicts = seed_verdicts(np.random.default_rng(0), 0.0, 1.0, 5, margin=10.0, sims=sims)
    assert rate(verdicts, SHOWN) <= slack(0.05, sims), rate(verdicts, SHOWN)
    assert rate(verdicts, ("negligible",)) > 0  # the margin is large: what is shown is negligible


@pytest.mark.parametrize("effect", [1.0, -1.0])
def test_seeds_effect_at_the_margin_declares_equivalence_in_at_most_2_5_percent(effect):
    sims = 4000  # 20 seeds, sd 1, margin 1: the interval is often narrow enough to fit inside
    verdicts = seed_verdicts(np.random.default_rng(1), effect, 1.0, 20, margin=1.0, sims=sims)
    equivalent = rate(verdicts, ("equivalent", "negligible"))
    assert equivalent <= slack(0.025, sims), equivalent
    assert equivalent > 0.01  # the size is nearly reached: the test is not vacuous here


def test_seeds_a_clear_effect_is_found():
    verdicts = seed_verdicts(np.random.default_rng(2), 2.0, 1.0, 10, margin=1.0, sims=500)
    assert rate(verdicts, ("supported",)) >= 0.8


def test_seeds_a_tiny_effect_inside_the_margin_with_many_seeds_is_negligible():
    verdicts = seed_verdicts(np.random.default_rng(3), 0.3, 1.0, 400, margin=1.0, sims=300)
    assert rate(verdicts, ("negligible",)) >= 0.95
    # predicted negative: the same effect is still negligible, never contradicted
    verdicts = seed_verdicts(np.random.default_rng(3), 0.3, 1.0, 400, margin=1.0, sims=300,
                             direction="negative")
    assert rate(verdicts, ("negligible",)) >= 0.95


def test_seeds_the_tost_p_is_the_interval_inside_the_margin():
    """p_equiv < 5% exactly when the 95% t-interval lies strictly inside +-margin, and p_value
    < 5% exactly when it excludes 0: the verdict follows from the two p-values."""
    rng = np.random.default_rng(4)
    for _ in range(2000):
        n = int(rng.integers(2, 30))
        e = inference.seed_effect(rng.normal(rng.normal(0, 0.5), 1.0, n), "positive",
                                  float(rng.uniform(0.1, 2.0)))
        shown = e["side"] if e["p_value"] < 0.05 else ""
        assert inference.verdict_of(shown, e["p_equiv"] < 0.05) == e["verdict"], e


def test_seeds_tost_against_scipy_and_its_edges():
    v = np.array([0.1, 0.4, 0.3, 0.2, 0.35])
    above = stats.ttest_1samp(v, -0.5, alternative="greater").pvalue
    below = stats.ttest_1samp(v, 0.5, alternative="less").pvalue
    assert inference.t_equivalence_p(v.mean(), v.std(ddof=1), 5, 0.5) == pytest.approx(
        2 * max(above, below))
    # the interval's end on the margin: p exactly 5%, not below it; excluding 0, not inside the
    # margin: supported, not negligible
    mean, std, lo, hi, n = inference.t_interval(v)
    assert 0 < lo and inference.t_equivalence_p(mean, std, n, hi) == pytest.approx(0.05)
    assert inference.decide(lo, hi, "positive", hi) == "supported"
    assert inference.decide(lo, hi, "positive", np.nextafter(hi, 1)) == "negligible"
    assert np.isnan(inference.t_equivalence_p(0.0, 1.0, 1, 1.0))  # one seed: no test
    assert inference.t_equivalence_p(0.2, 0.0, 3, 0.5) == 0.0  # no spread: inside
    assert inference.t_equivalence_p(0.5, 0.0, 3, 0.5) == 1.0  # on the margin: not inside
    assert np.isnan(inference.t_equivalence_p(0.2, 0.1, 3, np.nan))
    got = inference.t_equivalence_p(np.array([0.0, 0.2]), np.array([1.0, 0.0]), 4, 0.5)
    assert got[1] == 0.0 and 0 < got[0] < 1  # elementwise over arrays


# ---------------------------------------------------------------- teachers as units
@pytest.mark.parametrize("strata", [False, True])
def test_teachers_no_effect_declares_an_effect_in_at_most_5_percent(strata):
    sims = 600 if strata else 1500
    verdicts = teacher_verdicts(np.random.default_rng(10), 0.0, 1.0, 100.0, sims, strata)
    assert rate(verdicts, SHOWN) <= slack(0.05, sims), rate(verdicts, SHOWN)


@pytest.mark.parametrize("strata,slope", [(False, 1.0), (False, -1.0), (True, 1.0)])
def test_teachers_slope_at_the_margin_declares_equivalence_in_at_most_2_5_percent(strata, slope):
    sims = 600 if strata else 1500
    verdicts = teacher_verdicts(np.random.default_rng(11), slope, 0.3, 1.0, sims, strata)
    equivalent = rate(verdicts, ("equivalent", "negligible"))
    assert equivalent <= slack(0.025, sims), equivalent


@pytest.mark.parametrize("strata", [False, True])
def test_teachers_a_clear_slope_is_found(strata):
    verdicts = teacher_verdicts(np.random.default_rng(12), 3.0, 0.5, 1.0, 200, strata)
    assert rate(verdicts, ("supported",)) >= 0.8


@pytest.mark.parametrize("strata", [False, True])
def test_teachers_a_tiny_slope_inside_the_margin_with_precise_means_is_negligible(strata):
    verdicts = teacher_verdicts(np.random.default_rng(13), 0.3, 0.02, 1.0, 200, strata)
    assert rate(verdicts, ("negligible",)) >= 0.95


@pytest.mark.parametrize("strata", [False, True])
def test_teachers_the_tost_p_is_the_permutation_interval_inside_the_margin(strata):
    """The interval is the inversion of the two one-sided permutation tests: p_equiv <= 5%
    exactly when it lies inside +-margin (its ends included in it), also with the margin set on
    an end of the interval and just beyond it."""
    rng = np.random.default_rng(14)
    x, fam = FAMILIES if strata else (LADDER, None)
    for _ in range(150):
        y = rng.normal(0, 1) * x + rng.normal(0, 0.5, len(x))
        _, lo, hi, _ = inference.slope_interval(x, y, fam)
        end = max(abs(lo), abs(hi))
        for margin in (rng.uniform(0.1, 3), end, np.nextafter(end, np.inf)):
            e = inference.size_effect(x, y, "positive", margin, fam)
            shown = e["side"] if e["p_value"] <= 0.05 else ""
            assert inference.verdict_of(shown, e["p_equiv"] <= 0.05) == e["verdict"], (margin, e)


# ---------------------------------------------------------------- Holm over both tests
def seed_family(rng, effects, seeds, sims, margin=1.0, sd=1.0):
    """Per study and claim: (p_value, p_equiv, side, verdict), t over ``seeds`` values."""
    effects = np.asarray(effects, float)
    values = rng.normal(effects[None, :, None], sd, (sims, len(effects), seeds))
    mean, std = values.mean(axis=2), values.std(axis=2, ddof=1)
    se = std / math.sqrt(seeds)
    p_zero = 2 * stats.t.sf(np.abs(mean) / se, seeds - 1)
    p_equiv = inference.t_equivalence_p(mean, std, seeds, margin)
    side = np.where(mean > 0, "supported", "contradicted")
    zero, equiv = p_zero < 0.05, p_equiv < 0.05
    verdict = np.vectorize(inference.verdict_of)(np.where(zero, side, ""), equiv)
    return p_zero, p_equiv, side, verdict


def family_errors(effects, seeds, sims, seed, margin=1.0, rule=multiplicity.holm_family):
    """The share of studies in which Holm's verdicts reject a true null: the zero null of a
    claim whose effect is 0, the equivalence null of one whose effect is at least the margin."""
    p_zero, p_equiv, side, verdict = seed_family(np.random.default_rng(seed), effects, seeds,
                                                 sims, margin)
    zero_true = np.asarray(effects) == 0
    equiv_true = np.abs(effects) >= margin
    errors = 0
    for z, e, s, v in zip(p_zero, p_equiv, side, verdict):
        held = np.array(rule(v, s, z, e)[2])
        errors += bool(np.any(zero_true & np.isin(held, SHOWN))
                       or np.any(equiv_true & np.isin(held, ("equivalent", "negligible"))))
    return errors / sims


def verdict_p_rule(verdicts, sides, p_zero, p_equiv):
    """The rule Holm must NOT follow: each claim enters with the p of its verdict alone (zero p
    for supported/contradicted, TOST p for equivalent, the larger for negligible, the smaller for
    underpowered), and a verdict stands where that adjusted p is below 5%."""
    pz, pe = np.asarray(p_zero), np.asarray(p_equiv)
    own = np.array([{"supported": z, "contradicted": z, "equivalent": e,
                     "negligible": max(z, e)}.get(v, min(z, e))
                    for v, z, e in zip(verdicts, pz, pe)])
    adjusted = multiplicity.holm(own)
    return None, adjusted, [v if a < 0.05 else "underpowered" for v, a in zip(verdicts, adjusted)]


def test_holm_over_both_tests_controls_the_familywise_error_where_equivalence_is_easy():
    """Five claims with no effect and many seeds: every TOST rejects, every zero test is at 5%.
    Holm over the family keeps the chance of any false "an effect is shown" near 5%; entering
    each claim by its verdict's p lets every equivalent claim leave the count at its tiny TOST
    p, so that a last claim's chance zero test meets 5% alone (about 1 - 0.95^5 = 23%)."""
    sims = 3000
    ours = family_errors([0.0] * 5, 100, sims, seed=20)
    assert ours <= slack(0.05, sims), ours
    assert ours >= 0.03  # the bound is nearly reached: Holm is not merely conservative here
    naive = family_errors([0.0] * 5, 100, 1000, seed=20, rule=verdict_p_rule)
    assert naive > 0.15, naive


def test_holm_over_both_tests_controls_the_familywise_error_in_a_mixed_family():
    """Claims with the effect at 0, at the margin (both signs), beyond it, and one inside it (no
    true null): the share of studies with any true null rejected stays at or below 5%."""
    sims = 1500
    errors = family_errors([0.0, 0.0, 1.0, -1.0, 3.0, 0.5], 30, sims, seed=21)
    assert errors <= slack(0.05, sims), errors


def test_holm_family_is_shaffers_step_down_over_both_tests():
    """Cross-check on random families (ties included): each test adjusted by holm_within equals
    Shaffer's sequential step-down over all 2 x claims p-values, where a claim counts until both
    its tests are passed (the closed-testing shortcut of the module docstring)."""
    rng = np.random.default_rng(22)
    for _ in range(300):
        k = int(rng.integers(1, 8))
        pz = np.round(rng.uniform(0, 0.3, k) ** 2, 3)  # rounded: ties happen
        pe = np.round(rng.uniform(0, 0.3, k) ** 2, 3)
        pz[rng.uniform(size=k) < 0.1] = np.nan
        larger = np.fmax(pz, pe)
        got_z, got_e = multiplicity.holm_within(pz, larger), multiplicity.holm_within(pe, larger)
        want_z, want_e = shaffer_by_hand(pz, pe)
        np.testing.assert_allclose(got_z, want_z, rtol=1e-12)
        np.testing.assert_allclose(got_e, want_e, rtol=1e-12)




def test_holm_family_verdicts_p_test_and_fallbacks():
    verdicts = ["supported", "equivalent", "negligible", "negligible", "negligible",
                "underpowered", "contradicted"]
    sides = ["supported", "", "contradicted", "supported", "supported", "", "contradicted"]
    p_zero = [0.001, 0.6, 0.002, 0.004, 0.03, 0.3, 0.04]
    p_equiv = [0.9, 0.003, 0.001, 0.03, 0.004, 0.2, 0.8]
    tests, adjusted, held = multiplicity.holm_family(verdicts, sides, p_zero, p_equiv)
    larger = np.fmax(p_zero, p_equiv)
    zero, equiv = multiplicity.holm_within(p_zero, larger), multiplicity.holm_within(p_equiv, larger)
    assert held == ["supported", "equivalent", "negligible", "supported", "equivalent",
                    "underpowered", "underpowered"]
    assert tests == ["zero", "equivalence", "both", "zero", "equivalence", "equivalence", "zero"]
    want = [zero[0], equiv[1], max(zero[2], equiv[2]), zero[3], equiv[4], equiv[5], zero[6]]
    assert adjusted == pytest.approx(want)
    # a verdict stands exactly where p_holm is below 5%
    assert [h != "underpowered" for h in held] == [a < 0.05 for a in adjusted]


def test_holm_family_never_upgrades_and_skips_claims_without_tests():
    tests, adjusted, held = multiplicity.holm_family(
        ["underpowered", "supported", "underpowered"], ["", "supported", ""],
        [0.001, 0.001, np.nan], [0.001, 0.9, np.nan])
    # the first row's p-values are small, but its interval decided nothing: it stays open
    assert held == ["underpowered", "supported", "underpowered"]
    assert tests[2] is None and np.isnan(adjusted[2])


def test_holm_family_keeps_a_contradicted_claim_and_decides_strictly_below_5_percent():
    """A contradicted claim whose zero test survives stays contradicted; a test whose adjusted p
    is exactly 5% decides nothing (below, not at): for a supported claim and an equivalent one."""
    tests, adjusted, held = multiplicity.holm_family(["contradicted", "supported"],
                                                     ["contradicted", "supported"],
                                                     [0.001, 0.002], [0.9, 0.002])
    assert held == ["contradicted", "supported"] and tests == ["zero", "zero"]
    for verdict, side, pz, pe in (("supported", "supported", 0.05, 0.9),
                                  ("equivalent", "", 0.9, 0.05)):
        tests, adjusted, held = multiplicity.holm_family([verdict], [side], [pz], [pe])
        assert adjusted[0] == 0.05 and held == ["underpowered"], verdict
