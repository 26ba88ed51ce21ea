"""The paper's claims, each tested on a run's results: claims.csv and its generated summary.

One row per claim (a size claim per family of teachers and across families with a family term):
the statistic, its 95% interval, its two tests (against 0 and against +-margin), the verdict by
:func:`kdcal.inference.decide`, and Holm's adjustment over one family holding both tests of one
row per claim (:func:`kdcal.multiplicity.holm_family`). The statistics themselves (paired
differences over seeds, slopes over teachers) come from :mod:`kdcal.analysis`; the rules from
:mod:`kdcal.inference`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import (ALL, families, paired_by_seed, per_seed_means, size_trend, teacher_family,
                       teacher_key, tuned_tau_students)
from .inference import (ALPHA, BOTH, DECIDED, EQUIVALENCE, MARGINS, VERDICT_RULE,  # noqa: F401
                        VERDICTS, ZERO, Margins, mde_mean, seed_effect, t_equivalence_p,
                        t_interval, t_p_value, teachers_for_level, units_needed_mean, verdict_of)
from .multiplicity import holm_family

CLAIM_COLUMNS = ["claim", "family", "statistic", "estimate", "ci_low", "ci_high", "unit", "n",
                 "p_value", "p_equiv", "p_floor", "p_holm", "p_test", "margin", "margin_span",
                 "mde", "needed", "needed_observed", "verdict", "verdict_holm", "note"]
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


def floor_note(row) -> str:
    """Where ``p_value`` or ``p_equiv`` sits on the permutation floor (``p_floor`` = 2 over the
    orderings of the teachers), and ``p_holm`` on that floor times Holm's multiplier: the design,
    not the data, sets these p-values, and only more teachers would lower them."""
    floor = row.get("p_floor", np.nan)
    if row.get("unit") != "teachers" or not (pd.notna(floor) and 0 < floor <= ALPHA):
        return ""
    orderings = _factorials(int(row["n"]), round(2 / floor))
    at = [name for name in ("p_value", "p_equiv") if _on(row.get(name), floor)]
    if not at:
        return ""
    text = f"{' = '.join(at)} = 2/{orderings} = {floor:.3g}, the permutation floor"
    p_value, p_equiv = row.get("p_value", np.nan), row.get("p_equiv", np.nan)
    raw = {ZERO: p_value, EQUIVALENCE: p_equiv,
           BOTH: np.fmax(p_value, p_equiv)}.get(row.get("p_test"), np.nan)
    adjusted = row.get("p_holm", np.nan)
    if _on(raw, floor) and pd.notna(adjusted) and adjusted < 1:
        times = adjusted / floor
        if times >= 1 and _on(times, round(times)):
            text += (f"; p_holm = {round(times)} x 2/{orderings} = {adjusted:.3g}, the floor "
                     "times Holm's multiplier")
    return text + ": more teachers needed for a smaller p"


def _factorials(k: int, orderings: int) -> str:
    """``orderings`` as the factorials of family sizes adding up to ``k`` teachers ("8!",
    "(6! 2!)"), fewest families first; the plain number where none fits (a sampled test)."""
    def splits(left: int, largest: int):
        yield ()
        for part in range(min(left, largest), 1, -1):
            for rest in splits(left - part, part):
                yield (part, *rest)

    fits = [p for p in splits(k, k) if p and math.prod(map(math.factorial, p)) == orderings]
    if not fits:
        return str(orderings)
    parts = min(fits, key=len)
    text = " ".join(f"{n}!" for n in parts)
    return text if len(parts) == 1 else f"({text})"


def _on(p, value) -> bool:
    """``p`` equals ``value`` up to rounding (p-values over orderings are exact fractions)."""
    return pd.notna(p) and pd.notna(value) and bool(np.isclose(p, value, rtol=1e-9, atol=0.0))


def _claim(claim: str, statistic: str, effect: dict, family: str = ALL) -> dict:
    """One row of the table (CLAIM_COLUMNS), and ``side``: what the zero test alone says (see
    :func:`kdcal.inference.side`), which Holm's step needs and claims.csv does not show."""
    row = {"claim": claim, "family": family, "statistic": statistic, "p_value": np.nan,
           **effect}
    row["note"] = _note(row)
    return {**{k: row.get(k, np.nan) for k in CLAIM_COLUMNS}, "side": row.get("side", "")}


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
    """Claim 2, for every teacher and both metrics: its zero test shows a side if every interval
    lies below zero (supported: intersection-union, each at 95%) or if any lies above zero at the
    Bonferroni level (contradicted); its equivalence test rejects if every interval lies inside
    its margin (intersection-union of the pairs' TOSTs); the verdict follows
    (:func:`kdcal.inference.verdict_of`). ``p_value`` is the smaller of the two directions'
    p-values: twice the largest one-sided p of "lower" (intersection-union) and 2 x pairs x the
    smallest one-sided p of "higher" (Bonferroni); ``p_equiv`` the largest TOST p of the pairs."""
    tests = []
    m = 2 * teachers["arch"].nunique()
    for arch, g in teachers.groupby("arch", sort=False):
        for metric, margin in (("ece", margins.ece), ("nll", margins.nll)):
            d = (g[f"{metric}_cal"] - g[metric]).to_numpy(float)
            mean, std, lo, hi, n = t_interval(d)
            _, _, blo, _, _ = t_interval(d, 1 - ALPHA / m)
            p = t_p_value(mean, std, n)
            tests.append({"label": f"{metric.upper()} after - before, {arch}", "mean": mean,
                          "lo": lo, "hi": hi, "blo": blo, "n": n, "margin": margin,
                          "lower": p / 2 if mean < 0 else 1 - p / 2,  # one-sided: after < before
                          "higher": p / 2 if mean > 0 else 1 - p / 2,  # after > before
                          "p_equiv": t_equivalence_p(mean, std, n, margin), "std": std,
                          "mde": mde_mean(std, n), "needed": units_needed_mean(std, margin)})
    if not tests:
        return None
    finite = all(np.isfinite(t["hi"]) for t in tests)
    if finite and all(t["hi"] < 0 for t in tests):
        shown = "supported"
    elif any(np.isfinite(t["blo"]) and t["blo"] > 0 for t in tests):
        shown = "contradicted"
    else:
        shown = ""
    inside = finite and all(-t["margin"] < t["lo"] and t["hi"] < t["margin"] for t in tests)
    worst = max(tests, key=lambda t: t["hi"] if np.isfinite(t["hi"]) else np.inf)
    lowers, highers = [t["lower"] for t in tests], [t["higher"] for t in tests]
    equivs = [t["p_equiv"] for t in tests]
    below = min(1.0, 2 * max(lowers)) if all(np.isfinite(lowers)) else np.nan
    above = min(1.0, 2 * m * np.nanmin(highers)) if np.isfinite(highers).any() else np.nan
    effect = {"estimate": worst["mean"], "ci_low": worst["lo"], "ci_high": worst["hi"],
              "unit": "seeds", "n": worst["n"], "p_value": float(np.fmin(below, above)),
              "p_equiv": max(equivs) if all(np.isfinite(equivs)) else np.nan,
              "p_floor": np.nan, "margin": worst["margin"],
              "mde": max(t["mde"] for t in tests), "needed": max(t["needed"] for t in tests),
              "needed_observed": units_needed_mean(worst["std"], abs(worst["mean"])),
              "verdict": verdict_of(shown, inside), "side": shown}
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
    claims come per family of teachers and across families with a family term (``family``).
    Each row has two tests: ``p_value`` against 0, ``p_equiv`` against +-margin (TOST). ``p_holm``,
    ``p_test`` and ``verdict_holm`` adjust for the number of claims tested
    (:func:`kdcal.multiplicity.holm_family` over both tests of one row per claim,
    :func:`primary_tests`; the within-family rows beside a test across families are secondary
    and carry none of them). A p-value on the permutation floor is named in ``note``.
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
    sides = [r["side"] for r in rows]
    primary = primary_tests(table)
    table["p_holm"], table["p_test"], table["verdict_holm"] = np.nan, None, None
    if primary.any():
        tests, adjusted, held = holm_family(table.loc[primary, "verdict"],
                                            [s for s, p in zip(sides, primary) if p],
                                            table.loc[primary, "p_value"],
                                            table.loc[primary, "p_equiv"])
        table.loc[primary, "p_holm"] = adjusted
        table.loc[primary, "p_test"] = pd.Series(tests, index=table.index[primary], dtype=object)
        table.loc[primary, "verdict_holm"] = pd.Series(held, index=table.index[primary],
                                                       dtype=object)
    table["note"] = [_notes(r, is_primary) for (_, r), is_primary in zip(table.iterrows(), primary)]
    return table


def _notes(row, is_primary: bool) -> str:
    """The row's note, after Holm: secondary rows say so; a negligible verdict that Holm splits
    says which test stands; a p-value on the permutation floor says that only teachers lower it."""
    split = ""
    if row["verdict"] == "negligible" and row["verdict_holm"] in (DECIDED + ("equivalent",)):
        kept, lost = ((ZERO, EQUIVALENCE) if row["verdict_holm"] != "equivalent"
                      else (EQUIVALENCE, ZERO))
        split = (f"negligible before Holm; after it only the {kept} test stands (the {lost} "
                 "test's adjusted p is not below 5%)")
    return "; ".join(filter(None, (None if is_primary else SECONDARY, split, row["note"],
                                   floor_note(row))))


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
    lines.append("In this run: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".")
    if "verdict_holm" in claims:
        held = claims["verdict_holm"].value_counts()
        adjusted = claims["p_holm"] if "p_holm" in claims else claims["verdict_holm"]
        lines.append(f"After Holm's adjustment (one family: both tests of each of the "
                     f"{int(adjusted.notna().sum())} claims with a test), the "
                     f"{int(claims['verdict_holm'].notna().sum())} claims: "
                     + ", ".join(f"{held.get(v, 0)} {v}" for v in VERDICTS) + ".")
    return "\n".join(lines)
