"""Statistics on synthetic results tables whose answers are known in advance."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdcal import analysis

TEACHERS = {"small": 1_000, "mid": 4_000, "large": 16_000, "huge": 64_000}


def make_results(student_slope: dict, ece_slope: float = 0.01, seeds=(0, 1, 2), noise=0.0,
                 calibrated_gain: float = 0.0):
    """A results table: teacher ECE grows by ``ece_slope`` per size step; student accuracy by
    ``student_slope[mode]`` per step (plus ``calibrated_gain`` for calibrated modes)."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for step, (arch, params) in enumerate(TEACHERS.items()):
            ece = 0.02 + ece_slope * step + noise * rng.normal()
            rows.append({"role": "teacher", "arch": arch, "params": params, "seed": seed,
                         "mode": "teacher", "teacher": "", "acc": 0.9, "ece": ece,
                         "ece_cal": ece / 3, "nll": 0.4 + step / 10, "nll_cal": 0.3 + step / 20,
                         "temperature": 1.2 + step / 10})
            for mode, slope in student_slope.items():
                gain = calibrated_gain if mode != "uncalibrated" else 0.0
                rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                             "mode": mode, "teacher": arch, "teacher_params": params,
                             "teacher_acc": 0.9, "teacher_ece": ece,
                             "acc": 0.80 + slope * step + gain + noise * rng.normal()})
        rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                     "mode": "baseline", "teacher": "", "acc": 0.79 + noise * rng.normal()})
    return pd.DataFrame(rows)


def test_t_interval_matches_textbook():
    mean, std, lo, hi, n = analysis.t_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) / np.sqrt(3)
    assert (mean, std, n) == (2.0, 1.0, 3)
    assert lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert np.isnan(analysis.t_interval([1.0])[2])


def test_seed_summary_groups():
    df = pd.DataFrame({"mode": ["a", "a", "b", "b"], "acc": [0.1, 0.3, 0.5, 0.5]})
    out = analysis.seed_summary(df, ["mode"], "acc").set_index("mode")
    assert out.loc["a", "mean"] == pytest.approx(0.2)
    assert out.loc["b", "std"] == 0.0 and out.loc["b", "ci_low"] == pytest.approx(0.5)


def test_paired_differences_recover_a_constant_gain():
    res = make_results({"uncalibrated": 0.0, "replace": 0.0}, calibrated_gain=0.01, noise=0.0)
    students = res[res["role"] == "student"]
    d = analysis.paired_differences(students, "replace", "uncalibrated").set_index("teacher")
    assert d.loc["all", "mean"] == pytest.approx(0.01)
    assert d.loc["all", "n"] == 12 and d.loc["small", "n"] == 3
    base = analysis.paired_differences(students, "uncalibrated", "baseline").set_index("teacher")
    assert base.loc["all", "mean"] == pytest.approx(0.01)


def test_pairing_removes_seed_noise():
    """Seed effects shared by both modes cancel in the paired difference."""
    res = make_results({"uncalibrated": 0.0, "replace": 0.0}, calibrated_gain=0.005)
    students = res[res["role"] == "student"].copy()
    students["acc"] += students["seed"] * 0.05  # a large per-seed shift
    d = analysis.paired_differences(students, "replace", "uncalibrated").set_index("teacher")
    assert d.loc["all", "std"] == pytest.approx(0.0, abs=1e-12)


def test_size_correlation_perfect_and_reversed():
    res = make_results({"uncalibrated": -0.01, "replace": 0.01})
    corr = analysis.size_correlations(res[res["role"] == "student"], n_boot=200)
    corr = corr.set_index(["mode", "method"])
    assert corr.loc[("replace", "spearman"), "estimate"] == pytest.approx(1.0)
    assert corr.loc[("uncalibrated", "kendall"), "estimate"] == pytest.approx(-1.0)
    assert corr.loc[("replace", "spearman"), "ci_low"] == pytest.approx(1.0)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, 30).astype(float)
    y = rng.normal(size=30)
    assert analysis._corr(x, y, "spearman") == pytest.approx(stats.spearmanr(x, y)[0])


def test_bootstrap_needs_two_seeds():
    res = make_results({"replace": 0.01}, seeds=(0,))
    c = analysis.correlation(res[res["mode"] == "replace"], "teacher_params", "acc", n_boot=50)
    assert np.isnan(c["ci_low"])


def test_predictors_r2_is_one_for_a_linear_relation():
    res = make_results({"uncalibrated": 0.01})
    p = analysis.predictors_of_student(res[res["role"] == "student"]).set_index("predictor")
    assert p.loc["teacher_ece", "r2"] == pytest.approx(1.0)
    assert np.isnan(p.loc["teacher_acc", "r2"])  # constant teacher accuracy explains nothing


@pytest.mark.parametrize("lo,hi,direction,expected", [
    (0.1, 0.5, "positive", "supported"), (-0.5, -0.1, "positive", "contradicted"),
    (-0.1, 0.1, "positive", "inconclusive"), (-0.5, -0.1, "negative", "supported"),
    (np.nan, np.nan, "positive", "inconclusive")])
def test_verdict_rule(lo, hi, direction, expected):
    assert analysis.verdict(lo, hi, direction) == expected


def test_claims_supported_when_the_data_follow_the_paper():
    res = make_results({"uncalibrated": -0.005, "replace": 0.01, "compose": 0.01},
                       calibrated_gain=0.01, noise=0.0005)
    claims = analysis.claims_table(res, n_boot=300)
    verdicts = dict(zip(claims["claim"].str[:2] + claims["claim"].str.extract(r"\((\w+)\)")[0].fillna(""),
                        claims["verdict"]))
    assert verdicts["1."] == "supported"
    assert verdicts["2."] == "supported"
    assert verdicts["3."] == "supported"
    assert verdicts["4.replace"] == "supported" and verdicts["4.compose"] == "supported"
    assert verdicts["5.replace"] == "supported"


def test_claims_contradicted_when_the_data_say_the_opposite():
    res = make_results({"uncalibrated": 0.01, "replace": -0.01}, ece_slope=-0.004,
                       calibrated_gain=-0.02, noise=0.0005)
    claims = analysis.claims_table(res, n_boot=300).set_index(claims_key := "claim")
    by_number = {k[:2]: v for k, v in claims["verdict"].items()}
    assert by_number["1."] == "contradicted"
    assert by_number["3."] == "contradicted"
    assert by_number["4."] == "contradicted"
    assert by_number["5."] == "contradicted"
    assert "contradicted" in analysis.claims_summary(claims.reset_index())
