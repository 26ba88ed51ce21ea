"""kdcal.analysis pinned exactly: every column (name and order), every value, every text.

Each function's whole output is compared with an independent computation written here (scipy
t-quantiles, pandas group means, hand permutations) or with the kdcal.inference functions called
directly (those are tested in tests/test_inference.py). Claim names, statistic strings, notes,
verdicts and the claims summary are shown in claims.csv and the notebooks: they are a contract
and are asserted as literal strings. The tables are small and deterministic (a per-seed shift,
teachers given in an order that is neither by name nor by size) so that a changed sort, key,
boundary or default shows. Fast: the whole file runs in a few seconds.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import shaffer_by_hand

from kdcal import analysis, inference
from kdcal import claims as claim_tests
from kdcal.inference import MARGINS, Margins

# teachers in an order that is neither alphabetical nor by size
TEACHERS = [("mid", 4_000), ("tiny", 500), ("huge", 64_000), ("small", 1_000), ("large", 16_000)]
SEEDS = (2, 0, 1)
# distinct margins, so a margin taken from the wrong field (or the default) shows
CUSTOM = Margins(acc=0.011, acc_span=0.007, ece=0.013, ece_span=0.003, nll=0.017)


def t_ci(values, confidence: float = 0.95):
    """(mean, std, low, high, n) of a textbook Student-t interval, written independently."""
    v = np.asarray(values, float)
    n = len(v)
    mean = v.mean()
    if n < 2:
        return mean, np.nan, np.nan, np.nan, n
    std = v.std(ddof=1)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half, n


def tost_by_hand(values, margin) -> float:
    """TOST against +-margin, written independently with scipy's one-sided t-tests: twice the
    larger p of "mean <= -margin" and "mean >= margin" (no spread: 0 inside, 1 outside)."""
    v = np.asarray(values, float)
    if len(v) < 2 or not np.isfinite(margin):
        return np.nan
    if v.std() == 0:
        return 0.0 if abs(v.mean()) < margin else 1.0
    above = stats.ttest_1samp(v, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(v, margin, alternative="less").pvalue
    return min(1.0, 2 * max(above, below))




def holm_family_by_hand(verdicts, sides, p_zero, p_equiv):
    """(p_test, p_holm, verdict_holm): a test stands below 5% after Shaffer's step-down where the
    verdict rested on it; the verdict follows from the tests that stand."""
    zero, equiv = shaffer_by_hand(np.asarray(p_zero, float), np.asarray(p_equiv, float))
    tests, adjusted, held = [], [], []
    for v, side, pz, pe, az, ae in zip(verdicts, sides, p_zero, p_equiv, zero, equiv):
        z = az < 0.05 and v in ("supported", "contradicted", "negligible")
        e = ae < 0.05 and v in ("equivalent", "negligible")
        after = ("negligible" if z and e else side if z else "equivalent" if e
                 else "underpowered")
        basis = after if after != "underpowered" else v
        test = {"supported": "zero", "contradicted": "zero", "equivalent": "equivalence",
                "negligible": "both"}.get(basis)
        if test is None:
            test = (None if np.isnan(pz) and np.isnan(pe) else
                    "equivalence" if np.isnan(pz) or pe < pz else "zero")
        tests.append(test)
        adjusted.append({"zero": az, "equivalence": ae, "both": max(az, ae), None: np.nan}[test])
        held.append(after)
    return tests, np.array(adjusted, float), held


def same(a, b) -> bool:
    """Equal values, NaN equal to NaN, floats to 1e-12 relative; types must agree on None."""
    if a is None or b is None:
        return a is b
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    if np.isnan(a) and np.isnan(b):
        return True
    return a == pytest.approx(b, rel=1e-12, abs=1e-15)


def assert_row(got: dict, want: dict):
    assert list(got) == list(want)
    bad = {k: (got[k], want[k]) for k in want if not same(got[k], want[k])}
    assert not bad, bad


def assert_frame(got: pd.DataFrame, want: pd.DataFrame):
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- a study's results table
def study_results() -> pd.DataFrame:
    """Teachers (and a teacher variant that must be left out), students of every mode, a tau
    sweep on two of the three seeds; ECE grows with size, calibrated students gain a little."""
    rng = np.random.default_rng(7)
    rows = []
    for seed in SEEDS:
        shift = 0.02 * seed  # a per-seed shift shared by every run of the seed
        for arch, params in TEACHERS:
            step = math.log2(params / 500)
            ece = 0.02 + 0.002 * step + 0.003 * rng.normal()
            rows.append({"role": "teacher", "arch": arch, "params": params, "seed": seed,
                         "mode": "teacher", "teacher": "", "acc": 0.9 + shift + 0.01 * rng.normal(),
                         "ece": ece, "ece_cal": ece - 0.01 + 0.004 * rng.normal(),
                         "nll": 0.4 + 0.01 * step, "nll_cal": 0.38 + 0.01 * step
                         + 0.01 * rng.normal(), "temperature": 1.1 + 0.05 * step})
            rows.append({"role": "teacher", "arch": arch, "params": params, "seed": seed,
                         "mode": "label_smoothing", "teacher": "", "acc": 0.5, "ece": 0.9 - step,
                         "ece_cal": 0.95, "nll": 3.0, "nll_cal": 9.0, "temperature": 7.0})
            for mode, slope, gain in (("uncalibrated", -0.002, 0.0), ("replace", 0.003, 0.004),
                                      ("cal-dirichlet", 0.001, 0.002),
                                      ("compose", 0.002, 0.003)):
                rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                             "mode": mode, "teacher": arch, "teacher_params": params,
                             "teacher_acc": 0.9 + 0.01 * rng.normal(),
                             "teacher_ece": ece, "acc": 0.8 + shift + slope * step + gain
                             + 0.003 * rng.normal(), "kd_tau": 4.0,
                             "val_acc": 0.8 + 0.01 * rng.normal()})
            if seed != 1:  # the tau sweep on seeds 2 and 0 only
                for tau in (1.0, 8.0):
                    rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                                 "mode": "tau_sweep", "teacher": arch, "teacher_params": params,
                                 "teacher_acc": 0.9, "teacher_ece": ece,
                                 "acc": 0.79 + shift + 0.003 * rng.normal(), "kd_tau": tau,
                                 "val_acc": 0.8 + 0.01 * rng.normal()})
        rows.append({"role": "student", "arch": "s", "params": 100, "seed": seed,
                     "mode": "baseline", "teacher": "", "acc": 0.78 + shift + 0.003 * rng.normal()})
    return pd.DataFrame(rows)


RESULTS = study_results()
STUDENTS = RESULTS[RESULTS["role"] == "student"]
TEACHER_ROWS = RESULTS[(RESULTS["role"] == "teacher") & (RESULTS["mode"] == "teacher")]


def means_by_teacher(frame, key, x, y):
    """Teacher means of x and y, smallest x first (pandas, independently of the module)."""
    m = frame.groupby(key)[[x, y]].mean().sort_values(x)
    return m[x].to_numpy(float), m[y].to_numpy(float)


# ---------------------------------------------------------------- seeds
def test_interval_is_the_t_interval_under_its_column_names():
    got = analysis.interval([0.5, 0.7, 0.75])
    mean, std, lo, hi, n = t_ci([0.5, 0.7, 0.75])
    assert_row(got, {"mean": mean, "std": std, "ci_low": lo, "ci_high": hi, "n": 3})


def test_seed_summary_sorts_groups_keeps_missing_keys_and_reads_acc_by_default():
    frame = pd.DataFrame({
        "mode": ["replace", "baseline", "replace", "replace", "baseline", "compose", "replace"],
        "teacher": ["b", np.nan, "a", "b", np.nan, "a", "a"],
        "acc": [0.81, 0.70, 0.60, 0.85, 0.74, 0.9, 0.64],
        "ece": [1.0] * 7})
    got = analysis.seed_summary(frame, ["mode", "teacher"])
    groups = [("baseline", np.nan, [0.70, 0.74]), ("compose", "a", [0.9]),
              ("replace", "a", [0.60, 0.64]), ("replace", "b", [0.81, 0.85])]
    want = pd.DataFrame([{"mode": m, "teacher": t, **dict(zip(
        ["mean", "std", "ci_low", "ci_high", "n"], t_ci(v)))} for m, t, v in groups])
    assert_frame(got, want)


def test_seed_summary_groups_missing_keys_after_the_others():
    frame = pd.DataFrame({"teacher": [np.nan, "b", "a", np.nan], "acc": [0.1, 0.2, 0.3, 0.5]})
    got = analysis.seed_summary(frame, ["teacher"], "acc")
    assert got["teacher"].tolist()[:2] == ["a", "b"] and pd.isna(got["teacher"].iloc[2])
    assert got["mean"].tolist() == pytest.approx([0.3, 0.2, 0.3])
    assert got["n"].tolist() == [1, 1, 2]


def paired_rows(students, mode_a, b_of, value, margin, comparison, order=None):
    """The expected paired_differences frame: b_of(teacher, seed) gives the other value;
    teachers in ``order``, else in their order of appearance."""
    a = students[students["mode"] == mode_a]
    per_teacher, pooled = {}, {}
    for _, r in a.iterrows():
        other = b_of(r["teacher"], r["seed"])
        if other is None or not np.isfinite(other - r[value]):
            continue
        per_teacher.setdefault(r["teacher"], {})[r["seed"]] = r[value] - other
        pooled.setdefault(r["seed"], []).append(r[value] - other)
    rows = []

    def effect(values):
        mean, std, lo, hi, n = t_ci(values)
        p = stats.ttest_1samp(values, 0.0).pvalue if n >= 2 else np.nan
        return {"mean": mean, "std": std, "ci_low": lo, "ci_high": hi, "n": n, "p_value": p,
                "p_equiv": tost_by_hand(values, margin), "mde": inference.mde_mean(std, n),
                "seeds_needed": inference.units_needed_mean(std, margin),
                "seeds_needed_observed": inference.units_needed_mean(std, abs(mean)),
                "verdict": inference.decide(lo, hi, "positive", margin)}
    for teacher in order or per_teacher:
        by_seed = per_teacher[teacher]
        rows.append({"comparison": comparison, "teacher": teacher, "pairs": len(by_seed),
                     **effect(list(by_seed.values()))})
    rows.append({"comparison": comparison, "teacher": "all",
                 "pairs": sum(len(v) for v in per_teacher.values()),
                 **effect([np.mean(v) for v in pooled.values()])})
    return pd.DataFrame(rows)


def pairing_students():
    """Two teachers (b before a), three seeds with a shift, one missing student, an ece column."""
    rows = []
    acc = {("b", 0): 0.80, ("b", 1): 0.84, ("b", 2): 0.87, ("a", 0): 0.70, ("a", 1): 0.73,
           ("a", 2): 0.79}
    for seed in (1, 0, 2):
        for teacher in ("b", "a"):
            base = acc[(teacher, seed)]
            rows.append({"mode": "uncalibrated", "teacher": teacher, "seed": seed, "acc": base,
                         "ece": 0.05 + 0.01 * seed})
            if (teacher, seed) != ("a", 2):
                rows.append({"mode": "replace", "teacher": teacher, "seed": seed,
                             "acc": base + 0.004 + 0.003 * seed * (teacher == "b"),
                             "ece": 0.03 + 0.002 * seed ** 2})
            rows.append({"mode": "compose", "teacher": teacher, "seed": seed,
                         "acc": base + 0.02 - 0.001 * seed, "ece": 0.04})
        rows.append({"mode": "baseline", "teacher": "", "seed": seed, "acc": 0.6 + 0.1 * seed,
                     "ece": 0.1})
    return pd.DataFrame(rows)


def value_of(students, mode, value="acc"):
    table = students[students["mode"] == mode].set_index(["teacher", "seed"])[value]
    return lambda teacher, seed: table.get((teacher, seed))


def test_paired_differences_against_uncalibrated_every_column():
    s = pairing_students()
    got = analysis.paired_differences(s, "replace", "uncalibrated")
    # one pair is missing: pandas aligns the two modes on their union of (teacher, seed), sorted
    want = paired_rows(s, "replace", value_of(s, "uncalibrated"), "acc", MARGINS.acc,
                       "replace - uncalibrated", order=["a", "b"])
    assert list(got.columns) == ["comparison", "teacher", "pairs", "mean", "std", "ci_low",
                                 "ci_high", "n", "p_value", "p_equiv", "mde", "seeds_needed",
                                 "seeds_needed_observed", "verdict"]
    assert got["pairs"].tolist() == [2, 3, 5]
    assert_frame(got, want)


def test_paired_differences_with_baseline_another_value_and_margin():
    s = pairing_students()
    base = s[s["mode"] == "baseline"].set_index("seed")["ece"]
    got = analysis.paired_differences(s, "compose", "baseline", value="ece", margin=0.02)
    want = paired_rows(s, "compose", lambda t, seed: base[seed], "ece", 0.02,
                       "compose - baseline")
    assert got["teacher"].tolist() == ["b", "a", "all"]  # in order of appearance
    assert_frame(got, want)


def test_paired_differences_with_a_frame_of_students_is_labelled_tuned_tau():
    s = pairing_students()
    other = s[s["mode"] == "compose"].assign(acc=lambda f: f["acc"] - 0.03 * f["seed"])
    got = analysis.paired_differences(s, "replace", other)
    want = paired_rows(s, "replace", value_of(other, "compose"), "acc", MARGINS.acc,
                       "replace - tuned-tau uncalibrated", order=["a", "b"])
    assert_frame(got, want)


def holm_by_hand(p):
    """Holm's step-down adjustment written out: sort, multiply by m - rank, keep monotone."""
    p = np.asarray(p, float)
    idx = [i for i in np.argsort(p, kind="stable") if np.isfinite(p[i])]
    out, running = np.full(len(p), np.nan), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * p[i]))
        out[i] = running
    return out


def test_mode_differences_is_every_mode_against_baseline_then_against_uncalibrated():
    s = pairing_students()
    got = analysis.mode_differences(s, ["compose", "baseline", "uncalibrated", "replace"])
    parts = [analysis.paired_differences(s, "compose", "baseline"),
             analysis.paired_differences(s, "uncalibrated", "baseline"),
             analysis.paired_differences(s, "replace", "baseline"),
             analysis.paired_differences(s, "compose", "uncalibrated"),
             analysis.paired_differences(s, "replace", "uncalibrated")]
    want = pd.concat(parts, ignore_index=True)
    sides = ["supported" if lo > 0 else "contradicted" if hi < 0 else ""
             for lo, hi in zip(want["ci_low"], want["ci_high"])]
    tests, adjusted, held = holm_family_by_hand(want["verdict"], sides, want["p_value"],
                                                want["p_equiv"])
    want.insert(want.columns.get_loc("p_equiv") + 1, "p_holm", adjusted)
    want.insert(want.columns.get_loc("p_holm") + 1, "p_test", tests)
    want.insert(want.columns.get_loc("verdict") + 1, "verdict_holm", held)
    assert_frame(got, want)
    # the raw verdicts decide more rows than survive the adjustment over 15 tests
    assert (got["verdict"].isin(["supported", "contradicted"]).sum()
            > got["verdict_holm"].isin(["supported", "contradicted"]).sum())
    assert got.index.tolist() == list(range(len(got)))
    assert list(dict.fromkeys(got["comparison"])) == [
        "compose - baseline", "uncalibrated - baseline", "replace - baseline",
        "compose - uncalibrated", "replace - uncalibrated"]


def test_mode_differences_without_uncalibrated_is_against_baseline_only():
    s = pairing_students()
    got = analysis.mode_differences(s, ("replace", "compose"))
    assert list(dict.fromkeys(got["comparison"])) == ["replace - baseline", "compose - baseline"]
    assert len(got) == 6 and got.index.tolist() == list(range(6))


# ---------------------------------------------------------------- teacher size
def test_teacher_means_one_row_per_teacher_smallest_first_ties_in_order_of_appearance():
    frame = pd.DataFrame({"teacher": ["z", "b", "z", "a", "b", "a"],
                          "teacher_params": [10, 10, 10, 5, 10, 5],
                          "acc": [0.1, 0.2, 0.3, 0.4, 0.6, 0.5]})
    got = analysis.teacher_means(frame, "teacher_params", "acc")
    want = pd.DataFrame({"x": [5.0, 10.0, 10.0], "y": [0.45, 0.2, 0.4],
                         "family": ["depth"] * 3},
                        index=pd.Index(["a", "z", "b"], name="teacher"))
    assert_frame(got, want)
    teachers = frame.rename(columns={"teacher": "arch", "teacher_params": "params"})
    got = analysis.teacher_means(teachers, "params", "acc")
    assert_frame(got, want.rename_axis("arch"))


def test_size_trend_is_the_slope_per_doubling_over_teacher_means():
    x, y = means_by_teacher(TEACHER_ROWS, "arch", "params", "ece")
    span = np.log2(max(x)) - np.log2(min(x))  # 7 doublings: the margin is over the ladder
    extra = {"margin_span": MARGINS.acc_span, "family": "all", "family_term": False, "seeds": 3}
    want = {**inference.size_effect(np.log2(x), y, "positive", MARGINS.acc_span / span), **extra}
    assert_row(analysis.size_trend(TEACHER_ROWS, "params", "ece"), want)
    # the default direction is "positive": a clear negative slope is contradicted, not supported
    falling = TEACHER_ROWS.assign(ece=-TEACHER_ROWS["params"].map(np.log2))
    assert analysis.size_trend(falling, "params", "ece")["verdict"] == "contradicted"
    got = analysis.size_trend(TEACHER_ROWS, "params", "nll", "negative", 0.5)
    x, y = means_by_teacher(TEACHER_ROWS, "arch", "params", "nll")
    assert_row(got, {**inference.size_effect(np.log2(x), y, "negative", 0.5 / span),
                     **extra, "margin_span": 0.5})


def brute_p(x, y, statistic):
    """Two-sided exact permutation p-value of a rank correlation, by enumeration."""
    observed = statistic(x, y)[0]
    null = [statistic(x, y[list(p)])[0] for p in itertools.permutations(range(len(y)))]
    return float(np.mean(np.abs(null) >= abs(observed) - 1e-12))


def test_correlation_spearman_by_default_over_teacher_means():
    uncal = STUDENTS[STUDENTS["mode"] == "uncalibrated"]
    x, y = means_by_teacher(uncal, "teacher", "teacher_params", "acc")
    got = analysis.correlation(uncal, "teacher_params", "acc")
    assert_row(got, {"x": "teacher_params", "y": "acc", "method": "spearman",
                     "estimate": stats.spearmanr(x, y)[0],
                     "p_value": brute_p(x, y, stats.spearmanr), "p_floor": 2 / 120,
                     "teachers": 5, "seeds": 3})


def test_correlation_kendall_with_its_own_permutation_p():
    means = {"e": (16, 0.4), "a": (1, 0.1), "c": (4, 0.2), "b": (2, 0.3), "d": (8, 0.5)}
    frame = pd.DataFrame([{"teacher": t, "teacher_params": x, "acc": y + d, "seed": s}
                          for t, (x, y) in means.items() for s, d in ((0, -0.01), (1, 0.01))])
    x, y = np.array([1.0, 2, 4, 8, 16]), np.array([0.1, 0.3, 0.2, 0.5, 0.4])
    got = analysis.correlation(frame, "teacher_params", "acc", "kendall")
    want_p = brute_p(x, y, stats.kendalltau)
    assert want_p != brute_p(x, y, stats.spearmanr)  # the data tell the two apart
    assert_row(got, {"x": "teacher_params", "y": "acc", "method": "kendall",
                     "estimate": stats.kendalltau(x, y)[0], "p_value": want_p,
                     "p_floor": 2 / 120, "teachers": 5, "seeds": 2})
    spearman = analysis.correlation(frame, "teacher_params", "acc")
    assert (spearman["estimate"], spearman["p_value"]) == pytest.approx(
        (stats.spearmanr(x, y)[0], brute_p(x, y, stats.spearmanr)))


def test_correlation_needs_three_teachers_for_a_p_value():
    frame = pd.DataFrame({"teacher": ["b", "a", "c", "b"], "teacher_params": [20, 10, 30, 20],
                          "acc": [0.3, 0.1, 0.2, 0.5], "seed": [0, 0, 0, 1]})
    three = analysis.correlation(frame, "teacher_params", "acc")
    # means: a 0.1, b 0.4, c 0.2 -> ranks (1, 3, 2): rho 0.5; every ordering of three gives
    # |rho| >= 0.5, so p = 1
    assert_row(three, {"x": "teacher_params", "y": "acc", "method": "spearman", "estimate": 0.5,
                       "p_value": 1.0, "p_floor": 1 / 3, "teachers": 3, "seeds": 2})
    two = analysis.correlation(frame[frame["teacher"] != "c"], "teacher_params", "acc")
    assert_row(two, {"x": "teacher_params", "y": "acc", "method": "spearman",
                     "estimate": np.nan, "p_value": np.nan, "p_floor": np.nan, "teachers": 2,
                     "seeds": 2})


def test_size_correlations_per_kd_mode_calibrators_included_sweeps_left_out():
    got = analysis.size_correlations(STUDENTS)
    rows = []
    for mode in ("uncalibrated", "replace", "cal-dirichlet", "compose"):  # order of appearance
        g = STUDENTS[STUDENTS["mode"] == mode]
        x, y = means_by_teacher(g, "teacher", "teacher_params", "acc")
        margin = MARGINS.acc_span / (np.log2(max(x)) - np.log2(min(x)))
        e = inference.size_effect(np.log2(x), y, "positive", margin)
        rows.append({"mode": mode, "spearman": stats.spearmanr(x, y)[0],
                     "kendall": stats.kendalltau(x, y)[0],
                     "p_value": inference.permutation_p(x, y, "spearman"),
                     "slope_per_doubling": e["estimate"], "ci_low": e["ci_low"],
                     "ci_high": e["ci_high"], "p_floor": e["p_floor"], "teachers": 5,
                     "seeds": 3, "verdict": e["verdict"]})
    want = pd.DataFrame(rows)
    assert_frame(got, want)
    assert not np.allclose(got["spearman"], got["kendall"])
    assert got["ci_low"].map(np.isfinite).all() and got["ci_high"].map(np.isfinite).all()


def test_r_squared_edges():
    assert np.isnan(analysis.r_squared([1.0, 2.0], [3.0, 5.0]))  # two points: undefined
    assert analysis.r_squared([1, 2, 3], [0.0, 1.0, 0.5]) == pytest.approx(0.25)  # y range 1
    assert analysis.r_squared([1.0, 2.0, 4.0], [3.0, 1.0, 2.0]) == pytest.approx(
        stats.linregress([1.0, 2.0, 4.0], [3.0, 1.0, 2.0]).rvalue ** 2)  # r < 0: r^2 > 0
    assert np.isnan(analysis.r_squared([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(analysis.r_squared([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))


def test_predictors_of_student_r2_and_spearman_per_mode_and_predictor():
    got = analysis.predictors_of_student(STUDENTS)
    rows = []
    for mode in ("uncalibrated", "replace", "cal-dirichlet", "compose"):
        g = STUDENTS[STUDENTS["mode"] == mode]
        for predictor in ("teacher_ece", "teacher_acc"):
            rows.append({"mode": mode, "predictor": predictor,
                         "r2": stats.linregress(g[predictor], g["acc"]).rvalue ** 2,
                         "spearman": stats.spearmanr(g[predictor], g["acc"])[0], "n": 15})
    assert_frame(got, pd.DataFrame(rows))


# ---------------------------------------------------------------- notes, counts, numbers
def test_count_words():
    assert claim_tests._count(np.nan) == "?"
    assert claim_tests._count(None) == "?"
    assert claim_tests._count(7.0) == "7"
    assert claim_tests._count(999.0) == "999"
    assert claim_tests._count(1000.0) == "more than 1000"
    assert claim_tests._count(np.inf) == "more than 1000"


def test_fmt_signs_three_digits_and_infinities():
    assert claim_tests._fmt(-np.inf) == "-inf"
    assert claim_tests._fmt(np.inf) == "+inf"
    assert claim_tests._fmt(0.012345) == "+0.0123"
    assert claim_tests._fmt(-2.0) == "-2"
    # people read these: no scientific notation, no signed zero
    assert claim_tests._fmt(-5.53e-05) == "-0.0000553"
    assert claim_tests._fmt(-0.0) == claim_tests._fmt(0.0) == "0"


def note_row(unit, n, verdict="underpowered", needed=7.0, **extra):
    return {"unit": unit, "n": n, "verdict": verdict, "needed": needed, **extra}


def test_note_when_there_is_no_interval():
    assert claim_tests._note(note_row("seeds", 1, p_floor=np.nan)) == "only 1 seeds: no interval"
    assert claim_tests._note(note_row("seeds", 0)) == "only 0 seeds: no interval"
    assert claim_tests._note(note_row("teachers", 2, p_floor=1.0)) == "only 2 teachers: no interval"
    assert claim_tests._note(note_row("seeds", 2, p_floor=0.0)) == (
        "about 7 seeds would detect the margin, about ? the observed effect (80% power)")


def test_note_when_teachers_cannot_reach_the_level():
    assert claim_tests._note(note_row("teachers", 3, p_floor=1 / 3, needed=12.0)) == (
        "3 teachers allow p >= 0.333 at best: the 5% level is out of reach (needs >= 5 teachers "
        "in a family, or more families; about 12 to detect the margin)")
    assert claim_tests._note(note_row("teachers", 4, "supported", np.nan, p_floor=2 / 24)) == (
        "4 teachers allow p >= 0.083 at best: the 5% level is out of reach (needs >= 5 teachers "
        "in a family, or more families; about ? to detect the margin)")
    # a floor at the level reaches it; an unknown floor says nothing about it
    assert claim_tests._note(note_row("teachers", 5, p_floor=0.05, needed_observed=9.0)) == (
        "about 7 teachers would detect the margin, about 9 the observed effect (80% power)")
    assert claim_tests._note(note_row("teachers", 5, needed=2e3, needed_observed=np.inf)) == (
        "about more than 1000 teachers would detect the margin, about more than 1000 the "
        "observed effect (80% power)")
    # the permutation floor is about teachers: seeds never get that note
    assert claim_tests._note(note_row("seeds", 5, "supported", p_floor=0.5)) == ""


def test_note_is_empty_when_the_verdict_is_decided():
    for verdict in ("supported", "contradicted", "equivalent"):
        assert claim_tests._note(note_row("teachers", 6, verdict, p_floor=2 / 720)) == ""
        assert claim_tests._note(note_row("seeds", 3, verdict, p_floor=0.0)) == ""


def test_claim_row_fills_what_the_effect_lacks_with_nan():
    got = claim_tests._claim("c", "s", {"unit": "seeds", "n": 1, "verdict": "underpowered"})
    assert list(got) == claim_tests.CLAIM_COLUMNS + ["side"] and got["side"] == ""
    assert (got["claim"], got["statistic"], got["unit"], got["n"], got["verdict"]) == (
        "c", "s", "seeds", 1, "underpowered")
    assert got["note"] == "only 1 seeds: no interval"
    assert got["family"] == "all"
    for k in ("estimate", "ci_low", "ci_high", "p_value", "p_equiv", "p_floor", "p_holm",
              "p_test", "margin", "margin_span", "mde", "needed", "needed_observed"):
        assert isinstance(got[k], float) and math.isnan(got[k]), k


# ------------------------------------------------------------- claim 2: every teacher, both metrics
CLAIM2 = "2. temperature scaling lowers ECE and NLL for every teacher"
Z4 = np.array([-1.5, -0.5, 0.5, 1.5])  # four seeds around their mean


def teacher_frame(diffs: dict) -> pd.DataFrame:
    """Teachers with per-seed differences after - before: {arch: (ece diffs, nll diffs)}."""
    rows = []
    for i, (arch, (d_ece, d_nll)) in enumerate(diffs.items()):
        for seed, (de, dn) in enumerate(zip(d_ece, d_nll)):
            rows.append({"role": "teacher", "mode": "teacher", "arch": arch,
                         "params": 1000 * 4 ** i, "seed": seed, "ece": 0.5, "ece_cal": 0.5 + de,
                         "nll": 1.0, "nll_cal": 1.0 + dn})
    return pd.DataFrame(rows)


def claim2_tests(frame, margins):
    """(arch, metric) -> (d, mean, std, lo, hi, n, margin) in the frame's order."""
    out = {}
    for arch in dict.fromkeys(frame["arch"]):
        g = frame[frame["arch"] == arch]
        for metric, margin in (("ece", margins.ece), ("nll", margins.nll)):
            d = (g[f"{metric}_cal"] - g[metric]).to_numpy(float)
            out[(arch, metric)] = (d, *t_ci(d), margin)
    return out


def expected_claim2(frame, margins, worst, verdict, note, side=None):
    tests = claim2_tests(frame, margins)
    d, mean, std, lo, hi, n, margin = tests[worst]

    def one_sided(t, alternative):  # no spread: p = 0 on the tested side, else 1 (scipy: NaN)
        if t[5] < 2:
            return np.nan
        if t[2] > 0:
            return stats.ttest_1samp(t[0], 0.0, alternative=alternative).pvalue
        return 0.0 if (t[1] < 0 if alternative == "less" else t[1] > 0) else 1.0

    # intersection-union: every pair must be lower; twice the largest one-sided p of "lower";
    # Bonferroni for "some pair higher": 2 x pairs x the smallest one-sided p of "higher"
    lowers = [one_sided(t, "less") for t in tests.values()]
    highers = [one_sided(t, "greater") for t in tests.values()]
    below = min(1.0, 2 * max(lowers)) if np.isfinite(lowers).all() else np.nan
    above = (min(1.0, 2 * len(tests) * np.nanmin(highers)) if np.isfinite(highers).any()
             else np.nan)
    equivs = [tost_by_hand(t[0], t[6]) for t in tests.values()]
    return {"claim": CLAIM2, "family": "all",
            "statistic": f"least favourable of {len(tests)} (teacher, metric) pairs: "
                         f"{worst[1].upper()} after - before, {worst[0]}, mean over seeds",
            "estimate": mean, "ci_low": lo, "ci_high": hi, "unit": "seeds", "n": n,
            "p_value": np.fmin(below, above),
            "p_equiv": max(equivs) if np.isfinite(equivs).all() else np.nan,
            "p_floor": np.nan, "p_holm": np.nan, "p_test": np.nan, "margin": margin,
            "margin_span": np.nan,
            "mde": max(inference.mde_mean(t[2], t[5]) for t in tests.values()),
            "needed": max(inference.units_needed_mean(t[2], t[6]) for t in tests.values()),
            "needed_observed": inference.units_needed_mean(std, abs(mean)),
            "verdict": verdict, "verdict_holm": np.nan, "note": note,
            "side": verdict if side is None and verdict in ("supported", "contradicted")
            else side or ""}


def test_claim2_supported_when_every_interval_is_below_zero():
    frame = teacher_frame({"zeta": (-0.1 + 0.001 * Z4, -0.2 + 0.002 * Z4),
                           "alpha": (-0.05 + 0.003 * Z4, -0.3 + 0.001 * Z4)})
    got = claim_tests._teaching_claim(frame, CUSTOM)
    assert_row(got, expected_claim2(frame, CUSTOM, ("alpha", "ece"), "supported", ""))
    assert got["statistic"] == ("least favourable of 4 (teacher, metric) pairs: ECE after - "
                                "before, alpha, mean over seeds")


def bonferroni_mean(low_conf: float, high_conf: float, n: int = 4) -> float:
    """A mean whose lower bound is above 0 at ``low_conf`` and below 0 at ``high_conf`` (for
    differences mean + Z4 * 0.004)."""
    se = 0.004 * Z4.std(ddof=1) / math.sqrt(n)
    q = [stats.t.ppf((1 + c) / 2, n - 1) for c in (low_conf, high_conf)]
    return se * (q[0] + q[1]) / 2


def test_claim2_contradicted_when_an_interval_is_above_zero_at_the_bonferroni_level():
    # two teachers: 4 (teacher, metric) pairs, each tested at 1 - 0.05 / 4
    mean = bonferroni_mean(1 - 0.05 / 4, 1 - 0.05 / 6)
    frame = teacher_frame({"zeta": (-0.1 + 0.001 * Z4, -0.2 + 0.002 * Z4),
                           "alpha": (-0.3 + 0.001 * Z4, mean + 0.004 * Z4)})
    d = claim2_tests(frame, CUSTOM)[("alpha", "nll")][0]
    assert t_ci(d, 1 - 0.05 / 4)[2] > 0 > t_ci(d, 1 - 0.05 / 6)[2]  # the design's premise
    got = claim_tests._teaching_claim(frame, CUSTOM)
    assert_row(got, expected_claim2(frame, CUSTOM, ("alpha", "nll"), "contradicted", ""))
    # the p-value of the verdict's direction: 2 x 4 pairs x the one-sided p of "higher"
    higher = stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
    assert got["p_value"] == pytest.approx(8 * higher) and got["p_value"] < 0.05


def test_claim2_negligible_when_every_pair_is_lower_but_inside_its_margin():
    frame = teacher_frame({"zeta": (-0.004 + 0.0002 * Z4, -0.005 + 0.0004 * Z4),
                           "alpha": (-0.002 + 0.0001 * Z4, -0.006 + 0.0003 * Z4)})
    got = claim_tests._teaching_claim(frame, CUSTOM)  # margins: ECE 0.013, NLL 0.017
    assert_row(got, expected_claim2(frame, CUSTOM, ("alpha", "ece"), "negligible", "",
                                    side="supported"))
    assert got["p_value"] < 0.05 and got["p_equiv"] < 0.05


def test_claim2_not_contradicted_when_only_the_plain_95_interval_is_above_zero():
    mean = bonferroni_mean(0.95, 1 - 0.05 / 4)
    frame = teacher_frame({"zeta": (-0.1 + 0.001 * Z4, -0.2 + 0.002 * Z4),
                           "alpha": (mean + 0.004 * Z4, -0.3 + 0.001 * Z4)})
    d = claim2_tests(frame, CUSTOM)[("alpha", "ece")][0]
    assert t_ci(d, 0.95)[2] > 0 > t_ci(d, 1 - 0.05 / 4)[2]  # the design's premise
    got = claim_tests._teaching_claim(frame, CUSTOM)
    needed = max(inference.units_needed_mean(t[2], t[6])
                 for t in claim2_tests(frame, CUSTOM).values())
    d, _, std, _, _, _, _ = claim2_tests(frame, CUSTOM)[("alpha", "ece")]
    observed = inference.units_needed_mean(std, abs(d.mean()))
    want = expected_claim2(frame, CUSTOM, ("alpha", "ece"), "underpowered",
                           f"about {int(needed)} seeds would detect the margin, about "
                           f"{int(observed)} the observed effect (80% power)")
    assert_row(got, want)


def test_claim2_equivalent_when_nothing_changes():
    zero = np.zeros(4)
    frame = teacher_frame({"zeta": (zero, zero), "alpha": (zero, zero)})
    got = claim_tests._teaching_claim(frame, CUSTOM)
    # every interval is [0, 0]: not below zero, not above it, inside every margin
    assert_row(got, expected_claim2(frame, CUSTOM, ("zeta", "ece"), "equivalent", ""))
    assert (got["mde"], got["needed"]) == (0.0, 2.0)


@pytest.mark.parametrize("end", ["high", "low"])
def test_claim2_equivalence_needs_the_interval_strictly_inside_the_margin(end):
    zero = np.zeros(4)
    spread = (0.0002 if end == "high" else -0.0002) + 0.001 * Z4
    frame = teacher_frame({"zeta": (zero, zero), "alpha": (spread, zero)})
    d = claim2_tests(frame, MARGINS)[("alpha", "ece")][0]
    _, _, lo, hi, _ = inference.t_interval(d)  # the very floats the module compares
    margins = Margins(ece=hi if end == "high" else -lo, nll=0.02)
    assert -margins.ece <= lo < 0 < hi <= margins.ece
    got = claim_tests._teaching_claim(frame, margins)
    assert got["verdict"] == "underpowered"
    inside = Margins(ece=margins.ece * 1.001, nll=0.02)
    assert claim_tests._teaching_claim(frame, inside)["verdict"] == "equivalent"


def test_claim2_underpowered_when_one_end_leaves_the_margin():
    zero = np.zeros(4)
    wide = -0.009 + 0.012 * Z4  # about [-0.033, +0.015]
    frame = teacher_frame({"zeta": (zero, zero), "alpha": (wide, zero)})
    margins = Margins(ece=0.02, nll=0.02)
    _, _, lo, hi, _ = t_ci(claim2_tests(frame, margins)[("alpha", "ece")][0])
    assert lo < -0.02 and 0 < hi < 0.02
    got = claim_tests._teaching_claim(frame, margins)
    needed = inference.units_needed_mean(0.012 * Z4.std(ddof=1), 0.02)
    observed = inference.units_needed_mean(0.012 * Z4.std(ddof=1), 0.009)
    assert_row(got, expected_claim2(frame, margins, ("alpha", "ece"), "underpowered",
                                    f"about {int(needed)} seeds would detect the margin, about "
                                    f"{int(observed)} the observed effect (80% power)"))


def test_claim2_a_teacher_with_one_seed_is_the_least_favourable():
    frame = teacher_frame({"zeta": (-0.1 + 0.001 * Z4[:3], -0.2 + 0.002 * Z4[:3]),
                           "alpha": ([-0.4], [-0.5])})
    got = claim_tests._teaching_claim(frame, CUSTOM)
    want = expected_claim2(frame, CUSTOM, ("alpha", "ece"), "underpowered",
                           "only 1 seeds: no interval")
    assert_row(got, want)
    assert got["estimate"] == pytest.approx(-0.4) and np.isfinite(got["mde"])


def test_claim2_with_one_seed_each_names_the_first_teacher_given():
    frame = teacher_frame({"zeta": ([-0.1], [-0.2]), "alpha": ([-0.4], [-0.5])})
    got = claim_tests._teaching_claim(frame, CUSTOM)
    assert_row(got, expected_claim2(frame, CUSTOM, ("zeta", "ece"), "underpowered",
                                    "only 1 seeds: no interval"))


def test_claim2_none_without_teachers():
    assert claim_tests._teaching_claim(teacher_frame({}).reindex(
        columns=["arch", "ece", "ece_cal", "nll", "nll_cal"]), CUSTOM) is None


# ---------------------------------------------------------------- the claims table
def seed_claim(claim, statistic, per_seed, margin, note):
    e = inference.seed_effect(per_seed, "positive", margin)
    return {"claim": claim, "family": "all", "statistic": statistic, "estimate": e["estimate"],
            "ci_low": e["ci_low"], "ci_high": e["ci_high"], "unit": "seeds", "n": e["n"],
            "p_value": stats.ttest_1samp(per_seed, 0.0).pvalue if len(per_seed) >= 2 else np.nan,
            "p_equiv": tost_by_hand(per_seed, margin),
            "p_floor": e["p_floor"], "p_holm": None, "p_test": None, "margin": margin,
            "margin_span": np.nan, "mde": e["mde"], "needed": e["needed"],
            "needed_observed": inference.units_needed_mean(e["std"], abs(e["estimate"])),
            "verdict": e["verdict"], "verdict_holm": None, "note": note,
            "side": side_by_hand(e["ci_low"], e["ci_high"], "positive")}


def side_by_hand(low, high, direction):
    if not (low > 0 or high < 0):
        return ""
    return "supported" if (low > 0) == (direction == "positive") else "contradicted"


def size_claim(claim, statistic, frame, key, x, y, direction, span_margin):
    """A size claim over one family (these teachers' names carry no width: the depth ladder):
    the margin is ``span_margin`` over the teachers' span, per doubling."""
    xs, ys = means_by_teacher(frame, key, x, y)
    lx = np.log2(xs)
    e = inference.size_effect(lx, ys, direction, span_margin / (max(lx) - min(lx)))
    note = (f"about {int(e['needed'])} teachers would detect the margin, about "
            f"{int(e['needed_observed'])} the observed effect (80% power)"
            if e["verdict"] == "underpowered" else "")
    return {"claim": claim, "family": "depth",
            "statistic": f"{statistic}, within the depth ladder",
            **{k: e[k] for k in ("estimate", "ci_low", "ci_high", "unit", "n", "p_value",
                                 "p_equiv", "p_floor")}, "p_holm": None, "p_test": None,
            "margin": e["margin"], "margin_span": span_margin, "mde": e["mde"],
            "needed": e["needed"], "needed_observed": e["needed_observed"],
            "verdict": e["verdict"], "verdict_holm": None, "note": note,
            "side": side_by_hand(e["ci_low"], e["ci_high"], direction)}


def with_holm_by_hand(rows):
    """Fill p_holm, p_test and verdict_holm over the whole table (Shaffer's step-down over both
    tests of every row), and the note of a p-value on the permutation floor of 5 teachers."""
    tests, adjusted, held = holm_family_by_hand(
        [r["verdict"] for r in rows], [r.pop("side") for r in rows],
        [r["p_value"] for r in rows], [r["p_equiv"] for r in rows])
    for r, test, ph, vh in zip(rows, tests, adjusted, held):
        r["p_holm"], r["p_test"], r["verdict_holm"] = ph, test, vh
        if r["unit"] == "teachers" and np.isclose(r["p_value"], 2 / 120):
            floor = "p_value = 2/5! = 0.0167, the permutation floor"
            if test == "zero" and np.isclose(ph / (2 / 120), round(ph / (2 / 120))) and ph < 1:
                floor += (f"; p_holm = {round(ph / (2 / 120))} x 2/5! = {ph:.3g}, the floor "
                          "times Holm's multiplier")
            r["note"] = "; ".join(filter(None, (r["note"], floor
                                                + ": more teachers needed for a smaller p")))
    return rows


def per_seed_diff(students, mode, other):
    """Mean over teachers, per seed, of acc(mode) - acc(other) for the same teacher and seed."""
    a = students[students["mode"] == mode].set_index(["teacher", "seed"])["acc"]
    b = other.set_index(["teacher", "seed"])["acc"]
    d = (a - b).dropna()
    return d.groupby(level="seed").mean().to_numpy()


def tuned_by_hand(students):
    """Uncalibrated students at each teacher's validation-best tau, on the sweep's seeds."""
    sweep = students[students["mode"] == "tau_sweep"]
    cand = pd.concat([students[(students["mode"] == "uncalibrated")
                               & students["seed"].isin(set(sweep["seed"]))], sweep])
    val = cand.groupby(["teacher", "kd_tau"])["val_acc"].mean()
    best = {t: val[t].idxmax() for t in cand["teacher"].unique()}
    return cand[[tau == best[t] for t, tau in zip(cand["teacher"], cand["kd_tau"])]]


CALIBRATED = ("replace", "compose", "cal-dirichlet")


def test_claims_table_every_claim_every_column():
    got = claim_tests.claims_table(RESULTS, CUSTOM)
    assert list(got.columns) == claim_tests.CLAIM_COLUMNS
    uncal = STUDENTS[STUDENTS["mode"] == "uncalibrated"]
    want = [size_claim("1. larger teachers have higher ECE",
                       "slope of teacher ECE per doubling of parameters (teacher means)",
                       TEACHER_ROWS, "arch", "params", "ece", "positive", CUSTOM.ece_span)]
    # claim 2 comes from the teacher rows only (the label-smoothing variant is left out)
    two = claim_tests._teaching_claim(TEACHER_ROWS, CUSTOM)
    tests = claim2_tests(TEACHER_ROWS, CUSTOM)
    worst = max(tests, key=lambda k: tests[k][4])
    assert two["statistic"] == ("least favourable of 10 (teacher, metric) pairs: "
                                f"{worst[1].upper()} after - before, {worst[0]}, mean over seeds")
    assert two["estimate"] == pytest.approx(tests[worst][1])
    want.append(two)
    # the paper's main claim first among the student claims: the slope of the paired benefit
    for mode in CALIBRATED:
        diff = STUDENTS[STUDENTS["mode"] == mode].merge(
            uncal[["teacher", "seed", "acc"]], on=["teacher", "seed"], suffixes=("", "_u"))
        diff = diff.assign(acc=diff["acc"] - diff["acc_u"])
        want.append(size_claim(
            f"4. interaction ({mode}): the benefit of calibration grows with teacher size",
            f"slope of ({mode} - uncalibrated) student acc per doubling of teacher parameters "
            "(teacher means of the per-seed differences)", diff, "teacher", "teacher_params",
            "acc", "positive", CUSTOM.acc_span))
    want.append(size_claim(
        "3. without calibration, student accuracy does not increase with teacher size",
        "slope of student acc per doubling of teacher parameters, uncalibrated KD",
        uncal, "teacher", "teacher_params", "acc", "negative", CUSTOM.acc_span))
    for mode in CALIBRATED:
        want.append(size_claim(
            f"4. with calibration ({mode}), student accuracy increases with teacher size",
            f"slope of student acc per doubling of teacher parameters, {mode} KD",
            STUDENTS[STUDENTS["mode"] == mode], "teacher", "teacher_params", "acc", "positive",
            CUSTOM.acc_span))
    for mode in CALIBRATED:
        want.append(seed_claim(
            f"5. calibrated ({mode}) beats uncalibrated distillation for the same teacher",
            f"student acc, {mode} - uncalibrated, mean over teachers per seed",
            per_seed_diff(STUDENTS, mode, uncal), CUSTOM.acc, ""))
    tuned_students = tuned_by_hand(STUDENTS)
    for mode in CALIBRATED:
        tuned = per_seed_diff(STUDENTS, mode, tuned_students)
        assert len(tuned) == 2  # the sweep's two seeds
        e = inference.seed_effect(tuned, "positive", CUSTOM.acc)
        want.append(seed_claim(
            f"5. calibrated ({mode}) beats uncalibrated distillation at the validation-tuned tau",
            f"student acc, {mode} - uncalibrated at each teacher's tuned tau, mean over teachers "
            "per seed", tuned, CUSTOM.acc,
            f"about {int(e['needed'])} seeds would detect the margin, about "
            f"{int(e['needed_observed'])} the observed effect (80% power)"
            if e["verdict"] == "underpowered" else ""))
    want = with_holm_by_hand(want)
    assert len(got) == len(want) == 15
    for (_, row), w in zip(got.iterrows(), want):
        assert_row(row.to_dict(), w)
    # what this design says, in the words claims.csv shows
    assert got["verdict"].tolist() == ["supported", "underpowered"] + ["supported"] * 13
    assert got["family"].tolist() == ["depth", "all"] + ["depth"] * 7 + ["all"] * 6
    # 5 teachers allow p >= 2/120 = 0.017 at best: no size claim survives Holm over 15 tests
    assert got["verdict_holm"].tolist() == (
        ["underpowered"] * 9 + ["supported"] * 3 + ["underpowered"] * 3)


def test_claims_table_one_teacher_and_no_tau_columns():
    res = RESULTS[(RESULTS["role"] == "student") | (RESULTS["arch"] == "mid")]
    minimal = res.drop(columns=["kd_tau", "val_acc"])  # tau_sweep students are still there
    got = claim_tests.claims_table(minimal, CUSTOM)
    assert [c[:2] for c in got["claim"]] == (
        ["1.", "2."] + ["4."] * 3 + ["3."] + ["4."] * 3 + ["5."] * 3)
    one = got.iloc[0]
    assert (one["n"], one["unit"], one["verdict"], one["note"]) == (
        1, "teachers", "underpowered", "only 1 teachers: no interval")
    assert np.isnan(one["estimate"]) and one["mde"] == np.inf


def test_claims_table_without_teachers_or_calibrated_modes():
    res = RESULTS[RESULTS["mode"].isin(["uncalibrated", "baseline"])]
    got = claim_tests.claims_table(res, CUSTOM)
    assert got["claim"].tolist() == [
        "3. without calibration, student accuracy does not increase with teacher size"]
    x = np.log2([p for _, p in TEACHERS])
    assert got["margin"].tolist() == pytest.approx([CUSTOM.acc_span / (max(x) - min(x))])
    assert got["margin_span"].tolist() == [CUSTOM.acc_span]


def test_claims_table_tuned_tau_claim_from_a_single_seed():
    sweep_seed = RESULTS[(RESULTS["role"] == "student") & (RESULTS["seed"] != 0)]
    got = claim_tests.claims_table(sweep_seed, CUSTOM)
    row = got.iloc[-3]
    assert row["claim"] == (
        "5. calibrated (replace) beats uncalibrated distillation at the validation-tuned tau")
    assert (row["n"], row["note"]) == (1, "only 1 seeds: no interval")
    students = sweep_seed
    assert row["estimate"] == pytest.approx(
        per_seed_diff(students, "replace", tuned_by_hand(students))[0])


def test_claims_table_with_nothing_to_claim_keeps_its_columns():
    got = claim_tests.claims_table(RESULTS[RESULTS["mode"] == "baseline"], CUSTOM)
    assert got.empty and list(got.columns) == claim_tests.CLAIM_COLUMNS


def test_claims_table_no_tuned_tau_claim_without_replace():
    res = RESULTS[~RESULTS["mode"].isin(["replace", "compose", "cal-dirichlet"])]
    got = claim_tests.claims_table(res, CUSTOM)
    assert not got["claim"].str.contains("replace").any()
    assert [c[:2] for c in got["claim"]] == ["1.", "2.", "3."]


# ---------------------------------------------------------------- the generated summary
def test_claims_summary_exact_sentences_and_counts():
    claims = pd.DataFrame([
        {"claim": "A", "statistic": "s1", "estimate": 0.012345, "ci_low": -0.001,
         "ci_high": 0.0256, "unit": "seeds", "n": 3, "margin": 0.005, "mde": 0.01234,
         "verdict": "underpowered", "note": "about 7 seeds would detect the margin (80% power)"},
        {"claim": "B", "statistic": "s2", "estimate": -0.5, "ci_low": -np.inf, "ci_high": np.inf,
         "unit": "teachers", "n": 4, "margin": 0.0125, "mde": np.inf, "verdict": "underpowered",
         "note": ""},
        {"claim": "C", "statistic": "s3", "estimate": 2.0, "ci_low": np.nan, "ci_high": np.nan,
         "unit": "seeds", "n": 1, "margin": 0.02, "mde": np.nan, "verdict": "supported",
         "note": np.nan},
        {"claim": "D", "statistic": "s4", "estimate": np.inf, "ci_low": 0.1, "ci_high": np.nan,
         "unit": "seeds", "n": 2, "margin": 0.02, "mde": 0.5, "verdict": "contradicted",
         "note": "x"},
    ])
    assert claim_tests.claims_summary(claims) == "\n".join([
        "- A: UNDERPOWERED (s1 = +0.0123, 95% CI [-0.001, +0.0256], n = 3 seeds, margin +-0.005, "
        "detectable at this design: 0.0123; about 7 seeds would detect the margin (80% power))",
        "- B: UNDERPOWERED (s2 = -0.5, 95% CI [-inf, +inf], n = 4 teachers, margin +-0.0125)",
        "- C: SUPPORTED (s3 = +2, no interval, n = 1 seeds, margin +-0.02)",
        "- D: CONTRADICTED (s4 = +inf, no interval, n = 2 seeds, margin +-0.02, detectable at this "
        "design: 0.5; x)",
        "In this run: 1 supported, 1 contradicted, 0 negligible, 0 equivalent, 2 underpowered."])


def test_claims_summary_counts_negligible_and_the_claims_holm_counts():
    claims = pd.DataFrame([
        {"claim": "N", "family": "all", "statistic": "s", "estimate": 0.002, "ci_low": 0.001,
         "ci_high": 0.003, "unit": "seeds", "n": 9, "margin": 0.005, "mde": 0.001,
         "p_holm": 0.01, "verdict": "negligible", "verdict_holm": "negligible", "note": ""},
        {"claim": "S", "family": "all", "statistic": "s", "estimate": 0.002, "ci_low": 0.001,
         "ci_high": 0.009, "unit": "seeds", "n": 9, "margin": 0.005, "mde": 0.001,
         "p_holm": 0.2, "verdict": "supported", "verdict_holm": "underpowered", "note": ""},
        {"claim": "S", "family": "depth", "statistic": "s", "estimate": 0.002, "ci_low": 0.001,
         "ci_high": 0.009, "unit": "seeds", "n": 9, "margin": 0.005, "mde": 0.001,
         "p_holm": np.nan, "verdict": "supported", "verdict_holm": None, "note": ""},
        {"claim": "U", "family": "all", "statistic": "s", "estimate": 0.002, "ci_low": np.nan,
         "ci_high": np.nan, "unit": "seeds", "n": 1, "margin": 0.005, "mde": np.nan,
         "p_holm": np.nan, "verdict": "underpowered", "verdict_holm": "underpowered",
         "note": ""}])
    lines = claim_tests.claims_summary(claims).splitlines()
    assert lines[0] == ("- N [all]: NEGLIGIBLE (s = +0.002, 95% CI [+0.001, +0.003], n = 9 seeds, "
                        "margin +-0.005, detectable at this design: 0.001)")
    assert lines[1].startswith("- S [all]: SUPPORTED; after Holm: UNDERPOWERED (")
    assert lines[4:] == [
        "In this run: 2 supported, 0 contradicted, 1 negligible, 0 equivalent, 1 underpowered.",
        "After Holm's adjustment (one family: both tests of each of the 2 claims with a test), "
        "the 3 claims: 0 supported, 0 contradicted, 1 negligible, 0 equivalent, 2 underpowered."]


def test_floor_note_names_the_orderings_and_holms_multiple():
    row = {"unit": "teachers", "n": 8, "p_floor": 2 / 1440, "p_value": 2 / 1440, "p_equiv": 1.0,
           "p_test": "zero", "p_holm": 13 * 2 / 1440}
    assert claim_tests.floor_note(row) == (
        "p_value = 2/(6! 2!) = 0.00139, the permutation floor; p_holm = 13 x 2/(6! 2!) = 0.0181, "
        "the floor times Holm's multiplier: more teachers needed for a smaller p")
    # a running maximum from another claim is no multiple of this one's floor: not named
    assert claim_tests.floor_note({**row, "p_holm": 0.02}) == (
        "p_value = 2/(6! 2!) = 0.00139, the permutation floor: more teachers needed for a "
        "smaller p")
    # the equivalence test on the floor, one family of 6: 2/6!
    assert claim_tests.floor_note({"unit": "teachers", "n": 6, "p_floor": 2 / 720,
                                   "p_value": 0.4, "p_equiv": 2 / 720, "p_test": "equivalence",
                                   "p_holm": 3 * 2 / 720}) == (
        "p_equiv = 2/6! = 0.00278, the permutation floor; p_holm = 3 x 2/6! = 0.00833, the floor "
        "times Holm's multiplier: more teachers needed for a smaller p")
    # off the floor, seeds, or a floor above the level (the note says out of reach instead)
    assert claim_tests.floor_note({**row, "p_value": 4 / 1440}) == ""
    assert claim_tests.floor_note({**row, "unit": "seeds", "p_floor": 0.0}) == ""
    assert claim_tests.floor_note({**row, "n": 4, "p_floor": 1 / 12, "p_value": 1 / 12}) == ""


def test_a_negligible_claim_split_by_holm_says_which_test_stands():
    row = pd.Series({"verdict": "negligible", "verdict_holm": "contradicted", "note": "",
                     "unit": "seeds"})
    assert claim_tests._notes(row, True) == (
        "negligible before Holm; after it only the zero test stands (the equivalence test's "
        "adjusted p is not below 5%)")
    assert claim_tests._notes(row.replace("contradicted", "equivalent"), True) == (
        "negligible before Holm; after it only the equivalence test stands (the zero test's "
        "adjusted p is not below 5%)")
    assert claim_tests._notes(row.replace("contradicted", "negligible"), True) == ""


def test_claims_summary_counts_equivalent_and_reads_ci_low_too():
    claims = pd.DataFrame([
        {"claim": "E", "statistic": "s", "estimate": 0.0, "ci_low": np.nan, "ci_high": 0.1,
         "unit": "seeds", "n": 5, "margin": 0.5, "mde": 0.25, "verdict": "equivalent",
         "note": ""}])
    assert claim_tests.claims_summary(claims) == (
        "- E: EQUIVALENT (s = 0, no interval, n = 5 seeds, margin +-0.5, detectable at this "
        "design: 0.25)\nIn this run: 0 supported, 0 contradicted, 0 negligible, 1 equivalent, "
        "0 underpowered.")


# ---------------------------------------------------------------- teachers and calibrators
def test_teacher_summary_every_metric_smallest_first():
    teachers = TEACHER_ROWS.assign(train_acc=lambda f: f["acc"] + 0.05,
                                   train_ece=lambda f: f["ece"] / 2)
    got = analysis.teacher_summary(teachers)
    rows = []
    for arch, params in sorted(TEACHERS, key=lambda t: t[1]):
        g = teachers[teachers["arch"] == arch]
        row = {"arch": arch, "params": params, "seeds": 3}
        for col in ("train_acc", "acc", "ece", "ece_cal", "nll", "nll_cal", "temperature",
                    "train_ece"):  # no train_nll in this table
            mean, _, lo, hi, _ = t_ci(g[col])
            row.update({col: mean, f"{col}_low": lo, f"{col}_high": hi})
        rows.append(row)
    assert_frame(got, pd.DataFrame(rows))
    assert got["params"].dtype == np.int64


def test_teacher_summary_keeps_teachers_of_one_size_in_order_of_appearance():
    teachers = pd.DataFrame({"arch": ["zeta", "alpha", "zeta", "big", "alpha"],
                             "params": [10, 10, 10, 99, 10], "acc": [0.1, 0.2, 0.3, 0.4, 0.4],
                             "train_nll": [1.0, 2.0, 3.0, 4.0, 5.0]})
    got = analysis.teacher_summary(teachers.iloc[[3, 0, 1, 2, 4]])
    assert got["arch"].tolist() == ["zeta", "alpha", "big"]
    assert got["seeds"].tolist() == [2, 2, 1] and got.index.tolist() == [0, 1, 2]
    assert got["train_nll"].tolist() == pytest.approx([2.0, 3.5, 4.0])
    assert list(got.columns) == ["arch", "params", "seeds", "acc", "acc_low", "acc_high",
                                 "train_nll", "train_nll_low", "train_nll_high"]


def test_method_summary_means_per_teacher_and_method_sorted_by_size():
    rows = []
    rng = np.random.default_rng(3)
    for seed in (1, 0):
        for arch, params in (("zeta", 400), ("alpha", 9_000), ("mu", 400)):
            for method in ("temperature", "dirichlet", "none"):
                rows.append({"seed": seed, "arch": arch, "params": params, "method": method,
                             "nll": rng.normal(), "ece": rng.normal(), "acc": rng.normal(),
                             "other": rng.normal()})
    methods = pd.DataFrame(rows)
    got = analysis.method_summary(methods)
    want = []
    for params, arch in ((400, "mu"), (400, "zeta"), (9_000, "alpha")):
        for method in ("dirichlet", "none", "temperature"):
            g = methods[(methods["arch"] == arch) & (methods["method"] == method)]
            want.append({"arch": arch, "method": method, "ece": g["ece"].mean(),
                         "nll": g["nll"].mean(), "acc": g["acc"].mean()})
    assert_frame(got, pd.DataFrame(want))


# ---------------------------------------------------------------- the tau control
def tau_students():
    """Uncalibrated KD at tau 4 on seeds 0-2, a sweep (tau 1, 8) on seeds 1 and 0; 'zeta' and
    'alpha' share a size, 'mid' is larger; validation prefers tau 8 for zeta, 1 for alpha."""
    rows = []
    val = {("zeta", 1.0): 0.80, ("zeta", 4.0): 0.82, ("zeta", 8.0): 0.90,
           ("alpha", 1.0): 0.91, ("alpha", 4.0): 0.83, ("alpha", 8.0): 0.85,
           ("mid", 1.0): 0.70, ("mid", 4.0): 0.86, ("mid", 8.0): 0.84}
    params = {"zeta": 1_000, "mid": 8_000, "alpha": 1_000}
    for seed in (1, 0, 2):
        for teacher in ("zeta", "mid", "alpha"):
            for tau in (4.0, 1.0, 8.0):
                if tau != 4.0 and seed == 2:
                    continue
                rows.append({"seed": seed, "teacher": teacher, "teacher_params": params[teacher],
                             "mode": "uncalibrated" if tau == 4.0 else "tau_sweep",
                             "kd_tau": tau, "val_acc": val[(teacher, tau)] + 0.001 * seed,
                             "acc": 0.7 + 0.01 * tau + 0.02 * seed + 0.001 * len(teacher)})
            for mode, acc in (("replace", 0.9), ("compose", 0.95)):
                rows.append({"seed": seed, "teacher": teacher, "teacher_params": params[teacher],
                             "mode": mode, "kd_tau": 4.0, "val_acc": 0.5,
                             "acc": acc + 0.01 * seed + 0.001 * len(teacher)})
    return pd.DataFrame(rows)


def test_tau_candidates_are_uncalibrated_on_the_sweep_seeds_then_the_sweep():
    s = tau_students()
    got = analysis.tau_candidates(s)
    want = pd.concat([s[(s["mode"] == "uncalibrated") & s["seed"].isin([0, 1])],
                      s[s["mode"] == "tau_sweep"]]).reset_index(drop=True)
    assert_frame(got, want)


def test_tau_controls_every_column():
    s = tau_students()
    got = analysis.tau_controls(s, 4.0)
    # mean validation accuracy over teachers: tau 1 0.8037, tau 4 0.8371, tau 8 0.8638
    shared = 8.0
    rows = []
    for teacher, best in (("zeta", 8.0), ("alpha", 1.0), ("mid", 4.0)):
        g = s[(s["teacher"] == teacher) & s["seed"].isin([0, 1])
              & s["mode"].isin(["uncalibrated", "tau_sweep"])]
        row = {"teacher": teacher, "teacher_params": {"zeta": 1_000, "alpha": 1_000,
                                                      "mid": 8_000}[teacher],
               "best_tau": best, "shared_tau": shared}
        for label, tau in (("tuned", best), ("shared", shared), ("default", 4.0)):
            mean, _, lo, hi, _ = t_ci(g.loc[g["kd_tau"] == tau, "acc"])
            row.update({f"acc_{label}_tau": mean, f"acc_{label}_tau_ci": (lo, hi)})
        for mode, acc in (("replace", 0.9), ("compose", 0.95)):
            row[f"acc_{mode}"] = acc + 0.005 + 0.001 * len(teacher)  # seeds 0 and 1 only
        rows.append(row)
    want = pd.DataFrame(rows, index=[0, 2, 1])
    assert list(got.columns) == list(want.columns)
    assert got["teacher"].tolist() == ["zeta", "alpha", "mid"]
    for (_, g_row), (_, w_row) in zip(got.iterrows(), want.iterrows()):
        assert_row(g_row.to_dict(), w_row.to_dict())


def test_tau_controls_without_calibrated_students_and_with_one_tau():
    s = tau_students()
    got = analysis.tau_controls(s[~s["mode"].isin(["replace", "compose"])], 4.0)
    assert got["acc_replace"].isna().all() and got["acc_compose"].isna().all()
    # a sweep that only repeats the default tau is no grid to tune on
    repeat = s[(s["mode"] == "uncalibrated") & (s["seed"] == 0)].assign(mode="tau_sweep")
    assert analysis.tau_controls(pd.concat([s[s["mode"] != "tau_sweep"], repeat]), 4.0).empty
    two_taus = s[(s["mode"] != "tau_sweep") | (s["kd_tau"] == 8.0)]
    got = analysis.tau_controls(two_taus, 4.0)
    assert got["best_tau"].tolist() == [8.0, 8.0, 4.0]
    # a teacher seen at one tau only still gets its row
    lone = pd.concat([s[s["teacher"] != "mid"],
                      s[(s["teacher"] == "mid") & (s["mode"] == "tau_sweep") & (s["seed"] == 0)
                        & (s["kd_tau"] == 8.0)]])
    got = analysis.tau_controls(lone, 4.0).set_index("teacher")
    assert got.loc["mid", "best_tau"] == 8.0 and got.loc["mid", "teacher_params"] == 8_000


def test_tuned_tau_students_one_row_per_teacher_and_seed_at_the_best_tau():
    s = tau_students()
    got = analysis.tuned_tau_students(s, 4.0)
    want = tuned_by_hand(s)
    assert_frame(got.reset_index(drop=True), want.reset_index(drop=True))
    assert sorted(zip(got["teacher"], got["seed"], got["kd_tau"])) == [
        ("alpha", 0, 1.0), ("alpha", 1, 1.0), ("mid", 0, 4.0), ("mid", 1, 4.0),
        ("zeta", 0, 8.0), ("zeta", 1, 8.0)]
    assert analysis.tuned_tau_students(s[s["mode"] != "tau_sweep"], 4.0).empty


# ---------------------------------------------------------------- the teacher-temperature sweep
def sweep_students(seeds=(1, 0)):
    rows = []
    for seed in seeds:
        for teacher, params, temp in (("zeta", 5_000, 1.5), ("alpha", 500, 2.5)):
            for m in (2.0, 0.5):
                rows.append({"seed": seed, "teacher": teacher, "teacher_params": params,
                             "mode": "temp_sweep", "teacher_temperature": m,
                             "temperature": np.nan, "acc": 0.8 + 0.01 * m + 0.02 * seed})
            for mode, acc in (("uncalibrated", 0.81), ("compose", 0.83), ("replace", 0.99)):
                rows.append({"seed": seed, "teacher": teacher, "teacher_params": params,
                             "mode": mode, "teacher_temperature": 1.0,
                             "temperature": temp + 0.1 * seed, "acc": acc + 0.02 * seed})
    rows.append({"seed": 7, "teacher": "zeta", "teacher_params": 5_000, "mode": "compose",
                 "teacher_temperature": 1.0, "temperature": 9.0, "acc": 0.1})  # not a sweep seed
    return pd.DataFrame(rows)


def test_temperature_sweep_every_column():
    s = sweep_students()
    got = analysis.temperature_sweep(s)
    want = []
    fitted = ("fitted T", [0.83, 0.85])  # at the teacher's mean T over the sweep's seeds
    for teacher, params, points in (
            ("alpha", 500, [("sweep", 0.5), ("sweep", 1.0), ("sweep", 2.0), (fitted[0], 2.55)]),
            ("zeta", 5_000, [("sweep", 0.5), ("sweep", 1.0), (fitted[0], 1.55), ("sweep", 2.0)])):
        for point, m in points:
            accs = fitted[1] if point == "fitted T" else [0.8 + 0.01 * m, 0.82 + 0.01 * m]
            if m == 1.0:
                accs = [0.81, 0.83]
            mean, std, lo, hi, n = t_ci(accs)
            want.append({"teacher": teacher, "teacher_params": params, "point": point,
                         "teacher_temperature": m, "mean": mean, "std": std, "ci_low": lo,
                         "ci_high": hi, "n": n})
    assert list(got.columns) == list(want[0])
    for (_, g_row), w in zip(got.iterrows(), want):
        assert_row(g_row.to_dict(), w)
    assert len(got) == len(want)


def test_temperature_sweep_with_one_seed_and_without_a_sweep():
    got = analysis.temperature_sweep(sweep_students(seeds=(0,)))
    assert got["n"].tolist() == [1] * 8 and got["std"].isna().all()
    assert got["teacher"].tolist() == ["alpha"] * 4 + ["zeta"] * 4
    s = sweep_students()
    assert analysis.temperature_sweep(s[s["mode"] != "temp_sweep"]).empty
