"""Statistics across seeds: intervals, paired mode differences, rank correlations, the claims.

Every number the analysis notebook shows comes from here, computed on ``results.csv``; the
verdict rules are stated in :data:`VERDICT_RULE` and applied by code, never typed by hand.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .distill import KD_MODES  # the main modes; sweeps and controls are analysed apart

CONFIDENCE = 0.95
VERDICT_RULE = (
    "Correlations carry the envelope of a seed bootstrap and a t-interval of per-seed values. "
    "supported: the 95% interval lies entirely on the side the claim predicts; "
    "contradicted: it lies entirely on the other side; inconclusive: it contains the null value "
    "(0 for differences and correlations) or could not be computed.")


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float, float, int]:
    """(mean, std, low, high, n) with a Student-t interval; n < 2 gives an undefined interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return (np.nan, np.nan, np.nan, np.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return (mean, np.nan, np.nan, np.nan, n)
    std = float(v.std(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)
    return (mean, std, mean - half, mean + half, n)


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


def paired_differences(students: pd.DataFrame, mode_a: str, mode_b: str,
                       value: str = "acc") -> pd.DataFrame:
    """value(mode_a) - value(mode_b) for the same teacher and seed, summarised per teacher.

    Students of one teacher and seed share initialisation and batches, so the pairing removes
    most seed noise. ``mode_b='baseline'`` pairs with the no-KD student of the same seed.
    """
    a = students[students["mode"] == mode_a].set_index(["teacher", "seed"])[value]
    if mode_b == "baseline":
        base = students[students["mode"] == "baseline"].set_index("seed")[value]
        b = pd.Series(a.index.get_level_values("seed").map(base), index=a.index)
    else:
        b = students[students["mode"] == mode_b].set_index(["teacher", "seed"])[value]
    diff = (a - b).dropna().rename("diff").reset_index()
    rows = [{"teacher": teacher, **interval(g["diff"])}
            for teacher, g in diff.groupby("teacher", sort=False)]
    rows.append({"teacher": "all", **interval(diff["diff"])})
    out = pd.DataFrame(rows)
    out.insert(0, "comparison", f"{mode_a} - {mode_b}")
    return out


def _corr(x, y, method: str) -> float:
    """Spearman or Kendall; NaN where undefined (fewer than 3 points or a constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    if method == "spearman":  # Pearson on average ranks: scipy's definition, without its overhead
        rx, ry = stats.rankdata(x), stats.rankdata(y)
        return float(np.corrcoef(rx, ry)[0, 1])
    return float(stats.kendalltau(x, y)[0])


def seed_bootstrap(frame: pd.DataFrame, columns: list[str], statistic, n_boot: int = 2000,
                   seed: int = 0, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(estimate, low, high): percentile interval from resampling whole seeds with replacement.

    The seed is the unit of replication: all runs of one seed stay together in a resample.
    ``statistic`` takes one array per column.
    """
    estimate = statistic(*(frame[c].to_numpy(float) for c in columns))
    seeds = sorted(frame["seed"].unique())
    per_seed = [frame.loc[frame["seed"] == s, columns].to_numpy(float) for s in seeds]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        sample = np.concatenate([per_seed[j] for j in rng.integers(0, len(seeds), len(seeds))])
        reps[i] = statistic(*sample.T)
    reps = reps[np.isfinite(reps)]
    if len(seeds) < 2 or len(reps) < n_boot // 2:
        return float(estimate), np.nan, np.nan
    tail = (1 - confidence) / 2 * 100
    return float(estimate), float(np.percentile(reps, tail)), float(np.percentile(reps, 100 - tail))


def correlation(frame: pd.DataFrame, x: str, y: str, method: str = "spearman",
                n_boot: int = 2000) -> dict:
    """Rank correlation over all rows, with two 95% intervals over seeds and their envelope.

    ``boot_*``: percentile bootstrap resampling whole seeds. ``seed_*``: the correlation computed
    within each seed, t-interval over seeds. With few seeds the bootstrap has few distinct
    resamples and can be too narrow, so ``ci_low``/``ci_high`` (used by the verdicts) are the
    envelope of both: the more cautious answer.
    """
    est, b_lo, b_hi = seed_bootstrap(frame, [x, y], lambda a, b: _corr(a, b, method), n_boot)
    per_seed = [_corr(g[x], g[y], method) for _, g in frame.groupby("seed")]
    _, _, s_lo, s_hi, _ = t_interval(per_seed)
    lo = np.nanmin([b_lo, s_lo]) if np.isfinite([b_lo, s_lo]).any() else np.nan
    hi = np.nanmax([b_hi, s_hi]) if np.isfinite([b_hi, s_hi]).any() else np.nan
    lo, hi = np.clip(lo, -1, 1), np.clip(hi, -1, 1)  # a t-interval can overshoot the range
    return {"x": x, "y": y, "method": method, "estimate": est, "ci_low": lo, "ci_high": hi,
            "boot_low": b_lo, "boot_high": b_hi, "seed_low": s_lo, "seed_high": s_hi,
            "n": len(frame), "seeds": frame["seed"].nunique()}


def permutation_p(frame: pd.DataFrame, x: str, y: str, method: str = "spearman",
                  n_perm: int = 2000, seed: int = 0) -> float:
    """Two-sided p-value of the rank correlation of ``x`` and ``y``, permuting ``y`` within seeds.

    Exact (every within-seed permutation) when there are at most ``n_perm`` of them, else a
    seeded Monte Carlo. Runs of one seed share initialisation and batches, so only within-seed
    reorderings are exchangeable under "no association". With 2 seeds of 3 teachers there are
    36 orderings, so no p-value can fall below 2/36: such a grid cannot show a size effect.
    """
    import itertools

    groups = [g[y].to_numpy(float) for _, g in frame.groupby("seed", sort=True)]
    xs = np.concatenate([g[x].to_numpy(float) for _, g in frame.groupby("seed", sort=True)])
    observed = _corr(xs, np.concatenate(groups), method)
    if not np.isfinite(observed):
        return np.nan
    if _within_seed_orderings(frame) <= n_perm:
        samples = (np.concatenate([g[list(p)] for g, p in zip(groups, combo)])
                   for combo in itertools.product(*(itertools.permutations(range(len(g)))
                                                    for g in groups)))
    else:
        rng = np.random.default_rng(seed)
        samples = (np.concatenate([rng.permutation(g) for g in groups]) for _ in range(n_perm))
    stats_ = np.array([_corr(xs, s, method) for s in samples])
    stats_ = np.nan_to_num(stats_, nan=0.0)
    return float(np.mean(np.abs(stats_) >= abs(observed) - 1e-12))


def _within_seed_orderings(frame: pd.DataFrame) -> int:
    import math

    return math.prod(math.factorial(len(g)) for _, g in frame.groupby("seed"))


def permutation_floor(frame: pd.DataFrame, n_perm: int = 2000) -> float:
    """The smallest p-value :func:`permutation_p` can return on ``frame``'s seeds and sizes."""
    total = _within_seed_orderings(frame)
    return min(1.0, 2 / total) if total <= n_perm else 1 / n_perm


def _kd_students(students: pd.DataFrame) -> pd.DataFrame:
    """Students of the distillation modes (calibrator targets included), not sweeps or controls."""
    return students[students["mode"].isin(KD_MODES) | students["mode"].str.startswith("cal-")]


def size_correlations(students: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Spearman and Kendall of teacher parameters against student accuracy, per mode."""
    rows = []
    for mode, g in _kd_students(students).groupby("mode", sort=False):
        for method in ("spearman", "kendall"):
            rows.append({"mode": mode, **correlation(g, "teacher_params", "acc", method, n_boot)})
    return pd.DataFrame(rows)


def r_squared(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(stats.linregress(x, y).rvalue ** 2)


def predictors_of_student(students: pd.DataFrame) -> pd.DataFrame:
    """As in Kim et al. 2025: how well teacher ECE, and teacher accuracy, predict student accuracy."""
    rows = []
    for mode, g in _kd_students(students).groupby("mode", sort=False):
        for predictor in ("teacher_ece", "teacher_acc"):
            rows.append({"mode": mode, "predictor": predictor,
                         "r2": r_squared(g[predictor], g["acc"]),
                         "spearman": _corr(g[predictor], g["acc"], "spearman"), "n": len(g)})
    return pd.DataFrame(rows)


def verdict(low: float, high: float, direction: str) -> str:
    """Apply :data:`VERDICT_RULE`; ``direction`` is 'positive' or 'negative'."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if direction == "positive":
        return "supported" if low > 0 else "contradicted" if high < 0 else "inconclusive"
    return "supported" if high < 0 else "contradicted" if low > 0 else "inconclusive"


def claims_table(results: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """The paper's claims, each tested on this run's data with a statistic, interval and verdict."""
    teachers = results[(results["role"] == "teacher") & (results["mode"] == "teacher")]
    students = results[results["role"] == "student"]
    rows = []

    def add(claim, statistic, est, lo, hi, direction, n):
        rows.append({"claim": claim, "statistic": statistic, "estimate": est, "ci_low": lo,
                     "ci_high": hi, "n": n, "verdict": verdict(lo, hi, direction)})

    c = correlation(teachers, "params", "ece", "spearman", n_boot)
    add("1. larger teachers have higher ECE", "Spearman(teacher params, teacher ECE)",
        c["estimate"], c["ci_low"], c["ci_high"], "positive", c["n"])

    worst = None
    for arch, g in teachers.groupby("arch", sort=False):
        for metric in ("ece", "nll"):
            mean, _, lo, hi, n = t_interval(g[f"{metric}_cal"] - g[metric])
            if worst is None or (np.isfinite(hi) and hi > worst[3]) or not np.isfinite(hi):
                worst = (f"{metric.upper()} after - before, {arch}", mean, lo, hi, n)
    if worst is not None:
        add("2. temperature scaling lowers ECE and NLL for every teacher",
            f"least favourable teacher: {worst[0]} (paired over seeds)", worst[1], worst[2],
            worst[3], "negative", worst[4])

    by_mode = {m: g for m, g in students.groupby("mode")}
    if "uncalibrated" in by_mode:
        c = correlation(by_mode["uncalibrated"], "teacher_params", "acc", "spearman", n_boot)
        # "does not increase": supported when the interval excludes a positive correlation
        lo, hi = c["ci_low"], c["ci_high"]
        v = "inconclusive" if not np.isfinite(hi) else \
            "contradicted" if lo > 0 else "supported" if hi <= 0 else "inconclusive"
        rows.append({"claim": "3. without calibration, student accuracy does not increase with teacher size",
                     "statistic": "Spearman(teacher params, student acc), uncalibrated KD",
                     "estimate": c["estimate"], "ci_low": lo, "ci_high": hi, "n": c["n"], "verdict": v})
    for mode in ("replace", "compose"):
        if mode in by_mode:
            c = correlation(by_mode[mode], "teacher_params", "acc", "spearman", n_boot)
            add(f"4. with calibration ({mode}), student accuracy increases with teacher size",
                f"Spearman(teacher params, student acc), {mode} KD",
                c["estimate"], c["ci_low"], c["ci_high"], "positive", c["n"])
    for mode in ("replace", "compose"):
        if mode in by_mode and "uncalibrated" in by_mode:
            d = paired_differences(students, mode, "uncalibrated")
            overall = d[d["teacher"] == "all"].iloc[0]
            add(f"5. calibrated ({mode}) beats uncalibrated distillation for the same teacher",
                f"student acc, {mode} - uncalibrated (paired by teacher and seed)",
                overall["mean"], overall["ci_low"], overall["ci_high"], "positive", overall["n"])
    return pd.DataFrame(rows)


def teacher_summary(teachers: pd.DataFrame) -> pd.DataFrame:
    """Per teacher architecture: mean and 95% interval over seeds of each metric."""
    rows = []
    for arch, g in teachers.groupby("arch", sort=False):
        row = {"arch": arch, "params": int(g["params"].iloc[0]), "seeds": len(g)}
        for col in ("acc", "ece", "ece_cal", "nll", "nll_cal", "temperature"):
            if col in g:
                mean, _, lo, hi, _ = t_interval(g[col])
                row.update({col: mean, f"{col}_ci": (lo, hi)})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("params")


def mode_differences(students: pd.DataFrame, modes) -> pd.DataFrame:
    """Every KD mode against the baseline, and each calibrated mode against uncalibrated KD."""
    parts = [paired_differences(students, m, "baseline") for m in modes]
    if "uncalibrated" in modes:
        parts += [paired_differences(students, m, "uncalibrated") for m in modes
                  if m != "uncalibrated"]
    return pd.concat(parts, ignore_index=True)


def claims_summary(claims: pd.DataFrame) -> str:
    """One generated sentence per claim: what this run's data say about it."""
    lines = []
    for _, c in claims.iterrows():
        interval = (f"[{c['ci_low']:.3g}, {c['ci_high']:.3g}]"
                    if np.isfinite(c["ci_low"]) else "(no interval: too few seeds)")
        lines.append(f"- {c['claim']}: {c['verdict'].upper()} ({c['statistic']} = "
                     f"{c['estimate']:.3g}, 95% CI {interval}, n = {c['n']})")
    counts = claims["verdict"].value_counts()
    lines.append(f"In this run: {counts.get('supported', 0)} supported, "
                 f"{counts.get('contradicted', 0)} contradicted, "
                 f"{counts.get('inconclusive', 0)} inconclusive.")
    return "\n".join(lines)


CALIBRATION_METRICS = ["ece", "ace", "mce", "classwise_ece", "nll", "brier", "acc"]


def method_summary(methods: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every calibration metric, per teacher and calibration method."""
    cols = [c for c in CALIBRATION_METRICS if c in methods]
    out = methods.groupby(["params", "arch", "method"], sort=True)[cols].mean().reset_index()
    return out.drop(columns="params")


def tau_candidates(students: pd.DataFrame) -> pd.DataFrame:
    """Uncalibrated KD students at every distillation temperature tried (the sweep and tau itself)."""
    sweep = students[students["mode"] == "tau_sweep"]
    base = students[(students["mode"] == "uncalibrated") & students["seed"].isin(sweep["seed"])]
    return pd.concat([base, sweep], ignore_index=True)


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
