"""Power of the confirm-transfer design (issue 36) at evidence-transfer's variances.

Reads outputs/evidence-transfer/results.csv (no pickle), and for every size slope of the claims
(claim 3: uncalibrated student accuracy against log2 teacher parameters; claim 4: each
calibrated mode's own slope, and the interaction slopes, calibrated minus uncalibrated) splits
the scatter of the teacher means around the line into a teacher-to-teacher sd and a seed sd
(kdcal.power.slope_noise). It then simulates the study's own permutation test of the slope
(kdcal.power.slope_power, the family term included) on the confirm-transfer ladder, at the
slopes evidence-transfer observed and at fixed effects, for several numbers of seeds; and gives
the paired claims' (claim 5, seeds as units) power beside it. It prints the numbers the
preregistration quotes (docs/preregistration-confirm-transfer.md).

    PYTHONPATH=. python scripts/power_confirm.py [--results CSV] [--sims N]

Levels: 5% (a verdict before the family's adjustment) and 0.05/15, the level every test of the
preregistered family of 15 claims meets unless another claim is decided in full (both its test
of zero and its equivalence test rejected: 'negligible'). In that family each claim carries two
hypotheses that cannot both be true (no effect; an effect at least the margin), so the divisor
is the number of claims with a hypothesis still standing, not the number of p-values left.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
from scipy import stats

from kdcal import analysis, claims, inference, power
from kdcal.config import resolve
from kdcal.models import count_params

RESULTS = "outputs/evidence-transfer/results.csv"
PROFILE = "confirm-transfer"
EFFECTS = (0.10, 0.15, 0.20)  # points of accuracy per doubling of teacher parameters
SEEDS = (4, 6, 8, 10, 12, 14)
PRIMARY = 15  # primary tests of the preregistration's Holm family
LEVELS = {"5%": inference.ALPHA, f"family 0.05/{PRIMARY}": inference.ALPHA / PRIMARY}
TARGET = 0.8
CALIBRATED = ("compose", "replace", "cal-vector")  # the modes at tau 4 the new design keeps


def slope_tables(students: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every size slope of the claims as one frame of (teacher, seed, teacher_params, acc)."""
    by_mode = {m: g for m, g in students.groupby("mode")}
    out = {"claim 3: uncalibrated": by_mode["uncalibrated"]}
    out.update({f"claim 4: {m}": by_mode[m] for m in CALIBRATED})
    out.update({f"interaction: {m} - uncalibrated": claims.interaction_frame(students, m)
                for m in CALIBRATED})
    return out


def noise(frame: pd.DataFrame) -> dict:
    """Observed slope (per doubling, family term) and its teacher and seed sds."""
    table = frame.pivot_table(index="teacher", columns="seed", values="acc")
    size = frame.groupby("teacher")["teacher_params"].first().loc[table.index]
    x = np.log2(size.to_numpy(float))
    strata = [analysis.teacher_family(t) for t in table.index]
    teacher_sd, seed_sd = power.slope_noise(table.to_numpy(float), x, strata)
    slope = inference.slope_interval(x, table.mean(axis=1).to_numpy(float), strata)[0]
    return {"slope": slope, "teacher_sd": teacher_sd, "seed_sd": seed_sd,
            "teachers": len(x), "seeds": table.shape[1]}


def paired_sds(students: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Claim 5 (seeds as units): (mean, sd over seeds) of each per-seed mean difference."""
    tuned = analysis.tuned_tau_students(students, None)
    out = {}
    for m in CALIBRATED:
        for label, other in (("uncalibrated", "uncalibrated"), ("tuned tau", tuned)):
            per_seed = analysis.per_seed_means(analysis.paired_by_seed(students, m, other))
            out[f"{m} - {label}"] = (float(per_seed.mean()), float(per_seed.std(ddof=1)))
    return out


def t_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test over ``n`` seeds (decided in effect's direction)."""
    df, ncp = n - 1, abs(effect) / (sd / math.sqrt(n))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha / 2, df), df, ncp))


def tost_power(sd: float, x, strata, margin: float, alpha: float, sims: int,
               seed: int = 0) -> float:
    """Equivalence of a slope that is truly 0 (two one-sided t-tests on the OLS slope, family
    term): the share of simulated studies with both one-sided p-values below ``alpha``. An
    approximation of the TOST rule the analysis implements, for planning."""
    rng = np.random.default_rng(seed)
    ys = rng.normal(0.0, sd, size=(len(x), sims))
    xc, yc = _centred(np.asarray(x, float), strata), _centred(ys, strata)
    df = len(x) - len(set(strata)) - 1
    sxx = float(xc @ xc)
    b = xc @ yc / sxx
    se = np.sqrt(((yc - np.outer(xc, b)) ** 2).sum(0) / df / sxx)
    t = stats.t.ppf(1 - alpha, df)
    return float(np.mean((b - t * se > -margin) & (b + t * se < margin)))


def _centred(v: np.ndarray, strata) -> np.ndarray:
    """Rows of ``v`` centred within their family."""
    frame = pd.DataFrame(np.asarray(v, float).reshape(len(strata), -1))
    return (frame - frame.groupby(np.asarray(list(strata))).transform("mean")).to_numpy().squeeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=RESULTS)
    parser.add_argument("--sims", type=int, default=2000)
    args = parser.parse_args()

    results = pd.read_csv(args.results)
    students = results[results["role"] == "student"]
    cfg = resolve(PROFILE)
    params = {t: count_params(t, 1, 10) for t in cfg.teachers}
    x = np.log2(np.array([params[t] for t in cfg.teachers], float))
    strata = [analysis.teacher_family(t) for t in cfg.teachers]
    student = count_params(cfg.student, 1, 10)
    margin = inference.slope_margin(inference.MARGINS.acc_span, x)
    print(f"design {PROFILE}: {len(x)} teachers ({strata.count('depth')} depth, "
          f"{strata.count('width')} width), {np.ptp(x):.2f} doublings "
          f"({min(params.values()):,} to {max(params.values()):,} parameters); student "
          f"{cfg.student} {student:,} parameters = 1/{min(params.values()) / student:.1f} of the "
          f"smallest teacher")
    for t in sorted(cfg.teachers, key=params.get):
        print(f"  {t:<14} {analysis.teacher_family(t):<5} {params[t]:>10,}  "
              f"log2 {math.log2(params[t]):.2f}")
    print(f"size margin: +-{inference.MARGINS.acc_span * 100:.1f} points over the ladder = "
          f"+-{margin * 100:.3f} points per doubling")

    print(f"\nvariances from {args.results} (points of accuracy; teacher means, family term)")
    rows = {}
    for name, frame in slope_tables(students).items():
        rows[name] = n = noise(frame)
        print(f"  {name:<36} observed slope {n['slope'] * 100:+.3f}/doubling, teacher sd "
              f"{n['teacher_sd'] * 100:.3f}, seed sd {n['seed_sd'] * 100:.3f} "
              f"({n['teachers']} teachers x {n['seeds']} seeds)")

    print(f"\npower of the slope test on the {PROFILE} ladder ({args.sims} simulated studies each;"
          " the study's permutation test with the family term)")
    chosen = max(cfg.seeds) + 1
    for name, n in rows.items():
        if name.startswith("interaction"):
            continue
        effects = [*(e / 100 for e in EFFECTS), abs(n["slope"])]  # accuracy per doubling
        for seeds in SEEDS:
            sd = math.sqrt(n["teacher_sd"] ** 2 + n["seed_sd"] ** 2 / seeds)
            cells = []
            for effect in effects:
                powers = power.slope_power(x, effect, sd, strata, list(LEVELS.values()),
                                               args.sims, seed=seeds)
                cells.append("/".join(f"{p:.2f}" for p in powers))
            label = "  ".join(f"{e * 100:.2f}: {c}" for e, c in zip(effects, cells))
            mark = " <- preregistered seeds" if seeds == chosen else ""
            print(f"  {name:<24} {seeds:>2} seeds, sd {sd * 100:.3f}: {label}{mark}")
    print("  (effect in points per doubling: power at " + " / ".join(LEVELS) + "; the last "
          "effect is the slope evidence-transfer observed)")

    print(f"\ninteractions (claim 4, primary): equivalence when the slope is 0 (TOST, margin "
          f"+-{margin * 100:.3f}/doubling) and power to detect a slope of one margin")
    for name, n in rows.items():
        if not name.startswith("interaction"):
            continue
        for seeds in SEEDS:
            sd = math.sqrt(n["teacher_sd"] ** 2 + n["seed_sd"] ** 2 / seeds)
            tost = [tost_power(sd, x, strata, margin, a, args.sims) for a in LEVELS.values()]
            detect = power.slope_power(x, margin, sd, strata, list(LEVELS.values()),
                                           args.sims, seed=seeds)
            mark = " <- preregistered seeds" if seeds == chosen else ""
            print(f"  {name:<36} {seeds:>2} seeds, sd {sd * 100:.3f}: equivalent "
                  + "/".join(f"{p:.2f}" for p in tost) + ", detects +1 margin "
                  + "/".join(f"{p:.2f}" for p in detect) + mark)

    print("\nclaim 5 (seeds as units; t-test over per-seed means): power at the difference "
          "evidence-transfer observed, " + " / ".join(LEVELS))
    for name, (mean, sd) in paired_sds(students).items():
        cells = " ".join(f"{s} seeds " + "/".join(f"{t_power(mean, sd, s, a):.2f}"
                                                  for a in LEVELS.values()) for s in SEEDS)
        print(f"  {name:<28} mean {mean * 100:+.3f}, sd {sd * 100:.3f}: {cells}")

    family = inference.ALPHA / PRIMARY
    print(f"\nseeds needed: the fewest of {', '.join(map(str, SEEDS))} at which a primary test "
          f"reaches {TARGET:.0%} at the family level 0.05/{PRIMARY}, at evidence-transfer's "
          "effects (slopes: as observed; interactions: equivalence at a slope of 0; claim 5: the "
          "observed differences)")
    need = {}
    for name, n in rows.items():
        def sd(s, n=n):
            return math.sqrt(n["teacher_sd"] ** 2 + n["seed_sd"] ** 2 / s)
        if name.startswith("interaction"):
            hit = (s for s in SEEDS if tost_power(sd(s), x, strata, margin, family, args.sims)
                   >= TARGET)
        else:
            hit = (s for s in SEEDS if power.slope_power(
                x, abs(n["slope"]), sd(s), strata, family, args.sims, seed=s) >= TARGET)
        need[name] = next(hit, None)
    for name, (mean, sd_) in paired_sds(students).items():
        need[f"claim 5: {name}"] = next((s for s in SEEDS if t_power(mean, sd_, s, family)
                                         >= TARGET), None)
    for name, seeds in need.items():
        print(f"  {name:<40} {seeds if seeds else 'more than ' + str(max(SEEDS))}")
    slopes = [v for k, v in need.items() if k.startswith(("claim 3", "claim 4"))]
    short = [k for k, v in need.items() if v is None]
    reached = [v for v in need.values() if v is not None]
    slopes_need = (f"more than {max(SEEDS)}" if None in slopes
                   else str(max(slopes)) if slopes else "none")
    print(f"claim 3 and the calibrated modes' own slopes need {slopes_need} seeds; the other "
          f"primary tests above, up to {max(reached) if reached else 'none'}"
          + (f"; not within {max(SEEDS)}: {', '.join(short)}" if short else ""))
    print(f"preregistered: {chosen} seeds ({PROFILE} seeds = {cfg.seeds})")


if __name__ == "__main__":
    main()
