"""The verdict rules under simulation, through the claims table: with no effect they declare an
effect (supported, contradicted or negligible) in at most about 5% of studies per claim, and Holm
over the table in at most about 5% of studies over all claims; with a clear effect and enough
seeds and teachers they find it (tests/test_inference_holm.py measures each rule alone).

Simulated results tables carry what real ones do: teachers that differ for reasons other than
size (a teacher effect), seeds that move every model of a run together, a seed-by-mode effect
shared by all teachers of a seed (students of one seed share initial weights and batches), and
noise. Counts use binomial slack: 400 studies at a true 5% exceed 8% with probability < 0.2%.
"""
import numpy as np
import pandas as pd
import pytest

from kdcal import analysis, inference
from kdcal import claims as claim_tests

MODES = ("uncalibrated", "compose", "replace")
NULL = dict(ece_slope=0.0, ece_gain=0.0, nll_gain=0.0, slopes=(0.0, 0.0, 0.0), cal_gain=0.0)
CLEAR = dict(ece_slope=0.01, ece_gain=0.03, nll_gain=0.1, slopes=(-0.01, 0.01, 0.01),
             cal_gain=0.01)


def simulate(teachers: int, seeds: int, rng, ece_slope, ece_gain, nll_gain, slopes, cal_gain,
             noise: float = 0.003) -> pd.DataFrame:
    """A results table with the columns claims_table needs; effects per doubling of size."""
    steps = np.arange(teachers)
    params = (50_000 * 2.0 ** steps).astype(int)
    teacher_ece = rng.normal(0, 0.01, teachers)  # teachers differ, not by size
    teacher_acc = rng.normal(0, 0.004, teachers)
    rows = []
    for seed in range(seeds):
        seed_shift = rng.normal(0, 0.01)
        seed_mode = dict(zip(MODES, rng.normal(0, 0.003, len(MODES))))
        for step, p in zip(steps, params):
            arch = f"t{step}"
            ece = 0.05 + ece_slope * step + teacher_ece[step] + rng.normal(0, noise)
            nll = 0.4 + rng.normal(0, 0.02)
            rows.append({"role": "teacher", "arch": arch, "params": p, "seed": seed,
                         "mode": "teacher", "teacher": "", "teacher_params": np.nan,
                         "acc": 0.9, "ece": ece, "ece_cal": ece - ece_gain + rng.normal(0, noise),
                         "nll": nll, "nll_cal": nll - nll_gain + rng.normal(0, 0.01),
                         "temperature": 1.3})
            pair = rng.normal(0, noise)  # shared by the students of one teacher and seed
            for mode, slope in zip(MODES, slopes):
                acc = (0.8 + teacher_acc[step] + seed_shift + pair + seed_mode[mode]
                       + slope * step + (cal_gain if mode != "uncalibrated" else 0.0)
                       + rng.normal(0, noise))
                rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                             "mode": mode, "teacher": arch, "teacher_params": p, "acc": acc,
                             "ece": np.nan, "ece_cal": np.nan, "nll": np.nan, "nll_cal": np.nan,
                             "temperature": 1.3})
        rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                     "mode": "baseline", "teacher": "", "teacher_params": np.nan,
                     "acc": 0.79 + seed_shift + rng.normal(0, noise), "ece": np.nan,
                     "ece_cal": np.nan, "nll": np.nan, "nll_cal": np.nan, "temperature": np.nan})
    return pd.DataFrame(rows)


def claim_key(text: str) -> str:
    mode = next((m for m in ("replace", "compose") if f"({m})" in text), "")
    return text[:2] + ("interaction " if "interaction" in text else "") + mode


SHOWN = ("supported", "contradicted", "negligible")  # the interval excludes 0


def verdict_rates(teachers, seeds, effects, sims, seed=0, familywise=False):
    """Per claim, the share of studies with each verdict; with ``familywise``, also the share of
    studies in which any claim's Holm-adjusted verdict shows an effect (with no effect: the
    family-wise error of Holm over the table)."""
    rng = np.random.default_rng(seed)
    counts, shown_after_holm = [], 0
    for _ in range(sims):
        claims = claim_tests.claims_table(simulate(teachers, seeds, rng, **effects))
        counts.append(dict(zip(claims["claim"].map(claim_key), claims["verdict"])))
        shown_after_holm += claims["verdict_holm"].isin(SHOWN).any()
    frame = pd.DataFrame(counts)
    rates = pd.DataFrame({v: (frame == v).mean() for v in inference.VERDICTS})
    return (rates, shown_after_holm / sims) if familywise else rates


@pytest.mark.parametrize("teachers,seeds", [(3, 2), (4, 3), (6, 5)])
def test_with_no_effect_no_claim_is_decided_more_than_about_5_percent(teachers, seeds):
    rates, familywise = verdict_rates(teachers, seeds, NULL, sims=400, familywise=True)
    decided = rates["supported"] + rates["contradicted"] + rates["negligible"]
    assert set(rates.index) == {"1.", "2.", "3.", "4.replace", "4.compose", "5.replace",
                                "5.compose", "4.interaction replace", "4.interaction compose"}
    assert (decided <= 0.08).all(), decided
    assert familywise <= 0.08, familywise  # Holm over the table: any claim shown, by chance


def test_a_clear_effect_is_found_with_seven_teachers_and_five_seeds():
    rates = verdict_rates(7, 5, CLEAR, sims=100, seed=1)
    assert (rates["supported"] >= 0.8).all(), rates["supported"]


def test_no_effect_with_enough_data_is_called_equivalent():
    rates = verdict_rates(7, 12, NULL, sims=60, seed=2)
    for claim in ("5.replace", "5.compose"):  # 12 seeds make +-0.5 points reachable
        assert rates.loc[claim, "equivalent"] >= 0.5, rates


def test_the_design_that_cannot_reach_the_level_says_underpowered():
    rates = verdict_rates(4, 3, CLEAR, sims=50, seed=3)
    for claim in ("1.", "3.", "4.replace", "4.compose"):  # 4 teachers: p >= 2/24
        assert rates.loc[claim, "underpowered"] == 1.0


def test_pooling_teacher_seed_pairs_would_inflate_the_error():
    """The reason for the seed as unit: the old interval over teacher x seed pairs."""
    rng = np.random.default_rng(4)
    pooled = unit = 0
    sims = 300
    for _ in range(sims):
        students = simulate(4, 3, rng, **NULL).query("role == 'student'")
        diff = analysis.paired_by_seed(students, "compose", "uncalibrated")
        _, _, lo, hi, _ = inference.t_interval(diff["diff"])
        pooled += lo > 0 or hi < 0
        e = inference.seed_effect(analysis.per_seed_means(diff), "positive", 0.005)
        unit += e["verdict"] in SHOWN
    assert pooled / sims > 0.1 and unit / sims <= 0.08


# ---------------------------------------------------------------- the rules themselves
@pytest.mark.parametrize("lo,hi,direction,expected", [
    (0.1, 0.5, "positive", "supported"), (-0.5, -0.1, "positive", "contradicted"),
    (-0.5, -0.1, "negative", "supported"), (0.1, 0.5, "negative", "contradicted"),
    (-0.004, 0.004, "positive", "equivalent"), (-0.1, 0.1, "positive", "underpowered"),
    (0.001, 0.004, "positive", "negligible"), (-0.004, -0.001, "negative", "negligible"),
    (-np.inf, np.inf, "positive", "underpowered"), (np.nan, np.nan, "positive", "underpowered")])
def test_decide(lo, hi, direction, expected):
    assert inference.decide(lo, hi, direction, 0.005) == expected


def test_slope_interval_is_the_inverted_permutation_test():
    """Brute force: b is in the interval iff y - b x passes the two one-sided tests."""
    import itertools

    rng = np.random.default_rng(5)
    x = np.arange(6.0)
    y = 0.01 * x + rng.normal(0, 0.01, 6)
    slope, lo, hi, p = inference.slope_interval(x, y)
    perms = [list(q) for q in itertools.permutations(range(6))]

    def accepted(b):
        r = y - b * x
        cov = np.array([np.dot(x[q] - x.mean(), r) for q in perms])
        obs = np.dot(x - x.mean(), r)
        return np.mean(cov >= obs - 1e-12) > 0.025 and np.mean(cov <= obs + 1e-12) > 0.025

    assert slope == pytest.approx(np.polyfit(x, y, 1)[0])
    assert accepted(lo) and accepted(hi)
    assert not accepted(lo - 1e-6) and not accepted(hi + 1e-6)
    assert lo < slope < hi


def test_slope_interval_is_unbounded_where_the_level_is_out_of_reach():
    _, lo, hi, p = inference.slope_interval(np.arange(4.0), np.arange(4.0) ** 2)
    assert (lo, hi) == (-np.inf, np.inf) and p == pytest.approx(2 / 24)
    assert inference.permutation_floor(4) == pytest.approx(2 / 24)
    assert inference.teachers_for_level() == 5


def test_permutation_p_is_exact_over_teachers():
    assert inference.permutation_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(2 / 120)
    assert inference.permutation_p([1, 2, 3], [2, 1, 3]) > 0.3
    assert np.isnan(inference.permutation_p([1, 2, 3], [1, 1, 1]))


def test_mde_and_seeds_needed_follow_the_t_test():
    from scipy import stats

    std, n = 0.01, 5
    factor = stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)
    assert inference.mde_mean(std, n) == pytest.approx(factor * std / np.sqrt(n))
    need = inference.units_needed_mean(std, 0.005)
    f = lambda k: (stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * std / np.sqrt(k)
    assert f(need) <= 0.005 < f(need - 1)


def test_intervals_never_collapse_while_the_data_vary():
    e = inference.seed_effect([0.01, 0.012, 0.011], "positive", 0.005)
    assert e["ci_low"] < 0.011 < e["ci_high"]
    s = inference.size_effect(np.arange(6.0), np.array([0, 1, 2, 3, 4, 6.0]), "positive", 0.1)
    assert s["ci_low"] < s["estimate"] < s["ci_high"]


def test_an_unknown_rank_correlation_method_is_refused_by_name():
    with pytest.raises(ValueError, match="'kendal'"):
        inference.rank_correlation([1, 2, 3], [1, 3, 2], "kendal")
