"""The size rules with two teacher families, under simulation (issue 21).

A depth ladder (resnet8..56) and a width ladder (resnet8x2, 8x4, 14x3), teachers as units.
With the families offset and no size effect, the ECE slope is decided in at most about 5% of
studies (a line pooled through both families would not be); with size mattering equally in
every mode, the interaction (the slope of calibrated - uncalibrated over teachers) is decided
in at most about 5%; a real interaction and a real ECE slope are found. Counts use binomial
slack: 400 studies at a true 5% exceed 8% with probability < 0.2%.
"""
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from kdcal import analysis, inference, multiplicity
from kdcal import claims as claim_tests
from kdcal.models import count_params

SHOWN = ("supported", "contradicted", "negligible")  # the interval excludes 0
DEPTH = ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56"]
WIDTH = ["resnet8x2", "resnet8x4", "resnet14x3"]


@lru_cache(maxsize=1)
def ladder() -> dict:
    return {a: count_params(a, 1, 10) for a in DEPTH + WIDTH}


def simulate(rng, seeds=5, offset=0.017, ece_slope=0.0, common_slope=0.0, interaction=0.0,
             noise=0.005) -> pd.DataFrame:
    """Teachers of both ladders and their students (uncalibrated, compose): ECE per doubling
    ``ece_slope`` in both families, width teachers ``offset`` lower in ECE; student accuracy
    per doubling ``common_slope`` in both modes, and ``interaction`` more in ``compose``.
    Teachers differ for reasons other than size, and in how calibration suits them."""
    params = ladder()
    base = np.log2(min(params.values()))
    teacher_ece = {a: rng.normal(0, 0.003) for a in params}
    teacher_acc = {a: rng.normal(0, 0.004) for a in params}
    teacher_gain = {a: rng.normal(0, 0.001) for a in params}
    rows = []
    for seed in range(seeds):
        shift = rng.normal(0, 0.01)
        mode_shift = {m: rng.normal(0, 0.003) for m in ("uncalibrated", "compose")}
        for arch, p in params.items():
            step = np.log2(p) - base
            wide = arch in WIDTH
            ece = 0.06 - offset * wide + ece_slope * step + teacher_ece[arch] + rng.normal(0, 0.002)
            rows.append({"role": "teacher", "arch": arch, "params": p, "seed": seed,
                         "mode": "teacher", "teacher": "", "teacher_params": np.nan, "acc": 0.86,
                         "ece": ece, "ece_cal": ece - 0.05, "nll": 0.45, "nll_cal": 0.4,
                         "temperature": 1.6})
            pair = rng.normal(0, noise)
            for mode in ("uncalibrated", "compose"):
                gain = (interaction * step + teacher_gain[arch]) if mode == "compose" else 0.0
                acc = (0.84 + shift + teacher_acc[arch] + pair + mode_shift[mode]
                       + common_slope * step + gain + rng.normal(0, noise))
                rows.append({"role": "student", "arch": "resnet8", "params": 78_000, "seed": seed,
                             "mode": mode, "teacher": arch, "teacher_params": p, "acc": acc,
                             "ece": np.nan, "ece_cal": np.nan, "nll": np.nan, "nll_cal": np.nan,
                             "temperature": 1.6})
    return pd.DataFrame(rows)


def ece_rows(res: pd.DataFrame) -> dict:
    teachers = res[res["role"] == "teacher"]
    return {f: analysis.size_trend(teachers, "params", "ece", "positive", 0.005, f)
            for f in ("depth", "width", "all")}


def interaction_rows(res: pd.DataFrame) -> dict:
    diff = claim_tests.interaction_frame(res[res["role"] == "student"], "compose")
    return {f: analysis.size_trend(diff, "teacher_params", "acc", "positive", 0.005, f)
            for f in ("depth", "width", "all")}


def decided_rate(rows_of, sims: int, seed: int, **effects) -> pd.Series:
    rng = np.random.default_rng(seed)
    hits = [{f: r["verdict"] in SHOWN for f, r in rows_of(simulate(rng, **effects)).items()}
            for _ in range(sims)]
    return pd.DataFrame(hits).mean()


def supported_rate(rows_of, sims: int, seed: int, **effects) -> pd.Series:
    rng = np.random.default_rng(seed)
    hits = [{f: r["verdict"] == "supported" for f, r in rows_of(simulate(rng, **effects)).items()}
            for _ in range(sims)]
    return pd.DataFrame(hits).mean()


def test_offset_families_without_a_size_effect_decide_claim_1_at_most_about_5_percent():
    rates = decided_rate(ece_rows, 400, 0)
    assert (rates <= 0.08).all(), rates


def test_one_line_through_both_families_misses_the_slope_the_family_term_finds():
    """Why the family term: the width teachers are larger and 1.7 points lower in ECE, so one
    line through both ladders blurs the slope inside each (the evidence run's claim 1)."""
    rng = np.random.default_rng(1)
    pooled = within = 0
    for _ in range(100):
        teachers = simulate(rng, ece_slope=0.004).query("role == 'teacher'")
        m = teachers.groupby("arch")[["params", "ece"]].mean()
        e = inference.size_effect(np.log2(m["params"]), m["ece"], "positive", 0.001)
        pooled += e["verdict"] == "supported"
        within += analysis.size_trend(teachers, "params", "ece")["verdict"] == "supported"
    assert within >= 80 and pooled <= within - 30, (pooled, within)


def test_size_mattering_equally_in_every_mode_decides_the_interaction_at_most_about_5_percent():
    rates = decided_rate(interaction_rows, 400, 2, common_slope=0.004)
    assert (rates <= 0.08).all(), rates


def test_a_real_interaction_is_found_with_6_depth_and_3_width_teachers_and_5_seeds():
    rates = supported_rate(interaction_rows, 200, 3, interaction=0.004)
    assert rates["all"] >= 0.8, rates  # the family term; the depth ladder alone: about 3/4


def test_an_ece_slope_inside_both_families_is_found():
    rates = supported_rate(ece_rows, 200, 4, ece_slope=0.009)
    assert rates["all"] >= 0.8 and rates["depth"] >= 0.8, rates


def test_within_a_family_of_three_no_size_verdict_is_possible():
    rates = decided_rate(ece_rows, 50, 5, ece_slope=0.009)
    assert rates["width"] == 0.0  # 3! orderings: p >= 1/3


# ---------------------------------------------------------------- the pieces, exactly
def test_the_family_term_interval_only_reorders_inside_families():
    x = np.log2([78e3, 175e3, 272e3, 467e3, 300e3, 1.2e6, 1.5e6])
    fam = ["depth"] * 4 + ["width"] * 3
    y = 0.06 + np.r_[0, 0, 0, 0, -0.017, -0.017, -0.017] + 0.002 * x
    # an offset between families leaves the within-family slope (and its interval) unchanged
    a = inference.slope_interval(x, y, fam)
    b = inference.slope_interval(x, y + np.r_[0, 0, 0, 0, 0.017, 0.017, 0.017], fam)
    assert a == pytest.approx(b)
    assert a[0] == pytest.approx(0.002)
    assert inference.permutation_floor(7, fam) == pytest.approx(2 / (24 * 6))
    assert inference.permutation_floor(7) == pytest.approx(2 / 5040)


def test_family_from_the_name_and_from_a_family_column():
    assert analysis.teacher_family("resnet56") == "depth"
    assert analysis.teacher_family("resnet14x3") == "width"
    res = pd.DataFrame({"role": ["teacher", "teacher", "student"],
                        "arch": ["resnet8", "resnet8x2", "resnet8"],
                        "teacher": ["", "", "resnet8x2"], "family": ["width", None, None]})
    assert analysis.families(res) == {"resnet8": "width", "resnet8x2": "width"}


def test_holm_step_down_against_a_hand_computation():
    p = [0.01, 0.04, np.nan, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.03, 0.06, 0.06 (monotone)
    assert multiplicity.holm(p) == pytest.approx([0.03, 0.06, np.nan, 0.06, 0.02], nan_ok=True)
    # one claim's test against the other claims' larger p-values: claim 0 holds 0.01 in
    # [0.01, 0.04, 0.03, 0.005]: 4 x 0.005 = 0.02, then 3 x 0.01 = 0.03
    assert multiplicity.holm_within([0.01, np.nan, 0.001, 0.2], [0.5, 0.04, 0.03, 0.005]) == \
        pytest.approx([0.03, np.nan, 0.004, 0.4], nan_ok=True)


def test_claims_table_has_the_interaction_first_among_student_claims_with_family_and_holm():
    res = simulate(np.random.default_rng(6), seeds=3, interaction=0.004)
    claims = claim_tests.claims_table(res)
    assert {"verdict", "family", "p_holm", "verdict_holm"} <= set(claims)
    numbers = [c.split(".")[0] for c in claims["claim"]]
    first_student = next(i for i, n in enumerate(numbers) if n not in ("1", "2"))
    assert "interaction" in claims["claim"].iloc[first_student]
    inter = claims[claims["claim"].str.contains("interaction")]
    assert inter["claim"].str.startswith("4.").all() and inter["claim"].str.contains("compose").all()
    assert inter["family"].tolist() == ["depth", "width", "all"]
    assert claims.loc[claims["claim"].str.startswith("1."), "family"].tolist() == [
        "depth", "width", "all"]
    # the rows equal the size rule applied to the per-teacher differences
    want = interaction_rows(res)
    for _, row in inter.iterrows():
        assert row["estimate"] == pytest.approx(want[row["family"]]["estimate"])
        assert row["ci_low"] == pytest.approx(want[row["family"]]["ci_low"])
    # Holm over one row per claim (across families), both tests of each: the test named in
    # p_test against every other claim's larger p-value; the within-family rows are secondary
    primary = claims["family"] == "all"
    rows = claims[primary]
    raw = [{"zero": z, "equivalence": e, "both": max(z, e)}[t]
           for z, e, t in zip(rows["p_value"], rows["p_equiv"], rows["p_test"])]
    assert rows["p_holm"].tolist() == pytest.approx(list(multiplicity.holm_within(
        raw, np.fmax(rows["p_value"], rows["p_equiv"]))))
    assert claims.loc[~primary, "p_holm"].isna().all()
    assert claims.loc[~primary, "verdict_holm"].isna().all()
    assert claims.loc[~primary, "note"].str.startswith("within one family: secondary").all()


def test_holm_counts_one_test_per_claim_whatever_the_families():
    """A claim tested in one family only (no test across families) is its own primary test."""
    claims = pd.DataFrame({
        "claim": ["1. a", "1. a", "1. a", "3. b", "5. c"],
        "family": ["depth", "width", "all", "depth", "all"]})
    assert claim_tests.primary_tests(claims).tolist() == [False, False, True, True, True]


def test_margins_are_declared_over_the_ladder():
    x = np.log2([78e3, 1.5e6])
    assert inference.slope_margin(0.005, x) == pytest.approx(0.005 / (x[1] - x[0]))
    assert np.isnan(inference.slope_margin(0.005, [3.0, 3.0]))
