"""Statistics across seeds and teachers: paired mode differences, size trends, controls.

Every number the analysis notebooks show comes from here (the claims table from
:mod:`kdcal.claims`, built on these), computed on ``results.csv``; the inference rules (units of
replication, intervals, the verdict rule, power) live in :mod:`kdcal.inference` and are applied
by code, never typed by hand.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

from .distill import KD_MODES, split_mode  # the main modes; sweeps and controls apart
from .inference import (MARGINS, permutation_floor, permutation_p, rank_correlation, seed_effect,
                        side, size_effect, slope_margin, t_interval)
from .models import ARCHS, family as arch_family
from .multiplicity import holm_family

ALL = "all"  # the family label of a test across families (with a family term) or of no family


def interval(values) -> dict:
    """{mean, std, ci_low, ci_high, n} of :func:`t_interval`: one row of a summary table."""
    mean, std, lo, hi, n = t_interval(values)
    return {"mean": mean, "std": std, "ci_low": lo, "ci_high": hi, "n": n}


def seed_summary(frame: pd.DataFrame, by: list[str], value: str = "acc") -> pd.DataFrame:
    """Mean, std and 95% t-interval of ``value`` over seeds for each group of ``by``."""
    rows = []
    for key, g in frame.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **interval(g[value])})
    return pd.DataFrame(rows)


def paired_by_seed(students: pd.DataFrame, mode_a: str, mode_b: str,
                   value: str = "acc") -> pd.DataFrame:
    """value(mode_a) - value(mode_b) for the same teacher and seed: columns teacher, seed, diff.

    ``mode_b='baseline'`` pairs with the no-KD student of the same seed. ``mode_b`` may also be
    a frame of students (e.g. uncalibrated KD at each teacher's tuned tau) to pair with.
    """
    a = students[students["mode"] == mode_a].set_index(["teacher", "seed"])[value]
    if isinstance(mode_b, pd.DataFrame):
        b = mode_b.set_index(["teacher", "seed"])[value]
    elif mode_b == "baseline":
        base = students[students["mode"] == "baseline"].set_index("seed")[value]
        b = pd.Series(a.index.get_level_values("seed").map(base), index=a.index)
    else:
        b = students[students["mode"] == mode_b].set_index(["teacher", "seed"])[value]
    return (a - b).dropna().rename("diff").reset_index()


def per_seed_means(diff: pd.DataFrame) -> pd.Series:
    """The unit of replication: one value per seed, the mean over that seed's teachers."""
    return diff.groupby("seed")["diff"].mean()


def paired_differences(students: pd.DataFrame, mode_a: str, mode_b: str, value: str = "acc",
                       margin: float = MARGINS.acc) -> pd.DataFrame:
    """Paired differences per teacher and pooled ("all"), with the seed as the unit.

    Students of one teacher and seed share initialisation and batches, so the pairing removes
    most seed noise; but students of one seed also share that seed, so the pooled row is a
    t-interval over per-seed means (n = seeds), never over teacher x seed pairs.
    """
    diff = paired_by_seed(students, mode_a, mode_b, value)
    label = mode_b if isinstance(mode_b, str) else "tuned-tau uncalibrated"
    rows = [{"teacher": teacher, "pairs": len(g),
             **_effect_row(g.set_index("seed")["diff"], margin)}
            for teacher, g in diff.groupby("teacher", sort=False)]
    rows.append({"teacher": "all", "pairs": len(diff), **_effect_row(per_seed_means(diff), margin)})
    out = pd.DataFrame(rows)
    out.insert(0, "comparison", f"{mode_a} - {label}")
    return out


def _effect_row(per_seed, margin: float) -> dict:
    e = seed_effect(per_seed, "positive", margin)
    return {"mean": e["estimate"], "std": e["std"], "ci_low": e["ci_low"], "ci_high": e["ci_high"],
            "n": e["n"], "p_value": e["p_value"], "p_equiv": e["p_equiv"], "mde": e["mde"],
            "seeds_needed": e["needed"], "seeds_needed_observed": e["needed_observed"],
            "verdict": e["verdict"]}


def with_holm(table: pd.DataFrame) -> pd.DataFrame:
    """``p_holm``, ``p_test`` and ``verdict_holm`` of :func:`kdcal.multiplicity.holm_family` over
    every row (both tests of each, against 0 and against +-margin; a verdict stands only where
    the adjusted p of its test is below 5%), added after ``p_equiv`` and ``verdict``. Every row
    predicts a positive difference: its side is that of its interval."""
    out = table.copy()
    sides = [side(lo, hi, "positive") for lo, hi in zip(out["ci_low"], out["ci_high"])]
    tests, p_holm, held = holm_family(out["verdict"], sides, out["p_value"], out["p_equiv"])
    out.insert(out.columns.get_loc("p_equiv") + 1, "p_holm", p_holm)
    out.insert(out.columns.get_loc("p_holm") + 1, "p_test", tests)
    out.insert(out.columns.get_loc("verdict") + 1, "verdict_holm", held)
    return out


# ---------------------------------------------------------------- teacher size, teachers as units
def teacher_key(frame: pd.DataFrame, x: str) -> str:
    """Students name their teacher in ``teacher``; teachers themselves in ``arch``."""
    return "teacher" if x == "teacher_params" else "arch"


def teacher_family(name: str) -> str:
    """A teacher's ladder from its name: ``resnetN`` depth, ``resnetNxK`` width (names outside
    the registry by the same rule, so tables from elsewhere are read alike)."""
    if name in ARCHS:
        return arch_family(name)
    return "width" if re.search(r"x\d+(\.\d+)?$", str(name)) else "depth"


def families(results: pd.DataFrame) -> dict:
    """Every teacher's family: the name rule, overridden by a ``family`` column on the
    teachers' own rows (role teacher) where the results carry one."""
    own = (results[results["role"] == "teacher"] if "role" in results else results)
    names = set(own["arch"].dropna()) if "arch" in own else set()
    if "teacher" in results:
        names |= {t for t in results["teacher"].dropna() if t != ""}
    out = {n: teacher_family(n) for n in names}
    if "family" in own and "arch" in own:
        given = own[own["family"].notna() & (own["family"].astype(str) != "")]
        out.update(dict(zip(given["arch"], given["family"].astype(str))))
    return out


def teacher_means(frame: pd.DataFrame, x: str, y: str, family_of: dict | None = None
                  ) -> pd.DataFrame:
    """One row per teacher: its size ``x``, the mean of ``y`` over seeds and its family,
    smallest first."""
    key = teacher_key(frame, x)
    out = frame.groupby(key, sort=False)[[x, y]].mean()
    out = out.set_axis(["x", "y"], axis=1)
    family_of = family_of if family_of is not None else families(frame)
    out["family"] = [family_of.get(name, teacher_family(name)) for name in out.index]
    return out.sort_values("x", kind="stable")


def size_trend(frame: pd.DataFrame, x: str, y: str, direction: str = "positive",
               span_margin: float = MARGINS.acc_span, family: str = ALL,
               family_of: dict | None = None) -> dict:
    """Slope of ``y`` per doubling of ``x`` across teachers (means over seeds), with the exact
    permutation interval over teachers, its verdict, and the Spearman correlation beside it.

    ``family`` 'depth' or 'width': that ladder alone; ``'all'``: every teacher, with a family
    term when there are two families (the slope within families, teachers reordered only inside
    their family), never one line through both. The margin is ``span_margin`` over the span of
    the teachers tested, per doubling.
    """
    m = teacher_means(frame, x, y, family_of)
    if family != ALL:
        m = m[m["family"] == family]
    strata = m["family"].tolist() if m["family"].nunique() > 1 else None
    xs = np.log2(m["x"].to_numpy(float))
    out = size_effect(xs, m["y"].to_numpy(float), direction, slope_margin(span_margin, xs),
                      strata)
    return {**out, "margin_span": span_margin, "family": family,
            "family_term": strata is not None, "seeds": int(frame["seed"].nunique())}


def correlation(frame: pd.DataFrame, x: str, y: str, method: str = "spearman") -> dict:
    """Rank correlation of teacher means, with its two-sided exact permutation p-value over
    teachers and the smallest p-value the number of teachers allows. No interval: with a handful
    of teachers a correlation interval is either unbounded or a fiction; the slope carries it."""
    m = teacher_means(frame, x, y, {})
    k = len(m)
    return {"x": x, "y": y, "method": method,
            "estimate": rank_correlation(m["x"], m["y"], method),
            "p_value": permutation_p(m["x"], m["y"], method) if k >= 3 else np.nan,
            "p_floor": permutation_floor(k) if k >= 3 else np.nan,
            "teachers": k, "seeds": int(frame["seed"].nunique())}


def _kd_students(students: pd.DataFrame) -> pd.DataFrame:
    """Students of the distillation modes (calibrator targets included), not the baseline,
    sweeps or controls."""
    return students[students["mode"].isin(KD_MODES) | students["mode"].str.startswith("cal-")]


def size_correlations(students: pd.DataFrame) -> pd.DataFrame:
    """Per KD mode: Spearman and Kendall of teacher parameters against mean student accuracy,
    and the slope per doubling with its interval and verdict (teachers as units)."""
    rows = []
    for mode, g in _kd_students(students).groupby("mode", sort=False):
        trend = size_trend(g, "teacher_params", "acc")
        spearman = correlation(g, "teacher_params", "acc", "spearman")
        rows.append({"mode": mode, "spearman": spearman["estimate"],
                     "kendall": correlation(g, "teacher_params", "acc", "kendall")["estimate"],
                     "p_value": spearman["p_value"],
                     "slope_per_doubling": trend["estimate"], "ci_low": trend["ci_low"],
                     "ci_high": trend["ci_high"], "p_floor": trend["p_floor"],
                     "teachers": trend["n"], "seeds": trend["seeds"], "verdict": trend["verdict"]})
    return pd.DataFrame(rows)


def r_squared(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(stats.linregress(x, y).rvalue ** 2)


def predictors_of_student(students: pd.DataFrame) -> pd.DataFrame:
    """As in Kim, Park, Lee and Kwak (2025, IEEE Access): how well teacher ECE, and teacher
    accuracy, predict student accuracy (over every student, descriptive: no test, since these
    rows are not independent)."""
    rows = []
    for mode, g in _kd_students(students).groupby("mode", sort=False):
        for predictor in ("teacher_ece", "teacher_acc"):
            rows.append({"mode": mode, "predictor": predictor,
                         "r2": r_squared(g[predictor], g["acc"]),
                         "spearman": rank_correlation(g[predictor], g["acc"]), "n": len(g)})
    return pd.DataFrame(rows)


CAPACITY_GAP = 2.0  # accuracy points: the no-KD student below every teacher by at least this


def capacity_gap(results: pd.DataFrame, target: float = CAPACITY_GAP) -> pd.DataFrame:
    """The design check of a capacity gap: per teacher, its test accuracy minus the no-KD
    baseline student's, paired within each seed (points; mean and 95% t-interval over seeds),
    beside the two models' parameters. ``meets``: the mean gap is at least ``target`` points
    (the check is on the means; it is reported, it decides no claim)."""
    teachers = results[(results["role"] == "teacher") & (results["mode"] == "teacher")]
    base = results[(results["role"] == "student") & (results["mode"] == "baseline")]
    if teachers.empty or base.empty:
        return pd.DataFrame()
    base_acc = base.groupby("seed")["acc"].mean()
    student_params = float(base["params"].iloc[0])
    rows = []
    for arch, g in teachers.groupby("arch", sort=False):
        paired = g.set_index("seed")["acc"].sub(base_acc).dropna() * 100
        summary = interval(paired)
        rows.append({"teacher": arch, "teacher_params": float(g["params"].iloc[0]),
                     "student_params": student_params,
                     "params_ratio": float(g["params"].iloc[0]) / student_params,
                     "teacher_acc": 100 * g["acc"].mean(),
                     "baseline_acc": 100 * base_acc.loc[paired.index].mean(),
                     "gap": summary["mean"], "gap_low": summary["ci_low"],
                     "gap_high": summary["ci_high"], "seeds": summary["n"],
                     "meets": bool(summary["mean"] >= target)})
    return pd.DataFrame(rows).sort_values("teacher_params", kind="stable").reset_index(drop=True)


# how teacher size reaches the student: the predictors over teachers, alone and together
SIZE_PATHS = (("size", ("log2_params",)), ("teacher accuracy", ("teacher_acc",)),
              ("teacher ECE", ("teacher_ece",)), ("size and accuracy", ("log2_params", "teacher_acc")),
              ("size and ECE", ("log2_params", "teacher_ece")))
SIZE_PATH_UNITS = {"log2_params": "points per doubling", "teacher_acc": "points per point",
                   "teacher_ece": "points per ECE point"}


def _family_ols(x: np.ndarray, y: np.ndarray, groups: list[str]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Least squares of ``y`` on the columns of ``x`` with one intercept per group: the
    coefficients of ``x``, their standard errors, the half-widths of their 95% t-intervals, and
    the share of the within-group variance of ``y`` they explain."""
    levels = sorted(set(groups))
    dummies = np.array([[g == level for level in levels] for g in groups], float)
    design = np.column_stack([x, dummies])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    df = len(y) - design.shape[1]
    group_means = np.array([y[np.array(groups) == g].mean() for g in groups])
    within = float(((y - group_means) ** 2).sum())
    r2 = 1 - float(resid @ resid) / within if within > 0 else np.nan
    if df <= 0:  # as many unknowns as teachers: any line fits, it says nothing
        nothing = np.full(x.shape[1], np.nan)
        return nothing, nothing, nothing, np.nan
    cov = float(resid @ resid) / df * np.linalg.pinv(design.T @ design)
    se = np.sqrt(np.diag(cov))[: x.shape[1]]
    return coef[: x.shape[1]], se, stats.t.ppf(0.975, df) * se, r2


def size_or_accuracy(students: pd.DataFrame) -> pd.DataFrame:
    """Does teacher size reach the student through the teacher's accuracy or its calibration?

    Per distillation mode (tau arms included), over teachers (each the mean of its seeds, the
    units of a size claim; one intercept per family): student accuracy regressed on log2
    parameters, on the teacher's test accuracy, on its test ECE (before calibration), and on size
    beside each of the two. If size's coefficient shrinks to nothing once teacher accuracy is in
    the model, size acts through accuracy. Descriptive (exploratory): the intervals are t-intervals
    over teachers from the fit's residuals; no verdict, nothing in the Holm family. Pass the
    whole results table (or students beside their teachers' rows) where the teachers carry a
    ``family`` column: it overrides the name rule, as in the claims.
    """
    kd = students[students["mode"].map(lambda m: split_mode(m)[0] in KD_MODES
                                       or str(m).startswith("cal-"))]
    if kd.empty:
        return pd.DataFrame()
    family_of = families(students)
    rows = []
    for mode, g in kd.groupby("mode", sort=False):
        means = g.groupby("teacher").agg(acc=("acc", "mean"), teacher_acc=("teacher_acc", "mean"),
                                         teacher_ece=("teacher_ece", "mean"),
                                         params=("teacher_params", "mean"))
        means = means.assign(log2_params=np.log2(means["params"]), acc=100 * means["acc"],
                             teacher_acc=100 * means["teacher_acc"],
                             teacher_ece=100 * means["teacher_ece"])
        groups = [family_of[t] for t in means.index]  # families() names every teacher
        for model, terms in SIZE_PATHS:
            coef, se, half, r2 = _family_ols(means[list(terms)].to_numpy(float),
                                             means["acc"].to_numpy(float), groups)
            for term, b, s_e, h in zip(terms, coef, se, half):
                rows.append({"mode": mode, "model": model, "term": term,
                             "unit": SIZE_PATH_UNITS[term], "estimate": float(b), "se": float(s_e),
                             "ci_low": float(b - h), "ci_high": float(b + h), "r2_within": r2,
                             "teachers": len(means), "families": len(set(groups)),
                             "seeds": int(g["seed"].nunique())})
    return pd.DataFrame(rows)


def teacher_summary(teachers: pd.DataFrame) -> pd.DataFrame:
    """Per teacher architecture, smallest first: mean and 95% interval over seeds of each metric."""
    rows = []
    for arch, g in teachers.groupby("arch", sort=False):
        row = {"arch": arch, "params": int(g["params"].iloc[0]), "seeds": len(g)}
        for col in ("train_acc", "acc", "ece", "ece_cal", "nll", "nll_cal", "temperature",
                    "train_ece", "train_nll"):
            if col in g:
                mean, _, lo, hi, _ = t_interval(g[col])
                row.update({col: mean, f"{col}_low": lo, f"{col}_high": hi})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("params").reset_index(drop=True)


def mode_differences(students: pd.DataFrame, modes) -> pd.DataFrame:
    """Every KD mode against the baseline, and each calibrated mode against uncalibrated KD,
    per teacher and pooled; Holm's adjustment over every row of the table (a figure that marks
    rows as decided marks them by ``verdict_holm``)."""
    parts = [paired_differences(students, m, "baseline") for m in modes if m != "baseline"]
    if "uncalibrated" in modes:
        parts += [paired_differences(students, m, "uncalibrated") for m in modes
                  if m not in ("uncalibrated", "baseline")]
    return with_holm(pd.concat(parts, ignore_index=True))


CALIBRATION_METRICS = ["ece", "ace", "mce", "classwise_ece", "nll", "brier", "acc"]


def method_summary(methods: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every calibration metric, per teacher and calibration method."""
    cols = [c for c in CALIBRATION_METRICS if c in methods]
    out = methods.groupby(["params", "arch", "method"], sort=True)[cols].mean().reset_index()
    return out.drop(columns="params")


def tau_candidates(students: pd.DataFrame) -> pd.DataFrame:
    """Uncalibrated KD students at every distillation temperature tried (the sweep and tau itself,
    and the ``uncalibrated@<tau>`` arms: the sweep does not train their taus again)."""
    sweep = students[students["mode"] == "tau_sweep"]
    on = students["seed"].isin(sweep["seed"])
    base = students[(students["mode"] == "uncalibrated") & on]
    arms = students[students["mode"].astype(str).str.startswith("uncalibrated@") & on]
    return pd.concat([base, sweep] if arms.empty else [base, arms, sweep], ignore_index=True)


def _best_taus(cand: pd.DataFrame) -> tuple[dict, float]:
    """Each teacher's tau, and the one shared tau, with the highest mean validation accuracy."""
    val = cand.groupby(["teacher", "kd_tau"])["val_acc"].mean()
    best = {t: float(val.loc[t].idxmax()) for t in cand["teacher"].unique()}
    return best, float(val.groupby("kd_tau").mean().idxmax())


def tau_controls(students: pd.DataFrame, tau: float) -> pd.DataFrame:
    """The control to beat: uncalibrated KD with tau tuned on validation accuracy.

    Per teacher: the best tau for that teacher, and the best single tau shared by all teachers,
    both chosen on mean validation accuracy over the control seeds, reported with test accuracy
    beside calibrated KD (``replace``, ``compose``) on the same seeds.
    """
    cand = tau_candidates(students)
    if cand.empty or cand["kd_tau"].nunique() < 2:
        return pd.DataFrame()
    best, shared_tau = _best_taus(cand)
    seeds = set(cand["seed"])
    rows = []
    for teacher, g in cand.groupby("teacher", sort=False):
        best_tau = best[teacher]
        row = {"teacher": teacher, "teacher_params": g["teacher_params"].iloc[0],
               "best_tau": best_tau, "shared_tau": shared_tau}
        for label, t in (("tuned", best_tau), ("shared", shared_tau), ("default", tau)):
            mean, _, lo, hi, n = t_interval(g.loc[g["kd_tau"] == t, "acc"])
            row.update({f"acc_{label}_tau": mean, f"acc_{label}_tau_ci": (lo, hi)})
        for mode in ("replace", "compose"):
            m = students[(students["mode"] == mode) & (students["teacher"] == teacher)
                         & students["seed"].isin(seeds)]
            row[f"acc_{mode}"] = m["acc"].mean() if len(m) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values("teacher_params")


def tuned_tau_students(students: pd.DataFrame, tau: float) -> pd.DataFrame:
    """The uncalibrated students at each teacher's validation-tuned tau (one row per seed)."""
    cand = tau_candidates(students)
    if cand.empty:
        return cand
    best, _ = _best_taus(cand)
    return cand[cand["kd_tau"] == cand["teacher"].map(best)]


def temperature_sweep(students: pd.DataFrame) -> pd.DataFrame:
    """Student test accuracy against the teacher's temperature at fixed tau, per teacher.

    The sweep's multipliers, plain KD (multiplier 1) and ``compose`` (the NLL-fitted T) lie on
    one axis: the teacher's logits divided by multiplier * tau.
    """
    sweep = students[students["mode"] == "temp_sweep"]
    if sweep.empty:
        return pd.DataFrame()
    seeds = set(sweep["seed"])
    same = students["seed"].isin(seeds)
    plain = students[(students["mode"] == "uncalibrated") & same].assign(teacher_temperature=1.0)
    comp = students[(students["mode"] == "compose") & same]
    # T differs a little between seeds: the star sits at the teacher's mean fitted T
    comp = comp.assign(teacher_temperature=comp.groupby("teacher")["temperature"].transform("mean"))
    rows = pd.concat([sweep.assign(point="sweep"), plain.assign(point="sweep"),
                      comp.assign(point="fitted T")], ignore_index=True)
    out = []
    for (teacher, point, m), g in rows.groupby(["teacher", "point", "teacher_temperature"]):
        out.append({"teacher": teacher, "teacher_params": g["teacher_params"].iloc[0],
                    "point": point, "teacher_temperature": m, **interval(g["acc"])})
    return pd.DataFrame(out).sort_values(["teacher_params", "teacher_temperature"])
