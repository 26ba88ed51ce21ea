"""The paper's claims, each tested on a run's results: claims.csv and its generated summary.

One row per claim (a size claim per family of teachers and across families with a family term):
the statistic, its 95% interval, the verdict by :func:`kdcal.inference.decide`, and Holm's
adjustment over one test per claim. The statistics themselves (paired differences over seeds,
slopes over teachers) come from :mod:`kdcal.analysis`; the rules from :mod:`kdcal.inference`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import (ALL, families, paired_by_seed, per_seed_means, size_trend, teacher_family,
                       teacher_key, tuned_tau_students)
from .inference import (ALPHA, MARGINS, VERDICT_RULE, Margins, holm, holm_verdicts,  # noqa: F401
                        mde_mean, seed_effect, t_interval, t_p_value, teachers_for_level,
                        units_needed_mean)

CLAIM_COLUMNS = ["claim", "family", "statistic", "estimate", "ci_low", "ci_high", "unit", "n",
                 "p_value", "p_floor", "p_holm", "margin", "margin_span", "mde", "needed",
                 "needed_observed", "verdict", "verdict_holm", "note"]
FAMILY_WORDS = {"depth": "within the depth ladder", "width": "within the width ladder",
                ALL: "across families, with a family term"}


def _note(row: dict) -> str:
    """What the design can and cannot say, in words."""
    unit, v = row["unit"], row["verdict"]
    if row["n"] < 2 or (unit == "teachers" and row["n"] < 3):
        return f"only {row['n']} {unit}: no interval"
    floor = row.get("p_floor", np.nan)
    if unit == "teachers" and np.isfinite(floor) and floor > ALPHA:
        return (f"{row['n']} teachers allow p >= {floor:.3f} at best: the 5% level is out of reach "
                f"(needs >= {teachers_for_level()} teachers in a family, or more families; about "
                f"{_count(row['needed'])} to detect the margin)")
    if v == "underpowered":
        return (f"about {_count(row['needed'])} {unit} would detect the margin, about "
                f"{_count(row.get('needed_observed', np.nan))} the observed effect (80% power)")
    return ""


def _count(n) -> str:
    if pd.isna(n):
        return "?"
    return str(int(n)) if n < 1000 else "more than 1000"


def _claim(claim: str, statistic: str, effect: dict, family: str = ALL) -> dict:
    row = {"claim": claim, "family": family, "statistic": statistic, "p_value": np.nan,
           **effect}
    row["note"] = _note(row)
    return {k: row.get(k, np.nan) for k in CLAIM_COLUMNS}


def _size_claims(claim: str, statistic: str, frame: pd.DataFrame, x: str, y: str,
                 direction: str, span_margin: float, family_of: dict) -> list[dict]:
    """One row per family of teachers present, then one across families with a family term
    when there are two: a size claim is never one line through both ladders."""
    key = teacher_key(frame, x)
    present = sorted({family_of.get(t, teacher_family(t)) for t in frame[key].unique()})
    scopes = present + ([ALL] if len(present) > 1 else [])
    return [_claim(claim, f"{statistic}, {FAMILY_WORDS[scope]}",
                   size_trend(frame, x, y, direction, span_margin, scope, family_of), scope)
            for scope in scopes]


def calibrated_modes(students: pd.DataFrame) -> list[str]:
    """The calibrated KD modes present: replace, compose, then every calibrator distilled from."""
    present = set(students["mode"])
    return ([m for m in ("replace", "compose") if m in present]
            + sorted(m for m in present if str(m).startswith("cal-")))


def interaction_frame(students: pd.DataFrame, mode: str, other="uncalibrated") -> pd.DataFrame:
    """Per teacher and seed, the benefit of calibration: acc(mode) - acc(other) for the same
    teacher and seed, in ``acc``, beside the teacher's size (the paper's claim is its slope)."""
    diff = paired_by_seed(students, mode, other)
    size = students.drop_duplicates("teacher").set_index("teacher")["teacher_params"]
    return diff.assign(teacher_params=diff["teacher"].map(size)).rename(columns={"diff": "acc"})


def _teaching_claim(teachers: pd.DataFrame, margins: Margins) -> dict | None:
    """Claim 2, for every teacher and both metrics: supported only if every interval lies below
    zero (intersection-union, each at 95%); contradicted if any lies above zero at the
    Bonferroni level; equivalent if every interval lies inside its margin. Its p-value is the
    intersection-union test's: twice the largest one-sided p-value of "lower"."""
    tests = []
    for arch, g in teachers.groupby("arch", sort=False):
        for metric, margin in (("ece", margins.ece), ("nll", margins.nll)):
            d = (g[f"{metric}_cal"] - g[metric]).to_numpy(float)
            mean, std, lo, hi, n = t_interval(d)
            m = 2 * teachers["arch"].nunique()
            _, _, blo, _, _ = t_interval(d, 1 - ALPHA / m)
            p = t_p_value(mean, std, n)
            lower = p / 2 if mean < 0 else 1 - p / 2  # one-sided p of "after < before"
            tests.append({"label": f"{metric.upper()} after - before, {arch}", "mean": mean,
                          "lo": lo, "hi": hi, "blo": blo, "n": n, "margin": margin,
                          "lower": lower, "std": std,
                          "mde": mde_mean(std, n), "needed": units_needed_mean(std, margin)})
    if not tests:
        return None
    finite = all(np.isfinite(t["hi"]) for t in tests)
    if finite and all(t["hi"] < 0 for t in tests):
        verdict = "supported"
    elif any(np.isfinite(t["blo"]) and t["blo"] > 0 for t in tests):
        verdict = "contradicted"
    elif finite and all(-t["margin"] < t["lo"] and t["hi"] < t["margin"] for t in tests):
        verdict = "equivalent"
    else:
        verdict = "underpowered"
    worst = max(tests, key=lambda t: t["hi"] if np.isfinite(t["hi"]) else np.inf)
    lowers = [t["lower"] for t in tests]
    effect = {"estimate": worst["mean"], "ci_low": worst["lo"], "ci_high": worst["hi"],
              "unit": "seeds", "n": worst["n"],
              "p_value": min(1.0, 2 * max(lowers)) if all(np.isfinite(lowers)) else np.nan,
              "p_floor": np.nan, "margin": worst["margin"],
              "mde": max(t["mde"] for t in tests), "needed": max(t["needed"] for t in tests),
              "needed_observed": units_needed_mean(worst["std"], abs(worst["mean"])),
              "verdict": verdict}
    return _claim("2. temperature scaling lowers ECE and NLL for every teacher",
                  f"least favourable of {len(tests)} (teacher, metric) pairs: {worst['label']}, "
                  "mean over seeds", effect)


def claims_table(results: pd.DataFrame, margins: Margins = MARGINS) -> pd.DataFrame:
    """The paper's claims, each tested on this run's data: statistic, 95% interval, verdict.

    Needs the columns role, arch, params, seed, mode, teacher, teacher_params, acc, ece,
    ece_cal, nll, nll_cal and temperature (an optional ``family`` overrides the name rule); with
    kd_tau and val_acc (the tau control) it adds each calibrated mode against uncalibrated KD at
    the validation-tuned tau. Order: the teacher claims (1, 2), then the paper's main claim, the
    interaction (4., the benefit of calibration against teacher size), then 3, 4 and 5. Size
    claims come per family of teachers and across families with a family term (``family``);
    ``p_holm`` and ``verdict_holm`` adjust for the number of claims tested (Holm over one test per
    claim, :func:`primary_tests`; the within-family rows beside a test across families are
    secondary and carry neither).
    """
    teachers = results[(results["role"] == "teacher") & (results["mode"] == "teacher")]
    students = results[results["role"] == "student"]
    family_of = families(results)
    rows = []
    if teachers["arch"].nunique() >= 1:
        rows += _size_claims("1. larger teachers have higher ECE",
                             "slope of teacher ECE per doubling of parameters (teacher means)",
                             teachers, "params", "ece", "positive", margins.ece_span, family_of)
    two = _teaching_claim(teachers, margins)
    if two is not None:
        rows.append(two)
    by_mode = {m: g for m, g in students.groupby("mode")}
    calibrated = calibrated_modes(students)
    if "uncalibrated" in by_mode:
        for mode in calibrated:
            rows += _size_claims(
                f"4. interaction ({mode}): the benefit of calibration grows with teacher size",
                f"slope of ({mode} - uncalibrated) student acc per doubling of teacher "
                "parameters (teacher means of the per-seed differences)",
                interaction_frame(students, mode), "teacher_params", "acc", "positive",
                margins.acc_span, family_of)
        rows += _size_claims(
            "3. without calibration, student accuracy does not increase with teacher size",
            "slope of student acc per doubling of teacher parameters, uncalibrated KD",
            by_mode["uncalibrated"], "teacher_params", "acc", "negative", margins.acc_span,
            family_of)
    for mode in calibrated:
        rows += _size_claims(
            f"4. with calibration ({mode}), student accuracy increases with teacher size",
            f"slope of student acc per doubling of teacher parameters, {mode} KD",
            by_mode[mode], "teacher_params", "acc", "positive", margins.acc_span, family_of)
    if "uncalibrated" in by_mode:
        for mode in calibrated:
            diff = paired_by_seed(students, mode, "uncalibrated")
            rows.append(_claim(
                f"5. calibrated ({mode}) beats uncalibrated distillation for the same teacher",
                f"student acc, {mode} - uncalibrated, mean over teachers per seed",
                seed_effect(per_seed_means(diff), "positive", margins.acc)))
    tuned = tuned_tau_students(students, None) if {"kd_tau", "val_acc"} <= set(students) else None
    if tuned is not None and len(tuned):
        for mode in calibrated:
            diff = paired_by_seed(students, mode, tuned)
            if diff["seed"].nunique() >= 1:
                rows.append(_claim(
                    f"5. calibrated ({mode}) beats uncalibrated distillation at the "
                    "validation-tuned tau",
                    f"student acc, {mode} - uncalibrated at each teacher's tuned tau, mean over "
                    "teachers per seed", seed_effect(per_seed_means(diff), "positive",
                                                     margins.acc)))
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    primary = primary_tests(table)
    table["p_holm"] = np.nan
    table.loc[primary, "p_holm"] = holm(table.loc[primary, "p_value"])
    table["verdict_holm"] = None
    table.loc[primary, "verdict_holm"] = holm_verdicts(table.loc[primary, "verdict"],
                                                       table.loc[primary, "p_holm"])
    table.loc[~primary, "note"] = [
        "; ".join(filter(None, (SECONDARY, n))) for n in table.loc[~primary, "note"]]
    return table


SECONDARY = "within one family: secondary, not adjusted (the claim's test is across families)"


def primary_tests(claims: pd.DataFrame) -> pd.Series:
    """The table's tests that Holm adjusts: one per claim, fixed by the design, never by the data:
    a size claim's test across families (family ``all``, with the family term) where the table
    has one, else the claim's own row. The rows within one family of a claim that has a test
    across families are secondary: they say where the slope comes from, unadjusted."""
    has_all = claims.groupby("claim", sort=False)["family"].transform(lambda f: (f == ALL).any())
    return (claims["family"] == ALL) | ~has_all


def _fmt(v: float) -> str:
    """Signed, three significant digits, never in scientific notation, zero unsigned."""
    if v == 0:
        return "0"
    if np.isinf(v):
        return "-inf" if v < 0 else "+inf"
    return np.format_float_positional(v, precision=3, unique=False, fractional=False, trim="-",
                                      sign=True)


def _margin_text(c) -> str:
    span = c.get("margin_span", np.nan)
    if pd.notna(span) and np.isfinite(span):
        return f"margin +-{c['margin']:.3g} per doubling (+-{span:.3g} over the ladder)"
    return f"margin +-{c['margin']:.3g}"


def claims_summary(claims: pd.DataFrame) -> str:
    """One generated sentence per claim: what this run's data say about it."""
    lines = []
    for _, c in claims.iterrows():
        ci = (f"95% CI [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
              if not (pd.isna(c["ci_low"]) or pd.isna(c["ci_high"])) else "no interval")
        mde = f", detectable at this design: {c['mde']:.3g}" if np.isfinite(c["mde"]) else ""
        note = f"; {c['note']}" if isinstance(c["note"], str) and c["note"] else ""
        family = f" [{c['family']}]" if isinstance(c.get("family"), str) else ""
        holm_v = c.get("verdict_holm")
        after = (f"; after Holm: {holm_v.upper()}"
                 if isinstance(holm_v, str) and holm_v != c["verdict"] else "")
        lines.append(f"- {c['claim']}{family}: {c['verdict'].upper()}{after} "
                     f"({c['statistic']} = {_fmt(c['estimate'])}, {ci}, n = {c['n']} "
                     f"{c['unit']}, {_margin_text(c)}{mde}{note})")
    counts = claims["verdict"].value_counts()
    lines.append("In this run: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in
                                             ("supported", "contradicted", "equivalent",
                                              "underpowered")) + ".")
    if "verdict_holm" in claims:
        held = claims["verdict_holm"].value_counts()
        lines.append(f"After Holm's adjustment over {int(claims['p_value'].notna().sum())} "
                     "tests: " + ", ".join(f"{held.get(v, 0)} {v}" for v in
                                          ("supported", "contradicted", "equivalent",
                                           "underpowered")) + ".")
    return "\n".join(lines)
