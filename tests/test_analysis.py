"""Statistics on synthetic results tables whose answers are known in advance."""
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdcal import analysis, inference
from kdcal import claims as claim_tests

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
    # the seed is the unit: 3 seeds, 12 teacher x seed pairs behind them
    assert d.loc["all", "n"] == 3 and d.loc["all", "pairs"] == 12 and d.loc["small", "n"] == 3
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
    corr = analysis.size_correlations(res[res["role"] == "student"]).set_index("mode")
    assert corr.loc["replace", "spearman"] == pytest.approx(1.0)
    assert corr.loc["uncalibrated", "kendall"] == pytest.approx(-1.0)
    # teachers are the units: 4 teachers cannot reach 5%, whatever the seeds say
    assert corr.loc["replace", "p_value"] == pytest.approx(2 / 24)
    assert corr.loc["replace", "teachers"] == 4 and corr.loc["replace", "seeds"] == 3
    assert corr.loc["replace", "verdict"] == "underpowered"
    # params grow 4x per step and accuracy 0.01 per step: 0.005 per doubling
    assert corr.loc["replace", "slope_per_doubling"] == pytest.approx(0.005)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, 30).astype(float)
    y = rng.normal(size=30)
    assert analysis.rank_correlation(x, y, "spearman") == pytest.approx(stats.spearmanr(x, y)[0])


def test_correlation_is_over_teacher_means_and_stays_in_range():
    res = make_results({"replace": 0.01}, seeds=(0, 1), noise=0.002)
    c = analysis.correlation(res[res["mode"] == "replace"], "teacher_params", "acc")
    assert -1 <= c["estimate"] <= 1 and c["teachers"] == 4
    assert "ci_low" not in c  # no interval that could collapse or leave [-1, 1]


def test_predictors_r2_is_one_for_a_linear_relation():
    res = make_results({"uncalibrated": 0.01})
    p = analysis.predictors_of_student(res[res["role"] == "student"]).set_index("predictor")
    assert p.loc["teacher_ece", "r2"] == pytest.approx(1.0)
    assert np.isnan(p.loc["teacher_acc", "r2"])  # constant teacher accuracy explains nothing


SIX = {"t1": 1_000, "t2": 2_000, "t3": 4_000, "t4": 8_000, "t5": 16_000, "t6": 32_000}


def test_claims_supported_when_the_data_follow_the_paper(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "TEACHERS", SIX)
    res = make_results({"uncalibrated": -0.01, "replace": 0.01, "compose": 0.01},
                       calibrated_gain=0.01, noise=0.0005)
    claims = claim_tests.claims_table(res)
    verdicts = dict(zip(claims["claim"].str[:2] + claims["claim"].str.extract(r"\((\w+)\)")[0].fillna(""),
                        claims["verdict"]))
    assert verdicts["1."] == "supported"
    assert verdicts["2."] == "supported"
    assert verdicts["3."] == "supported"
    assert verdicts["4.replace"] == "supported" and verdicts["4.compose"] == "supported"
    assert verdicts["5.replace"] == "supported"
    assert list(claims.columns[:8]) == ["claim", "family", "statistic", "estimate", "ci_low",
                                        "ci_high", "unit", "n"]


def test_claims_contradicted_when_the_data_say_the_opposite(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "TEACHERS", SIX)
    res = make_results({"uncalibrated": 0.01, "replace": -0.01}, ece_slope=-0.004,
                       calibrated_gain=-0.02, noise=0.0005)
    claims = claim_tests.claims_table(res).set_index("claim")
    by_number = {k[:2]: v for k, v in claims["verdict"].items()}
    assert by_number["1."] == "contradicted"
    assert by_number["3."] == "contradicted"
    assert by_number["4."] == "contradicted"
    assert by_number["5."] == "contradicted"
    assert "contradicted" in claim_tests.claims_summary(claims.reset_index())


def test_four_teachers_are_underpowered_for_size_and_say_what_would_do():
    res = make_results({"uncalibrated": -0.01, "replace": 0.01}, noise=0.0005)
    claims = claim_tests.claims_table(res)
    size = claims[claims["claim"].str[:2].isin(["1.", "3.", "4."])]
    assert (size["verdict"] == "underpowered").all()
    assert size["p_floor"].tolist() == pytest.approx([2 / 24] * 4)  # the interaction too
    assert size["note"].str.contains("needs >= 5 teachers").all()


def test_claims_accept_the_minimal_columns():
    res = make_results({"uncalibrated": 0.0, "replace": 0.0, "compose": 0.0}, noise=0.001)
    minimal = res[["role", "arch", "params", "seed", "mode", "teacher", "teacher_params", "acc",
                   "ece", "ece_cal", "nll", "nll_cal", "temperature"]]
    claims = claim_tests.claims_table(minimal)
    assert [c[:2] for c in claims["claim"]] == ["1.", "2.", "4.", "4.", "3.", "4.", "4.", "5.",
                                                "5."]
    assert set(claims["verdict"]) <= set(inference.VERDICTS)
    assert set(claims["verdict_holm"]) <= set(inference.VERDICTS)


def test_replace_is_also_judged_against_the_tuned_tau_control():
    students = control_students()
    results = pd.concat([students.assign(arch="s", params=1, ece=np.nan, ece_cal=np.nan,
                                         nll=np.nan, nll_cal=np.nan, temperature=1.5)])
    claims = claim_tests.claims_table(results)
    row = claims[claims["claim"].str.contains("validation-tuned tau")].iloc[0]
    # replace 0.83 against the tuned control's 0.85 in both seeds
    assert row["estimate"] == pytest.approx(-0.02) and row["n"] == 2


def control_students():
    """Uncalibrated KD at tau 1, 4 (default) and 8: validation says tau 8 for 'small', 1 for 'huge'."""
    rows = []
    best = {"small": 8.0, "huge": 1.0}
    for seed in (0, 1):
        for teacher, params in (("small", 1_000), ("huge", 64_000)):
            for tau in (1.0, 4.0, 8.0):
                good = tau == best[teacher]
                rows.append({"role": "student", "seed": seed, "teacher": teacher,
                             "teacher_params": params,
                             "mode": "uncalibrated" if tau == 4.0 else "tau_sweep", "kd_tau": tau,
                             "val_acc": 0.9 if good else 0.8 + 0.01 * tau,
                             "acc": 0.85 if good else 0.80})
            rows.append({"role": "student", "seed": seed, "teacher": teacher, "teacher_params": params,
                         "mode": "replace", "kd_tau": 1.5, "val_acc": 0.8, "acc": 0.83})
    return pd.DataFrame(rows)


def test_tau_controls_choose_on_validation_and_report_test():
    ctl = analysis.tau_controls(control_students(), tau=4.0).set_index("teacher")
    assert ctl.loc["small", "best_tau"] == 8.0 and ctl.loc["huge", "best_tau"] == 1.0
    assert ctl.loc["small", "acc_tuned_tau"] == pytest.approx(0.85)
    # shared tau: mean validation accuracy over teachers is highest at tau 8 (0.9 and 0.88)
    assert ctl.loc["small", "shared_tau"] == 8.0
    assert ctl.loc["huge", "acc_shared_tau"] == pytest.approx(0.80)
    assert ctl.loc["huge", "acc_replace"] == pytest.approx(0.83)
    tuned = analysis.tuned_tau_students(control_students(), 4.0)
    assert sorted(zip(tuned["teacher"], tuned["kd_tau"])) == [("huge", 1.0)] * 2 + [("small", 8.0)] * 2


def test_tau_controls_empty_without_a_grid():
    only_default = control_students().query("mode != 'tau_sweep'")
    assert analysis.tau_controls(only_default, 4.0).empty


def test_temperature_sweep_places_plain_kd_at_one_and_compose_at_t():
    rows = []
    for seed in (0, 1):
        for m, acc in ((0.5, 0.80), (2.0, 0.84)):
            rows.append({"seed": seed, "teacher": "t", "teacher_params": 10, "mode": "temp_sweep",
                         "teacher_temperature": m, "temperature": 1.7, "acc": acc})
        rows.append({"seed": seed, "teacher": "t", "teacher_params": 10, "mode": "uncalibrated",
                     "teacher_temperature": 1.0, "temperature": 1.7, "acc": 0.82})
        rows.append({"seed": seed, "teacher": "t", "teacher_params": 10, "mode": "compose",
                     "teacher_temperature": 1.7, "temperature": 1.7, "acc": 0.83})
    sweep = analysis.temperature_sweep(pd.DataFrame(rows))
    line = sweep[sweep["point"] == "sweep"]
    assert list(line["teacher_temperature"]) == [0.5, 1.0, 2.0]
    assert list(line["mean"]) == pytest.approx([0.80, 0.82, 0.84])
    star = sweep[sweep["point"] == "fitted T"].iloc[0]
    assert star["teacher_temperature"] == 1.7 and star["mean"] == pytest.approx(0.83)


def test_correlations_ignore_sweep_students():
    res = make_results({"uncalibrated": 0.01})
    students = res[res["role"] == "student"]
    noise = students[students["mode"] == "uncalibrated"].assign(mode="tau_sweep", acc=0.5)
    corr = analysis.size_correlations(pd.concat([students, noise]))
    assert set(corr["mode"]) == {"uncalibrated"}
