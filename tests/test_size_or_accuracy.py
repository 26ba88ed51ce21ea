"""analysis.size_or_accuracy: does teacher size reach the student through the teacher's accuracy
or its calibration? Teachers are the units (means over seeds), one intercept per family; checked
against scipy's regression and against the study's own size slope."""
import itertools

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from kdcal import analysis, plots  # noqa: E402

PARAMS = {"resnet8": 77754, "resnet14": 174970, "resnet20": 272186, "resnet32": 466618,
          "resnet56": 855482, "resnet8x2": 308074, "resnet8x4": 1226442, "resnet8x6": 2755114}


def students(accuracy_of, archs=tuple(PARAMS), seeds=3, modes=("uncalibrated", "compose")):
    """Students whose accuracy is ``accuracy_of(teacher_acc_points, log2_params)`` (in points)
    plus seed noise; teacher accuracy rises with size but not on a line (so the two separate)."""
    rng = np.random.default_rng(0)
    rows = []
    for (i, a), s, m in itertools.product(enumerate(archs), range(seeds), modes):
        size = np.log2(PARAMS[a])
        t_acc = 80 + 0.6 * size + (1.5 if i % 2 else -1.0) + rng.normal(0, 0.2)
        t_ece = 3 + 0.3 * size + rng.normal(0, 0.3)
        rows.append({"role": "student", "mode": m, "seed": s, "teacher": a,
                     "teacher_params": PARAMS[a], "teacher_acc": t_acc / 100,
                     "teacher_ece": t_ece / 100,
                     "acc": (accuracy_of(t_acc, size) + rng.normal(0, 0.05)) / 100})
    return pd.DataFrame(rows)


def row(table, mode, model, term):
    return table[(table["mode"] == mode) & (table["model"] == model)
                 & (table["term"] == term)].iloc[0]


def test_one_family_matches_scipys_regression_over_teacher_means():
    depth = [a for a in PARAMS if "x" not in a]
    frame = students(lambda acc, size: 50 + 0.4 * acc, archs=depth)
    table = analysis.size_or_accuracy(frame)
    g = frame[frame["mode"] == "compose"].groupby("teacher").mean(numeric_only=True)
    for model, column in (("size", np.log2(g["teacher_params"])),
                          ("teacher accuracy", 100 * g["teacher_acc"]),
                          ("teacher ECE", 100 * g["teacher_ece"])):
        fit = stats.linregress(column, 100 * g["acc"])
        got = row(table, "compose", model, table[table["model"] == model]["term"].iloc[0])
        assert got["estimate"] == pytest.approx(fit.slope, rel=1e-9)
        assert got["se"] == pytest.approx(fit.stderr, rel=1e-9)
        assert got["r2_within"] == pytest.approx(fit.rvalue ** 2, rel=1e-9)
        half = stats.t.ppf(0.975, len(g) - 2) * fit.stderr
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((fit.slope - half, fit.slope + half))
        assert (got["teachers"], got["families"], got["seeds"]) == (5, 1, 3)


def test_the_size_slope_is_the_studys_own_slope_with_a_family_term():
    frame = students(lambda acc, size: 50 + 0.4 * acc)
    table = analysis.size_or_accuracy(frame)
    for mode in ("uncalibrated", "compose"):
        trend = analysis.size_trend(frame[frame["mode"] == mode], "teacher_params", "acc")
        assert trend["family_term"]
        assert row(table, mode, "size", "log2_params")["estimate"] == pytest.approx(
            100 * trend["estimate"], rel=1e-9)
        assert row(table, mode, "size", "log2_params")["families"] == 2


def test_size_acting_through_accuracy_leaves_no_size_beside_accuracy():
    table = analysis.size_or_accuracy(students(lambda acc, size: 50 + 0.4 * acc))
    assert row(table, "compose", "size", "log2_params")["estimate"] > 0.1  # size alone looks strong
    beside = row(table, "compose", "size and accuracy", "log2_params")
    assert abs(beside["estimate"]) < 0.03 and beside["ci_low"] < 0 < beside["ci_high"]
    assert row(table, "compose", "size and accuracy", "teacher_acc")["estimate"] == pytest.approx(
        0.4, abs=0.03)


def test_size_acting_apart_from_accuracy_stays_beside_it():
    table = analysis.size_or_accuracy(students(lambda acc, size: 60 + 0.5 * size))
    beside = row(table, "uncalibrated", "size and accuracy", "log2_params")
    assert beside["estimate"] == pytest.approx(0.5, abs=0.05) and beside["ci_low"] > 0
    assert row(table, "uncalibrated", "size and accuracy", "teacher_acc")["estimate"] == \
        pytest.approx(0.0, abs=0.05)


def test_tau_arms_and_calibrators_are_modes_baseline_and_sweeps_are_not():
    frame = students(lambda acc, size: 50 + 0.4 * acc,
                     modes=("uncalibrated", "compose@1", "cal-vector", "tau_sweep"))
    frame = pd.concat([frame, pd.DataFrame([{"role": "student", "mode": "baseline", "seed": 0,
                                             "teacher": np.nan, "acc": 0.8}])], ignore_index=True)
    table = analysis.size_or_accuracy(frame)
    assert list(dict.fromkeys(table["mode"])) == ["uncalibrated", "compose@1", "cal-vector"]
    assert set(table["model"]) == {m for m, _ in analysis.SIZE_PATHS}
    assert analysis.size_or_accuracy(frame[frame["mode"] == "baseline"]).empty


def test_too_few_teachers_for_a_fit_give_no_numbers_and_the_figure_says_so():
    frame = students(lambda acc, size: 50 + 0.4 * acc, archs=("resnet8", "resnet14"))
    table = analysis.size_or_accuracy(frame)
    assert table["estimate"].isna().all() and table["se"].isna().all()
    fig = plots.student_accuracy_size_or_accuracy(frame)
    assert "too few teachers for a fit" in fig.axes[0].get_title()
    assert not any(ax.lines for ax in fig.axes)


def test_a_family_column_on_the_teachers_rows_overrides_the_name_rule():
    """Two depth-ladder names declared a family of their own (the contract of analysis.families):
    three families, and the size slope is the one fitted with that family term by hand."""
    frame = students(lambda acc, size: 50 + 0.4 * acc)
    declared = {a: ("short" if a in ("resnet8", "resnet14") else analysis.teacher_family(a))
                for a in PARAMS}
    teachers = pd.DataFrame([{"role": "teacher", "mode": "teacher", "arch": a, "seed": 0,
                              "family": f} for a, f in declared.items()])
    table = analysis.size_or_accuracy(pd.concat([teachers, frame], ignore_index=True))
    assert set(table["families"]) == {3}
    g = frame[frame["mode"] == "compose"].groupby("teacher").mean(numeric_only=True)
    coef, *_ = analysis._family_ols(np.log2(g["teacher_params"]).to_numpy()[:, None],
                                    100 * g["acc"].to_numpy(), [declared[t] for t in g.index])
    assert row(table, "compose", "size", "log2_params")["estimate"] == pytest.approx(coef[0], rel=1e-9)
    assert row(analysis.size_or_accuracy(frame), "compose", "size", "log2_params")["families"] == 2


def test_every_term_carries_its_unit():
    table = analysis.size_or_accuracy(students(lambda acc, size: 50 + 0.4 * acc))
    assert (table["unit"] == table["term"].map(analysis.SIZE_PATH_UNITS)).all()
    assert table["unit"].notna().all()


def test_the_fit_at_its_edges():
    """One residual degree of freedom is a fit; none is not. A response flat within every family
    has no within-family variance to explain (R2 NaN), and a small one (below 1 point^2) is
    explained like any other."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    coef, se, half, r2 = analysis._family_ols(x, np.array([0.1, 0.25, 0.28, 0.41]),
                                              ["a", "a", "b", "b"])  # df = 4 - 3 = 1
    assert np.isfinite(coef).all() and np.isfinite(se).all() and np.isfinite(half).all()
    assert 0 < r2 < 1
    flat = analysis._family_ols(x, np.array([5.0, 5.0, 7.0, 7.0]), ["a", "a", "b", "b"])
    assert np.isnan(flat[3])
    none = analysis._family_ols(x[:3], np.array([1.0, 2.0, 4.0]), ["a", "a", "b"])
    assert all(np.isnan(v).all() for v in none)
